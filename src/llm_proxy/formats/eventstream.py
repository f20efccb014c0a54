"""AWS event-stream framing (application/vnd.amazon.eventstream): bytes in, whole messages out.

Each message: total length (u32), headers length (u32), CRC32 of those 8 bytes (u32), headers,
payload, CRC32 of everything before it (u32); all big-endian, 16 bytes of overhead. A header is
name length (u8), name, value type (u8), value. Bedrock's ConverseStream uses only string headers
(type 7: u16 length + UTF-8), but every type the encoding defines is skipped correctly.
"""

from __future__ import annotations

import struct
import zlib

_PRELUDE = 12  # total length, headers length, prelude CRC
_OVERHEAD = 16  # the prelude and the message CRC
MAX_MESSAGE = 16 * 1024 * 1024  # the encoding's limit on one message
# Fixed value sizes by header type: 0/1 bool true/false, 2 byte, 3 short, 4 int, 5 long,
# 8 timestamp, 9 uuid. Types 6 (bytes) and 7 (string) carry a u16 length instead.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_STRING = 7
_BYTES = 6


class EventStreamDecoder:
    """Incremental decoder with SSEDecoder's interface: segment() returns whole raw messages.

    It never raises: when a prelude is impossible (a length out of range or a bad prelude CRC)
    the rest of the buffer is handed on as it is, so that `messages()` reports the corruption
    where the translator can turn it into an error event.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def segment(self, chunk: bytes) -> bytes:
        """The complete messages received so far, concatenated; a partial message waits."""
        buf = self._buf + chunk if self._buf else chunk
        pos, size = 0, len(buf)
        while size - pos >= _PRELUDE:
            total, headers_len, crc = struct.unpack_from(">III", buf, pos)
            if not _sane(total, headers_len) or zlib.crc32(buf[pos : pos + 8]) != crc:
                self._buf = b""
                return buf  # corrupt: let messages() say so
            if size - pos < total:
                break
            pos += total
        self._buf = buf[pos:]
        return buf[:pos]

    def flush(self) -> list[bytes]:
        """A partial binary message at EOF is dropped: there is nothing to salvage from it."""
        self._buf = b""
        return []


def _sane(total: int, headers_len: int) -> bool:
    return _OVERHEAD <= total <= MAX_MESSAGE and headers_len <= total - _OVERHEAD


def messages(segment: bytes) -> list[tuple[dict[str, str], bytes]]:
    """(string headers, payload) of each message in a segment of whole messages.

    Raises ValueError on a bad CRC, an impossible length or a truncated message.
    """
    out: list[tuple[dict[str, str], bytes]] = []
    view = memoryview(segment)
    pos, size = 0, len(segment)
    while pos < size:
        if size - pos < _PRELUDE:
            raise ValueError("event stream: truncated prelude")
        total, headers_len, prelude_crc = struct.unpack_from(">III", segment, pos)
        if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
            raise ValueError("event stream: prelude CRC mismatch")
        if not _sane(total, headers_len) or size - pos < total:
            raise ValueError("event stream: bad message length")
        end = pos + total
        (message_crc,) = struct.unpack_from(">I", segment, end - 4)
        if zlib.crc32(view[pos : end - 4]) != message_crc:
            raise ValueError("event stream: message CRC mismatch")
        start = pos + _PRELUDE
        headers = _headers(segment, start, start + headers_len)
        out.append((headers, bytes(view[start + headers_len : end - 4])))
        pos = end
    return out


def _headers(buf: bytes, pos: int, end: int) -> dict[str, str]:
    """The string-valued headers between pos and end; other types are skipped."""
    out: dict[str, str] = {}
    try:
        while pos < end:
            name_len = buf[pos]
            name = buf[pos + 1 : pos + 1 + name_len].decode("utf-8")
            pos += 1 + name_len
            kind = buf[pos]
            pos += 1
            if kind in (_STRING, _BYTES):
                (n,) = struct.unpack_from(">H", buf, pos)
                value = buf[pos + 2 : pos + 2 + n]
                pos += 2 + n
                if kind == _STRING:
                    out[name] = value.decode("utf-8")
            elif kind in _FIXED:
                pos += _FIXED[kind]
            else:
                raise ValueError(f"event stream: unknown header type {kind}")
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ValueError("event stream: malformed headers") from e
    if pos != end:
        raise ValueError("event stream: headers overrun their length")
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers (for fakes and tests)."""
    parts = []
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        parts.append(struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v)
    head = b"".join(parts)
    prelude = struct.pack(">II", _OVERHEAD + len(head) + len(payload), len(head))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return body + struct.pack(">I", zlib.crc32(body))
