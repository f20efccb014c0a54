"""The built-in `mock` provider: an in-process upstream that speaks the OpenAI wire format.

Models: mock/echo (the last user message back), mock/lorem (N deterministic tokens, N from
max_tokens or `mock_tokens`, default 16; `mock_delay_ms` between chunks), mock/error-<status>.
Usage is deterministic: prompt tokens = words in the messages, completion tokens = tokens sent.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from llm_proxy.config.schema import Timeouts

LOREM = [
    "Lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet,",
    "consectetur",
    "adipiscing",
    "elit,",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua.",
    "Ut",
    "enim",
    "ad",
    "minim",
    "veniam,",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "ut",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat.",
]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_ids = itertools.count(1)
_PID = f"-{os.getpid()}"  # ids stay unique across worker processes


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Deterministic prompt size: whitespace-separated words over all message texts."""
    return sum(len(_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def tokens_for(model: str, body: dict[str, Any]) -> list[str]:
    """The completion the mock gives, as its stream tokens."""
    if model == "echo":
        last = next(
            (m for m in reversed(body.get("messages", [])) if m.get("role") == "user"), None
        )
        words = _text(last.get("content")).split(" ") if last else [""]
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    n = body.get("mock_tokens") or body.get("max_completion_tokens") or body.get("max_tokens") or 16
    n = max(1, min(int(n), 100_000))
    return [LOREM[i % len(LOREM)] if i == 0 else " " + LOREM[i % len(LOREM)] for i in range(n)]


class _Response:
    __slots__ = ("_body", "_chunks", "_delay", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        chunks: list[bytes] | None = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self._body = body
        self._chunks = chunks
        self._delay = delay
        base = {"content-type": "text/event-stream" if chunks is not None else "application/json"}
        self.headers: Mapping[str, str] = {**base, **(headers or {})}

    async def read(self) -> bytes:
        return self._body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for i, c in enumerate(self._chunks or ()):
            if self._delay and i:
                await asyncio.sleep(self._delay)
            yield c

    def close(self) -> None:
        return None


class MockTransport:
    """Answers in process, exactly as an OpenAI-compatible server would."""

    async def aclose(self) -> None:
        return None

    async def send(
        self,
        pool: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeouts: Timeouts,
        max_connections: int = 256,
    ) -> _Response:
        if not url.endswith("/chat/completions"):
            return _other(url, body)
        req = orjson.loads(body)
        model = str(req.get("model", ""))
        if model.startswith("error-"):
            return _error(model)
        if model not in ("echo", "lorem"):
            return _error_body(404, f"The model 'mock/{model}' does not exist.", "model_not_found")
        try:
            toks = tokens_for(model, req)
            delay = float(req.get("mock_delay_ms") or 0) / 1000.0
        except (TypeError, ValueError):
            return _error_body(
                400,
                "'mock_tokens' must be an integer and 'mock_delay_ms' a number.",
                "invalid_value",
            )
        if not 0 <= delay <= 60:
            return _error_body(400, "'mock_delay_ms' must be between 0 and 60000.", "invalid_value")
        usage = {
            "prompt_tokens": prompt_tokens(req.get("messages", [])),
            "completion_tokens": len(toks),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        cid, created = f"chatcmpl-mock{next(_ids)}{_PID}", int(time.time())
        head = {"id": cid, "created": created, "model": model, "system_fingerprint": "mock"}
        if not req.get("stream"):
            doc = {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(toks), "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            return _Response(200, orjson.dumps(doc))
        so = req.get("stream_options")
        with_usage = isinstance(so, dict) and bool(so.get("include_usage"))
        return _Response(
            200, chunks=_stream(head, toks, usage if with_usage else None), delay=delay
        )


def _other(url: str, body: bytes) -> _Response:
    """The mock's other endpoints: deterministic embeddings, images, speech, transcripts."""
    path = url.removeprefix("mock://local")
    if path == "/audio/transcriptions":
        return _Response(200, orjson.dumps({"text": f"mock transcript of {len(body)} bytes"}))
    req = orjson.loads(body)
    model = str(req.get("model", ""))
    if model.startswith("error-"):
        return _error(model)
    if path == "/embeddings":
        inp = req.get("input")
        items = inp if isinstance(inp, list) and inp and not isinstance(inp[0], int) else [inp]
        dims = req.get("dimensions") or 8
        data = []
        for i, item in enumerate(items):
            seed = len(str(item))
            vec = [round(((seed * (k + 1)) % 97) / 97, 6) for k in range(dims)]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(str(x).split()) for x in items)
        doc = {"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": n, "total_tokens": n}}  # fmt: skip
        return _Response(200, orjson.dumps(doc))
    if path == "/images/generations":
        n = req.get("n") or 1
        b64 = req.get("response_format") == "b64_json"
        png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="  # fmt: skip
        data = [{"b64_json": png} if b64 else {"url": f"https://mock.invalid/{i}.png"}
                for i in range(n)]  # fmt: skip
        return _Response(200, orjson.dumps({"created": int(time.time()), "data": data}))
    if path == "/audio/speech":
        text = str(req.get("input", "")).encode()
        audio = [b"ID3mock", *(text[i : i + 64] for i in range(0, len(text), 64))]
        return _Response(200, chunks=audio, headers={"content-type": "audio/mpeg"})
    return _error_body(404, f"The mock has no {path} endpoint.", "unknown_url")


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish: str | None, usage: bool) -> bytes:
    doc = {
        **head,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        doc["usage"] = None
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def _stream(head: dict[str, Any], toks: list[str], usage: dict[str, int] | None) -> list[bytes]:
    u = usage is not None
    out = [_chunk(head, {"role": "assistant", "content": "", "refusal": None}, None, u)]
    out += [_chunk(head, {"content": t}, None, u) for t in toks]
    out.append(_chunk(head, {}, "stop", u))
    if usage is not None:
        doc = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        out.append(b"data: " + orjson.dumps(doc) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def _error_body(status: int, message: str, code: str | None) -> _Response:
    etype = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code == "model_not_found":
        etype = "invalid_request_error"  # as OpenAI answers an unknown model
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    headers = {"retry-after": "1"} if status in (429, 503) else None
    return _Response(status, orjson.dumps(body), headers=headers)


def _error(model: str) -> _Response:
    try:
        status = int(model.removeprefix("error-"))
    except ValueError:
        status = 0
    if not 400 <= status <= 599:
        return _error_body(404, f"The model 'mock/{model}' does not exist.", "model_not_found")
    return _error_body(status, f"mock error {status} (as requested by model mock/{model})", None)
