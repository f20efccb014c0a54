"""A fake Cohere Chat API v2 server (raw ASGI) that validates lightly and fails on command.

Wire format from Cohere's docs: "Chat" https://docs.cohere.com/reference/chat, "Chat with
Streaming" https://docs.cohere.com/reference/chat-stream, "A Guide to Streaming Responses"
https://docs.cohere.com/v2/docs/streaming, "Streaming for tool use"
https://docs.cohere.com/docs/tool-use-streaming, "Tool use" https://docs.cohere.com/docs/tools and
https://docs.cohere.com/docs/migrating-v1-to-v2 (tool_plan, tool_calls, tool messages),
"Structured Generations (JSON)" https://docs.cohere.com/v2/docs/structured-outputs-json,
"Image Inputs" https://docs.cohere.com/docs/image-inputs, and "Errors"
https://docs.cohere.com/errors-reference (bodies are {"id", "message"}; the example messages below
come from there).

Served: `POST /v2/chat` and `POST /v2/embed` ("Embed" https://docs.cohere.com/reference/embed,
https://docs.cohere.com/docs/embeddings). Embed takes {model, texts | inputs, input_type,
embedding_types (default ["float"]), output_dimension?, max_tokens?, truncate?} with the same
auth check and answers {id, embeddings: {<type>: [[...]]}, texts, meta: {api_version: {version:
"2"}, billed_units: {input_tokens: words of all texts}}, response_type: "embeddings_by_type"};
the float vector of a text has output_dimension (default 8) values k/100 + len(text)/1000, and
int8/uint8/binary/ubinary/base64 are derived from it. Unknown fields, no model, no texts/inputs,
a missing or unknown input_type, an unknown embedding type -> 400; model embed-error-<status>
(or command-error-<status>) -> that status.

Chat requests are checked lightly, with Cohere-shaped errors ({"id": "<uuid>", "message":
"..."}): no `Authorization: Bearer <token>` -> 401 "invalid api
token"; missing model, empty messages or an unknown top-level field (e.g. `n`, `stream_options`)
-> 400; a role other than system/user/assistant/tool, a tool message without tool_call_id, or a
content part other than text/image_url/document/thinking -> 422. (The 400 and 422 texts are
modelled on the docs' examples; Cohere does not publish its validation messages in full.)

The scenario is picked by the request's `model` (or an `X-Fake-Scenario` header):
  command-fake (default)   text "fake: <last user text>" (+ " [images: N]" when that turn has
                           image_url parts; "fake: tool said <content>" when the last message is
                           a tool result); with response_format, the text is
                           '{"answer": "yes", "confidence": 0.9}'; stop_sequences and max_tokens
                           (in words) are honoured (STOP_SEQUENCE / MAX_TOKENS)
  command-tool             tool_plan "I will check the weather." and one call of the first
                           request tool (or get_weather) with {"city": "Paris", "unit": "c"}
  command-two-tools        the same plan, then get_weather {"city": "Paris", "unit": "c"} and
                           get_time {"city": "Paris"}
  command-error-<status>   that status with a message from the errors page (429: retry-after: 7)
  command-context          400 "too many tokens: total number of tokens in the prompt cannot ..."
  command-truncate         stream: ends right after the first content-delta or tool-call-delta
  command-slow             command-fake, `x-fake-delay` seconds (default 0.2) before the answer
                           or between stream events, watching for disconnect
tool_choice "NONE" makes command-tool / command-two-tools answer like command-fake.
Usage is deterministic: billed_units.input_tokens = words of all message text, output_tokens =
words of the answer and tool plan + 10 per tool call; `tokens` adds 7 input tokens (the prompt
template Cohere bills nothing for) and equals billed output.
Streams (stream: true) are `event: <type>\\ndata: <json>\\n\\n` as in the docs: message-start,
then either content-start, content-delta per word, content-end, or tool-plan-delta per word and
per call tool-call-start, tool-call-delta (arguments in 3 fragments), tool-call-end; and
message-end with finish_reason and usage.
"""

from __future__ import annotations

