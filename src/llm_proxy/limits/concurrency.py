"""A concurrency cap with a bounded wait queue: the excess waits up to a timeout, then 503."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from llm_proxy.errors import ServiceUnavailableError


class ConcurrencyLimiter:
    """acquire() is synchronous when a slot is free (the common case costs no await)."""

    __slots__ = ("_waiters", "in_flight", "limit", "max_waiting", "timeout")

    def __init__(self, limit: int, max_waiting: int, timeout: float) -> None:
        self.limit = limit  # 0 = unlimited
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.limit == 0 or (self.in_flight < self.limit and not self._waiters):
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in line if needed; ServiceUnavailableError when full or too slow."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self.max_waiting or self.timeout <= 0:
            raise _busy()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        # Not asyncio.wait_for: it can lose a slot handed over in the same loop turn as the
        # timeout (3.12+) or swallow a cancellation (3.11). A timer that cancels the future
        # keeps "timed out", "cancelled" and "got the slot" distinguishable.
        timer = loop.call_later(self.timeout, fut.cancel)
        try:
            await fut
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot as we were cancelled: pass it on
                raise
            if task is not None and task.cancelling():
                raise  # the request itself was cancelled (client gone, shutdown)
            raise _busy() from None  # our timer fired
        finally:
            timer.cancel()
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next in line
                return
        self.in_flight -= 1


def _busy() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The gateway is at its concurrency limit; retry shortly.",
        code="too_many_concurrent_requests",
        headers={"Retry-After": "1"},
    )
