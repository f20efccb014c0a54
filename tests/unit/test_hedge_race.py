"""routing/hedge.race: who wins, and that nothing ready is ever dropped without being closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llm_proxy.routing.hedge import race


class Boom(Exception):
    pass


def _never_fatal(exc: BaseException) -> bool:
    return False


def _always_fatal(exc: BaseException) -> bool:
    return True


async def _after(seconds: float, value: Any = None, exc: BaseException | None = None) -> Any:
    await asyncio.sleep(seconds)
    if exc is not None:
        raise exc
    return value


async def test_primary_answers_before_the_delay_no_backup() -> None:
    started: list[str] = []

    async def backup() -> str:
        started.append("backup")
        return "b"

    lost: list[Any] = []
    got = await race(lambda: _after(0.01, "a"), backup, 0.2, lost.append, _never_fatal)
    assert got == ("a", [], False) and started == [] and lost == []


async def test_slow_primary_is_hedged_and_cancelled() -> None:
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "a"

    lost: list[Any] = []
    got = await race(slow, lambda: _after(0.01, "b"), 0.05, lost.append, _never_fatal)
    assert got == ("b", [], True)
    await asyncio.wait_for(cancelled.wait(), 1)
    assert lost == []


async def test_primary_failing_early_returns_to_the_caller() -> None:
    err = Boom("x")
    got = await race(
        lambda: _after(0.01, exc=err), lambda: _after(0, "b"), 0.5, list().append, _never_fatal
    )
    assert got == (None, [err], False)


async def test_a_failure_waits_for_the_other_side() -> None:
    err = Boom("x")
    got = await race(
        lambda: _after(0.1, exc=err), lambda: _after(0.2, "b"), 0.05, list().append, _never_fatal
    )
    assert got == ("b", [err], True)


async def test_fatal_failure_and_ready_answer_in_one_batch_keeps_the_answer() -> None:
    # Both finish in the same loop turn: the answer wins, nothing is dropped.
    gate = asyncio.Event()

    async def primary() -> str:
        await gate.wait()
        return "a"

    async def backup() -> str:
        gate.set()
        raise Boom("refused")

    lost: list[Any] = []
    winner, errors, hedged = await race(primary, backup, 0.01, lost.append, _always_fatal)
    assert (winner, hedged, lost) == ("a", True, [])
    assert [type(e) for e in errors] == [Boom]


async def test_a_second_ready_answer_is_handed_to_lost() -> None:
    gate = asyncio.Event()

    async def primary() -> str:
        await gate.wait()
        return "a"

    async def backup() -> str:
        gate.set()
        return "b"

    lost: list[Any] = []
    winner, _, _ = await race(primary, backup, 0.01, lost.append, _never_fatal)
    assert sorted([winner, *lost]) == ["a", "b"] and len(lost) == 1


async def test_cancelling_the_race_closes_whatever_finished() -> None:
    lost: list[Any] = []
    release = asyncio.Event()

    async def primary() -> str:
        await release.wait()
        return "ready-but-unseen"

    task = asyncio.ensure_future(
        race(primary, lambda: _after(5, "b"), 0.01, lost.append, _never_fatal)
    )
    await asyncio.sleep(0.05)  # the backup is running now
    release.set()
    task.cancel()  # the client went away in the same turn the primary became ready
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.01)
    assert lost == ["ready-but-unseen"]
