"""ConcurrencyLimiter: slots are never lost, whatever lands in the same loop turn."""

from __future__ import annotations

import asyncio

import pytest

from llm_proxy.errors import ServiceUnavailableError
from llm_proxy.limits.concurrency import ConcurrencyLimiter


async def test_fast_path_and_queue_handover() -> None:
    lim = ConcurrencyLimiter(1, 10, 5.0)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    assert lim.in_flight == 1 and not waiter.done()
    lim.release()
    await waiter
    assert lim.in_flight == 1
    lim.release()
    assert lim.in_flight == 0


async def test_full_queue_and_timeout_are_503() -> None:
    lim = ConcurrencyLimiter(1, 1, 0.05)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailableError):
        await lim.acquire()  # queue full
    with pytest.raises(ServiceUnavailableError) as e:
        await waiter  # timed out
    assert e.value.code == "too_many_concurrent_requests"
    lim.release()
    assert lim.in_flight == 0


async def test_release_in_same_turn_as_timeout_loses_no_slot() -> None:
    lim = ConcurrencyLimiter(1, 10, 0.05)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    for _ in range(3):
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    deadline = min(h.when() for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]
    loop.call_at(deadline, lim.release)  # same instant as the queue timeout
    try:
        await waiter
        lim.release()  # it got the slot: give it back
    except ServiceUnavailableError:
        pass  # it timed out: the slot went back to the pool
    assert lim.in_flight == 0


async def test_cancel_in_same_turn_as_handover_passes_slot_on_and_propagates() -> None:
    lim = ConcurrencyLimiter(1, 10, 5.0)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    lim.release()
    waiter.cancel()  # client disconnect, same turn as the handover
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert lim.in_flight == 0


async def test_cancel_while_waiting_leaves_queue() -> None:
    lim = ConcurrencyLimiter(1, 10, 5.0)
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not lim._waiters
    lim.release()
    assert lim.in_flight == 0
