"""Limits held in this process (the default): GCRA buckets, slot counts, budget counters."""

from __future__ import annotations

import math
import time

from llm_proxy.limits.plan import Plan, RateState, Reserve, Settlement, Verdict


class MemoryLimits:
    """Exact within one process; with several workers or replicas, use Redis."""

    shared = False

    def __init__(self) -> None:
        self.tat: dict[str, float] = {}  # GCRA: theoretical arrival time per bucket
        self.slots: dict[str, int] = {}
        self.budgets: dict[str, list[int]] = {}  # key -> [spent, reserved] (nano-USD)
        self._budget_expiry: dict[str, float] = {}
        self._next_prune = 0.0

    async def admit(self, plan: Plan) -> Verdict:
        return self.admit_now(plan, time.time())

    def admit_now(self, plan: Plan, now: float) -> Verdict:
        if now >= self._next_prune:
            self._prune(now)
        tat = self.tat
        new_tats: list[float] = []
        states: list[RateState] = []
        for r in plan.rates:
            t = tat.get(r.key, now)
            if t < now:
                t = now
            interval = r.window / r.limit
            new = t + r.cost * interval
            if new - now > r.window + 1e-9:
                wait = new - now - r.window if r.cost <= r.limit else r.window
                return Verdict(False, failed=r, retry_after=wait)
            new_tats.append(new)
            states.append(RateState(r, int((r.window - (new - now)) / interval + 1e-9), new - now))
        for s in plan.slots:
            if self.slots.get(s.key, 0) >= s.limit:
                return Verdict(False, failed=s, retry_after=1.0)
        left: list[int] = []
        for b in plan.reserves:
            spent, reserved = self._budget(b, now)
            if spent >= b.limit or spent + reserved + b.amount > b.limit:
                return Verdict(False, failed=b, retry_after=0.0)
            left.append(b.limit - spent - reserved - b.amount)
        # Every limit passed: take them all.
        for r, new in zip(plan.rates, new_tats, strict=True):
            tat[r.key] = new
        for s in plan.slots:
            self.slots[s.key] = self.slots.get(s.key, 0) + 1
        for b in plan.reserves:
            self.budgets[b.key][1] += b.amount
        return Verdict(True, states=states, budget_left=left)

    def _budget(self, b: Reserve, now: float) -> list[int]:
        got = self.budgets.get(b.key)
        if got is None:
            got = self.budgets[b.key] = [b.base, 0]
            self._budget_expiry[b.key] = now + b.ttl
        return got

    async def settle(self, s: Settlement, local: bool = True) -> None:
        self.settle_now(s, time.time())

    def settle_now(self, s: Settlement, now: float) -> None:
        for r, delta in s.rates:
            if delta:
                t = max(self.tat.get(r.key, now), now)
                self.tat[r.key] = t + delta * (r.window / r.limit)
        for slot in s.slots:
            n = self.slots.get(slot.key, 0) - 1
            if n > 0:
                self.slots[slot.key] = n
            else:
                self.slots.pop(slot.key, None)
        for b, actual in s.reserves:
            got = self.budgets.get(b.key)
            if got is not None:
                got[1] = max(0, got[1] - b.amount)
                got[0] += actual

    async def spent(self, key: str) -> tuple[int, int] | None:
        """(spent, reserved) of a budget counter, if this process holds it."""
        got = self.budgets.get(key)
        return (got[0], got[1]) if got is not None else None

    async def peek(self, key: str, limit: int, window: float) -> tuple[int, float]:
        """(remaining, seconds until full) of a bucket, without taking from it."""
        now = time.time()
        t = max(self.tat.get(key, now), now)
        interval = window / limit
        return max(0, int((window - (t - now)) / interval + 1e-9)), t - now

    async def in_use(self, key: str) -> int:
        return self.slots.get(key, 0)

    def _prune(self, now: float) -> None:
        """Drop full buckets and ended budget periods (IPs come and go)."""
        self._next_prune = now + 60.0
        for k in [k for k, t in self.tat.items() if t <= now]:
            del self.tat[k]
        for k in [k for k, t in self._budget_expiry.items() if t <= now]:
            del self._budget_expiry[k]
            got = self.budgets.get(k)
            if got is not None and got[1] == 0:
                del self.budgets[k]

    async def aclose(self) -> None:
        return None


def ceil_seconds(x: float) -> int:
    return max(0, math.ceil(x - 1e-9))
