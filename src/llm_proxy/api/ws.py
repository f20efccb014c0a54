"""Seed 001's WebSocket API at /ws: chat completions streamed as JSON messages, many per socket.

Every request runs through the real HTTP pipeline (`pipeline.chat_completions`) on a synthetic
`POST /v1/chat/completions` scope, so auth, key and IP limits, budgets, routing, failover and spend
records are exactly those of HTTP. This module only frames: client messages in, SSE events out.

Client -> server (one JSON object per text or binary frame):
  {"type": "auth", "token" | "api_key": "<key>"}      only as the first message, see Auth
  {"type": "inference_request", "id": <id>, "data": {<chat completion body>}}
  {"type": "cancel", "id": <id>}
  {"type": "heartbeat"} or {"type": "ping"}            answered with a heartbeat
  {"type": "close"}                                    answered with a close message, then closed

Server -> client:
  {"type": "inference_response", "id", "data": {"content": "<delta>", "model", "created"}}
      one per upstream chunk that carries content (or `tool_calls`, passed as deltas; choices
      other than the first carry "index");
  {"type": "inference_response", "id", "data": {"content": "", "finish_reason", "usage",
      "model", "created", "done": true, "request_id"}}
      the last message of a request that succeeded; `done` is only ever on it;
  {"type": "cancelled", "id"}        the last message of a cancelled request;
  {"type": "error", "id"?, "error": {"code": <HTTP status>, "message", "type", "param"?,
      "error_code"?, "retry_after"?, "details"?}}
      the last message of a failed request, or (without "id") about a message or the socket;
  {"type": "heartbeat", "timestamp": <ms since epoch>}   every `heartbeat_interval` seconds;
  {"type": "authenticated"}          after a successful `auth` message;
  {"type": "close", "reason", "code"}   just before the server closes; `code` is the close code.

Decisions:
- id: a non-empty string (up to 256 characters) or an integer, echoed as given. A second
  inference_request with the id of one still in flight gets error 409 (error_code
  "duplicate_id", param "id") and the first one carries on. An id is free again once its last
  message (final response, error or cancelled) went out.
- Requests are always streamed: the body gets `stream: true` and
  `stream_options.include_usage: true` whatever the client sent, so the final message has usage.
- Error `type`: validation (400/404/408/409/413 and other client mistakes), authentication (401),
  permission (403), rate_limit (429, connection and stream caps, the gateway's queue),
  openrouter (the upstream failed: 502/503/504 and error events inside a stream), internal
  (500). `code` is the HTTP status the same request gets over HTTP; `error_code` is the
  OpenAI-style code string of the HTTP answer (e.g. "rate_limit_exceeded").
- Cancel: the request's synthetic client "disconnects" (as an HTTP client hanging up), so the
  upstream call is cancelled and the call is recorded as 499 with the usage so far; the reply is
  {"type": "cancelled", "id"} once nothing more will be sent for that id. Cancelling an id that
  is not in flight is error 404 (error_code "unknown_id").
- Bad JSON, a non-object, an unknown or missing type, a missing id or data, a message over
  `max_message_bytes` (error 413): an error message, and the socket stays open.
- Auth: credentials in the handshake headers (Authorization: Bearer, X-API-Key, api-key) as over
  HTTP; without any, the first message must be {"type": "auth", ...} within `auth_timeout`
  seconds. A wrong or missing key: error 401, a close message and close code 1008. The handshake
  is always accepted first, so browser clients (which cannot see a refused handshake's status)
  learn why. "/ws" in `public_paths` makes the socket keyless, as for HTTP paths. The key is
  checked again (a cached lookup) before each inference_request: one revoked, disabled or
  expired meanwhile gets error 401 for that id, then close 1008.
- Each socket gets one attempt at a key, and every connection counts against the client IP's
  WebSocket limit (`ip_limits.websocket`, 5 a minute; loopback exempt by default); so guessing
  keys is throttled. Each inference_request also counts as a chat completion against the IP's
  inference limit, as it would over HTTP.
- Refusals before any request: over `max_connections` sockets in this worker: error 503
  (error_code "too_many_connections"), close 1013 (try again later); over the IP connection
  rate: error 429 with retry_after, close 1013; an Origin not in `cors_allow_origins`: error 403,
  close 1008.
- More than `max_streams_per_connection` requests in flight: error 429 for that id
  (error_code "too_many_streams").
- Close: on a client close message, requests in flight are cancelled (each gets "cancelled"),
  then {"type": "close", "reason": "Client requested close", "code": 1000} and close 1000. After
  `idle_timeout` seconds without a client message and with nothing in flight: close message and
  close 1000 (off by default). On server shutdown uvicorn closes sockets itself with 1012
  (service restart), before the app can speak, so there is no close message then. A client that
  goes away has every request still in flight cancelled, upstream calls included.
- Handshake headers (X-Provider, X-LLM-Proxy-Tags, ...) apply to every request on the socket.
- uvicorn's own frame cap (`ws_max_size`, 16 MiB) still applies: a bigger frame closes with 1009.
- Nothing secret is echoed: auth errors carry the pipeline's messages, never the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson
from fastapi import APIRouter, WebSocket

from llm_proxy.accounting import refusal
from llm_proxy.auth import ANONYMOUS, Principal, authenticate, presented_keys
from llm_proxy.config.schema import WebSocketConfig
from llm_proxy.errors import AuthenticationError
from llm_proxy.gateway import Gateway
from llm_proxy.limits.plan import Plan
from llm_proxy.observability.middleware import _request_id
from llm_proxy.pipeline import chat_completions

log = logging.getLogger("llm_proxy")

WS_PATH = "/ws"
CHAT_PATH = "/v1/chat/completions"
Id = str | int
Doc = dict[str, Any]

# The OpenAI error type of the HTTP answer -> seed 001's error type.
_SEED_TYPES = {
    "invalid_request_error": "validation",
    "not_found_error": "validation",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "rate_limit_error": "rate_limit",
    "insufficient_quota": "rate_limit",  # a budget refusal (429 budget_exceeded)
    "upstream_error": "openrouter",
    "timeout_error": "openrouter",
    "service_unavailable_error": "openrouter",
    "server_error": "internal",
}
# Gateway-side failures whose OpenAI type would say otherwise.
_SEED_TYPES_BY_CODE = {"too_many_concurrent_requests": "rate_limit", "spend_spool_full": "internal"}
# An error event inside a stream has no status: the one its type implies (else: upstream, 502).
_STREAM_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "service_unavailable_error": 503,
    "timeout_error": 504,
}
# Handshake headers that mean nothing on the synthetic HTTP request.
_DROP = frozenset(
    {b"connection", b"upgrade", b"content-length", b"transfer-encoding", b"content-type"}
)
# Seconds in-flight requests get to wind down (their upstream call is cancelled at once; what
# is left is settling limits and spooling spend, which may wait on Redis for its 5 s socket
# timeout) before a hard cancel, which could otherwise lose a spend row.
_CANCEL_GRACE = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def valid_id(v: Any) -> TypeGuard[Id]:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, str) and 0 < len(v) <= 256)


def error_doc(
    status: int,
    message: str,
    etype: str,
    rid: Id | None = None,
    **extra: Any,
) -> Doc:
    """A seed 001 error message; `extra` adds param, error_code, retry_after, details if set."""
    err: Doc = {"code": status, "message": message, "type": etype}
    err.update((k, v) for k, v in extra.items() if v is not None)
    doc: Doc = {"type": "error", "error": err}
    if rid is not None:
        doc["id"] = rid
    return doc


def seed_error(status: int, body: Any, retry_after: str | None) -> Doc:
    """The pipeline's OpenAI error body (and HTTP status) -> a seed 001 `error` object."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    code = err.get("code") if isinstance(err.get("code"), str) else None
    etype = _SEED_TYPES_BY_CODE.get(code or "") or _SEED_TYPES.get(str(err.get("type")))
    if etype is None:
        etype = "validation" if status < 500 else ("internal" if status == 500 else "openrouter")
    out: Doc = {
        "code": status,
        "message": str(err.get("message") or f"The request failed with HTTP {status}."),
        "type": etype,
    }
    if err.get("param"):
        out["param"] = err["param"]
    if code:
        out["error_code"] = code
    if retry_after and retry_after.isdigit():
        out["retry_after"] = int(retry_after)
    if isinstance(err.get("details"), dict):
        out["details"] = err["details"]
    return out


