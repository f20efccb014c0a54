"""A fake OpenAI chat-completions server (raw ASGI) that fails on command.

Wire format from the OpenAI API reference, "Create chat completion" and "The chat completion
chunk object": https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming (also ../shared/specs/openai-openapi.yaml,
CreateChatCompletionResponse / CreateChatCompletionStreamResponse / ErrorResponse).

The scenario is picked by the upstream model id the gateway sends (so a gateway config maps a
public model to a scenario), or by an `X-Fake-Scenario` header set in the provider's headers:
  fake-plain (default)  echo "fake: <last user text>" with usage
  fake-tool             one tool call to get_weather
  fake-error-<status>   an OpenAI error body with that status (429/503 carry Retry-After: 2)
  fake-hang             never answers (until the client goes away)
  fake-slow             answers after `fake_delay` seconds (body field), watching for disconnect
  fake-badjson          200 with a body that is not JSON
  fake-truncate         a stream that stops after two chunks without finish_reason or [DONE]
  fake-midstream-error  a stream with an error event after one chunk
  fake-stall            a stream that stops sending after two chunks (connection left open)
  fake-reset            a stream whose connection drops after two chunks
  fake-partial-tail     a stream whose body ends in the middle of an event
  fake-nodone           a complete stream (finish_reason, usage) without the final [DONE]
  fake-notsse           answers a stream request with a plain JSON completion
  fake-citations        Perplexity-style: `citations` and `search_results` beside the choices
                        (https://docs.perplexity.ai/api-reference/chat-completions-post)
  fake-ratelimit-<s>    429 rate_limit_exceeded with `Retry-After: <s>`
  fake-reset-body       a plain 200 whose connection drops halfway through the body
  fake-reset-head       a stream whose connection drops after the head, before any event
  fake-context-<n>      400 context_length_exceeded when the messages hold over n characters
  fake-summarize        a short summary: "SUMMARY(<lines> lines)" of the user content
  fake-chaos            fails `chaos_ratio` of calls at random (seeded): 500, 502, 503, 429
                        without Retry-After, a hang, or a reset (before the first event)
  fake-jitter           first content after `slow_delay` s for `slow_ratio` of calls (seeded),
                        else after `fast_delay` s
  fake-first-<ms>       first content after <ms> milliseconds
  fake-early-error      a stream with an error event right after the role chunk (no content)
`modes` maps a model id to the scenario to play instead, so a test can switch a deployment
between failing and healthy while the gateway runs. Every request is kept in `requests`
(with its arrival time), and every client that went away mid-answer in `disconnects`.
Streams (stream: true) send one chunk per word with `fake_delay` seconds between chunks, a final
chunk with finish_reason, a usage chunk when stream_options.include_usage, then [DONE].
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes
    query: str = ""
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeOpenAI:
    requests: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)  # model ids whose client went away
    chunks_sent: list[int] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=dict)
    chaos_ratio: float = 0.3
    slow_ratio: float = 0.1
    slow_delay: float = 1.0
    fast_delay: float = 0.01
    rng: random.Random = field(default_factory=lambda: random.Random(1234))
    outcomes: list[str] = field(default_factory=list)  # what fake-chaos / fake-jitter chose

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()
        self.chunks_sent.clear()
        self.modes.clear()
        self.outcomes.clear()
        self.chaos_ratio, self.slow_ratio, self.slow_delay, self.fast_delay = 0.3, 0.1, 1.0, 0.01
        self.rng = random.Random(1234)

    def count(self, model: str) -> int:
        """Chat requests received for this upstream model id."""
        return sum(1 for r in self.requests if r.body and r.body.get("model") == model)

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
        query = scope.get("query_string", b"").decode()
        self.requests.append(Seen(scope["method"], scope["path"], headers, body, raw, query))
        scenario = headers.get("x-fake-scenario", "")
        if scope["path"].endswith("/models") and scenario.startswith("fake-error-"):
            status = int(scenario.removeprefix("fake-error-"))
            await _json(send, status, _err(f"fake upstream error {status}", "server_error", None))
            return
        if scope["path"].endswith("/models"):
            await _json(
                send,
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": "fake-plain", "object": "model", "created": 0, "owned_by": "fake"}
                    ],
                },
            )
            return
        if not scope["path"].endswith("/chat/completions") or body is None:
            await _json(send, 404, _err("Unknown path or body", "invalid_request_error", None))
            return
        model = headers.get("x-fake-scenario") or str(body.get("model", "fake-plain"))
        # Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=...
        # (https://learn.microsoft.com/azure/ai-services/openai/reference): the deployment in
        # the path picks the model, `api-key` authenticates, api-version is required.
        parts = scope["path"].split("/")
        if "deployments" in parts:
            query = scope.get("query_string", b"").decode()
            if "api-version=" not in query:
                await _json(send, 404, {"error": {"code": "404", "message": "Resource not found"}})
                return
            if "api-key" not in headers:
                await _json(
                    send,
                    401,
                    {
                        "error": {
                            "code": "401",
                            "message": "Access denied due to "
                            "invalid subscription key or wrong API endpoint.",
                        }
                    },
                )
                return
            model = parts[parts.index("deployments") + 1]
        await self._answer(model, body, receive, send)

    async def _answer(self, model: str, body: dict[str, Any], receive: Any, send: Any) -> None:
        delay = float(body.get("fake_delay") or 0)
        model = self.modes.get(model, model)
        first = 0.0  # seconds before the first content
        if model == "fake-chaos":
            model = self._chaos(bool(body.get("stream")))
        elif model == "fake-jitter":
            slow = self.rng.random() < self.slow_ratio
            self.outcomes.append("slow" if slow else "fast")
            first = self.slow_delay if slow else self.fast_delay
            model = "fake-plain"
        elif model.startswith("fake-first-"):
            first = int(model.removeprefix("fake-first-")) / 1000
            model = "fake-plain"
        if first:
            if not body.get("stream") and await _wait_or_disconnect(receive, first):
                self.disconnects.append(model)
                return
            body = {**body, "fake_first": first}
        if model.startswith("fake-ratelimit-"):
            wait = model.removeprefix("fake-ratelimit-")
            err = _err("Rate limit reached for requests", "requests", "rate_limit_exceeded")
            await _json(send, 429, err, [(b"retry-after", wait.encode())])
            return
        if model.startswith("fake-context-"):
            limit = int(model.removeprefix("fake-context-"))
            size = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
            if size > limit:
                msg = f"This model's maximum context length is {limit} characters."
                await _json(
                    send, 400, _err(msg, "invalid_request_error", "context_length_exceeded")
                )
                return
            model = "fake-plain"
        if model == "fake-summarize":
            lines = _last_user_text(body).count("\n") + 1
            doc = _completion(model, body)
            doc["choices"][0]["message"]["content"] = f"SUMMARY({lines} lines)"
            await _json(send, 200, doc)
            return
        if model == "fake-reset-body":
            payload = orjson.dumps(_completion(model, body))
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send(
                {
                    "type": "http.response.body",
                    "body": payload[: len(payload) // 2],
                    "more_body": True,
                }
            )
            raise RuntimeError("fake upstream drops the connection mid-body")
        if model == "fake-hang-chaos":
            if await _wait_or_disconnect(receive, 3600):
                self.disconnects.append(model)
            return
        if model.startswith("fake-error-"):
            code_text, _, variant = model.removeprefix("fake-error-").partition("-")
            status = int(code_text)
            hdrs = [(b"retry-after", b"2")] if status in (429, 503) and not variant else []
            etype = {
                400: "invalid_request_error",
                401: "invalid_request_error",
                404: "invalid_request_error",
                429: "requests",
            }.get(status, "server_error")
            code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(
                status
            )
            msg = f"fake upstream error {status}"
            if status == 400 and body.get("fake_context"):
                msg, code = (
                    "This model's maximum context length is 8 tokens.",
                    "context_length_exceeded",
                )
            if status == 401:
                msg = "Incorrect API key provided: sk-upstr**********cret."
            await _json(send, status, _err(msg, etype, code), hdrs)
            return
        if model in ("fake-hang", "fake-slow"):
            wait = 3600.0 if model == "fake-hang" else delay
            if await _wait_or_disconnect(receive, wait):
                self.disconnects.append(model)
                return
        if model == "fake-badjson":
            await _raw(send, 200, b"<html>not json</html>", b"application/json")
            return
        if body.get("stream") and model != "fake-notsse":
            await self._stream(model, body, receive, send, delay)
            return
        await _json(send, 200, _completion(model, body))

    def _chaos(self, stream: bool) -> str:
        """fake-chaos: the scenario this call plays."""
        if self.rng.random() >= self.chaos_ratio:
            choice = "fake-plain"
        else:
            reset = "fake-reset-head" if stream else "fake-reset-body"
            choice = self.rng.choice(
                [
                    "fake-error-500",
                    "fake-error-502",
                    "fake-error-503-plain",
                    "fake-error-429-plain",
                    "fake-hang-chaos",
                    reset,
                ]
            )
        self.outcomes.append(choice)
        return choice

    async def _stream(
        self, model: str, body: dict[str, Any], receive: Any, send: Any, delay: float
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        so = body.get("stream_options") or {}
        with_usage = bool(so.get("include_usage"))
        doc = _completion(model, body)
        base = {
            "id": doc["id"],
            "object": "chat.completion.chunk",
            "created": doc["created"],
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        if "citations" in doc:
            base["citations"] = doc["citations"]
        if with_usage:
            base["usage"] = None
        events: list[dict[str, Any]] = [
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        ]
        msg = doc["choices"][0]["message"]
        if msg.get("tool_calls"):
            tc = msg["tool_calls"][0]
            args = tc["function"]["arguments"]
            events.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": tc["id"],
                                        "type": "function",
                                        "function": {
                                            "name": tc["function"]["name"],
                                            "arguments": "",
                                        },
                                    }
                                ]
                            },
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                }
            )
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                events.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [{"index": 0, "function": {"arguments": part}}]
                                },
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            finish = "tool_calls"
        else:
            words = msg["content"].split(" ")
            for i, w in enumerate(words):
                events.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": w if i == 0 else " " + w},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            finish = "stop"
        events.append(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
            }
        )
        if with_usage:
            events.append({**base, "choices": [], "usage": doc["usage"]})
        sent = 0
        first = float(body.get("fake_first") or 0)
        for i, ev in enumerate(events):
            if model == "fake-reset-head":
                raise RuntimeError("fake upstream drops the connection before the first event")
            if first and i == 1 and await _wait_or_disconnect(receive, first):
                self.disconnects.append(model)
                self.chunks_sent.append(sent)
                return
            if model == "fake-truncate" and i == 2:
                break
            if model == "fake-stall" and i == 2:
                if await _wait_or_disconnect(receive, 3600):
                    self.disconnects.append(model)
                return
            if model == "fake-reset" and i == 2:
                raise RuntimeError("fake upstream drops the connection mid-stream")
            if model == "fake-partial-tail" and i == 2:
                half = b"data: " + orjson.dumps(ev)[:20]
                await send({"type": "http.response.body", "body": half, "more_body": False})
                return
            if model == "fake-nodone" and i == len(events) - 1:
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + orjson.dumps(ev) + b"\n\n",
                        "more_body": False,
                    }
                )
                return
            if (model == "fake-midstream-error" and i == 2) or (
                model == "fake-early-error" and i == 1
            ):
                err = _err(
                    "The server had an error while processing your request.", "server_error", None
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + orjson.dumps(err) + b"\n\n",
                        "more_body": True,
                    }
                )
                break
            if delay and i and await _wait_or_disconnect(receive, delay):
                self.disconnects.append(model)
                self.chunks_sent.append(sent)
                return
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(ev) + b"\n\n",
                    "more_body": True,
                }
            )
            sent += 1
        else:
            await send(
                {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True}
            )
        self.chunks_sent.append(sent)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_or_disconnect(receive: Any, seconds: float) -> bool:
    """Sleep; True if the client disconnected meanwhile."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return True
    except TimeoutError:
        return False


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if p.get("type") == "text")
            return str(c)
    return ""


def _completion(model: str, body: dict[str, Any]) -> dict[str, Any]:
    text = _last_user_text(body)
    message: dict[str, Any] = {"role": "assistant", "content": f"fake: {text}", "refusal": None}
    finish = "stop"
    if model == "fake-tool" or (body.get("tools") and body.get("tool_choice") == "required"):
        message = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": "call_fake123",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "unit": "c"}',
                    },
                }
            ],
        }
        finish = "tool_calls"
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or [])
    completion = len((message.get("content") or "x y z").split())
    extra: dict[str, Any] = {}
    if model == "fake-citations":
        extra = {
            "citations": ["https://example.org/a", "https://example.org/b"],
            "search_results": [{"title": "A", "url": "https://example.org/a", "date": None}],
        }
    return {
        **extra,
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }


def _err(message: str, etype: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


async def _json(
    send: Any, status: int, doc: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _raw(send, status, orjson.dumps(doc), b"application/json", headers)


async def _raw(
    send: Any,
    status: int,
    body: bytes,
    ctype: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})
