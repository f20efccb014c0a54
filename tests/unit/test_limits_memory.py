"""The in-memory limits: GCRA buckets, parallel slots, budget reservations, all-or-nothing."""

from __future__ import annotations

import pytest

from llm_proxy.limits.memory import MemoryLimits
from llm_proxy.limits.plan import Plan, Rate, Reserve, Settlement, Slot


def plan(*items: object, rid: str = "r") -> Plan:
    p = Plan(rid)
    for it in items:
        if isinstance(it, Rate):
            p.rates.append(it)
        elif isinstance(it, Slot):
            p.slots.append(it)
        else:
            assert isinstance(it, Reserve)
            p.reserves.append(it)
    return p


def test_a_burst_gets_exactly_the_limit_then_one_per_interval() -> None:
    m = MemoryLimits()
    rate = Rate("r:k:a", 60, 60.0)
    now = 1000.0
    passed = sum(m.admit_now(plan(rate), now + i * 0.001).ok for i in range(100))
    assert passed == 60
    refused = m.admit_now(plan(rate), now + 0.2)
    assert not refused.ok and refused.failed is rate
    assert 0.7 < refused.retry_after <= 1.0  # one request's worth of the bucket refills in 1 s
    assert m.admit_now(plan(rate), now + 1.2).ok  # ...and then one more fits
    assert not m.admit_now(plan(rate), now + 1.3).ok


def test_remaining_and_reset_count_down() -> None:
    m = MemoryLimits()
    rate = Rate("r:k:b", 10, 60.0)
    v = m.admit_now(plan(rate), 0.0)
    assert v.ok and v.states[0].remaining == 9 and v.states[0].reset == pytest.approx(6.0)
    v = m.admit_now(plan(rate), 0.0)
    assert v.states[0].remaining == 8 and v.states[0].reset == pytest.approx(12.0)


def test_one_refusal_takes_nothing_from_the_other_limits() -> None:
    m = MemoryLimits()
    key = Rate("r:k:c", 100, 60.0)
    team = Rate("r:t:t", 1, 60.0)
    assert m.admit_now(plan(key, team), 0.0).ok
    v = m.admit_now(plan(key, team), 0.0)
    assert not v.ok and v.failed is team
    # The key's bucket was not charged for the refused call: 99 left, not 98.
    again = m.admit_now(plan(key), 0.0)
    assert again.states[0].remaining == 98


def test_tokens_settle_to_the_real_usage() -> None:
    m = MemoryLimits()
    tpm = Rate("t:k:d", 1000, 60.0, cost=600, kind="tokens")
    assert m.admit_now(plan(tpm), 0.0).ok
    assert not m.admit_now(plan(Rate("t:k:d", 1000, 60.0, cost=600, kind="tokens")), 0.0).ok
    s = Settlement("r", rates=[(tpm, -500.0)])  # it used 100, not 600
    m.settle_now(s, 0.0)
    assert m.admit_now(plan(Rate("t:k:d", 1000, 60.0, cost=600, kind="tokens")), 0.0).ok


def test_a_request_bigger_than_the_limit_is_refused_with_the_window_as_wait() -> None:
    m = MemoryLimits()
    v = m.admit_now(plan(Rate("t:k:e", 100, 60.0, cost=500, kind="tokens")), 0.0)
    assert not v.ok and v.retry_after == 60.0


def test_parallel_slots_are_held_until_settled() -> None:
    m = MemoryLimits()
    slot = Slot("p:k:f", 2)
    assert m.admit_now(plan(slot, rid="1"), 0.0).ok
    assert m.admit_now(plan(slot, rid="2"), 0.0).ok
    assert not m.admit_now(plan(slot, rid="3"), 0.0).ok
    m.settle_now(Settlement("1", slots=[slot]), 0.0)
    assert m.admit_now(plan(slot, rid="4"), 0.0).ok


def test_budget_reservations_never_let_concurrent_calls_overspend() -> None:
    m = MemoryLimits()

    def res() -> Reserve:
        return Reserve("b:k:g:0", limit=1000, amount=100, base=0, ttl=3600)

    held = [res() for _ in range(10)]
    for r in held:
        assert m.admit_now(plan(r), 0.0).ok
    extra = m.admit_now(plan(res()), 0.0)
    assert not extra.ok and isinstance(extra.failed, Reserve)
    # Each really cost 30: settled, 700 of the budget is free again.
    for r in held:
        m.settle_now(Settlement("r", reserves=[(r, 30)]), 0.0)
    assert m.budgets["b:k:g:0"] == [300, 0]
    assert sum(m.admit_now(plan(res()), 0.0).ok for _ in range(10)) == 7


def test_a_budget_counter_starts_from_what_the_store_says_was_spent() -> None:
    m = MemoryLimits()
    r = Reserve("b:k:h:3", limit=1000, amount=100, base=950, ttl=3600)
    assert not m.admit_now(plan(r), 0.0).ok
    zero = Reserve("b:k:i:0", limit=1000, amount=0, base=1000, ttl=3600)
    assert not m.admit_now(plan(zero), 0.0).ok  # spent in full: even a free call is refused
