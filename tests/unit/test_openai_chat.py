from __future__ import annotations

import orjson
import pytest

from llm_proxy import errors as E
from llm_proxy.formats import openai_chat as oc


def _state(**kw: object) -> oc.StreamState:
    base: dict[str, object] = {"public_model": "pub", "client_wants_usage": False}
    base.update(kw)
    return oc.StreamState(**base)  # type: ignore[arg-type]


def test_to_upstream_sets_model_fills_params_and_asks_stream_usage() -> None:
    body = {
        "model": "pub",
        "messages": [],
        "temperature": 1,
        "stream": True,
        "stream_options": {"foo": 1},
    }
    out = orjson.loads(oc.to_upstream(body, "up", {"temperature": 0.2, "top_p": 0.5}, True))
    assert out == {
        "model": "up",
        "messages": [],
        "temperature": 1,
        "top_p": 0.5,
        "stream": True,
        "stream_options": {"foo": 1, "include_usage": True},
    }
    assert body["model"] == "pub"  # the client's dict is not mutated


def test_from_upstream_rewrites_model_and_returns_usage() -> None:
    raw = b'{"id":"x","model":"up","choices":[],"usage":{"prompt_tokens":1}}'
    out, usage = oc.from_upstream(raw, "pub")
    assert orjson.loads(out) == {
        "id": "x",
        "model": "pub",
        "choices": [],
        "usage": {"prompt_tokens": 1},
    }
    assert usage == {"prompt_tokens": 1}
    same, _ = oc.from_upstream(b'{"model":"pub"}', "pub")
    assert same == b'{"model":"pub"}'


def test_chunk_model_rewrite_bytes_and_parsed_paths_agree() -> None:
    compact = b'{"id":"c","model":"up","choices":[{"index":0,"delta":{"content":"\\"model\\":\\"up\\""}}]}'
    spaced = b'{"id": "c", "model": "up", "choices": [{"index": 0, "delta": {"content": "hi"}}]}'
    a = oc.from_upstream_chunk(compact, _state())
    b = oc.from_upstream_chunk(spaced, _state())
    assert a is not None and b is not None
    doc_a = orjson.loads(a)
    assert doc_a["model"] == "pub"
    assert doc_a["choices"][0]["delta"]["content"] == '"model":"up"'  # content untouched
    assert orjson.loads(b)["model"] == "pub"
    assert oc.frame([a, b]) == b"data: " + a + b"\n\ndata: " + b + b"\n\n"


def test_usage_chunk_dropped_unless_asked_and_usage_kept_in_state() -> None:
    chunk = b'{"model":"up","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}'
    st = _state()
    assert oc.from_upstream_chunk(chunk, st) is None
    assert st.usage == {"prompt_tokens": 2, "completion_tokens": 3}
    st2 = _state(client_wants_usage=True)
    out = oc.from_upstream_chunk(chunk, st2)
    assert out is not None and orjson.loads(out)["usage"]["completion_tokens"] == 3


def test_null_usage_is_not_usage_and_done_and_finish_tracked() -> None:
    st = _state(public_model="pub")
    data = b'{"model":"pub","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}'
    assert oc.from_upstream_chunk(data, st) is data
    assert st.usage is None and st.finished()
    assert oc.from_upstream_chunk(b"[DONE]", st) == b"[DONE]" and st.done


def test_error_mapping_by_status() -> None:
    body = b'{"error":{"message":"bad","type":"invalid_request_error","param":"x","code":"c"}}'
    e400 = oc.from_upstream_error(400, body, {})
    assert (type(e400), e400.status, e400.param, e400.code) == (
        E.InvalidRequestError,
        400,
        "x",
        "c",
    )
    e429 = oc.from_upstream_error(429, body, {"retry-after": "7"})
    assert (e429.status, e429.headers) == (429, {"Retry-After": "7"})
    assert oc.from_upstream_error(500, body, {}).status == 502
    assert oc.from_upstream_error(503, body, {}).status == 503
    assert oc.from_upstream_error(504, b"", {}).status == 504
    e401 = oc.from_upstream_error(401, body, {})
    assert (e401.status, e401.code) == (502, "upstream_auth_failed")
    assert oc.from_upstream_error(401, body, {}, client_key_forwarded=True).status == 401
    assert oc.from_upstream_error(418, b"teapot", {}, exact_status=True).status == 418


