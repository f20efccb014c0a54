"""The acceptance runs: chaos (one deployment failing 30% of calls at random) and hedging."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from tests.conftest import MASTER_KEY
from tests.fakes.openai import FakeOpenAI

MAX_ATTEMPTS = 3


async def test_chaos_every_request_succeeds_within_the_attempt_bound(
    make: Any, fake: FakeOpenAI
) -> None:
    # a: 30% of calls fail at random (500, 502, 503, 429, hangs past the 0.5 s first-byte
    # timeout, resets before the first byte of content); b is healthy.
    gw = make(
        "  - name: m\n    deployments:\n"
        "      - {provider: a, model: fake-chaos}\n"
        "      - {provider: b, model: fake-plain}\n",
        f"max_attempts: {MAX_ATTEMPTS}\nnum_retries: 1\nretry_backoff: 0.01\n"
        "cooldown_time: 0.2\ncircuit_breaker_timeout: 0.5\n",
    )
    client = openai.AsyncOpenAI(
        base_url=f"{gw.url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20
    )
    gate = asyncio.Semaphore(24)

    async def one(i: int) -> int:
        text = f"request {i}"
        msgs = [{"role": "user", "content": text}]
        async with gate:
            if i % 2:
                raw = await client.chat.completions.with_raw_response.create(
                    model="m",
                    messages=msgs,  # type: ignore[arg-type]
                )
                assert raw.parse().choices[0].message.content == f"fake: {text}"
            else:
                raw = await client.chat.completions.with_raw_response.create(
                    model="m",
                    messages=msgs,  # type: ignore[arg-type]
                    stream=True,
                )
                got = "".join(
                    [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
                )
                assert got == f"fake: {text}"
        attempts = int(raw.headers["x-llm-proxy-attempts"])
        assert 1 <= attempts <= MAX_ATTEMPTS
        return attempts

    attempts = await asyncio.gather(*(one(i) for i in range(1000)))
    await client.close()
    sent = sum(1 for r in fake.requests if r.body)
    failed = [o for o in fake.outcomes if o != "fake-plain"]
    assert len(attempts) == 1000
    assert sum(attempts) == sent  # every upstream call is accounted for in a header
    calls_to_a = fake.count("fake-chaos")
    assert len(failed) > 50 and 0.2 < len(failed) / calls_to_a < 0.4  # the chaos happened...
    assert {o.split("-")[1] for o in failed} >= {"error", "hang", "reset"}
    assert sent == 1000 + len(failed)  # ...and each failure cost exactly one more attempt
    assert max(attempts) >= 2


def _ttft_stream(client: openai.OpenAI, model: str) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "quick"}], stream=True
    )
    first = None
    text = ""
    for c in raw.parse():
        piece = c.choices[0].delta.content if c.choices else None
        if piece and first is None:
            first = time.perf_counter() - t0
        text += piece or ""
    assert first is not None
    return first, text, raw.headers.get("x-llm-proxy-hedged", "false")


def test_hedging_cuts_the_first_token_tail(make: Any, fake: FakeOpenAI) -> None:
    # a: first token after 10 ms, but after 1 s on 10% of calls; b: always after 20 ms.
    gw = make(
        "  - name: m\n    hedge: {min_samples: 10}\n    deployments:\n"
        "      - {provider: a, model: fake-jitter}\n"
        "      - {provider: b, model: fake-first-20}\n"
    )
    fake.slow_ratio, fake.slow_delay, fake.fast_delay = 0.1, 1.0, 0.01
    client = gw.client()
    for _ in range(30):  # warm-up: the p95 needs observations
        _ttft_stream(client, "m")
    fake.outcomes.clear()
    fake.disconnects.clear()
    runs = [_ttft_stream(client, "m") for _ in range(200)]
    assert all(text == "fake: quick" for _, text, _ in runs)
    ttfts = sorted(t for t, _, _ in runs)
    p50, p99 = ttfts[len(ttfts) // 2], ttfts[int(len(ttfts) * 0.99)]
    slow = fake.outcomes.count("slow")
    assert slow >= 10  # the slow mode happened about 20 times...
    assert p99 < 0.25, (p50, p99)  # ...yet p99 is near the fast path, far from 1 s
    hedged = sum(1 for _, _, h in runs if h == "true")
    assert hedged >= slow  # every slow first token was hedged
    # The losing (slow) upstream calls were cancelled: their connections closed mid-wait.
    time.sleep(0.2)
    assert len(fake.disconnects) >= slow
    _, doc = gw.get_json("/admin/routes/m")
    assert 0 < doc["hedge_delay_ms"] < 100


def test_hedging_plain_calls_with_a_fixed_delay(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        "  - name: m\n    hedge: {delay: 0.05}\n    deployments:\n"
        "      - {provider: a, model: fake-first-1500}\n"
        "      - {provider: b, model: fake-plain}\n"
    )
    t0 = time.monotonic()
    raw = gw.client().chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    assert time.monotonic() - t0 < 0.5
    assert raw.parse().choices[0].message.content == "fake: hi"
    assert raw.headers["x-llm-proxy-deployment"] == "b/fake-plain"
    assert raw.headers["x-llm-proxy-hedged"] == "true"
    assert raw.headers["x-llm-proxy-attempts"] == "2"
    time.sleep(0.2)
    assert fake.disconnects == ["fake-plain"]  # a's call (played as fake-plain) was cut off
