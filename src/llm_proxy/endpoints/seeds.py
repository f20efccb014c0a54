"""The seeds' own chat endpoints, each a chat completion with the seed's validation and shapes.

- Seed 004: POST /proxy and /proxy/stream. Messages must be non-empty, roles system, user or
  assistant, every content non-empty, and the last message not the assistant's. The answer is
  an OpenAI chat completion, or (stream) `data: <chunk>` events ending with `data: [DONE]`.
- Seed 001: POST /api/v1/inference and /api/v1/inference/stream: an OpenAI chat body; the
  answer is the chat completion (the model as the client named it) or its SSE stream. Errors
  are in seed 001's shape: {"error": {"code": <status>, "message", "type", "details"}}, with
  OpenAI's `param` inside too. Its types: validation, authentication, permission, not_found,
  rate_limit, openrouter (the seed's name for "the upstream provider failed"), internal.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_proxy import errors as E
from llm_proxy.canonical.chat import parse_json, validate_chat
from llm_proxy.endpoints.checks import bad
from llm_proxy.pipeline import Endpoint

_SEED4_ROLES = ("system", "user", "assistant")


def _seed4_checks(body: dict[str, Any]) -> None:
    for i, m in enumerate(body["messages"]):
        role = m.get("role")
        if role not in _SEED4_ROLES:
            raise bad(
                f"'messages[{i}].role' must be one of system, user, assistant; got {role!r}.",
                f"messages[{i}].role",
            )
        content = m.get("content")
        empty = not content or (isinstance(content, str) and not content.strip())
        if empty:
            raise bad(f"'messages[{i}].content' must not be empty.", f"messages[{i}].content")
    if body["messages"][-1].get("role") == "assistant":
        raise bad(
            "The last message must not be from the assistant.",
            f"messages[{len(body['messages']) - 1}].role",
        )


def _chat(raw: bytes, stream: bool | None, seed4: bool) -> dict[str, Any]:
    doc = parse_json(raw)
    if isinstance(doc, dict) and stream is not None:
        doc["stream"] = stream
        if not stream:
            doc.pop("stream_options", None)
    body = validate_chat(doc)
    if seed4:
        _seed4_checks(body)
    return body


def _parser(stream: bool | None, seed4: bool) -> Any:
    async def parse(raw: bytes, headers: dict[bytes, bytes]) -> tuple[dict[str, Any], None]:
        return _chat(raw, stream, seed4), None

    return parse


_SEED1_TYPES = {
    401: "authentication", 403: "permission", 404: "not_found", 429: "rate_limit",
    502: "openrouter", 503: "openrouter", 504: "openrouter",
}  # fmt: skip


def seed1_type(status: int) -> str:
    if status in _SEED1_TYPES:
        return _SEED1_TYPES[status]
    return "validation" if status < 500 else "internal"


def seed1_error(err: E.GatewayError) -> bytes:
    """Seed 001's error body, carrying OpenAI's message/type/param/code keys as well."""
    out: dict[str, Any] = {
        "code": err.status,
        "message": err.message,
        "type": seed1_type(err.status),
        "param": err.param,
    }
    if err.param:
        out["details"] = {"field": err.param, "message": err.message}
    if err.code:
        out["reason"] = err.code  # the gateway's own code (e.g. model_not_found)
    return orjson.dumps({"error": out})


PROXY = Endpoint(_parser(False, True))
PROXY_STREAM = Endpoint(_parser(True, True))
INFERENCE = Endpoint(_parser(None, False), seed1_error)
INFERENCE_STREAM = Endpoint(_parser(True, False), seed1_error)
