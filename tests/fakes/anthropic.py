"""A fake Anthropic Messages API server (raw ASGI) that validates like Anthropic and fails on command.

Wire format from Anthropic's docs: "Messages" https://docs.anthropic.com/en/api/messages,
"Streaming Messages" https://docs.anthropic.com/en/docs/build-with-claude/streaming (also
https://platform.claude.com/docs/en/build-with-claude/streaming), "Errors"
https://docs.anthropic.com/en/api/errors, "Extended thinking"
https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking (thinking_delta,
signature_delta), and ../shared/specs/anthropic-hosted_spec.json (Message, Usage, ErrorResponse,
MessageStreamEvent, InputJsonContentBlockDelta).

Served: `POST /v1/messages` and `POST /v1/messages/count_tokens` ("Count tokens in a Message",
https://docs.anthropic.com/en/api/messages-count-tokens, also
https://platform.claude.com/docs/en/api/messages/count_tokens). Requests are checked the way Anthropic checks them, with
Anthropic-shaped errors ({"type": "error", "error": {"type", "message"}, "request_id"} and a
`request-id` header): neither `x-api-key` nor `Authorization: Bearer <token>` -> 401
authentication_error; no `anthropic-version` -> 400;
missing model/max_tokens/messages, empty messages, unknown top-level fields, a role other than
user/assistant, a first message that is not user, unknown or empty content blocks, tool_use and
tool_result blocks that do not pair up, tools without input_schema -> 400 invalid_request_error.

The scenario is picked by the request's `model` (or an `X-Fake-Scenario` header):
  claude-fake (default)        text "fake: <last user text>" (+ " [images: N]" when the last user
                               turn has image blocks; "fake: tool said <first tool_result>" when it
                               has tool_result blocks); stop_sequences and max_tokens (in words)
                               are honoured (stop_reason stop_sequence / max_tokens)
  claude-tool                  "Let me check." then tool_use of the first request tool (or
                               get_weather) with {"city": "Paris", "unit": "c"}
  claude-two-tools             "Let me check." then tool_use get_weather and get_time for Paris
  claude-thinking              a thinking block (with signature) then the claude-fake text
  claude-error-<status>        that status with its Anthropic error type (429: retry-after: 7)
  claude-context               400 "prompt is too long: 210000 tokens > 200000 maximum"
  claude-midstream-overloaded  stream: message_start, one text delta, then an `error` event
  claude-truncate              stream: ends right after the first content_block_delta
  claude-slow                  claude-fake, `x-fake-delay` seconds (default 0.2) before the answer
                               or between stream events, watching for disconnect
Any scenario with tool_choice {"type": "tool", "name": X} calls X with
{"answer": "yes", "confidence": 0.9} and nothing else (how a gateway forces JSON output);
tool_choice {"type": "none"} makes claude-tool / claude-two-tools answer like claude-fake.
Every documented Messages body field (including beta ones such as context_management,
mcp_servers, container; /v1/messages?beta=true is the same path) is accepted and kept as sent; the
`anthropic-beta`, `anthropic-workspace-id` etc. headers are recorded in Seen.headers. count_tokens
takes the same header checks, the body without max_tokens/stream/metadata/... (those are "Extra
inputs"), the same message validation, claude-error-<status>, and answers {"input_tokens": N},
N = words of all text in system + messages + 10 per tool.
Usage is deterministic: input_tokens = words of all text in system + messages, output_tokens =
words of text and thinking blocks + 10 per tool_use; cache_read_input_tokens = 5 when any
cache_control is present in the request, else 0.
Streams (stream: true) are `event: <type>\\ndata: <json>\\n\\n`: message_start, per block
content_block_start (a ping after the first), deltas (text_delta per word, input_json_delta in 3
fragments, thinking_delta + signature_delta), content_block_stop, message_delta, message_stop.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakes.openai import Seen, _wait_or_disconnect

__all__ = ["FakeAnthropic", "Seen"]

_ERRORS = {
    400: ("invalid_request_error", "messages.0.content: fake upstream invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_format", "output_config",
    "cache_control", "diagnostics", "inference_geo", "speed", "billing_policy", "compaction",
    "fallback_credit_token", "fallbacks", "thread",
}  # fmt: skip
# POST /v1/messages/count_tokens takes the request without max_tokens, stream, metadata, ...
_COUNT_FIELDS = {
    "model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control",
    "output_config", "output_format", "speed", "mcp_servers", "context_management",
}  # fmt: skip
_BLOCKS = (
    "text", "image", "document", "search_result", "tool_use", "tool_result", "thinking",
    "redacted_thinking", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "advisor_tool_result", "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "mcp_tool_use",
    "mcp_tool_result", "container_upload", "compaction", "tool_addition", "tool_removal",
    "mcp_tool_listing", "fallback",
)  # fmt: skip
_SIGNATURE = "EqQBCkYIBxgCKkBmYWtlLXNpZ25hdHVyZS1mb3ItdGVzdHM="
_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@dataclass
class FakeAnthropic:
    requests: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)  # model ids whose client went away

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(Seen(scope["method"], scope["path"], headers, body, raw))
        rid = f"req_fake{len(self.requests):020d}"
        if scope["method"] == "POST" and scope["path"] == "/v1/messages/count_tokens":
            await self._count_tokens(headers, body, rid, send)
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/messages":
            await _error(send, rid, 404, "not_found_error", "Not Found")
            return
        problem = _check_headers(headers) or _check_body(body)
        if problem:
            await _error(send, rid, *problem)
            return
        assert isinstance(body, dict)
        model = headers.get("x-fake-scenario") or str(body["model"])
        delay = float(headers.get("x-fake-delay") or 0.2) if model == "claude-slow" else 0.0
        await self._answer(model, body, delay, rid, receive, send)

    async def _count_tokens(self, headers: dict[str, str], body: Any, rid: str, send: Any) -> None:
        problem = _check_headers(headers) or _check_body(body, count=True)
        if problem:
            await _error(send, rid, *problem)
            return
        assert isinstance(body, dict)
        model = headers.get("x-fake-scenario") or str(body["model"])
        if model.startswith("claude-error-"):
            status = int(model.removeprefix("claude-error-"))
            etype, message = _ERRORS.get(status, ("api_error", "Internal server error"))
            extra = [(b"retry-after", b"7")] if status == 429 else []
            await _error(send, rid, status, etype, message.format(model=model), *extra)
            return
        tokens = _input_words(body) + 10 * len(body.get("tools") or [])
        await _json(send, 200, {"input_tokens": tokens}, rid)

    async def _answer(
        self, model: str, body: dict[str, Any], delay: float, rid: str, receive: Any, send: Any
    ) -> None:
        if model.startswith("claude-error-"):
            status = int(model.removeprefix("claude-error-"))
            etype, message = _ERRORS.get(status, ("api_error", "Internal server error"))
            extra = [(b"retry-after", b"7")] if status == 429 else []
            await _error(send, rid, status, etype, message.format(model=model), *extra)
            return
        if model == "claude-context":
            msg = "prompt is too long: 210000 tokens > 200000 maximum"
            await _error(send, rid, 400, "invalid_request_error", msg)
            return
        doc = _message(model, body, rid)
        if body.get("stream"):
            await self._stream(model, doc, receive, send, delay, rid)
            return
        if delay and await _wait_or_disconnect(receive, delay):
            self.disconnects.append(model)
            return
        await _json(send, 200, doc, rid)

    async def _stream(
        self, model: str, doc: dict[str, Any], receive: Any, send: Any, delay: float, rid: str
    ) -> None:
        hdrs = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        hdrs.append((b"request-id", rid.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        for i, (name, data) in enumerate(_events(doc)):
            if delay and i and await _wait_or_disconnect(receive, delay):
                self.disconnects.append(model)
                return
            await _event(send, name, data)
            if name != "content_block_delta":
                continue
            if model == "claude-midstream-overloaded":
                await _event(send, "error", _OVERLOADED)
                break
            if model == "claude-truncate":
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _check_headers(headers: dict[str, str]) -> tuple[int, str, str] | None:
    bearer = headers.get("authorization", "")
    # Anthropic also takes `Authorization: Bearer` (OAuth tokens); anthropic-python 2.x sends its
    # api_key that way too
    if not headers.get("x-api-key") and not (bearer.startswith("Bearer ") and bearer[7:].strip()):
        return 401, "authentication_error", "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    return None


def _check_body(body: Any, count: bool = False) -> tuple[int, str, str] | None:
    if not isinstance(body, dict):
        return 400, "invalid_request_error", "There was an issue with your request body: not JSON"
    msg = None
    extra = sorted(set(body) - (_COUNT_FIELDS if count else _FIELDS))
    max_tokens = body.get("max_tokens")
    if extra:
        msg = f"{extra[0]}: Extra inputs are not permitted"
    elif not body.get("model"):
        msg = "model: Field required"
    elif count:
        msg = _check_messages(body.get("messages")) or _check_tools(body.get("tools"))
    elif max_tokens is None:
        msg = "max_tokens: Field required"
    elif not isinstance(max_tokens, int) or max_tokens < 1:
        msg = "max_tokens: Input should be greater than or equal to 1"
    else:
        msg = _check_messages(body.get("messages")) or _check_tools(body.get("tools"))
    return (400, "invalid_request_error", msg) if msg else None


def _check_messages(msgs: Any) -> str | None:
    if msgs is None:
        return "messages: Field required"
    if not isinstance(msgs, list) or not msgs:
        return "messages: at least one message is required"
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "system":
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        problem = _check_content(i, m.get("content"), last=i == len(msgs) - 1)
        if problem:
            return problem
    if msgs[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    return _check_tool_pairs(msgs)


def _check_content(i: int, content: Any, last: bool) -> str | None:
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list):
        blocks = content
    else:
        return f"messages.{i}.content: Input should be a valid list"
    if not blocks and not last:
        return (
            f"messages.{i}: all messages must have non-empty content except for the optional "
            "final assistant message"
        )
    for j, b in enumerate(blocks):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind not in _BLOCKS:
            tags = ", ".join(f"'{t}'" for t in _BLOCKS)
            return (
                f"messages.{i}.content.{j}: Input tag '{kind}' found using 'type' does not match "
                f"any of the expected tags: {tags}"
            )
        if kind == "text" and not b.get("text"):
            return "messages: text content blocks must be non-empty"
    return None


def _check_tool_pairs(msgs: list[dict[str, Any]]) -> str | None:
    def ids(m: dict[str, Any] | None, kind: str, key: str) -> list[str]:
        c = (m or {}).get("content")
        return [b.get(key) for b in c if b.get("type") == kind] if isinstance(c, list) else []

    for i, m in enumerate(msgs):
        prev = msgs[i - 1] if i else None
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        used = ids(m, "tool_use", "id")
        missing = [t for t in used if t not in ids(nxt, "tool_result", "tool_use_id")]
        if used and nxt is not None and missing:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        stray = [
            t for t in ids(m, "tool_result", "tool_use_id") if t not in ids(prev, "tool_use", "id")
        ]
        if stray:
            return (
                f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{stray[0]}. Each `tool_result` block must have a corresponding `tool_use` block "
                "in the previous message."
            )
    return None


def _check_tools(tools: Any) -> str | None:
    for i, t in enumerate(tools or []):
        if not isinstance(t, dict):
            return f"tools.{i}.custom.name: Field required"
        if not t.get("name") and t.get("type") in (None, "custom"):  # mcp_toolset has no name
            return f"tools.{i}.custom.name: Field required"
        if "type" not in t and "input_schema" not in t:
            return f"tools.{i}.custom.input_schema: Field required"
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [b.get("text", "") for b in content or [] if b.get("type") == "text"]
    parts += [_text_of(b.get("content")) for b in content or [] if b.get("type") == "tool_result"]
    return " ".join(parts)


def _has_cache_control(obj: Any) -> bool:
    if isinstance(obj, dict):
        return "cache_control" in obj or any(_has_cache_control(v) for v in obj.values())
    return isinstance(obj, list) and any(_has_cache_control(v) for v in obj)


def _reply(body: dict[str, Any]) -> str:
    last = next((m for m in reversed(body["messages"]) if m["role"] == "user"), {})
    content = last.get("content")
    if isinstance(content, str):
        return f"fake: {content}"
    blocks = content or []
    images = sum(1 for b in blocks if b.get("type") == "image")
    result = next((b for b in blocks if b.get("type") == "tool_result"), None)
    text = " ".join(b["text"] for b in blocks if b.get("type") == "text")
    out = f"fake: tool said {_text_of(result.get('content'))}" if result else f"fake: {text}"
    return out + (f" [images: {images}]" if images else "")


def _tool(rid: str, n: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    tid = f"toolu_01Fake{rid[-10:]}{n:02d}"
    return {"type": "tool_use", "id": tid, "name": name, "input": args}


def _message(model: str, body: dict[str, Any], rid: str) -> dict[str, Any]:
    choice = body.get("tool_choice") or {}
    first_tool = next((t.get("name") for t in body.get("tools") or []), None) or "get_weather"
    paris = {"city": "Paris", "unit": "c"}
    stop, seq = "end_turn", None
    if choice.get("type") == "none":
        model = "claude-fake"  # tools may not be called
    if choice.get("type") == "tool":
        content = [_tool(rid, 0, choice.get("name", ""), {"answer": "yes", "confidence": 0.9})]
    elif model == "claude-tool":
        content = [{"type": "text", "text": "Let me check."}, _tool(rid, 0, first_tool, paris)]
    elif model == "claude-two-tools":
        content = [
            {"type": "text", "text": "Let me check."},
            _tool(rid, 0, "get_weather", paris),
            _tool(rid, 1, "get_time", {"city": "Paris"}),
        ]
    else:
        text = _reply(body)
        for s in body.get("stop_sequences") or []:
            if s and s in text:
                text, stop, seq = text[: text.index(s)], "stop_sequence", s
                break
        words = text.split(" ")
        if len(words) > body["max_tokens"]:
            text, stop = " ".join(words[: body["max_tokens"]]), "max_tokens"
        content = [{"type": "text", "text": text}]
        if model == "claude-thinking":
            thought = f"The user wrote: {_text_of(body['messages'][-1].get('content'))}"
            content.insert(0, {"type": "thinking", "thinking": thought, "signature": _SIGNATURE})
    if any(b["type"] == "tool_use" for b in content):
        stop = "tool_use"
    out = sum(len((b.get("text") or b.get("thinking") or "").split()) for b in content)
    return {
        "id": f"msg_01Fake{rid[-12:]}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": seq,
        "usage": {
            "input_tokens": _input_words(body),
            "output_tokens": out + 10 * sum(b["type"] == "tool_use" for b in content),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5 if _has_cache_control(body) else 0,
        },
    }


def _input_words(body: dict[str, Any]) -> int:
    """Words of all text in system + messages (the usage.input_tokens of the fake)."""
    system = body.get("system")
    texts = [system if isinstance(system, str) else _text_of(system or [])]
    texts += [_text_of(m.get("content")) for m in body["messages"]]
    return sum(len(t.split()) for t in texts)


def _events(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    usage = {**doc["usage"], "output_tokens": 1}
    start = {**doc, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
    yield "message_start", {"type": "message_start", "message": start}
    for i, block in enumerate(doc["content"]):
        kind = block["type"]
        empty = {**block, "input": {}} if kind == "tool_use" else {**block, kind: ""}
        if kind == "thinking":
            empty["signature"] = ""
        begin = {"type": "content_block_start", "index": i, "content_block": empty}
        yield "content_block_start", begin
        if i == 0:
            yield "ping", {"type": "ping"}
        if kind == "tool_use":
            js = orjson.dumps(block["input"]).decode()
            cuts = [0, len(js) // 3, 2 * len(js) // 3, len(js)]
            deltas = [
                {"type": "input_json_delta", "partial_json": js[a:b]}
                for a, b in itertools.pairwise(cuts)
            ]
        else:
            key = "text" if kind == "text" else "thinking"
            words = block[key].split(" ")
            deltas = [
                {"type": f"{key}_delta", key: w if not n else " " + w} for n, w in enumerate(words)
            ]
            if kind == "thinking":
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
        for d in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    delta = {"stop_reason": doc["stop_reason"], "stop_sequence": doc["stop_sequence"]}
    out = {"output_tokens": doc["usage"]["output_tokens"]}
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": out}
    yield "message_stop", {"type": "message_stop"}


async def _event(send: Any, name: str, data: dict[str, Any]) -> None:
    chunk = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _error(send: Any, rid: str, status: int, etype: str, msg: str, *extra: Any) -> None:
    doc = {"type": "error", "error": {"type": etype, "message": msg}, "request_id": rid}
    await _json(send, status, doc, rid, *extra)


async def _json(send: Any, status: int, doc: dict[str, Any], rid: str, *extra: Any) -> None:
    hdrs = [(b"content-type", b"application/json"), (b"request-id", rid.encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": orjson.dumps(doc)})
