"""A client that goes away cancels the upstream call at once; streams are flushed as they arrive."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import RunningGateway
from tests.fakes.openai import FakeOpenAI

USER = [{"role": "user", "content": "one two three four five six seven eight"}]


def _wait_for(cond: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.02)
    return False


def test_stream_client_disconnect_cancels_upstream(
    client: openai.OpenAI, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="llm_proxy.requests")
    stream = client.chat.completions.create(
        model="gpt-test", messages=USER, stream=True, extra_body={"fake_delay": 0.3}
    )
    it = iter(stream)
    first = [next(it), next(it)]
    assert first[1].choices[0].delta.content == "fake:"
    t0 = time.monotonic()
    stream.close()
    assert _wait_for(lambda: fake.disconnects == ["fake-plain"]), fake.disconnects
    assert time.monotonic() - t0 < 1.0
    # The upstream stopped early: it did not get to send all 11 events.
    assert fake.chunks_sent and fake.chunks_sent[-1] < 6
    # The usage seen so far is kept for accounting (an estimate: the usage chunk never came).
    assert _wait_for(lambda: any(r.__dict__.get("disconnected") for r in caplog.records))
    rec = next(r for r in caplog.records if r.__dict__.get("disconnected"))
    assert rec.__dict__["status"] == 499
    assert rec.__dict__["usage"]["estimated"] is True
    assert 1 <= rec.__dict__["usage"]["completion_tokens"] <= fake.chunks_sent[-1]


def test_plain_client_disconnect_cancels_upstream(
    gateway: RunningGateway, fake: FakeOpenAI
) -> None:
    c = gateway.client(timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="slow-model", messages=USER, extra_body={"fake_delay": 5})
    assert _wait_for(lambda: fake.disconnects == ["fake-slow"], 2.0), fake.disconnects
    assert gateway.gw.limiter.in_flight == 0


def test_stream_chunks_are_flushed_as_they_arrive(client: openai.OpenAI) -> None:
    t0 = time.monotonic()
    arrivals: list[float] = []
    for c in client.chat.completions.create(
        model="gpt-test", messages=USER, stream=True, extra_body={"fake_delay": 0.15}
    ):
        if c.choices and c.choices[0].delta.content:
            arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 9
    # 11 events, 0.15 s apart: unbuffered relay means the first word long before the last.
    assert arrivals[0] < 0.5
    assert arrivals[-1] - arrivals[0] > 1.0


def test_mock_lorem_stream_disconnect_frees_slot(gateway: RunningGateway) -> None:
    c = gateway.client()
    stream = c.chat.completions.create(
        model="mock/lorem",
        messages=USER,
        stream=True,
        max_tokens=50,
        extra_body={"mock_delay_ms": 50},
    )
    it = iter(stream)
    next(it), next(it)
    assert gateway.gw.limiter.in_flight == 1
    stream.close()
    assert _wait_for(lambda: gateway.gw.limiter.in_flight == 0)
