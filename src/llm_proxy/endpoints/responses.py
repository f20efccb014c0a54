"""POST /v1/responses: the OpenAI Responses API, stateless, for any model.

https://platform.openai.com/docs/api-reference/responses/create (and .../responses-streaming)
OpenAI deployments get the request exactly as it came (only the model id is
swapped when the public name differs) and the answer, plain or streamed, as it came: built-in
tools, `previous_response_id` and stored responses work there because OpenAI keeps the state.
Every other deployment gets it translated to chat (formats/openai_responses.py) and the
answer, typed stream events included, translated back; what the translation refuses (built-in
tools, `previous_response_id`) skips those deployments.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.endpoints import checks as C
from llm_proxy.endpoints.op import (
    Op,
    Outbound,
    PassState,
    Target,
    chat_target,
    openai_url,
    passthrough,
)
from llm_proxy.formats import WireFormat, openai_chat
from llm_proxy.formats import openai_responses as R
from llm_proxy.pipeline import Endpoint
from llm_proxy.providers.registry import SPECS
from llm_proxy.runtime import Deployment

# Azure's Responses API lives at another path (/openai/v1/responses) than its chat deployments:
# Azure deployments are translated for now.
NATIVE_TYPES = frozenset({"openai"})
_COMPAT = frozenset(n for n, s in SPECS.items() if s.format == "openai" and n != "openai")
_ENDS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')
_STATEFUL = ("previous_response_id", "conversation")


def has_events(out: bytes) -> bool:
    """Whether Responses stream events carry something the client would see."""
    return (
        b'.delta"' in out
        or b'"function_call"' in out
        or b'"response.output_text.done"' in out
        or any(e in out for e in _ENDS)
    )


def chat_usage(u: Any) -> dict[str, Any] | None:
    """Responses usage -> the chat-shaped usage spend reads."""
    if not isinstance(u, dict):
        return None
    p, c = u.get("input_tokens") or 0, u.get("output_tokens") or 0
    out: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    ind, outd = u.get("input_tokens_details"), u.get("output_tokens_details")
    if isinstance(ind, dict):
        out["prompt_tokens_details"] = {"cached_tokens": ind.get("cached_tokens") or 0}
    if isinstance(outd, dict):
        out["completion_tokens_details"] = {"reasoning_tokens": outd.get("reasoning_tokens") or 0}
    return out


def _native_usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    return chat_usage(doc.get("usage"))


def _watch(data: bytes, st: PassState) -> None:
    if not any(e in data for e in _ENDS):
        return
    st.done = True
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    resp = doc.get("response") if isinstance(doc, dict) else None
    if isinstance(resp, dict):
        st.usage = chat_usage(resp.get("usage"))


def error_event(err: E.GatewayError) -> bytes:
    """The API's `error` event, for a passed-through stream the gateway has to end."""
    doc = {
        "type": "error",
        "code": err.code or err.type,
        "message": err.message,
        "param": err.param,
        "sequence_number": 0,
    }
    return b"event: error\ndata: " + orjson.dumps(doc) + b"\n\n"


def _native(d: Deployment) -> bool:
    """OpenAI itself: `type: openai`, unless the provider is one of the OpenAI-compatible
    family by name (`vllm`, `groq`, ... configured as type openai)."""
    p = d.provider
    return p.format == "openai" and p.type in NATIVE_TYPES and p.name not in _COMPAT


def _capped(wire: WireFormat, body: dict[str, Any]) -> WireFormat:
    """A budgeted call without an output limit is capped at what its budget reserved
    (`spend.reserve_max_tokens`, set on the chat-shaped body by admission): passed through
    as `max_output_tokens`."""
    if body.get("max_output_tokens") is not None:
        return wire
    base = wire.to_upstream

    def to_upstream(chat: dict[str, Any], model: str, params: dict[str, Any], s: bool) -> bytes:
        cap = chat.get("max_completion_tokens")
        if isinstance(cap, int):
            return orjson.dumps({**body, "model": model, "max_output_tokens": cap})
        return base(chat, model, params, s)

    return dataclasses.replace(wire, to_upstream=to_upstream)


def _chat_or_error(body: dict[str, Any]) -> tuple[dict[str, Any], E.GatewayError | None]:
    stateful = next((k for k in _STATEFUL if body.get(k) is not None), None)
    try:
        if stateful is not None:
            raise E.InvalidRequestError(
                f"'{stateful}' needs an OpenAI deployment: this gateway keeps no responses, so "
                "other models must be sent the whole conversation as `input`.",
                param=stateful,
                code="unsupported_parameter",
            )
        return R.to_chat(body), None
    except E.InvalidRequestError as err:
        text = orjson.dumps(body.get("input")).decode()
        stand_in: dict[str, Any] = {
            "model": body["model"],
            "messages": [{"role": "user", "content": text}],
            "stream": bool(body.get("stream")),
        }
        if isinstance(body.get("max_output_tokens"), int):
            stand_in["max_completion_tokens"] = body["max_output_tokens"]
        return stand_in, err


def _validated(doc: dict[str, Any]) -> dict[str, Any]:
    """The translation's validation, minus what only the stateful OpenAI upstream takes."""
    probe = {k: v for k, v in doc.items() if k not in _STATEFUL}
    R.validate(probe)
    return doc


async def parse(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    body = _validated(C.json_object(raw))
    chat, why = _chat_or_error(body)
    created = int(time.time())
    out = Outbound(
        lambda doc: R.from_chat(doc, body, created),
        lambda: R.StreamTranslator(body, created),
        has_events,
    )

    def pick(d: Deployment) -> Target | None:
        if _native(d):
            url = openai_url(d, "/responses")
            if url is not None:
                wire = passthrough(
                    raw, body, openai_chat.from_upstream_error, _native_usage, _watch,
                    error_event, has_events, d.provider.secrets,
                )  # fmt: skip
                return Target(_capped(wire, body), url, url)
        return chat_target(d, out) if why is None else None

    return chat, Op("the Responses API", pick, why=why)


ENDPOINT = Endpoint(parse)