import base64
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakes.openai import Seen, _wait_or_disconnect

__all__ = ["FakeCohere", "Seen"]

_ERRORS = {
    400: "invalid request: message must be at least 1 token long or tool results must be "
    "specified.",
    401: "invalid api token",
    402: "Please add or update your payment method at "
    "https://dashboard.cohere.com/billing?tab=payment to continue",
    404: "model '{model}' not found, make sure the correct model ID was used and that you have "
    "access to the model.",
    422: "invalid request: messages.0.content: value must not be empty",
    429: "You are past the per minute request limit, please wait and try again later.",
    499: "request cancelled",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable, please try again later",
    504: "request timed out, please try again later",
}
_CONTEXT = (
    "too many tokens: total number of tokens in the prompt cannot exceed 128000 - received 131072."
    " Try using a shorter prompt, or enabling prompt truncating."
)
_FIELDS = {
    "model", "messages", "stream", "tools", "strict_tools", "documents", "citation_options",
    "response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed",
    "frequency_penalty", "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking",
    "priority", "return_prompt",
}  # fmt: skip
_ROLES = ("system", "user", "assistant", "tool")
_PARTS = ("text", "image_url", "document", "thinking")
_PLAN = "I will check the weather."
_JSON = '{"answer": "yes", "confidence": 0.9}'
_PARIS = {"city": "Paris", "unit": "c"}


@dataclass
class FakeCohere:
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
        rid = f"00000000-0000-4000-8000-{len(self.requests):012d}"
        if scope["method"] != "POST" or scope["path"] not in ("/v2/chat", "/v2/embed"):
            await _error(send, rid, 404, "404 page not found")
            return
        token = headers.get("authorization", "")
        if not token.lower().startswith("bearer ") or not token[7:].strip():
            await _error(send, rid, 401, "invalid api token")
            return
        if scope["path"] == "/v2/embed":
            await _embed(headers, body, rid, send)
            return
        problem = _check(body)
        if problem:
            await _error(send, rid, *problem)
            return
        assert isinstance(body, dict)
        model = headers.get("x-fake-scenario") or str(body["model"])
        delay = float(headers.get("x-fake-delay") or 0.2) if model == "command-slow" else 0.0
        await self._answer(model, body, delay, rid, receive, send)

    async def _answer(
        self, model: str, body: dict[str, Any], delay: float, rid: str, receive: Any, send: Any
    ) -> None:
        if model.startswith("command-error-"):
            status = int(model.removeprefix("command-error-"))
            message = _ERRORS.get(status, _ERRORS[500]).format(model=model)
            extra = [(b"retry-after", b"7")] if status == 429 else []
            await _error(send, rid, status, message, *extra)
            return
        if model == "command-context":
            await _error(send, rid, 400, _CONTEXT)
            return
        doc = _response(model, body, rid)
        if body.get("stream"):
            await self._stream(model, doc, receive, send, delay)
            return
        if delay and await _wait_or_disconnect(receive, delay):
            self.disconnects.append(model)
            return
        await _json(send, 200, doc)

    async def _stream(
        self, model: str, doc: dict[str, Any], receive: Any, send: Any, delay: float
    ) -> None:
        hdrs = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        for i, event in enumerate(_events(doc)):
            if delay and i and await _wait_or_disconnect(receive, delay):
                self.disconnects.append(model)
                return
            name = event["type"]
            chunk = b"event: " + name.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if model == "command-truncate" and name in ("content-delta", "tool-call-delta"):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_EMBED_FIELDS = {
    "model", "texts", "images", "inputs", "input_type", "embedding_types", "output_dimension",
    "max_tokens", "truncate", "priority",
}  # fmt: skip
_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
_EMBED_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")


