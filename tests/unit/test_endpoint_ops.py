"""endpoints/op.py: the passthrough and translated wire formats, without a network."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_proxy import errors as E
from llm_proxy.endpoints.op import Outbound, passthrough, translated
from llm_proxy.formats import FORMATS, openai_chat


def _usage(doc: dict[str, Any]) -> dict[str, Any] | None:
    return doc.get("usage")


def test_passthrough_sends_the_bytes_as_they_came_unless_the_model_differs() -> None:
    raw = b'{"model": "pub",   "input": "x"}'
    wire = passthrough(raw, orjson.loads(raw), openai_chat.from_upstream_error, _usage)
    assert wire.to_upstream({}, "pub", {}, False) == raw
    assert orjson.loads(wire.to_upstream({}, "up-1", {}, False)) == {"model": "up-1", "input": "x"}


def test_passthrough_answers_say_the_public_model_compact_or_spaced() -> None:
    wire = passthrough(b"{}", {}, openai_chat.from_upstream_error, _usage)
    body, usage = wire.from_upstream(b'{"model": "up-1", "usage": {"total_tokens": 3}}', "pub", 0)
    assert orjson.loads(body)["model"] == "pub" and usage == {"total_tokens": 3}
    st = wire.new_stream_state("pub", False, 0)
    seg = b'data: {"model": "up-1", "text": "a \\"model\\": \\"kept\\""}\n\ndata: {"model":"up-1"}\n\n'
    out = wire.from_upstream_events(seg, st)
    assert out == (
        b'data: {"model":"pub", "text": "a \\"model\\": \\"kept\\""}\n\ndata: {"model":"pub"}\n\n'
    )


class _Echo:
    """An outbound translator that writes each chunk's text as one event."""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        text = "".join(c["delta"].get("content") or "" for c in chunk.get("choices") or [])
        return f"event: text\ndata: {text}\n\n".encode() if text else b""

    def finish(self) -> bytes:
        return b"event: end\ndata: {}\n\n"

    def error_event(self, err: E.GatewayError) -> bytes:
        return b"event: error\ndata: {}\n\n"


def _translated() -> tuple[Any, Any]:
    out = Outbound(lambda doc: {"wrapped": doc["id"]}, _Echo, lambda b: b"event: text" in b)
    wire = translated(FORMATS["openai"], out, (b"sk-secret-upstream-key",))
    return wire, wire.new_stream_state("pub", False, 0)


def test_a_translated_stream_raises_an_upstream_error_event_instead_of_rendering_it() -> None:
    wire, st = _translated()
    ok = b'data: {"id":"c1","object":"chat.completion.chunk","model":"pub","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    assert wire.from_upstream_events(ok, st) == b"event: text\ndata: hi\n\n"
    bad = b'data: {"error":{"message":"boom sk-secret-upstream-key","type":"service_unavailable_error"}}\n\n'
    with pytest.raises(E.GatewayError) as info:
        wire.from_upstream_events(bad, st)
    assert info.value.status in (502, 503)
    assert "sk-secret-upstream-key" not in info.value.message


def test_a_translated_answer_the_translator_cannot_read_is_a_502() -> None:
    out = Outbound(lambda doc: {"n": int(doc["choices"][0]["message"]["content"])}, _Echo, bool)
    wire = translated(FORMATS["openai"], out)
    doc = {"id": "c", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "not a number"}}]}  # fmt: skip
    with pytest.raises(E.UpstreamError):
        wire.from_upstream(orjson.dumps(doc), "m", 0)
