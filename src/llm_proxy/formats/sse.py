"""Server-sent events framing: bytes in, complete events out (as raw segments or data payloads)."""

from __future__ import annotations


class SSEDecoder:
    """Incremental decoder. Line ends are normalised to \\n; a partial event waits for more bytes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def segment(self, chunk: bytes) -> bytes:
        """The complete events received so far, as one raw byte string ending in a blank line."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            held = buf.endswith(b"\r")  # maybe the first half of a CRLF split across reads
            if held:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buf += b"\r"
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._buf = buf
            return b""
        self._buf = buf[cut + 2 :]
        return buf[: cut + 2]

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data payloads of the events completed by this chunk."""
        return payloads(self.segment(chunk))

    def flush(self) -> list[bytes]:
        """The last event when the stream ended without its blank line."""
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        data = _data_of(rest.strip(b"\n")) if rest.strip() else None
        return [data] if data is not None else []


def payloads(segment: bytes) -> list[bytes]:
    """The data payload of each event in a segment of complete events."""
    if not segment:
        return []
    out = []
    for event in segment[:-2].split(b"\n\n"):
        data = _data_of(event)
        if data is not None:
            out.append(data)
    return out


def is_simple(segment: bytes) -> int:
    """The event count if every event in the segment is exactly one `data: ` line, else 0.

    With k inner boundaries (`\\n\\ndata: `) and a final blank line, single-line events
    account for exactly 2(k+1) newlines; any other line would add more.
    """
    if not (segment.startswith(b"data: ") and segment.endswith(b"\n\n")):
        return 0
    n = segment.count(b"\n\ndata: ") + 1
    return n if segment.count(b"\n") == 2 * n else 0


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
