"""Server-sent events framing: bytes in, the `data` payload of each complete event out."""

from __future__ import annotations


class SSEDecoder:
    """Incremental decoder; feed() returns the data payloads of the events completed so far."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            event = buf[start:end]
            start = end + 2
            data = _data_of(event)
            if data is not None:
                out.append(data)
        self._buf = buf[start:]
        return out

    def flush(self) -> list[bytes]:
        """The last event when the stream ended without its blank line."""
        rest, self._buf = self._buf, b""
        data = _data_of(rest.strip(b"\n")) if rest.strip() else None
        return [data] if data is not None else []


def _data_of(event: bytes) -> bytes | None:
    # Fast path: one `data: ...` line, which is what OpenAI-style servers send.
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    lines = [ln for ln in event.split(b"\n") if ln.startswith(b"data:")]
    if not lines:
        return None  # comments (": ping"), event:/id:/retry: only
    parts = [ln[6:] if ln.startswith(b"data: ") else ln[5:] for ln in lines]
    return b"\n".join(parts)


def encode(data: bytes) -> bytes:
    """One SSE event carrying `data`."""
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