def stream_error(doc: Doc) -> Doc:
    """An error event inside a stream (no status of its own) -> a seed 001 `error` object."""
    err = doc.get("error")
    err = err if isinstance(err, dict) else {}
    if err.get("code") == "internal_error":
        return seed_error(500, doc, None)
    status = _STREAM_STATUS.get(str(err.get("type")), 502)
    out = seed_error(status, doc, None)
    if status >= 500:
        out["type"] = "openrouter"
    return out


def chat_body(data: Doc) -> bytes:
    """The client's request body, always streamed with usage."""
    opts = data.get("stream_options")
    opts = {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
    return orjson.dumps({**data, "stream": True, "stream_options": opts})


@dataclass
class Gate:
    """Open sockets in this worker (one per app, not a module global)."""

    open: int = 0


@dataclass
class Stream:
    """One inference_request: the synthetic HTTP exchange and what its SSE events said."""

    conn: Connection
    id: Id
    request_id: str
    body: bytes
    done: asyncio.Event = field(default_factory=asyncio.Event)  # receive() -> http.disconnect
    cancelled: bool = False
    ended: bool = False  # its last message (final response or error) went out
    body_sent: bool = False
    status: int = 0
    sse: bool = False
    retry_after: str | None = None
    buf: bytearray = field(default_factory=bytearray)
    model: Any = None
    created: Any = None
    finish_reason: Any = None
    usage: Any = None

    async def receive(self) -> Doc:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Doc) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            headers = dict(message.get("headers") or ())
            self.sse = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            ra = headers.get(b"retry-after")
            self.retry_after = ra.decode("latin-1") if ra else None
            return
        if message["type"] != "http.response.body":
            return
        more = bool(message.get("more_body"))
        self.buf += message.get("body", b"")
        if self.status == 200 and self.sse:
            while (i := self.buf.find(b"\n\n")) >= 0:
                event = bytes(self.buf[:i])
                del self.buf[: i + 2]
                await self._event(event)
        if not more:
            rest = bytes(self.buf)
            self.buf.clear()
            if self.status != 200 or not self.sse:
                await self._whole(rest)
            elif rest.strip():
                await self._event(rest)
            if not self.ended:
                await self._final()
            self.done.set()

    async def _emit(self, doc: Doc) -> None:
        if not self.cancelled and not self.ended:
            await self.conn.emit(doc)

    async def _end(self, doc: Doc) -> None:
        """The last message for this id; the id is free for reuse from here on."""
        if self.cancelled or self.ended:
            return  # a cancelled request's last message is `cancelled`, sent when its task ends
        self.ended = True
        self.conn.release(self)
        await self.conn.emit(doc)

    async def _whole(self, raw: bytes) -> None:
        """A whole (non-SSE) answer: an error, or a plain completion."""
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            doc = None
        if self.status != 200 or not isinstance(doc, dict) or "choices" not in doc:
            status = self.status if self.status != 200 else 502
            await self._end(
                {"type": "error", "id": self.id, "error": seed_error(status, doc, self.retry_after)}
            )
            return
        self.model, self.created, self.usage = (
            doc.get("model"),
            doc.get("created"),
            doc.get("usage"),
        )
        for choice in doc["choices"] if isinstance(doc["choices"], list) else ():
            if not isinstance(choice, dict):
                continue
            msg = choice.get("message")
            await self._delta(choice, msg if isinstance(msg, dict) else {})
            if self.finish_reason is None:
                self.finish_reason = choice.get("finish_reason")

    async def _event(self, event: bytes) -> None:
        data = b"\n".join(
            line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
        )
        if not data or self.ended:
            return
        if data == b"[DONE]":
            await self._final()
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if "error" in doc and not doc.get("choices"):
            await self._end({"type": "error", "id": self.id, "error": stream_error(doc)})
            return
        self.model = doc.get("model", self.model)
        self.created = doc.get("created", self.created)
        if doc.get("usage"):
            self.usage = doc["usage"]
        for choice in doc.get("choices") or ():
            if isinstance(choice, dict):
                delta = choice.get("delta")
                await self._delta(choice, delta if isinstance(delta, dict) else {})
                if choice.get("finish_reason") and choice.get("index", 0) == 0:
                    self.finish_reason = choice["finish_reason"]

    async def _delta(self, choice: Doc, delta: Doc) -> None:
        content, tools = delta.get("content"), delta.get("tool_calls")
        if not content and not tools:
            return
        data: Doc = {"content": content or "", "model": self.model, "created": self.created}
        if tools:
            data["tool_calls"] = tools
        if choice.get("index", 0):
            data["index"] = choice["index"]
        await self._emit({"type": "inference_response", "id": self.id, "data": data})

    async def _final(self) -> None:
        data: Doc = {
            "content": "",
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "model": self.model,
            "created": self.created,
            "done": True,
            "request_id": self.request_id,
        }
        await self._end({"type": "inference_response", "id": self.id, "data": data})


