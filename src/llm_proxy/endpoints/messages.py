"""POST /v1/messages and /v1/messages/count_tokens: the Anthropic Messages API for any model.

https://docs.anthropic.com/en/api/messages and /en/api/messages-count-tokens
An Anthropic deployment gets the request exactly as the client sent it (bytes, and its
`anthropic-version` / `anthropic-beta` headers; only the model id is swapped when the public
name differs) and its answer, plain or streamed, comes back as it came. Every other deployment
gets it translated to OpenAI chat (formats/anthropic_inbound.py) and its answer translated
back, streaming events included. Requests only Anthropic can serve (server tools such as
web search, and anything else the translation refuses) skip the other deployments.
Errors are in Anthropic's shape, which also carries OpenAI's message/type/param/code.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from llm_proxy import accounting
from llm_proxy import errors as E
from llm_proxy.api.http import ClientDisconnected, error_headers, read_body, send_json
from llm_proxy.endpoints import checks as C
from llm_proxy.endpoints.op import Op, Outbound, PassState, Target, chat_target, passthrough
from llm_proxy.formats import anthropic_inbound as AI
from llm_proxy.formats import anthropic_messages as AM
from llm_proxy.gateway import Gateway
from llm_proxy.pipeline import Endpoint, pick_route, serve
from llm_proxy.runtime import Deployment

_FORWARDED = (b"anthropic-version", b"anthropic-beta")
# Anthropic error-event types -> the HTTP status they stand for (for the error mapping).
_STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
    "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip


def has_events(out: bytes) -> bool:
    """Whether Anthropic stream events carry something the client would see."""
    return (
        b"content_block_delta" in out
        or b'"tool_use"' in out
        or b"message_delta" in out
        or b"message_stop" in out
    )


def error_event(err: E.GatewayError) -> bytes:
    return b"event: error\ndata: " + AI.error_body(err) + b"\n\n"


def _native_usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    u = doc.get("usage")
    return AM.usage_of(u) if isinstance(u, dict) else None


def _watch(data: bytes, st: PassState) -> None:
    """Usage from message_start and message_delta; the end at message_stop; an error event
    is raised as the failure it reports (before commit: failover; after: the stream's end)."""
    if b'"message_stop"' in data:
        st.done = True
        return
    if b'"usage"' not in data and b'"error"' not in data:
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(doc, dict):
        return
    kind = doc.get("type")
    if kind == "error":
        err = doc.get("error")
        etype = err.get("type") if isinstance(err, dict) else None
        status = _STATUS_OF_TYPE.get(etype if isinstance(etype, str) else "", 502)
        raise AM.from_upstream_error(status, data, {}, False, False, st.secrets)
    usage = st.scratch.setdefault("usage", {})
    if kind == "message_start":
        msg = doc.get("message")
        if isinstance(msg, dict) and isinstance(msg.get("usage"), dict):
            usage.update(msg["usage"])
    elif kind == "message_delta" and isinstance(doc.get("usage"), dict):
        usage.update({k: v for k, v in doc["usage"].items() if v is not None})
    if usage:
        st.usage = AM.usage_of(usage)


def _native(d: Deployment) -> bool:
    return d.provider.format == "anthropic"


def _client_headers(headers: dict[bytes, bytes]) -> dict[str, str] | None:
    out = {k.decode(): v.decode("latin-1") for k in _FORWARDED if (v := headers.get(k)) is not None}
    return out or None


def _chat_or_error(body: dict[str, Any]) -> tuple[dict[str, Any], E.GatewayError | None]:
    """The chat translation, or (a stand-in for admission, why no chat deployment can serve)."""
    try:
        return AI.to_chat(body), None
    except E.InvalidRequestError as err:
        text = orjson.dumps(body.get("messages")).decode()
        stand_in = {
            "model": body["model"],
            "messages": [{"role": "user", "content": text}],
            "max_tokens": body["max_tokens"],
            "stream": bool(body.get("stream")),
        }
        return stand_in, err


async def parse(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    body = AI.validate(C.json_object(raw))
    chat, why = _chat_or_error(body)
    model = body["model"]
    out = Outbound(
        lambda doc: AI.from_chat(doc, model), lambda: AI.StreamTranslator(model), has_events
    )
    extra = _client_headers(headers)

    def pick(d: Deployment) -> Target | None:
        if _native(d):
            wire = passthrough(
                raw, body, AM.from_upstream_error, _native_usage, _watch, error_event, has_events,
                d.provider.secrets,
            )  # fmt: skip
            return Target(wire, d.url, d.stream_url, extra)
        return chat_target(d, out) if why is None else None

    return chat, Op("the Anthropic Messages API", pick, why=why)


ENDPOINT = Endpoint(parse, AI.error_body)


# --- count_tokens ---------------------------------------------------------------------------


def _count_usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    return None  # counting is free: no tokens are billed


async def _parse_count(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], Op]:
    body = _validate_count(C.json_object(raw))
    extra = _client_headers(headers)

    def pick(d: Deployment) -> Target | None:
        if not _native(d):
            return None
        url = d.url.partition("?")[0] + "/count_tokens"
        wire = passthrough(raw, body, AM.from_upstream_error, _count_usage)
        return Target(wire, url, url, extra)

    # Counting is free: the stand-in asks for one output token, so a budget reserves nothing.
    stand_in = {
        "model": body["model"],
        "messages": [{"role": "user", "content": "count"}],
        "max_tokens": 1,
    }
    return stand_in, Op("token counting", pick)


def _validate_count(doc: dict[str, Any]) -> dict[str, Any]:
    """count_tokens takes a Messages request without max_tokens."""
    probe = {**doc, "max_tokens": 1} if "max_tokens" not in doc else doc
    AI.validate(probe)
    return doc


COUNT_NATIVE = Endpoint(_parse_count, AI.error_body)


async def _counted_locally(
    gw: Gateway, principal: Any, body: dict[str, Any], ip_rate: Any
) -> list[tuple[bytes, bytes]]:
    """The key's and IP's request limits for a count the gateway makes itself (it costs CPU,
    not tokens): admitted, then settled at once. Its rate-limit headers."""
    stand_in = {"model": body["model"], "messages": [], "max_tokens": 1}
    settings = gw.router.runtime.settings
    ticket = accounting.plan_for(principal, stand_in, list, settings, ip_rate, time.time())
    if ticket is None:
        return []
    await accounting.admit(gw.limits, ticket)
    done = accounting.settlement(ticket, 0.0, 0)
    if done is not None:
        await gw.limits.settle(done, ticket.verdict.local)
    return ticket.headers


async def count_tokens(gw: Gateway, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An Anthropic deployment counts (its own endpoint, through the pipeline); for any other
    model the count is the gateway's own estimate (formats/anthropic_inbound.py)."""
    st = scope["state"]
    headers: dict[bytes, bytes] = st["headers"]
    router = gw.router
    settings = router.runtime.settings
    try:
        raw = await read_body(
            receive, headers, settings.max_request_bytes, settings.body_read_timeout
        )
        body = _validate_count(C.json_object(raw))
        principal = st["principal"]
        if principal.key is not None:
            accounting.check_models(principal, body["model"])
        route = pick_route(router, body, headers)
        if not any(_native(c.deployment) for c in route.candidates):
            extra = await _counted_locally(gw, principal, body, st.get("ip_rate"))
            doc = {"input_tokens": AI.count_tokens_estimate(body)}
            await send_json(
                send, 200, orjson.dumps(doc), [(b"content-type", b"application/json"), *extra]
            )
            return
    except E.GatewayError as err:
        await send_json(send, err.status, AI.error_body(err), error_headers(err))
        return
    except ClientDisconnected:
        return
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        msg: dict[str, Any] = await receive()
        return msg

    await serve(gw, scope, replay, send, COUNT_NATIVE)