def test_context_length_recognised_and_keys_redacted() -> None:
    ctx = oc.from_upstream_error(
        400, b'{"error":{"message":"This model\'s maximum context length is 8"}}', {}
    )
    assert isinstance(ctx, E.ContextLengthExceededError)
    leak = oc.from_upstream_error(400, b'{"error":{"message":"bad key sk-abcdef123456789"}}', {})
    assert "abcdef123456789" not in leak.message and "sk-***" in leak.message
    html = oc.from_upstream_error(502, b"<html>Bad Gateway</html>", {})
    assert html.message == "<html>Bad Gateway</html>"


def _slow(segment: bytes, st: oc.StreamState) -> bytes:
    from llm_proxy.formats.sse import payloads

    kept = [p for d in payloads(segment) if (p := oc.from_upstream_chunk(d, st)) is not None]
    return oc.frame(kept) if kept else b""


_CHUNK = (
    b'{"id":"c","model":"up","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":%s}]%s}'
)


def _ev(text: str, finish: str = "null", usage: bytes = b"") -> bytes:
    return b"data: " + _CHUNK % (text.encode(), finish.encode(), usage) + b"\n\n"


SEGMENTS = {
    "simple": _ev("a") + _ev("b") + _ev("", '"stop"'),
    "usage_null": _ev("a", usage=b',"usage":null') + _ev("b", usage=b',"usage":null'),
    "usage_chunk": _ev("a")
    + b'data: {"model":"up","choices":[],"usage":{"prompt_tokens":1}}\n\n'
    + b"data: [DONE]\n\n",
    "spaced": b'data: {"id": "c", "model": "up", "choices": []}\n\n' + _ev("x"),
    "comment": b": ping\n\n" + _ev("a"),
    "multiline": b'data: {"model":"up",\ndata: "choices":[]}\n\n',
    "model_in_content": _ev('\\"model\\":\\"up\\"'),
    "error_event": b'data: {"error":{"message":"boom","type":"server_error"}}\n\n',
}


@pytest.mark.parametrize("name", sorted(SEGMENTS))
@pytest.mark.parametrize("rewrite", [True, False])
@pytest.mark.parametrize("wants_usage", [True, False])
def test_events_fast_path_matches_event_by_event(
    name: str, rewrite: bool, wants_usage: bool
) -> None:
    seg = SEGMENTS[name]
    kw: dict[str, object] = {"client_wants_usage": wants_usage}
    if not rewrite:
        kw["public_model"] = "up"
    fast_state, slow_state = _state(**kw), _state(**kw)
    fast = oc.from_upstream_events(seg, fast_state)
    slow = _slow(seg, slow_state)

    def docs(b: bytes) -> list[object]:
        from llm_proxy.formats.sse import payloads

        return [p if p == b"[DONE]" else orjson.loads(p) for p in payloads(b)]

    assert docs(fast) == docs(slow)
    assert (fast_state.usage, fast_state.done, fast_state.chunks) == (
        slow_state.usage,
        slow_state.done,
        slow_state.chunks,
    )
    assert fast_state.finished() == slow_state.finished()


def test_dated_upstream_model_is_rewritten_on_the_fast_path() -> None:
    st = _state(public_model="gpt-4o")
    seg = (
        b'data: {"id":"c","model":"gpt-4o-2024-08-06","choices":[]}\n\n'
        b'data: {"id":"c","model":"gpt-4o-2024-08-06","choices":[]}\n\n'
    )
    out = oc.from_upstream_events(seg, st)
    assert out == seg.replace(b"gpt-4o-2024-08-06", b"gpt-4o")
    assert st.upstream_key == b'"model":"gpt-4o-2024-08-06"' and st.chunks == 2


def test_upstream_error_masks_the_credentials_sent() -> None:
    body = b'{"error":{"message":"key my-very-secret-key-1234 is revoked (Bearer my-very-secret-key-1234)"}}'
    err = oc.from_upstream_error(404, body, {}, secrets=(b"my-very-secret-key-1234",))
    assert "my-very-secret" not in err.message
    gsk = oc.from_upstream_error(400, b'{"error":{"message":"bad gsk_SuperSecret123456"}}', {})
    assert "SuperSecret" not in gsk.message
