from __future__ import annotations

from llm_proxy.formats.sse import SSEDecoder


def test_events_split_across_reads_are_reassembled() -> None:
    d = SSEDecoder()
    assert d.feed(b'data: {"a":') == []
    assert d.feed(b"1}\n\ndata: [DO") == [b'{"a":1}']
    assert d.feed(b"NE]\n\n") == [b"[DONE]"]


def test_crlf_comments_multiline_and_event_fields() -> None:
    d = SSEDecoder()
    out = d.feed(b": ping\r\n\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\nid: 3\n\n")
    assert out == [b"one\ntwo"]


def test_flush_returns_unterminated_last_event() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: tail") == []
    assert d.flush() == [b"tail"]
    assert d.flush() == []


def test_crlf_split_across_reads_is_not_a_blank_line() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\r") == []
    assert d.feed(b"\ndata: b\r\n\r\n") == [b"a\nb"]


def test_segment_returns_raw_complete_events_only() -> None:
    d = SSEDecoder()
    assert d.segment(b"data: 1\n\ndata: 2") == b"data: 1\n\n"
    assert d.segment(b"\n\n") == b"data: 2\n\n"


def test_is_simple_counts_single_line_data_events_only() -> None:
    from llm_proxy.formats.sse import is_simple

    assert is_simple(b"data: a\n\ndata: b\n\n") == 2
    assert is_simple(b"data: a\n\n") == 1
    assert is_simple(b"data: a\ndata: b\n\n") == 0  # multi-line data
    assert is_simple(b": ping\n\ndata: a\n\n") == 0  # comment
    assert is_simple(b"data: a\n\nevent: x\ndata: b\n\n") == 0
    assert is_simple(b"data: a\n\n\ndata: b\n\n") == 0  # stray newline
    assert is_simple(b"data: a") == 0
