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
from llm_proxy.routing.state import DeploymentStats, quantile

T = TypeVar("T")
_MEDIAN_CAP = 3.0


def hedge_delay(cfg: HedgeConfig, stats: DeploymentStats, stream: bool) -> float | None:
    """Seconds to wait for the primary before hedging; None: not enough observations yet.
    Streams wait on time to first content, plain calls on time to the answer."""
    if cfg.delay is not None:
        return cfg.delay
    samples = stats.samples(stream)
    if len(samples) < cfg.min_samples:
        return None
    ordered = sorted(samples)
    high, median = quantile(ordered, cfg.percentile), quantile(ordered, 50)
    return min(high, _MEDIAN_CAP * median, cfg.max_delay)


async def race(
    primary: Callable[[], Awaitable[T]],
    backup: Callable[[], Awaitable[T]],
    delay: float,
    lost: Callable[[Any], None],
    fatal: Callable[[BaseException], bool],
) -> tuple[T | None, list[BaseException], bool]:
    """Run primary; if it has not finished after `delay`, run backup too; first success wins.

    Returns (winner or None, the failures in the order they happened, whether backup ran);
    a `fatal` failure (one retrying elsewhere cannot fix) ends the race unless the other side
    already succeeded. Every result that is not returned goes to `lost` (to be closed), also
    when race() itself is cancelled; a loser still running is cancelled, which closes its
    upstream connection.
    """
    first = asyncio.ensure_future(primary())
    tasks = [first]
    failures: list[BaseException] = []
    winner: T | None = None
    seen: set[asyncio.Future[T]] = set()
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done:
            tasks.append(asyncio.ensure_future(backup()))
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            stop = False
            for t in sorted(done, key=lambda t: t is not first):  # primary first on a tie
                seen.add(t)
                if t.cancelled():
                    continue
                exc = t.exception()
                if exc is not None:
                    failures.append(exc)
                    stop = stop or fatal(exc)
                elif winner is None:
                    winner = t.result()
                else:
                    lost(t.result())
            if winner is not None or stop or len(tasks) == 1:
                break  # a winner, a fatal failure, or the primary failed before the delay
        return winner, failures, len(tasks) == 2
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
                t.add_done_callback(lambda t: _settle_late(t, lost))
            elif t not in seen:  # finished, but nobody looked at it (race() was cancelled)
                _settle_late(t, lost)


def _settle_late(t: asyncio.Future[Any], lost: Callable[[Any], None]) -> None:
    """A cancelled loser that finished anyway: hand its result over; retrieve its error."""
    if not t.cancelled() and t.exception() is None:
        lost(t.result())


__all__ = ["hedge_delay", "race"]
