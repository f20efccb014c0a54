"""Hedged requests: when the first token is late, ask a second deployment and keep the faster.

The delay is the primary deployment's observed p95 time to first token (plain calls: to the
answer), capped at three times its median. First tokens of attempts that lost a race are never
observed, so a deployment that is slow on more than 5% of calls does not drag its own p95 into
its slow mode; the cap gets the estimate out of that mode at the start, before losers are cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llm_proxy.config.schema import HedgeConfig
from llm_proxy.routing.state import DeploymentStats

T = TypeVar("T")
_MEDIAN_CAP = 3.0


def hedge_delay(cfg: HedgeConfig, stats: DeploymentStats) -> float | None:
    """Seconds to wait for the primary before hedging; None: not enough observations yet."""
    if cfg.delay is not None:
        return cfg.delay
    samples = stats.ttft_samples
    if len(samples) < cfg.min_samples:
        return None
    ordered = sorted(samples)
    n = len(ordered)
    high = ordered[min(n - 1, int(n * cfg.percentile / 100))]
    return min(high, _MEDIAN_CAP * ordered[n // 2], cfg.max_delay)


async def race(
    primary: Callable[[], Awaitable[T]],
    backup: Callable[[], Awaitable[T]],
    delay: float,
    lost: Callable[[Any], None],
    fatal: Callable[[BaseException], bool],
) -> tuple[T | None, list[BaseException], bool]:
    """Run primary; if it has not finished after `delay`, run backup too; first success wins.

    Returns (winner or None, the failures in the order they happened, whether backup ran);
    a `fatal` failure (one retrying elsewhere cannot fix) ends the race at once.
    The losing task is cancelled (its attempt closes its upstream connection); a loser that
    finished anyway is handed to `lost`. Cancelling race() cancels both.
    """
    first = asyncio.ensure_future(primary())
    tasks = {first}
    failures: list[BaseException] = []
    hedged = False
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done:
            tasks.add(asyncio.ensure_future(backup()))
            hedged = True
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            winner: T | None = None
            for t in sorted(done, key=lambda t: t is not first):  # primary first on a tie
                if t.cancelled():
                    continue
                exc = t.exception()
                if exc is not None:
                    failures.append(exc)
                    if fatal(exc):
                        return None, failures, hedged
                elif winner is None:
                    winner = t.result()
                else:
                    lost(t.result())
            if winner is not None:
                return winner, failures, hedged
            if not hedged:
                return None, failures, hedged  # the primary failed before the delay
        return None, failures, hedged
    finally:
        for t in tasks:
            t.cancel()


__all__ = ["hedge_delay", "race"]
