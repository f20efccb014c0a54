"""AWS event-stream framing: encode_message / messages round trips and the incremental decoder.

Sources (framing, header types, CRCs, known vectors):
  Event stream encoding (prelude, headers, CRC32)  https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html
  Same, Transcribe                                 https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html
  Header value types 0-9                           https://hexdocs.pm/aws_gleam_runtime/aws/internal/codec/event_stream.html
  Known encoded vectors ({"foo": "bar"})           https://hex.pm/packages/event_stream/0.1.0/files/lib/event_stream.ex
"""

from __future__ import annotations

import struct
import zlib

import pytest

from llm_proxy.formats.eventstream import EventStreamDecoder, encode_message, messages

FOO = b'{"foo": "bar"}'


def _frame(raw_headers: bytes, payload: bytes) -> bytes:
    """A message from pre-encoded headers, for header types encode_message does not write."""
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def test_known_vectors() -> None:
    assert list(encode_message({}, FOO)) == [
        0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138, 123, 34, 102, 111, 111, 34, 58, 32, 34, 98,
        97, 114, 34, 125, 174, 114, 88, 228,
    ]  # fmt: skip
    with_type = encode_message({"content-type": "application/json"}, FOO)
    assert list(with_type[:12]) == [0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70]
    assert list(with_type[-4:]) == [111, 162, 191, 59]


def test_round_trip() -> None:
    headers = {":event-type": "contentBlockDelta", ":content-type": "application/json",
               ":message-type": "event"}  # fmt: skip
    seg = encode_message(headers, b'{"a":1}') + encode_message({}, b"") + encode_message({}, FOO)
    assert messages(seg) == [(headers, b'{"a":1}'), ({}, b""), ({}, FOO)]
    assert messages(b"") == []


def test_every_header_type_is_skipped() -> None:
    def h(name: bytes, kind: int, value: bytes) -> bytes:
        return bytes([len(name)]) + name + bytes([kind]) + value

    raw = b"".join(
        [
            h(b"t", 0, b""), h(b"f", 1, b""), h(b"b", 2, b"\x01"), h(b"s", 3, b"\x00\x02"),
            h(b"i", 4, b"\x00" * 4), h(b"l", 5, b"\x00" * 8), h(b"y", 6, b"\x00\x03abc"),
            h(b":event-type", 7, b"\x00\x08metadata"), h(b"ts", 8, b"\x00" * 8),
            h(b"u", 9, b"\x11" * 16),
        ]
    )  # fmt: skip
    assert messages(_frame(raw, b"{}")) == [({":event-type": "metadata"}, b"{}")]
    with pytest.raises(ValueError, match="header type"):
        messages(_frame(h(b"x", 12, b""), b"{}"))
    with pytest.raises(ValueError, match="malformed"):
        messages(_frame(h(b"x", 7, b"\x00\x09short"), b""))


def test_crc_failures() -> None:
    good = encode_message({":event-type": "messageStop"}, b'{"stopReason":"end_turn"}')
    payload_flip = bytearray(good)
    payload_flip[-6] ^= 1
    with pytest.raises(ValueError, match="message CRC"):
        messages(bytes(payload_flip))
    prelude_flip = bytearray(good)
    prelude_flip[8] ^= 1
    with pytest.raises(ValueError, match="prelude CRC"):
        messages(bytes(prelude_flip))
    with pytest.raises(ValueError):
        messages(good[:-1])  # truncated


def test_decoder_splits_and_joins() -> None:
    msgs = [encode_message({":event-type": f"e{i}"}, b'{"i":%d}' % i) for i in range(3)]
    wire = b"".join(msgs)
    for size in (1, 5, 13, 40, len(wire)):
        dec = EventStreamDecoder()
        got = b"".join(dec.segment(wire[i : i + size]) for i in range(0, len(wire), size))
        assert got == wire
        assert dec.flush() == []
    dec = EventStreamDecoder()
    assert dec.segment(wire[:5]) == b""
    assert dec.segment(wire[5 : len(msgs[0]) + 3]) == msgs[0]
    assert dec.segment(wire[len(msgs[0]) + 3 :]) == msgs[1] + msgs[2]
    dec.segment(msgs[0][:-2])
    assert dec.flush() == []  # a partial message is dropped
    assert dec.segment(msgs[1]) == msgs[1]


def test_decoder_hands_on_corruption() -> None:
    bad = bytearray(encode_message({}, FOO))
    bad[1] = 0xFF  # an impossible total length, caught by the prelude CRC
    dec = EventStreamDecoder()
    seg = dec.segment(bytes(bad))
    assert seg == bytes(bad)
    with pytest.raises(ValueError):
        messages(seg)