class Connection:
    """One socket: admission, the message loop, and its streams."""

    def __init__(self, gw: Gateway, ws: WebSocket, cfg: WebSocketConfig, rid: str) -> None:
        self.gw, self.ws, self.cfg, self.rid = gw, ws, cfg, rid
        self.headers: dict[bytes, bytes] = dict(ws.scope["headers"])
        self.ip = gw.ip.client_ip(dict(ws.scope), self.headers)
        self.principal: Principal | None = None
        self.auth_header: tuple[bytes, bytes] | None = None  # a key sent in an `auth` message
        self.creds: dict[bytes, bytes] | None = None  # what authenticated (None: a public path)
        self.streams: dict[Id, Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.seq = 0

    async def emit(self, doc: Doc) -> None:
        if self.closed:
            return
        text = orjson.dumps(doc).decode()
        try:
            await self.ws.send_text(text)
        except Exception:  # gone (disconnect, closing): nothing more will be read either
            self.closed = True

    async def shut(self, code: int, reason: str, err: Doc | None = None) -> None:
        """(An error,) in-flight requests cancelled, a close message, then the close frame."""
        if err is not None:
            await self.emit(err)
        await self.cancel_all()
        await self.emit({"type": "close", "reason": reason, "code": code})
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)

    def release(self, s: Stream) -> None:
        if self.streams.get(s.id) is s:
            del self.streams[s.id]

    # -- admission ---------------------------------------------------------------------------

    async def admit(self) -> bool:
        """Connection rate, Origin and key: True when the socket may be used."""
        gw = self.gw
        rate = gw.ip.rate(WS_PATH, self.ip, websocket=True) if gw.ip.enabled else None
        if rate is not None:
            verdict = await gw.limits.admit(Plan(self.rid, rates=[rate]))
            if not verdict.ok:
                e = refusal(verdict)
                ra = e.headers.get("Retry-After")
                err = error_doc(429, e.message, "rate_limit", error_code=e.code)
                err["error"]["retry_after"] = int(ra) if ra and ra.isdigit() else None
                await self.shut(1013, "Rate limit exceeded", err)
                return False
        settings = gw.router.runtime.settings
        origin = self.headers.get(b"origin")
        allowed = settings.cors_allow_origins
        if origin and "*" not in allowed and origin.decode("latin-1") not in allowed:
            err = error_doc(
                403, "Disallowed origin.", "permission", error_code="origin_not_allowed"
            )
            await self.shut(1008, "Origin not allowed", err)
            return False
        if WS_PATH in settings.public_paths:
            self.principal = ANONYMOUS
            return True
        if presented_keys(self.headers):
            return await self._authenticate(self.headers)
        return await self._auth_message()

    async def _authenticate(self, headers: dict[bytes, bytes], rid: Id | None = None) -> bool:
        """The key (again, before each request: a key revoked, disabled or expired meanwhile
        closes the socket); on failure error 401 (for `rid`), then close 1008."""
        gw = self.gw
        try:
            self.principal = await authenticate(
                headers, gw.router.runtime.master_key_sha256, gw.keys
            )
        except AuthenticationError as e:
            code = e.code or "invalid_api_key"
            err = error_doc(401, e.message, "authentication", rid, error_code=code)
            await self.shut(1008, "Authentication failed", err)
            return False
        self.creds = headers
        return True

    async def _auth_message(self) -> bool:
        """No key in the handshake: the first message must be {"type": "auth", "token": ...}."""
        try:
            async with asyncio.timeout(self.cfg.auth_timeout):
                frame = await self.ws.receive()
        except TimeoutError:
            frame = None
        if frame is not None and frame["type"] == "websocket.disconnect":
            self.closed = True
            return False
        doc = _loads(frame.get("text") or frame.get("bytes") or b"") if frame else None
        token = None
        if isinstance(doc, dict) and doc.get("type") == "auth":
            token = doc.get("token") or doc.get("api_key")
        if not isinstance(token, str) or not token.strip() or len(token) > 4096:
            msg = (
                "You didn't provide an API key. Send it in the handshake ('Authorization: Bearer "
                "<key>' or 'X-API-Key'), or as the first message: "
                '{"type": "auth", "token": "<key>"}.'
            )
            err = error_doc(401, msg, "authentication", error_code="missing_api_key")
            await self.shut(1008, "Authentication required", err)
            return False
        header = (b"authorization", b"Bearer " + token.strip().encode("utf-8"))
        if not await self._authenticate(dict([header])):
            return False
        self.auth_header = header
        await self.emit({"type": "authenticated"})
        return True

    # -- the message loop --------------------------------------------------------------------

    async def run(self) -> None:
        if not await self.admit():
            return
        beat = None
        if self.cfg.heartbeat_interval > 0:
            beat = asyncio.get_running_loop().create_task(self._heartbeats())
        try:
            while not self.closed:
                frame = await self._next_frame()
                if frame is None:
                    break
                if frame["type"] == "websocket.disconnect":
                    self.closed = True
                    break
                data = frame.get("text")
                if data is None:
                    data = frame.get("bytes")
                if data is not None:
                    await self.handle(data)
        finally:
            if beat is not None:
                beat.cancel()
            await self.cancel_all()

    async def _next_frame(self) -> Any:
        idle = self.cfg.idle_timeout
        if idle is None:
            return await self.ws.receive()
        while True:
            try:
                async with asyncio.timeout(idle):
                    return await self.ws.receive()
            except TimeoutError:
                if self.streams:
                    continue  # streaming is not idle
                await self.shut(1000, "Idle timeout")
                return None

    async def _heartbeats(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            await self.emit({"type": "heartbeat", "timestamp": _now_ms()})

    async def handle(self, data: str | bytes) -> None:
        """One client message; every problem is an error message, never an exception."""
        size = len(data) if isinstance(data, bytes) or data.isascii() else len(data.encode())
        if size > self.cfg.max_message_bytes:
            msg = f"The message exceeds the limit of {self.cfg.max_message_bytes} bytes."
            await self.emit(error_doc(413, msg, "validation", error_code="message_too_large"))
            return
        doc = _loads(data)
        if doc is _BAD:
            await self.emit(
                error_doc(400, "Invalid JSON.", "validation", error_code="invalid_json")
            )
            return
        if not isinstance(doc, dict):
            msg = "Each message must be a JSON object."
            await self.emit(error_doc(400, msg, "validation", error_code="invalid_message"))
            return
        kind = doc.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            rid = doc.get("id") if valid_id(doc.get("id")) else None
            msg = f"Unknown message type {kind!r}." if isinstance(kind, str) else "No message type."
            if isinstance(kind, str) and len(kind) > 64:
                msg = "Unknown message type."
            err = error_doc(400, msg, "validation", rid, param="type", error_code="unknown_type")
            await self.emit(err)
            return
        await handler(self, doc)

    async def on_inference(self, doc: Doc) -> None:
        rid = doc.get("id")
        if not valid_id(rid):
            msg = "An inference_request needs an id: a non-empty string or an integer."
            await self.emit(error_doc(400, msg, "validation", param="id", error_code="missing_id"))
            return
        data = doc.get("data")
        if not isinstance(data, dict):
            msg = "An inference_request needs `data`: a chat completion request object."
            await self.emit(error_doc(400, msg, "validation", rid, param="data"))
            return
        if rid in self.streams:
            msg = f"A request with id {rid!r} is already in flight on this socket."
            err = error_doc(409, msg, "validation", rid, param="id", error_code="duplicate_id")
            await self.emit(err)
            return
        cap = self.cfg.max_streams_per_connection
        if len(self.streams) >= cap:
            msg = f"This socket already has {cap} requests in flight."
            await self.emit(error_doc(429, msg, "rate_limit", rid, error_code="too_many_streams"))
            return
        if self.creds is not None:
            if not await self._authenticate(self.creds, rid):
                return
        elif WS_PATH not in self.gw.router.runtime.settings.public_paths:
            # A keyless socket opened while /ws was public; a reload has made it keyed since.
            msg = "This socket has no key and /ws is no longer public."
            err = error_doc(401, msg, "authentication", rid, error_code="missing_api_key")
            await self.shut(1008, "Authentication required", err)
            return
        try:
            body = chat_body(data)
        except (TypeError, orjson.JSONEncodeError):  # nested deeper than JSON output allows
            msg = "The request body is nested too deeply."
            await self.emit(error_doc(400, msg, "validation", rid, error_code="invalid_json"))
            return
        self.seq += 1
        s = Stream(self, rid, f"{self.rid}-{self.seq}", body)
        self.streams[rid] = s
        task = asyncio.get_running_loop().create_task(self._run_stream(s))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def on_cancel(self, doc: Doc) -> None:
        rid = doc.get("id")
        if not valid_id(rid):
            msg = "A cancel needs the id of the request to cancel."
            await self.emit(error_doc(400, msg, "validation", param="id", error_code="missing_id"))
            return
        s = self.streams.get(rid)
        if s is None:
            msg = f"No request with id {rid!r} is in flight."
            await self.emit(error_doc(404, msg, "validation", rid, error_code="unknown_id"))
            return
        s.cancelled = True  # nothing more goes out for it but `cancelled`
        s.done.set()  # its client "disconnects": the pipeline cancels the call

    async def on_heartbeat(self, doc: Doc) -> None:
        await self.emit({"type": "heartbeat", "timestamp": _now_ms()})

    async def on_close(self, doc: Doc) -> None:
        await self.shut(1000, "Client requested close")

    async def on_auth(self, doc: Doc) -> None:
        msg = "This socket is already authenticated."
        await self.emit(error_doc(400, msg, "validation", error_code="already_authenticated"))

    # -- streams -----------------------------------------------------------------------------

    def _scope(self, s: Stream) -> Doc:
        headers = {
            k: v
            for k, v in self.headers.items()
            if k not in _DROP and not k.startswith(b"sec-websocket-")
        }
        if self.auth_header is not None:
            headers[self.auth_header[0]] = self.auth_header[1]
        headers[b"content-type"] = b"application/json"
        headers[b"content-length"] = str(len(s.body)).encode()
        gw = self.gw
        ws = self.ws.scope
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https" if ws.get("scheme") == "wss" else "http",
            "path": CHAT_PATH,
            "raw_path": CHAT_PATH.encode(),
            "query_string": b"",
            "root_path": ws.get("root_path", ""),
            "headers": list(headers.items()),
            "client": ws.get("client"),
            "server": ws.get("server"),
            "state": {
                "request_id": s.request_id,
                "headers": headers,
                "principal": self.principal,
                "ip_rate": gw.ip.rate(CHAT_PATH, self.ip) if gw.ip.enabled else None,
            },
        }

    async def _run_stream(self, s: Stream) -> None:
        try:
            await chat_completions(self.gw, self._scope(s), s.receive, s.send)
        except Exception:
            log.exception("websocket request failed", extra={"request_id": s.request_id})
        finally:
            s.done.set()
            if s.cancelled:
                self.release(s)
                await self.emit({"type": "cancelled", "id": s.id})
            elif not s.ended:
                msg = "The gateway hit an internal error; the request id identifies it in the logs."
                err = error_doc(500, msg, "internal", s.id, error_code="internal_error")
                err["error"]["request_id"] = s.request_id
                await s._end(err)

    async def cancel_all(self) -> None:
        """Cancel every request in flight (as a client hanging up), then hard-cancel stragglers."""
        for s in list(self.streams.values()):
            s.cancelled = True
            s.done.set()
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=_CANCEL_GRACE)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


