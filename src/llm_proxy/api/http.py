"""Small raw-ASGI helpers: read a bounded body, send JSON, send errors, watch for disconnects."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_proxy.errors import GatewayError, RequestTimeoutError, RequestTooLargeError

Scope = dict[str, Any]
Message = dict[str, Any]
JSON_HEADERS = [(b"content-type", b"application/json")]


class ClientDisconnected(Exception):
    """The client went away before we answered."""


async def read_body(receive: Any, headers: dict[bytes, bytes], limit: int, timeout: float) -> bytes:
    """The whole request body; 413 past `limit` bytes (0: no limit), 408 if it trickles too long."""
    declared = headers.get(b"content-length")
    if limit and declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = msg.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if limit and size > limit:
                        raise _too_large(limit)
                    parts.append(chunk)
                if not msg.get("more_body"):
                    break
    except TimeoutError:
        raise RequestTimeoutError(
            f"The request body was not received within {timeout:g} seconds."
        ) from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"The request body exceeds the limit of {limit} bytes.")


def error_headers(err: GatewayError) -> list[tuple[bytes, bytes]]:
    out = list(JSON_HEADERS)
    out.extend((k.lower().encode(), v.encode("latin-1", "replace")) for k, v in err.headers.items())
    return out


async def send_error(send: Any, err: GatewayError) -> None:
    await send_json(send, err.status, err.to_json(), error_headers(err))


async def send_json(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    h = headers if headers is not None else list(JSON_HEADERS)
    h.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": h})
    await send({"type": "http.response.body", "body": body})


class DisconnectWatch:
    """Cancels the current task when the client disconnects (for plain and streamed calls alike).

    stop() does not cancel the watcher: once the response completes, the server's receive()
    returns http.disconnect by itself and the watcher ends. Cancelling it instead would leave a
    CancelledError/traceback reference cycle per request for the garbage collector.
    """

    __slots__ = ("_task", "_watcher", "disconnected", "finished")

    def __init__(self, receive: Any) -> None:
        self._task = asyncio.current_task()
        self.disconnected = False
        self.finished = False
        self._watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                if not self.finished and self._task is not None:
                    self.disconnected = True
                    self._task.cancel()
                self._task = None
                return

    def stop(self) -> None:
        self.finished = True
        self._task = None
