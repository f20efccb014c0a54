"""1,000 simultaneous connections: every answer is a correct 200 or a JSON 503 from the
concurrency cap (never a connection error or a 500), the cap holds, and no slot leaks."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp

from tests.conftest import MASTER_KEY, GatewayFactory, RunningGateway, default_config
from tests.fakes.openai import FakeOpenAI

N = 1000
TOKENS = 5
EXPECTED = "Lorem ipsum dolor sit amet,"  # mock/lorem's first five tokens
HEADERS = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}


def _body(i: int, delay_ms: int, stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "mock/lorem",
            "messages": [{"role": "user", "content": f"request {i}"}],
            "stream": stream,
            "mock_tokens": TOKENS,
            "mock_delay_ms": delay_ms,
        }
    ).encode()


def _stream_text(raw: bytes) -> str:
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events[-1] == b"data: [DONE]", events[-3:]
    text, finish = [], None
    for ev in events[:-1]:
        assert ev.startswith(b"data: "), ev
        doc = json.loads(ev[6:])
        assert "error" not in doc, doc
        assert doc["object"] == "chat.completion.chunk" and doc["model"] == "mock/lorem"
        for choice in doc["choices"]:
            text.append(choice["delta"].get("content") or "")
            finish = choice["finish_reason"] or finish
    assert finish == "stop"
    return "".join(text)


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool) -> str:
    """'200' or '503' after checking the content; anything else is returned for the report."""
    async with session.post(f"{url}/v1/chat/completions", data=body, headers=HEADERS) as r:
        raw = await r.read()
        rid = r.headers.get("x-request-id")
        if r.status == 503:
            doc = json.loads(raw)
            err = doc["error"]
            assert r.content_type == "application/json", r.headers
            assert err["type"] == "service_unavailable_error", err
            assert err["code"] == "too_many_concurrent_requests", err
            assert isinstance(err["message"], str) and "param" in err
            assert r.headers.get("retry-after") == "1"
            assert rid
            return "503"
        if r.status != 200:
            return f"{r.status}: {raw[:200]!r}"
        assert rid
        if stream:
            assert r.content_type == "text/event-stream", r.headers
            assert _stream_text(raw) == EXPECTED
        else:
            doc = json.loads(raw)
            assert doc["choices"][0]["message"]["content"] == EXPECTED, doc
            assert doc["usage"]["completion_tokens"] == TOKENS
        return "200"


async def _fire(
    gw: RunningGateway, delay_ms: int, streams: list[bool]
) -> tuple[Counter[str], int, float]:
    """Fire len(streams) requests at once; (outcomes, max in-flight seen, seconds)."""
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, gw.gw.limiter.in_flight)
            await asyncio.sleep(0.005)

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=25)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(
            *(_one(session, gw.url, _body(i, delay_ms, s), s) for i, s in enumerate(streams)),
            return_exceptions=True,
        )
        done.set()
        await watcher
    elapsed = time.monotonic() - t0
    outcomes = Counter(r if isinstance(r, str) else f"{type(r).__name__}: {r}" for r in results)
    return outcomes, peak, elapsed


async def _settled(gw: RunningGateway) -> None:
    """/health is fine and every concurrency slot came back (polled: release follows the reply)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gw.url}/health") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "healthy"
        deadline = time.monotonic() + 3
        while True:
            async with session.get(f"{gw.url}/healthz") as r:
                conc = (await r.json())["concurrency"]
            if conc["in_flight"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert conc["in_flight"] == 0, conc
        # And it still serves normally.
        body = _body(0, 0, False)
        async with session.post(f"{gw.url}/v1/chat/completions", data=body, headers=HEADERS) as r:
            assert r.status == 200
            assert (await r.json())["choices"][0]["message"]["content"] == EXPECTED


async def test_1000_concurrent_with_caps(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    extra = "max_concurrent_requests: 100\nmax_queued_requests: 200\nqueue_timeout: 2\n"
    gw = gateway_factory(default_config(fake_upstream[1], extra), backlog=4096)
    # Streams hold their slot for ~6 x 60 ms; plain calls are instant.
    outcomes, peak, elapsed = await _fire(gw, 60, [i % 4 != 0 for i in range(N)])
    assert set(outcomes) <= {"200", "503"}, outcomes
    assert outcomes["200"] >= 100, outcomes
    assert outcomes["503"] > 0, outcomes  # 1,000 at once cannot all fit in 100 + 200
    assert peak <= 100, peak
    assert elapsed < 20, elapsed
    assert gw.gw.limiter.in_flight <= 100
    await _settled(gw)


async def test_1000_concurrent_default_config_all_succeed(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    gw = gateway_factory(default_config(fake_upstream[1]), backlog=4096)
    outcomes, _, elapsed = await _fire(gw, 10, [i % 2 == 0 for i in range(N)])
    assert outcomes == Counter({"200": N}), outcomes
    assert elapsed < 20, elapsed
    await _settled(gw)


async def test_clients_abandoning_queued_and_running_requests_free_their_slots(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    """300 streams against 50 slots, all abandoned after 0.3 s: no slot may leak."""
    extra = "max_concurrent_requests: 50\nmax_queued_requests: 500\nqueue_timeout: 2\n"
    gw = gateway_factory(default_config(fake_upstream[1], extra), backlog=4096)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def go(i: int) -> Any:
            body = _body(i, 200, True)
            async with session.post(
                f"{gw.url}/v1/chat/completions", data=body, headers=HEADERS
            ) as r:
                return await r.read()

        tasks = [asyncio.create_task(go(i)) for i in range(300)]
        deadline = time.monotonic() + 10  # a slow CI box needs longer to open 300 connections
        while gw.gw.limiter.in_flight < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert gw.gw.limiter.in_flight == 50
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    deadline = time.monotonic() + 5  # queued ones leave at the latest at queue_timeout
    while gw.gw.limiter.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert gw.gw.limiter.in_flight == 0
    await _settled(gw)


async def test_client_leaving_the_queue_frees_its_place(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    """1 slot, 1 queue place: a queued client that hangs up must not keep the place until
    queue_timeout, or a ghost turns the next real client away with a 503."""
    extra = "max_concurrent_requests: 1\nmax_queued_requests: 1\nqueue_timeout: 10\n"
    gw = gateway_factory(default_config(fake_upstream[1], extra))
    url = f"{gw.url}/v1/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def post(delay_ms: int, stream: bool) -> tuple[int, bytes]:
            async with session.post(url, data=_body(0, delay_ms, stream), headers=HEADERS) as r:
                return r.status, await r.read()

        holder = asyncio.create_task(post(300, True))  # ~1.8 s on the only slot
        await asyncio.sleep(0.2)
        assert gw.gw.limiter.in_flight == 1
        ghost = asyncio.create_task(post(0, False))
        await asyncio.sleep(0.2)
        ghost.cancel()  # hangs up while queued
        await asyncio.gather(ghost, return_exceptions=True)
        await asyncio.sleep(0.2)
        status, raw = await post(0, False)  # must queue behind the holder, not get a 503
        assert status == 200, raw
        assert json.loads(raw)["choices"][0]["message"]["content"] == EXPECTED
        status, raw = await holder
        assert status == 200 and _stream_text(raw) == EXPECTED
    await _settled(gw)
