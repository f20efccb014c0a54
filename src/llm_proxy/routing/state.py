"""What the gateway has observed of each deployment: in-flight calls, latency, errors over a
rolling window, the circuit breaker, 429 cooldowns, rpm/tpm use and probe results.

One StatsBook per worker, kept across config reloads (keyed by upstream pool and model), so a
reload does not forget that a deployment is failing. All updates are O(1) and lock-free: the
event loop is the only writer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_proxy.config.schema import Settings
from llm_proxy.errors import GatewayError
from llm_proxy.routing.breaker import CLOSED, OPEN, Breaker
from llm_proxy.routing.retry import retry_after

BUCKETS = 6  # the rolling window is kept as this many time buckets
_ALPHA = 0.3  # EWMA weight of the newest sample
_TTFT_SAMPLES = 200
HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
# What begin() answers: refused (half-open, the probe is taken), admitted, or admitted as the probe.
REFUSED, ADMITTED, PROBE = 0, 1, 2
_MAX_ENTRIES = 10_000  # dynamic deployments (provider/<any model>) must not grow without bound


@dataclass(slots=True)
class Policy:
    """The thresholds every DeploymentStats reads; updated in place when the config reloads."""

    breaker_threshold: int = 5
    breaker_timeout: float = 60.0
    cooldown_time: float = 5.0
    max_cooldown: float = 300.0
    window: float = 60.0
    min_requests: int = 5
    degraded_ratio: float = 0.1
    unhealthy_ratio: float = 0.5
    bucket: float = 10.0  # window / BUCKETS

    def update(self, s: Settings) -> None:
        h = s.health
        self.breaker_threshold, self.breaker_timeout = (
            s.circuit_breaker_threshold,
            s.circuit_breaker_timeout,
        )
        self.cooldown_time, self.max_cooldown = s.cooldown_time, s.max_cooldown
        self.window, self.min_requests = h.window, h.min_requests
        self.degraded_ratio, self.unhealthy_ratio = h.degraded_error_ratio, h.unhealthy_error_ratio
        self.bucket = h.window / BUCKETS


class DeploymentStats:
    """Counters for one deployment. begin() before an attempt; one of ok/failed/cancelled after."""

    __slots__ = (
        "_bucket",
        "_cur",
        "_err",
        "_lat",
        "_req",
        "answer_samples",
        "breaker",
        "cooldown_until",
        "in_flight",
        "key",
        "last_error",
        "last_error_at",
        "latency_ewma",
        "minute",
        "minute_requests",
        "minute_tokens",
        "policy",
        "pool",
        "probe",
        "total_failures",
        "total_requests",
        "ttft_ewma",
        "ttft_samples",
        "win_err",
        "win_lat",
        "win_req",
    )

    def __init__(self, key: str, policy: Policy, pool: str = "") -> None:
        self.key = key
        self.pool = pool  # the provider's connection pool: /providers groups stats by it
        self.policy = policy
        self.breaker = Breaker()
        self.in_flight = 0
        self.cooldown_until = 0.0
        self.ttft_ewma: float | None = None  # seconds to a stream's first content
        self.latency_ewma: float | None = None  # seconds to the end of the answer
        self.ttft_samples: deque[float] = deque(maxlen=_TTFT_SAMPLES)
        self.answer_samples: deque[float] = deque(maxlen=_TTFT_SAMPLES)
        self.minute = 0
        self.minute_requests = 0
        self.minute_tokens = 0
        self.total_requests = 0
        self.total_failures = 0
        self.last_error: str | None = None
        self.last_error_at = 0.0
        self.probe: ProbeResult | None = None
        self._bucket = policy.bucket
        self._cur = 0  # absolute number of the newest bucket
        self._req = [0] * BUCKETS
        self._err = [0] * BUCKETS
        self._lat = [0.0] * BUCKETS
        self.win_req = 0
        self.win_err = 0
        self.win_lat = 0.0

    # --- the rolling window -------------------------------------------------------------

    def _advance(self, now: float) -> int:
        if self._bucket != self.policy.bucket:  # the window was reconfigured
            self._bucket = self.policy.bucket
            self._reset_window(int(now / self._bucket))
        idx = int(now / self._bucket)
        if idx != self._cur:
            if idx - self._cur >= BUCKETS or idx < self._cur:
                self._reset_window(idx)
            else:
                for n in range(self._cur + 1, idx + 1):
                    slot = n % BUCKETS
                    self.win_req -= self._req[slot]
                    self.win_err -= self._err[slot]
                    self.win_lat -= self._lat[slot]
                    self._req[slot] = self._err[slot] = 0
                    self._lat[slot] = 0.0
                self._cur = idx
        return idx % BUCKETS

    def _reset_window(self, idx: int) -> None:
        self._cur = idx
        self._req = [0] * BUCKETS
        self._err = [0] * BUCKETS
        self._lat = [0.0] * BUCKETS
        self.win_req = self.win_err = 0
        self.win_lat = 0.0

    def _count(self, now: float, error: bool, latency: float) -> None:
        slot = self._advance(now)
        self._req[slot] += 1
        self.win_req += 1
        if error:
            self._err[slot] += 1
            self.win_err += 1
        else:
            self._lat[slot] += latency
            self.win_lat += latency

    def error_ratio(self, now: float) -> float | None:
        """Errors / requests over the window; None when there were too few to judge."""
        self._advance(now)
        if self.win_req < self.policy.min_requests:
            return None
        return self.win_err / self.win_req

    def window_counts(self, now: float) -> tuple[int, int, float | None]:
        """(requests, errors, mean latency of the successes) over the window."""
        self._advance(now)
        ok = self.win_req - self.win_err
        return self.win_req, self.win_err, (self.win_lat / ok if ok > 0 else None)

    # --- what routing asks ----------------------------------------------------------------

    def unavailable(self, now: float) -> str | None:
        """Why this deployment must not be tried now (circuit open, cooling down), or None."""
        if self.breaker.state is CLOSED and now >= self.cooldown_until:
            return None  # the common case, without a call
        if not self.breaker.available(now, self.policy.breaker_timeout):
            return "circuit open" if self.breaker.state == OPEN else "circuit half-open, probing"
        if now < self.cooldown_until:
            return "cooling down after 429"
        return None

    def demoted(self, now: float, rpm: int | None, tpm: int | None) -> str | None:
        """Why this deployment should be tried after the others (unhealthy, over capacity)."""
        if rpm is not None or tpm is not None:
            minute = int(now // 60)
            if minute == self.minute:
                if rpm is not None and self.minute_requests >= rpm:
                    return "over its rpm"
                if tpm is not None and self.minute_tokens >= tpm:
                    return "over its tpm"
        if self.win_err == 0 and (self.probe is None or self.probe.status == HEALTHY):
            return None  # no error on record and no bad probe: cannot be unhealthy
        if self.status(now) == UNHEALTHY:
            return "unhealthy"
        return None

    def status(self, now: float) -> str:
        """healthy / degraded / unhealthy: real traffic first, the background probe otherwise."""
        p = self.policy
        if self.breaker.state == OPEN and now < self.breaker.opened_at + p.breaker_timeout:
            return UNHEALTHY
        ratio = self.error_ratio(now)
        if ratio is not None:
            if ratio >= p.unhealthy_ratio:
                return UNHEALTHY
            if ratio >= p.degraded_ratio:
                return DEGRADED
        elif self.probe is not None and self.probe.status != HEALTHY:
            return self.probe.status
        if self.breaker.state is not CLOSED or now < self.cooldown_until:
            return DEGRADED
        return HEALTHY

    # --- outcomes -------------------------------------------------------------------------

    def begin(self, now: float) -> int:
        """An attempt starts: REFUSED (another request holds the half-open probe), ADMITTED, or
        PROBE (this attempt is the half-open probe; pass probe=True when it ends)."""
        b = self.breaker
        admitted = ADMITTED
        if b.state is not CLOSED:
            if not b.acquire(now, self.policy.breaker_timeout):
                return REFUSED
            admitted = PROBE
        self.in_flight += 1
        self.total_requests += 1
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.minute_requests, self.minute_tokens = minute, 0, 0
        self.minute_requests += 1
        return admitted

    def first_token(self, ttft: float) -> None:
        """A stream's first content arrived after `ttft` seconds."""
        self.ttft_samples.append(ttft)
        e = self.ttft_ewma
        self.ttft_ewma = ttft if e is None else e + _ALPHA * (ttft - e)

    def answered(self, now: float, latency: float, tokens: int) -> None:
        """A plain call answered after `latency` seconds (its own samples: the hedge delay of
        plain calls is not the first-token time of streams)."""
        self.answer_samples.append(latency)
        self.ok(now, latency, tokens)

    def ok(self, now: float, latency: float, tokens: int = 0) -> None:
        self.in_flight -= 1
        b = self.breaker
        if b.state is not CLOSED or b.failures:
            b.success()
        e = self.latency_ewma
        self.latency_ewma = latency if e is None else e + _ALPHA * (latency - e)
        self._count(now, False, latency)
        if tokens and int(now // 60) == self.minute:
            self.minute_tokens += tokens

    def failed(
        self, now: float, err: GatewayError, latency: float = 0.0, probe: bool = False
    ) -> None:
        """A failed attempt: 429 cools the deployment down; server-side failures feed the breaker;
        a refusal of the request itself (400, 404, context length) shows the deployment is up."""
        self.in_flight -= 1
        status = err.status
        if status < 500 and status not in (408, 409, 429) and err.code != "upstream_auth_failed":
            b = self.breaker
            if b.state is not CLOSED or b.failures:
                b.success()
            self._count(now, False, latency)
            return
        self.total_failures += 1
        self.last_error, self.last_error_at = f"{status} {err.code or err.type}", time.time()
        self._count(now, True, 0.0)
        if status == 429:
            asked = retry_after(err)
            wait = self.policy.cooldown_time if asked is None else asked
            self.cooldown_until = max(
                self.cooldown_until, now + min(wait, self.policy.max_cooldown)
            )
            if probe:
                self.breaker.release()
        else:
            self.breaker.failure(now, self.policy.breaker_threshold)

    def cancelled(self, probe: bool = False) -> None:
        """The attempt was abandoned (client gone, hedge lost): no verdict on the deployment."""
        self.in_flight -= 1
        if probe:
            self.breaker.release()  # the next request probes instead

    def samples(self, stream: bool) -> deque[float]:
        """Observed times to first content (streams) or to the answer (plain calls)."""
        return self.ttft_samples if stream else self.answer_samples

    def percentile(self, pct: float, stream: bool = True) -> float | None:
        got = self.samples(stream)
        return quantile(sorted(got), pct) if got else None


def quantile(ordered: Sequence[float], pct: float) -> float:
    """The pct-th percentile of sorted, non-empty samples (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@dataclass(slots=True)
class ProbeResult:
    """The last background probe of a deployment's provider (or of the deployment itself)."""

    status: str
    at: float  # wall clock
    detail: str
    latency_ms: float | None = None
    kind: str = "models"  # models (free) | completion (paid)


@dataclass(slots=True)
class Decision:
    """The last routing decision for a public model, kept as references and formatted on read."""

    at: float = 0.0  # time.monotonic()
    strategy: str = ""
    order: Sequence[Any] = ()  # Candidates in the order they were to be tried
    skipped: Sequence[tuple[Any, str]] = ()
    served_by: str | None = None
    attempts: int = 0

    def reason(self) -> str:
        if not self.at:
            return "no request yet"
        parts = [f"{self.strategy}: order " + ", ".join(c.label for c in self.order or ())]
        if not self.order:
            parts[0] = f"{self.strategy}: no deployment available"
        parts += [f"skipped {c.label} ({why})" for c, why in self.skipped]
        if self.served_by:
            parts.append(f"served by {self.served_by} after {self.attempts} attempt(s)")
        return "; ".join(parts)


@dataclass
class StatsBook:
    """Every deployment's stats and every model's last decision, for one worker."""

    policy: Policy = field(default_factory=Policy)
    stats: dict[str, DeploymentStats] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    _dynamic: dict[str, str] = field(default_factory=dict)  # insertion order: oldest first

    def get(self, key: str, pool: str = "", pinned: bool = False) -> DeploymentStats:
        """The stats for `key`, created on first use. Configured deployments are `pinned`: only
        dynamic ones (provider/<any model>) are evicted when the book is full, so a client
        inventing model names cannot reset the breakers of the real deployments."""
        s = self.stats.get(key)
        if s is None:
            if len(self._dynamic) >= _MAX_ENTRIES:
                self.stats.pop(self._dynamic.pop(next(iter(self._dynamic))), None)
            s = self.stats[key] = DeploymentStats(key, self.policy, pool)
            if not pinned:
                self._dynamic[key] = key
        elif pinned:
            self._dynamic.pop(key, None)
        return s

    def by_pool(self) -> dict[str, list[DeploymentStats]]:
        out: dict[str, list[DeploymentStats]] = {}
        for s in self.stats.values():
            out.setdefault(s.pool, []).append(s)
        return out

    def decision(self, model: str) -> Decision:
        d = self.decisions.get(model)
        if d is None:
            if len(self.decisions) >= _MAX_ENTRIES:
                self.decisions.pop(next(iter(self.decisions)))
            d = self.decisions[model] = Decision()
        return d


__all__ = [
    "ADMITTED",
    "DEGRADED",
    "HEALTHY",
    "PROBE",
    "REFUSED",
    "UNHEALTHY",
    "Decision",
    "DeploymentStats",
    "Policy",
    "ProbeResult",
    "StatsBook",
    "quantile",
]