_BAD = object()


def _loads(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _BAD


_HANDLERS = {
    "inference_request": Connection.on_inference,
    "cancel": Connection.on_cancel,
    "heartbeat": Connection.on_heartbeat,
    "ping": Connection.on_heartbeat,
    "close": Connection.on_close,
    "auth": Connection.on_auth,
}


async def serve(gw: Gateway, ws: WebSocket, gate: Gate) -> None:
    """One socket, from handshake to close."""
    cfg = gw.router.runtime.settings.websocket
    rid = _request_id(dict(ws.scope["headers"]).get(b"x-request-id")).decode()
    await ws.accept(headers=[(b"x-request-id", rid.encode())])
    conn = Connection(gw, ws, cfg, rid)
    if gate.open >= cfg.max_connections:
        msg = f"The gateway already serves {cfg.max_connections} WebSocket connections."
        err = error_doc(503, msg, "rate_limit", error_code="too_many_connections")
        await conn.shut(1013, "Too many connections", err)
        return
    gate.open += 1
    try:
        await conn.run()
    except Exception:
        log.exception("websocket connection failed", extra={"request_id": rid})
        msg = "The gateway hit an internal error; the request id identifies it in the logs."
        err = error_doc(500, msg, "internal", error_code="internal_error")
        await conn.shut(1011, "Internal error", err)
    finally:
        gate.open -= 1
        if not conn.closed:
            conn.closed = True
            with contextlib.suppress(Exception):
                await ws.close(1000)


def build_ws(gw: Gateway) -> APIRouter:
    router = APIRouter()
    gate = Gate()

    @router.websocket(WS_PATH)
    async def websocket_api(websocket: WebSocket) -> None:
        await serve(gw, websocket, gate)

    return router


__all__ = ["build_ws", "chat_body", "error_doc", "seed_error", "stream_error"]
