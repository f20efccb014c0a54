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
  fake-reset            a stream whose connection drops after two chunks (speech: two chunks
                        of audio)
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

Other endpoints, each served at `/v1/<endpoint>` (any prefix ending in it) and Azure's
`/openai/deployments/{deployment}/<endpoint>?api-version=...` (deployment = scenario model; no
api-version -> 404, no `api-key` -> 401, as for chat). The scenario is the body's `model` (the
form's `model` for multipart; the id for models/{id}), the deployment, or `X-Fake-Scenario`,
mapped through `modes`. On all of them: fake-error-<status> (the chat error body and headers),
fake-ratelimit-<s>, fake-hang (until the client goes away; recorded in `disconnects`). Each is
recorded in `requests` like chat (multipart bodies also parsed into `Seen.form`). Wire formats
from the API reference and ../shared/specs/openai-openapi.yaml:
  POST embeddings       https://platform.openai.com/docs/api-reference/embeddings/create
                        (CreateEmbeddingRequest/Response). input str | [str] | [int] | [[int]];
                        the i-th vector has `dimensions` (default 8) float32 values
                        k/100 + len(input_i)/1000 (len: characters, or tokens of a token array);
                        encoding_format base64 -> base64 of those little-endian float32 bytes.
                        usage.prompt_tokens = words (tokens for token arrays). No input -> 400.
  POST images/generations  https://platform.openai.com/docs/api-reference/images/create
                        n items of {url: https://fake.example/img/<i>.png (i from 0),
                        revised_prompt: "revised: <prompt>"}, or {b64_json: base64(b"PNG:" +
                        prompt)} for response_format b64_json; models "gpt-image*" always answer
                        b64_json and add usage (input_tokens = prompt words, output_tokens =
                        100 per image), background, output_format, quality, size.
  POST audio/speech     https://platform.openai.com/docs/api-reference/audio/createSpeech
                        200, content-type by response_format (mp3 -> audio/mpeg, opus, aac, flac,
                        wav, pcm), body b"ID3" + input bytes repeated, 64 KiB, sent as 8 chunks of
                        8 KiB (`fake_delay` body seconds between them, watching for disconnect);
                        the chunks sent per answer are appended to `audio_chunks`. No input or
                        voice -> 400.
  POST audio/transcriptions (and audio/translations)
                        https://platform.openai.com/docs/api-reference/audio/createTranscription
                        multipart form, kept in Seen.form ({"file": {"filename", "content_type",
                        "data"}, "model": "...", ...}). json (default) -> {"text": "transcript of
                        <filename> (<n> bytes)", "usage": {"type": "duration", "seconds": 1}};
                        text/srt/vtt -> text/plain; verbose_json -> {task, language, duration,
                        text, segments, usage}. Translations say "translation of ...". No file
                        -> 400.
  POST completions      https://platform.openai.com/docs/api-reference/completions/create
                        (legacy) choices "fake: <prompt>" per prompt x n (token-id prompts read as
                        space-separated numbers), echo prepends the prompt, stop and max_tokens
                        (in words, finish_reason length) honoured, logprobs filled when asked;
                        stream: a chunk per word, a finish chunk per choice, a usage chunk when
                        stream_options.include_usage, then [DONE] (`fake_delay` between chunks).
  POST responses        https://platform.openai.com/docs/api-reference/responses/create and
                        https://platform.openai.com/docs/api-reference/responses-streaming
                        a completed Response: one message item with output_text "fake: <last
                        user text>" ("fake: tool said <output>" after a function_call_output),
                        request fields echoed; usage input_tokens = words of instructions + input,
                        output_tokens = words of the answer (10 for a call). fake-tool: one
                        function_call item get_weather '{"city":"Paris"}' call_id call_fake1.
                        stream: `event: <type>` + data with sequence_number: response.created,
                        response.in_progress, output_item.added, content_part.added,
                        output_text.delta per word, output_text.done, content_part.done,
                        output_item.done, response.completed (fake-tool:
                        function_call_arguments.delta x2 and .done instead of the content
                        events); no [DONE]. fake-midstream-error: an `error` event after the
                        first delta, then the stream ends.
  GET models/{id}       https://platform.openai.com/docs/api-reference/models/retrieve
                        {id, object: "model", created: 0, owned_by: "fake"}.
"""

from __future__ import annotations

import asyncio
import base64
import random
import struct
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
    # multipart/form-data fields: name -> str, or for a file {"filename", "content_type", "data"};
    # a name sent more than once maps to a list
    form: dict[str, Any] | None = None


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
    audio_chunks: list[int] = field(default_factory=list)  # body chunks sent per audio/speech

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects.clear()
        self.chunks_sent.clear()
        self.modes.clear()
        self.outcomes.clear()
        self.audio_chunks.clear()
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
        seen = Seen(scope["method"], scope["path"], headers, body, raw, query)
        if headers.get("content-type", "").startswith("multipart/form-data"):
            seen.form = _parse_form(headers["content-type"], raw)
        self.requests.append(seen)
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
        endpoint = _endpoint(scope["path"])
        if endpoint is not None:
            await self._other(endpoint, scope, headers, seen, receive, send)
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
            await _json(send, *_error_for(model, body))
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

    # --- the other OpenAI endpoints -----------------------------------------------------------

    async def _other(
        self,
        endpoint: str,
        scope: dict[str, Any],
        headers: dict[str, str],
        seen: Seen,
        receive: Any,
        send: Any,
    ) -> None:
        """embeddings, images, audio, legacy completions, responses and models/{id}."""
        body = seen.body if isinstance(seen.body, dict) else {}
        parts = scope["path"].split("/")
        if "deployments" in parts:
            if "api-version=" not in seen.query:
                await _json(send, 404, {"error": {"code": "404", "message": "Resource not found"}})
                return
            if "api-key" not in headers:
                await _json(send, 401, _AZURE_401)
                return
            model = parts[parts.index("deployments") + 1]
        elif endpoint.startswith("models/"):
            model = endpoint.removeprefix("models/")
        elif seen.form is not None:
            model = str(seen.form.get("model") or "fake-plain")
        else:
            model = str(body.get("model") or "fake-plain")
        model = headers.get("x-fake-scenario") or model
        model = self.modes.get(model, model)
        if endpoint.startswith("models/"):
            if model.startswith("fake-error-"):
                await _json(send, *_error_for(model, body))
                return
            doc = {"id": endpoint.removeprefix("models/"), "object": "model", "created": 0}
            await _json(send, 200, {**doc, "owned_by": "fake"})
            return
        if scope["method"] != "POST":
            await _json(send, 405, _err("Method not allowed", "invalid_request_error", None))
            return
        needs_json = endpoint not in ("audio/transcriptions", "audio/translations")
        if (needs_json and seen.body is None) or (not needs_json and seen.form is None):
            msg = "We could not parse the JSON body of your request."
            if not needs_json:
                msg = "Could not parse multipart form"
            await _json(send, 400, _err(msg, "invalid_request_error", None))
            return
        if model.startswith("fake-error-"):
            await _json(send, *_error_for(model, body))
            return
        if model.startswith("fake-ratelimit-"):
            wait = model.removeprefix("fake-ratelimit-")
            err = _err("Rate limit reached for requests", "requests", "rate_limit_exceeded")
            await _json(send, 429, err, [(b"retry-after", wait.encode())])
            return
        if model == "fake-hang":
            if await _wait_or_disconnect(receive, 3600):
                self.disconnects.append(model)
            return
        if endpoint == "embeddings":
            status, doc = _embeddings(body)
            await _json(send, status, doc)
        elif endpoint == "images/generations":
            status, doc = _images(body)
            await _json(send, status, doc)
        elif endpoint == "audio/speech":
            await self._speech(model, body, receive, send)
        elif endpoint in ("audio/transcriptions", "audio/translations"):
            assert seen.form is not None
            await _transcription(send, seen.form, translate=endpoint == "audio/translations")
        elif endpoint == "completions":
            doc = _text_completion(body)
            if "error" in doc:
                await _json(send, 400, doc)
            elif body.get("stream"):
                await self._sse(model, _completion_chunks(doc, body), receive, send, body, True)
            else:
                await _json(send, 200, doc)
        else:  # responses
            doc = _response(model, body)
            if body.get("stream"):
                await self._sse(model, _response_events(model, doc), receive, send, body, False)
            else:
                await _json(send, 200, doc)

    async def _speech(self, model: str, body: dict[str, Any], receive: Any, send: Any) -> None:
        text = str(body.get("input") or "")
        if not text or not body.get("voice"):
            missing = "input" if not text else "voice"
            err = _err(f"Missing required parameter: '{missing}'.", "invalid_request_error", None)
            await _json(send, 400, err)
            return
        fmt = str(body.get("response_format") or "mp3")
        data = (b"ID3" + text.encode() * (_AUDIO_SIZE // max(1, len(text.encode())) + 1))[
            :_AUDIO_SIZE
        ]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", _AUDIO_TYPES.get(fmt, b"audio/mpeg"))],
            }
        )
        delay = float(body.get("fake_delay") or 0)
        sent = 0
        for i in range(0, len(data), _AUDIO_CHUNK):
            if delay and i and await _wait_or_disconnect(receive, delay):
                self.disconnects.append(model)
                self.audio_chunks.append(sent)
                return
            chunk = data[i : i + _AUDIO_CHUNK]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
            if model == "fake-reset" and sent == 2:  # the connection drops mid-audio
                self.audio_chunks.append(sent)
                raise ConnectionResetError("fake-reset: dropped mid-audio")
        self.audio_chunks.append(sent)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _sse(
        self,
        model: str,
        events: list[dict[str, Any]],
        receive: Any,
        send: Any,
        body: dict[str, Any],
        done: bool,
    ) -> None:
        """Send `events` as SSE: `data:` lines (+ [DONE]) when `done`, else typed `event:` lines."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        delay = float(body.get("fake_delay") or 0)
        sent = 0
        for i, ev in enumerate(events):
            if delay and i and await _wait_or_disconnect(receive, delay):
                self.disconnects.append(model)
                self.chunks_sent.append(sent)
                return
            head = b"" if done else b"event: " + str(ev["type"]).encode() + b"\n"
            chunk = head + b"data: " + orjson.dumps(ev) + b"\n\n"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
        if done:
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


def _error_for(
    model: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """fake-error-<status>[-<variant>]: (status, OpenAI error body, headers)."""
    code_text, _, variant = model.removeprefix("fake-error-").partition("-")
    status = int(code_text)
    hdrs = [(b"retry-after", b"2")] if status in (429, 503) and not variant else []
    etype = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        404: "invalid_request_error",
        429: "requests",
    }.get(status, "server_error")
    code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(status)
    msg = f"fake upstream error {status}"
    if status == 400 and body.get("fake_context"):
        msg, code = (
            "This model's maximum context length is 8 tokens.",
            "context_length_exceeded",
        )
    if status == 401:
        msg = "Incorrect API key provided: sk-upstr**********cret."
    return status, _err(msg, etype, code), hdrs


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


# --- the other endpoints: wire shapes ---------------------------------------------------------

_AZURE_401 = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint.",
    }
}
_ENDPOINTS = (
    "embeddings",
    "images/generations",
    "audio/speech",
    "audio/transcriptions",
    "audio/translations",
    "responses",
)
_AUDIO_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}
_AUDIO_SIZE = 64 * 1024  # bytes of fake audio per audio/speech answer
_AUDIO_CHUNK = 8 * 1024  # sent as 8 body chunks
_TOOL_ARGS = '{"city":"Paris"}'


