"""uvicorn with uvloop + httptools, and a protocol whose parse errors answer in JSON."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httptools
import uvicorn
from typing_extensions import override
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024
# httptools hands a header to on_header only once its line ends, buffering the value meanwhile;
# so the raw bytes of a head still incomplete after a read are capped too (with room for the
# ": " and CRLF framing the parsed count leaves out).
MAX_RAW_HEAD_BYTES = 2 * MAX_HEADER_BYTES
# A request head (line + headers) must arrive within this many seconds (slowloris guard);
# the body has its own limit, body_read_timeout.
HEAD_TIMEOUT = 30.0


class GatewayHttpProtocol(HttpToolsProtocol):
    """Caps the request head (431) and answers malformed HTTP with an OpenAI-shaped JSON 400."""

    _head_bytes = 0  # request target + header names and values, as parsed
    _head_raw = 0  # bytes read while the head was incomplete (from the read after it began)
    _in_head = False
    _head_too_large = False
    _head_too_slow = False
    _head_timer: asyncio.TimerHandle | None = None

    @override
    def data_received(self, data: bytes) -> None:
        continuing = self._in_head
        super().data_received(data)
        if continuing and self._in_head and not self.transport.is_closing():
            self._head_raw += len(data)
            if self._head_raw > MAX_RAW_HEAD_BYTES:
                self._head_too_large = True
                self.send_400_response("request head too large")

    @override
    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._head_raw = 0
        self._in_head = True
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_expired)
        super().on_message_begin()

    @override
    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._head_too_slow = True
            self.send_400_response("request head too slow")

    @override
    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    @override
    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    @override
    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEADER_BYTES:
            self._head_too_large = True
            raise httptools.HttpParserError("request head too large")

    @override
    def send_400_response(self, msg: str) -> None:
        if self._head_too_slow:
            status, message, code = (
                b"408 Request Timeout",
                f"The request line and headers did not arrive within {HEAD_TIMEOUT:g} seconds.",
                "request_timeout",
            )
        elif self._head_too_large:
            status, message, code = (
                b"431 Request Header Fields Too Large",
                f"The request line and headers exceed {MAX_HEADER_BYTES} bytes.",
                "request_header_too_large",
            )
        else:
            status, message, code = b"400 Bad Request", "Malformed HTTP request.", "invalid_http"
        body = (
            b'{"error":{"message":"' + message.encode() + b'","type":"invalid_request_error",'
            b'"param":null,"code":"' + code.encode() + b'"}}'
        )
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            # (Mid-response, e.g. garbage pipelined behind a good request: just close, never
            # splice an error into the body being sent.)
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"x-request-id: " + os.urandom(16).hex().encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
        self.transport.close()


def run(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the app factory (each worker builds its own gateway)."""
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "factory": True,
        "loop": "uvloop",
        "http": "llm_proxy.server:GatewayHttpProtocol",
        "access_log": False,
        "log_config": None,
        "log_level": log_level.lower(),
        "server_header": False,
        "date_header": True,
        "timeout_keep_alive": 30,
        "backlog": 4096,
        "proxy_headers": False,  # X-Forwarded-* are not trusted unless we add a setting for it
    }
    uvicorn.run("llm_proxy.app:create_app", **kwargs)
