"""What one request asks of the limits: rates (GCRA), parallel slots, budget reservations.

Every limit is checked, and only if all of them pass are all of them taken: one atomic step,
in memory or in one Redis script (docs/decisions/0011-limits-one-atomic-step.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NANO = 1_000_000_000  # budgets count in nano-USD integers: no float drift across replicas


@dataclass(slots=True)
class Rate:
    """A token bucket (GCRA): `limit` per `window` seconds, a burst of up to `limit`."""

    key: str
    limit: int
    window: float
    cost: float = 1.0
    kind: str = "requests"  # requests | tokens | ip: which headers it feeds


@dataclass(slots=True)
class Slot:
    """A max-parallel-requests slot, held until the call ends."""

    key: str
    limit: int


@dataclass(slots=True)
class Reserve:
    """A worst-case cost reserved against a budget, settled to the real cost afterwards."""

    key: str  # one counter per budget period: a new period starts from zero by itself
    limit: int  # nano-USD
    amount: int  # nano-USD
    base: int  # what the store says was spent in this period (seeds a missing counter)
    ttl: float  # seconds the counter outlives its period's end
    scope: str = "key"  # key | team


@dataclass(slots=True)
class RateState:
    """After admission: what the headers report for one rate."""

    rate: Rate
    remaining: int
    reset: float  # seconds until the bucket is full again


@dataclass(slots=True)
class Plan:
    request_id: str  # the admission's own token: what slots and reservations are held under
    rates: list[Rate] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    reserves: list[Reserve] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.rates or self.slots or self.reserves)


@dataclass(slots=True)
class Verdict:
    ok: bool
    states: list[RateState] = field(default_factory=list)
    failed: object = None  # the Rate, Slot or Reserve that refused
    retry_after: float = 0.0
    budget_left: list[int] = field(default_factory=list)  # per reserve, after it (nano-USD)
    local: bool = False  # admitted by the in-process fallback while Redis was unreachable


@dataclass(slots=True)
class Settlement:
    """After the call: token-rate corrections, slots to free, reservations to settle."""

    request_id: str
    rates: list[tuple[Rate, float]] = field(default_factory=list)  # (rate, delta cost)
    slots: list[Slot] = field(default_factory=list)
    reserves: list[tuple[Reserve, int]] = field(default_factory=list)  # (reserve, actual nano)