def _endpoint(path: str) -> str | None:
    """The endpoint a path names ("embeddings", "models/<id>", ...), None for chat / unknown."""
    if path.endswith("/chat/completions"):
        return None
    for name in _ENDPOINTS:
        if path.endswith("/" + name):
            return name
    if path.endswith("/completions"):
        return "completions"
    _, sep, model_id = path.partition("/models/")
    if sep and model_id:
        return "models/" + model_id
    return None


def _parse_form(ctype: str, raw: bytes) -> dict[str, Any] | None:
    """A multipart/form-data body: {name: str | {"filename", "content_type", "data"}}."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(ctype)
    boundary = params.get(b"boundary")
    if not boundary:
        return None
    parts: list[dict[str, Any]] = []
    cur: dict[str, Any] = {}

    def on_part_begin() -> None:
        cur.clear()
        cur.update(headers={}, data=b"", field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        cur["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        cur["value"] += data[start:end]

    def on_header_end() -> None:
        cur["headers"][cur["field"].decode().lower()] = cur["value"].decode()
        cur["field"], cur["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        cur["data"] += data[start:end]

    def on_part_end() -> None:
        parts.append(dict(cur))

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(raw)
        parser.finalize()
    except Exception:
        return None
    form: dict[str, Any] = {}
    for part in parts:
        _, disp = parse_options_header(part["headers"].get("content-disposition", ""))
        name = disp.get(b"name", b"").decode()
        value: Any = part["data"].decode(errors="replace")
        if b"filename" in disp:
            value = {
                "filename": disp[b"filename"].decode(),
                "content_type": part["headers"].get("content-type"),
                "data": part["data"],
            }
        if name in form:
            prev = form[name]
            form[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            form[name] = value
    return form


def _vector(size: int, dims: int) -> list[float]:
    """Float32 values k/100 + size/1000 (size: characters of a text, or number of tokens)."""
    return [struct.unpack("<f", struct.pack("<f", k / 100 + size / 1000))[0] for k in range(dims)]


def _embeddings(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        inputs = [raw]  # one token array
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        msg = "'input' is a required property" if raw is None else "'input' must not be empty"
        return 400, _err(msg, "invalid_request_error", None)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        msg = f"'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'"
        return 400, _err(msg, "invalid_request_error", None)
    dims = int(body.get("dimensions") or 8)
    data, tokens = [], 0
    for i, item in enumerate(inputs):
        vec = _vector(len(item), dims)
        tokens += len(item.split()) if isinstance(item, str) else len(item)
        emb: Any = vec
        if fmt == "base64":
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return 200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage}


def _images(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return 400, _err("'prompt' is a required property", "invalid_request_error", None)
    model = str(body.get("model") or "dall-e-2")
    gpt_image = model.startswith("gpt-image")
    n = int(body.get("n") or 1)
    b64 = gpt_image or body.get("response_format") == "b64_json"
    data: list[dict[str, Any]] = []
    for i in range(n):
        item: dict[str, Any] = {"revised_prompt": f"revised: {prompt}"}
        if b64:
            item["b64_json"] = base64.b64encode(b"PNG:" + prompt.encode()).decode()
        else:
            item["url"] = f"https://fake.example/img/{i}.png"
        data.append(item)
    doc: dict[str, Any] = {"created": int(time.time()), "data": data}
    if gpt_image:
        words = len(prompt.split())
        doc.update(
            background="opaque",
            output_format="png",
            quality=body.get("quality") or "high",
            size=body.get("size") or "1024x1024",
            usage={
                "input_tokens": words,
                "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
                "output_tokens": 100 * n,
                "total_tokens": words + 100 * n,
            },
        )
    return 200, doc


async def _transcription(send: Any, form: dict[str, Any], translate: bool) -> None:
    file = form.get("file")
    if not isinstance(file, dict):
        err = _err("Missing required parameter: 'file'.", "invalid_request_error", None)
        await _json(send, 400, err)
        return
    what = "translation" if translate else "transcript"
    text = f"{what} of {file['filename']} ({len(file['data'])} bytes)"
    fmt = form.get("response_format") or "json"
    usage = {"type": "duration", "seconds": 1}
    if fmt == "text":
        await _raw(send, 200, text.encode(), b"text/plain; charset=utf-8")
    elif fmt == "srt":
        srt = f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
        await _raw(send, 200, srt.encode(), b"text/plain; charset=utf-8")
    elif fmt == "vtt":
        vtt = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
        await _raw(send, 200, vtt.encode(), b"text/plain; charset=utf-8")
    elif fmt == "verbose_json":
        segment = {
            "id": 0,
            "seek": 0,
            "start": 0.0,
            "end": 1.0,
            "text": text,
            "tokens": list(range(1, len(text.split()) + 1)),
            "temperature": float(form.get("temperature") or 0),
            "avg_logprob": -0.1,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.01,
        }
        doc = {
            "task": "translate" if translate else "transcribe",
            "language": "english" if translate else form.get("language") or "english",
            "duration": 1.0,
            "text": text,
            "segments": [segment],
            "usage": usage,
        }
        await _json(send, 200, doc)
    else:
        await _json(send, 200, {"text": text, "usage": usage})


def _prompt_texts(prompt: Any) -> list[tuple[str, int]]:
    """The prompts of a legacy completion: [(text, token count)]; token ids read as numbers."""
    if isinstance(prompt, str):
        return [(prompt, len(prompt.split()))]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [(" ".join(map(str, prompt)), len(prompt))]
    out = []
    for p in prompt if isinstance(prompt, list) else []:
        out += _prompt_texts(p)
    return out


def _text_completion(body: dict[str, Any]) -> dict[str, Any]:
    prompts = _prompt_texts(body.get("prompt"))
    if not prompts:
        return _err("'prompt' is a required property", "invalid_request_error", None)
    n = int(body.get("n") or 1)
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    choices, out_words = [], 0
    for p, (text, _) in enumerate(prompts):
        answer, finish = f"fake: {text}", "stop"
        for s in stops:
            if s and s in answer:
                answer = answer[: answer.index(s)]
                break
        words = answer.split(" ")
        cap = body.get("max_tokens")
        if cap is not None and len(words) > cap:
            answer, finish = " ".join(words[:cap]), "length"
        out_words += len(answer.split()) * n
        full = text + answer if body.get("echo") else answer
        for j in range(n):
            logprobs = None
            if body.get("logprobs") is not None:
                toks = [w if not k else " " + w for k, w in enumerate(full.split(" "))]
                offsets = [sum(len(t) for t in toks[:k]) for k in range(len(toks))]
                logprobs = {
                    "tokens": toks,
                    "token_logprobs": [-0.1] * len(toks),
                    "top_logprobs": [{t: -0.1} for t in toks],
                    "text_offset": offsets,
                }
            choices.append(
                {"text": full, "index": p * n + j, "logprobs": logprobs, "finish_reason": finish}
            )
    prompt_tokens = sum(t for _, t in prompts)
    return {
        "id": "cmpl-fake0001",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": "fp_fake",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": out_words,
            "total_tokens": prompt_tokens + out_words,
        },
    }


def _completion_chunks(doc: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """A legacy completion as stream chunks: a word per chunk, a finish chunk per choice, usage."""
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {k: doc[k] for k in ("id", "object", "created", "model", "system_fingerprint")}
    if with_usage:
        base["usage"] = None
    out = []
    for c in doc["choices"]:
        for k, w in enumerate(c["text"].split(" ")):
            text = w if not k else " " + w
            choice = {"text": text, "index": c["index"], "logprobs": None, "finish_reason": None}
            out.append({**base, "choices": [choice]})
        end = {
            "text": "",
            "index": c["index"],
            "logprobs": None,
            "finish_reason": c["finish_reason"],
        }
        out.append({**base, "choices": [end]})
    if with_usage:
        out.append({**base, "choices": [], "usage": doc["usage"]})
    return out


def _input_text(body: dict[str, Any]) -> tuple[str, int]:
    """Responses input: (what the fake answers, words of instructions + all input text)."""

    def text_of(content: Any) -> str:
        if isinstance(content, str):
            return content
        return " ".join(
            str(p.get("text", ""))
            for p in content or []
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")
        )

    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
    words = len(str(body.get("instructions") or "").split())
    answer = "fake: "
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            out = item.get("output")
            said = out if isinstance(out, str) else text_of(out)
            words += len(said.split())
            answer = f"fake: tool said {said}"
        elif item.get("type") in (None, "message"):
            said = text_of(item.get("content"))
            words += len(said.split())
            if item.get("role") == "user":
                answer = f"fake: {said}"
    return answer, words


def _response(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A completed Response object (https://platform.openai.com/docs/api-reference/responses)."""
    answer, in_words = _input_text(body)
    if model == "fake-tool":
        item: dict[str, Any] = {
            "id": "fc_fake1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_fake1",
            "name": "get_weather",
            "arguments": _TOOL_ARGS,
        }
        out_words = 10
    else:
        part = {"type": "output_text", "text": answer, "annotations": [], "logprobs": []}
        item = {
            "id": "msg_fake1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        out_words = len(answer.split())
    now = int(time.time())
    return {
        "id": "resp_fake0001",
        "object": "response",
        "created_at": now,
        "status": "completed",
        "completed_at": now,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body.get("model") or model,
        "output": [item],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None, **(body.get("reasoning") or {})},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": in_words,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out_words,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_words + out_words,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _response_events(model: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The typed stream of a Response (https://platform.openai.com/docs/api-reference/responses-streaming)."""
    pending = {**doc, "status": "in_progress", "completed_at": None, "output": [], "usage": None}
    item = doc["output"][0]
    where = {"item_id": item["id"], "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
    ]
    if item["type"] == "function_call":
        args = item["arguments"]
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "arguments": "", "status": "in_progress"},
            }
        )
        for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
            events.append(
                {"type": "response.function_call_arguments.delta", **where, "delta": piece}
            )
        events.append(
            {
                "type": "response.function_call_arguments.done",
                **where,
                "name": item["name"],
                "arguments": args,
            }
        )
    else:
        part = item["content"][0]
        at = {**where, "content_index": 0}
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
            }
        )
        events.append({"type": "response.content_part.added", **at, "part": {**part, "text": ""}})
        for k, w in enumerate(part["text"].split(" ")):
            delta = w if not k else " " + w
            events.append(
                {"type": "response.output_text.delta", **at, "delta": delta, "logprobs": []}
            )
            if model == "fake-midstream-error":
                events.append(
                    {
                        "type": "error",
                        "code": "server_error",
                        "message": "The server had an error while processing your request.",
                        "param": None,
                    }
                )
                return [{**ev, "sequence_number": n} for n, ev in enumerate(events)]
        events.append(
            {"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []}
        )
        events.append({"type": "response.content_part.done", **at, "part": part})
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    events.append({"type": "response.completed", "response": doc})
    return [{**ev, "sequence_number": n} for n, ev in enumerate(events)]
