"""Breaker, deployment stats, strategies and hedge delay: pure logic with a fake clock."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from llm_proxy import errors as E
from llm_proxy.config.schema import HedgeConfig, Settings
from llm_proxy.routing.balance import Candidate, order
from llm_proxy.routing.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from llm_proxy.routing.hedge import hedge_delay
from llm_proxy.routing.state import DEGRADED, HEALTHY, UNHEALTHY, Policy, ProbeResult, StatsBook
from llm_proxy.runtime import compile_runtime, hash_key


def test_breaker_opens_after_threshold_then_admits_one_probe() -> None:
    b = Breaker()
    for t in range(2):
        b.failure(float(t), threshold=3)
        assert b.state == CLOSED and b.available(float(t), timeout=10)
    b.failure(2.0, threshold=3)
    assert b.state == OPEN and not b.available(5.0, 10) and not b.acquire(5.0, 10)
    assert b.retry_at(10) == 12.0
    assert b.available(12.0, 10)  # due: available, but nothing reserved yet
    assert b.acquire(12.0, 10) and b.state == HALF_OPEN  # the probe
    assert not b.acquire(12.1, 10) and not b.available(12.1, 10)  # only one
    b.release()  # the probe was cancelled: the next caller probes instead
    assert b.acquire(12.2, 10)
    b.failure(12.3, threshold=3)  # a failed probe reopens at once
    assert b.state == OPEN and b.opened_at == 12.3
    assert b.acquire(22.4, 10)
    b.success()
    assert (b.state, b.failures, b.probing) == (CLOSED, 0, False)


def test_success_resets_the_consecutive_count() -> None:
    b = Breaker()
    b.failure(0, 3)
    b.failure(0, 3)
    b.success()
    b.failure(0, 3)
    b.failure(0, 3)
    assert b.state == CLOSED


def _stats(**policy: float) -> StatsBook:
    return StatsBook(policy=Policy(**policy))  # type: ignore[arg-type]


def test_window_error_ratio_rolls_and_expires() -> None:
    book = _stats(window=60, min_requests=4)
    s = book.get("p|m")
    for i in range(4):
        assert s.begin(100.0 + i)
        if i % 2:
            s.failed(100.5 + i, E.UpstreamError("x"))
        else:
            s.ok(100.5 + i, 0.5)
    assert s.error_ratio(104.0) == 0.5
    assert s.window_counts(104.0) == (4, 2, 0.5)
    assert s.status(104.0) == UNHEALTHY  # 0.5 >= unhealthy_error_ratio
    assert s.error_ratio(150.0) == 0.5  # still inside the 60 s window
    assert s.error_ratio(175.0) is None  # the oldest buckets expired: too few to judge
    assert s.window_counts(1000.0) == (0, 0, None)
    assert s.status(1000.0) == HEALTHY


def test_degraded_between_the_ratios() -> None:
    s = _stats(min_requests=10).get("k")
    for i in range(10):
        s.begin(1.0)
        (s.failed(1.0, E.UpstreamError("x")) if i == 0 else s.ok(1.0, 0.1))
    assert s.status(2.0) == DEGRADED  # 0.1 >= degraded_error_ratio


def test_429_cools_down_without_touching_the_breaker() -> None:
    s = _stats(cooldown_time=5, max_cooldown=30).get("k")
    s.begin(0.0)
    s.failed(0.0, E.RateLimitError("x", headers={"Retry-After": "12"}))
    assert s.unavailable(11.9) == "cooling down after 429" and s.unavailable(12.0) is None
    assert s.breaker.failures == 0 and s.in_flight == 0
    s.begin(20.0)
    s.failed(20.0, E.RateLimitError("x", headers={"Retry-After": "3600"}))
    assert s.cooldown_until == 50.0  # capped by max_cooldown
    s.begin(60.0)
    s.failed(60.0, E.RateLimitError("x"))
    assert s.cooldown_until == 65.0  # cooldown_time without Retry-After


def test_client_errors_count_as_the_deployment_answering() -> None:
    s = _stats(breaker_threshold=2).get("k")
    for err in (
        E.InvalidRequestError("x"),
        E.ContextLengthExceededError("x"),
        E.NotFoundError("x"),
    ):
        s.begin(0.0)
        s.failed(0.0, err, 0.2)
    assert s.breaker.state == CLOSED and s.total_failures == 0
    for _ in range(2):
        s.begin(0.0)
        s.failed(0.0, E.UpstreamError("x", code="upstream_auth_failed", status=502))
    assert s.breaker.state == OPEN and s.last_error == "502 upstream_auth_failed"


def test_probe_decides_only_without_traffic() -> None:
    s = _stats(min_requests=2).get("k")
    s.probe = ProbeResult(UNHEALTHY, 0.0, "refused")
    assert s.status(1.0) == UNHEALTHY
    for _ in range(2):
        s.begin(1.0)
        s.ok(1.0, 0.1)
    assert s.status(1.0) == HEALTHY  # real traffic first


def _runtime(
    strategy: str, deployments: list[dict[str, object]]
) -> tuple[StatsBook, list[Candidate]]:
    settings = Settings.model_validate(
        {
            "providers": [{"name": n, "type": "mock"} for n in ("a", "b", "c")],
            "models": [{"name": "m", "strategy": strategy, "deployments": deployments}],
        }
    )
    rt = compile_runtime(settings, {}, hash_key("k"))
    book = StatsBook()
    return book, [Candidate(d, book.get(d.key)) for d in rt.models["m"]]


def test_weighted_order_follows_the_weights() -> None:
    _, cands = _runtime(
        "weighted",
        [
            {"provider": "a", "model": "x", "weight": 8},
            {"provider": "b", "model": "x", "weight": 2},
        ],
    )
    rng = random.Random(3)
    firsts = Counter(order("weighted", cands, 0.0, False, rng)[0][0].label for _ in range(2000))
    assert 0.76 < firsts["a/x"] / 2000 < 0.84


def test_least_busy_and_lowest_latency_and_cost() -> None:
    _, cands = _runtime(
        "least-busy",
        [
            {"provider": "a", "model": "x", "price": {"input": 5, "output": 5}},
            {"provider": "b", "model": "x", "price": {"input": 1, "output": 1}},
            {"provider": "c", "model": "x"},
        ],
    )
    rng = random.Random(0)
    cands[0].stats.in_flight = 2
    cands[1].stats.in_flight = 1
    labels = [c.label for c in order("least-busy", cands, 0.0, False, rng)[0]]
    assert labels == ["c/x", "b/x", "a/x"]
    cands[0].stats.latency_ewma, cands[1].stats.latency_ewma = 0.2, 0.9
    cands[2].stats.latency_ewma = 0.5
    cands[0].stats.ttft_ewma, cands[1].stats.ttft_ewma, cands[2].stats.ttft_ewma = 0.3, 0.1, 0.2
    assert [c.label for c in order("lowest-latency", cands, 0.0, False, rng)[0]] == [
        "a/x",
        "c/x",
        "b/x",
    ]
    assert [c.label for c in order("lowest-latency", cands, 0.0, True, rng)[0]] == [
        "b/x",
        "c/x",
        "a/x",
    ]
    # Unknown price (c) sorts last.
    assert [c.label for c in order("lowest-cost", cands, 0.0, False, rng)[0]] == [
        "b/x",
        "a/x",
        "c/x",
    ]


def test_order_skips_open_and_cooling_and_demotes_unhealthy_and_full() -> None:
    _, cands = _runtime(
        "priority",
        [
            {"provider": "a", "model": "x"},
            {"provider": "b", "model": "x", "rpm": 1},
            {"provider": "c", "model": "x"},
        ],
    )
    a, b, c = cands
    b.stats.begin(30.0)
    b.stats.ok(30.0, 0.1)  # b used its one request this minute
    plan, skipped = order("priority", cands, 31.0, False, random.Random(0))
    assert [x.label for x in plan] == ["a/x", "c/x", "b/x"] and skipped == []
    a.stats.cooldown_until = 40.0
    for _ in range(5):
        c.stats.begin(31.0)
        c.stats.failed(31.0, E.UpstreamError("x"))  # opens c's circuit (threshold 5)
    plan, skipped = order("priority", cands, 32.0, False, random.Random(0))
    assert [x.label for x in plan] == ["b/x"]
    assert [(x.label, why) for x, why in skipped] == [
        ("a/x", "cooling down after 429"),
        ("c/x", "circuit open"),
    ]


def test_hedge_delay_is_p95_capped_at_three_medians() -> None:
    s = StatsBook().get("k")
    cfg = HedgeConfig(min_samples=10)
    assert hedge_delay(cfg, s, True) is None
    for i in range(100):
        s.first_token(0.010 + (i % 10) * 0.001)  # 10-19 ms, unimodal
    assert hedge_delay(cfg, s, True) == pytest.approx(0.019)  # p95 below 3x median: p95
    for _ in range(15):
        s.first_token(1.0)  # a 13% slow mode would put p95 at 1 s
    d = hedge_delay(cfg, s, True)
    assert d is not None and d < 0.05  # capped at 3x the median, inside the fast mode
    assert hedge_delay(HedgeConfig(delay=0.25), s, True) == 0.25
    assert hedge_delay(HedgeConfig(max_delay=0.02), s, True) == 0.02
    assert hedge_delay(cfg, s, False) is None  # plain calls keep their own samples
    for _ in range(10):
        s.begin(0.0)
        s.answered(0.0, 0.3, 0)
    assert hedge_delay(cfg, s, False) == pytest.approx(0.3)


def test_only_the_probe_holder_releases_the_probe() -> None:
    from llm_proxy.routing.state import ADMITTED, PROBE, REFUSED

    s = _stats(breaker_threshold=1, breaker_timeout=1).get("k")
    assert s.begin(0.0) == ADMITTED  # an attempt started while closed
    s2 = s.begin(0.0)
    s.failed(0.1, E.UpstreamError("x"))  # opens the circuit
    assert s.begin(1.5) == PROBE
    s.cancelled(probe=False)  # the old attempt (s2) ends: it must not free the probe
    assert s2 == ADMITTED and s.begin(1.6) == REFUSED
    s.failed(1.7, E.RateLimitError("x"), probe=True)  # the probe got a 429: probe passes on
    assert s.begin(1.8) == PROBE
    s.cancelled(probe=True)
    assert s.in_flight == 0


def test_dynamic_stats_are_evicted_never_the_configured_ones(monkeypatch: Any) -> None:
    import llm_proxy.routing.state as state

    monkeypatch.setattr(state, "_MAX_ENTRIES", 3)
    book = StatsBook()
    real = book.get("p|real", "p", pinned=True)
    for i in range(10):
        book.get(f"p|dyn{i}", "p")
    assert book.get("p|real", "p", pinned=True) is real
    assert set(book.stats) == {"p|real", "p|dyn7", "p|dyn8", "p|dyn9"}
    assert [len(v) for v in book.by_pool().values()] == [4]