async def _embed(headers: dict[str, str], body: Any, rid: str, send: Any) -> None:
    problem = _check_embed(body)
    if problem:
        await _error(send, rid, *problem)
        return
    assert isinstance(body, dict)
    model = headers.get("x-fake-scenario") or str(body["model"])
    for prefix in ("command-error-", "embed-error-"):
        if model.startswith(prefix):
            status = int(model.removeprefix(prefix))
            message = _ERRORS.get(status, _ERRORS[500]).format(model=model)
            extra = [(b"retry-after", b"7")] if status == 429 else []
            await _error(send, rid, status, message, *extra)
            return
    texts = [str(t) for t in body.get("texts") or []]
    texts += [_text(i.get("content")) for i in body.get("inputs") or [] if isinstance(i, dict)]
    dims = int(body.get("output_dimension") or 8)
    floats = [[k / 100 + len(t) / 1000 for k in range(dims)] for t in texts]
    kinds = body.get("embedding_types") or ["float"]
    embeddings = {kind: [_as_type(kind, v) for v in floats] for kind in kinds}
    doc = {
        "id": rid,
        "embeddings": embeddings,
        "texts": texts,
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"input_tokens": sum(len(t.split()) for t in texts)},
        },
        "response_type": "embeddings_by_type",
    }
    await _json(send, 200, doc)


def _as_type(kind: str, vec: list[float]) -> Any:
    if kind == "float":
        return [round(v, 6) for v in vec]
    if kind == "int8":
        return [max(-128, min(127, round(v * 100) - 128)) for v in vec]
    if kind == "uint8":
        return [max(0, min(255, round(v * 100))) for v in vec]
    if kind == "base64":
        return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
    bits = [1 if v >= 0.5 else 0 for v in vec]  # binary / ubinary: 8 dimensions a byte
    packed = [
        sum(b << (7 - n) for n, b in enumerate(bits[i : i + 8])) for i in range(0, len(bits), 8)
    ]
    return [b - 128 for b in packed] if kind == "binary" else packed


def _check_embed(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict):
        return 400, "invalid request: body must be a JSON object"
    extra = sorted(set(body) - _EMBED_FIELDS)
    if extra:
        return 400, f"invalid request: unknown field: parameter {extra[0]} is not a valid field"
    if not body.get("model"):
        return 400, "invalid request: model must be specified"
    texts, inputs, images = body.get("texts"), body.get("inputs"), body.get("images")
    if not texts and not inputs and not images:
        return 400, "invalid request: one of texts, images or inputs must be provided"
    if texts is not None and (
        not isinstance(texts, list) or not all(isinstance(t, str) for t in texts)
    ):
        return 400, "invalid request: texts must be a list of strings"
    if body.get("input_type") not in _INPUT_TYPES:
        types = ", ".join(_INPUT_TYPES)
        return 400, f"invalid request: input_type must be one of {types}"
    kinds = body.get("embedding_types") or ["float"]
    bad = [k for k in kinds if k not in _EMBED_TYPES] if isinstance(kinds, list) else [kinds]
    if bad:
        return 400, f"invalid request: embedding_types {bad[0]!r} is not valid"
    return None


def _check(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict):
        return 400, "invalid request: body must be a JSON object"
    extra = sorted(set(body) - _FIELDS)
    if extra:
        return 400, f"invalid request: unknown field: parameter {extra[0]} is not a valid field"
    if not body.get("model"):
        return 400, "invalid request: model must be specified"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return 400, "invalid request: messages must not be empty"
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in _ROLES:
            roles = ", ".join(f"'{r}'" for r in _ROLES)
            return 422, f"invalid request: messages.{i}.role must be one of {roles}"
        if role == "tool" and not m.get("tool_call_id"):
            return 422, f"invalid request: messages.{i}.tool_call_id is required"
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in _PARTS:
                return 422, f"invalid request: messages.{i}.content.{j}.type {kind!r} is not valid"
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    texts = [p.get("text", "") for p in parts if p.get("type") == "text"]
    texts += [str((p.get("document") or {}).get("data", "")) for p in parts if "document" in p]
    return " ".join(texts)


def _reply(body: dict[str, Any]) -> str:
    msgs = body["messages"]
    if msgs[-1]["role"] == "tool":
        return f"fake: tool said {_text(msgs[-1].get('content'))}"
    last: dict[str, Any] = next((m for m in reversed(msgs) if m["role"] == "user"), {})
    content = last.get("content")
    images = (
        sum(1 for p in content if p.get("type") == "image_url") if isinstance(content, list) else 0
    )
    return f"fake: {_text(content)}" + (f" [images: {images}]" if images else "")


