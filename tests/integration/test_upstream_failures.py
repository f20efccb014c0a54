"""Upstreams that misbehave mid-stream: the client always gets an honest ending, never a hang."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import RunningGateway
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "one two three"}]


def _collect(client: openai.OpenAI, model: str, **kw: object) -> list[str]:
    got: list[str] = []
    for c in client.chat.completions.create(model=model, messages=USER, stream=True, **kw):  # type: ignore[call-overload]
        if c.choices:
            got.append(c.choices[0].delta.content or "")
    return got


def test_stalled_stream_ends_with_timeout_error_event(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    t0 = time.monotonic()
    got: list[str] = []
    with pytest.raises(openai.APIError) as exc:
        for c in client.chat.completions.create(model="stall-model", messages=USER, stream=True):
            got.append(c.choices[0].delta.content or "")
    assert "timed out mid-stream" in exc.value.message
    assert got == ["", "fake:"]
    assert 2.5 < time.monotonic() - t0 < 8  # first_byte (read) timeout is 3 s in the test config
    deadline = time.monotonic() + 3
    while "fake-stall" not in fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "fake-stall" in fake.disconnects  # the gateway let go of the upstream


def test_upstream_connection_drop_mid_stream_is_an_error_event(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as exc:
        _collect(client, "reset-model")
    assert "upstream stream failed" in exc.value.message.lower()


def test_body_ending_mid_event_is_reported_as_truncated(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as exc:
        _collect(client, "partial-tail-model")
    assert "ended before the response was complete" in exc.value.message


def test_complete_stream_without_done_gets_done(gateway: RunningGateway) -> None:
    import http.client
    import json

    from tests.conftest import MASTER_KEY

    conn = http.client.HTTPConnection("127.0.0.1", gateway.server.port, timeout=10)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(
            {
                "model": "nodone-model",
                "messages": USER,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ),
        {"Authorization": f"Bearer {MASTER_KEY}"},
    )
    raw = conn.getresponse().read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert b'"usage":{' in events[-2] and b'"finish_reason":"stop"' in events[-3]
    assert b'"model":"nodone-model"' in events[-2]


def test_upstream_that_does_not_stream_is_502_before_any_byte(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        _collect(client, "notsse-model")
    assert exc.value.status_code == 502
    assert "did not stream" in exc.value.message