def _call(rid: str, n: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    fn = {"name": name, "arguments": orjson.dumps(args).decode()}
    return {"id": f"{name}_fake{rid[-6:]}{n:02d}", "type": "function", "function": fn}


def _response(model: str, body: dict[str, Any], rid: str) -> dict[str, Any]:
    names = [(t.get("function") or {}).get("name") for t in body.get("tools") or []]
    first = next((n for n in names if n), "get_weather")
    if body.get("tool_choice") == "NONE":
        model = "command-fake"  # tools may not be called
    message: dict[str, Any] = {"role": "assistant"}
    finish = "COMPLETE"
    if model == "command-tool":
        calls = [_call(rid, 0, first, _PARIS)]
    elif model == "command-two-tools":
        calls = [_call(rid, 0, "get_weather", _PARIS), _call(rid, 1, "get_time", {"city": "Paris"})]
    else:
        calls = []
        text = _JSON if body.get("response_format") else _reply(body)
        for s in body.get("stop_sequences") or []:
            if s and s in text:
                text, finish = text[: text.index(s)], "STOP_SEQUENCE"
                break
        words = text.split(" ")
        if body.get("max_tokens") is not None and len(words) > body["max_tokens"]:
            text, finish = " ".join(words[: body["max_tokens"]]), "MAX_TOKENS"
        message["content"] = [{"type": "text", "text": text}]
    if calls:
        message.update(tool_plan=_PLAN, tool_calls=calls)
        finish = "TOOL_CALL"
    said = [message.get("tool_plan", "")] + [c["text"] for c in message.get("content", [])]
    prompt = sum(len(_text(m.get("content")).split()) for m in body["messages"])
    output = sum(len(t.split()) for t in said) + 10 * len(calls)
    return {
        "id": rid,
        "message": message,
        "finish_reason": finish,
        "usage": {
            "billed_units": {"input_tokens": prompt, "output_tokens": output},
            "tokens": {"input_tokens": prompt + 7, "output_tokens": output},
        },
    }


def _words(text: str) -> list[str]:
    return [w if not n else " " + w for n, w in enumerate(text.split(" "))]


def _events(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    yield {"id": doc["id"], "type": "message-start", "delta": {"message": start}}
    msg = doc["message"]
    for word in _words(msg["tool_plan"]) if msg.get("tool_plan") else []:
        yield {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": word}}}
    for i, call in enumerate(msg.get("tool_calls") or []):
        fn = call["function"]
        begin = {**call, "function": {"name": fn["name"], "arguments": ""}}
        yield {"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": begin}}}
        js = fn["arguments"]
        cuts = [0, len(js) // 3, 2 * len(js) // 3, len(js)]
        for a, b in itertools.pairwise(cuts):
            frag: dict[str, Any] = {"tool_calls": {"function": {"arguments": js[a:b]}}}
            yield {"type": "tool-call-delta", "index": i, "delta": {"message": frag}}
        yield {"type": "tool-call-end", "index": i}
    for i, content in enumerate(msg.get("content") or []):
        empty = {"content": {"type": "text", "text": ""}}
        yield {"type": "content-start", "index": i, "delta": {"message": empty}}
        for word in _words(content["text"]):
            part = {"content": {"text": word}}
            yield {"type": "content-delta", "index": i, "delta": {"message": part}}
        yield {"type": "content-end", "index": i}
    end: dict[str, Any] = {"finish_reason": doc["finish_reason"], "usage": doc["usage"]}
    yield {"type": "message-end", "delta": end}


async def _error(send: Any, rid: str, status: int, message: str, *extra: Any) -> None:
    await _json(send, status, {"id": rid, "message": message}, *extra)


async def _json(send: Any, status: int, doc: dict[str, Any], *extra: Any) -> None:
    hdrs = [(b"content-type", b"application/json"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": orjson.dumps(doc)})
