"""Health: views of deployments and providers built from their stats, and the background prober.

Status comes from real traffic first (error ratio over the rolling window, the breaker,
cooldowns; routing/state.py). When a deployment has had too little traffic to judge, the last
probe decides: a free GET of the provider's models list every `health.probe_interval` seconds,
and, only for the models listed under `health.completion_probes`, a tiny chat call capped at
`max_per_day` per deployment. A probe succeeds on any answer from the model (even an empty or
cut-off one), so reasoning models that spend their few tokens thinking still pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_proxy import errors as E
from llm_proxy.config.schema import Timeouts
from llm_proxy.routing.balance import Candidate
from llm_proxy.routing.breaker import OPEN
from llm_proxy.routing.hedge import hedge_delay
from llm_proxy.routing.state import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    ProbeResult,
)
from llm_proxy.runtime import Provider, Runtime

if TYPE_CHECKING:
    from llm_proxy.gateway import Gateway
    from llm_proxy.routing.router import Route

log = logging.getLogger("llm_proxy")

# What /v1/chat/completions supports per wire format (README's provider table).
_FULL = {"chat": True, "streaming": True, "tools": True, "vision": True, "json_schema": True}
CAPABILITIES: dict[str, dict[str, bool]] = {
    "openai": _FULL,
    "anthropic": _FULL,
    "gemini": _FULL,
    "bedrock": _FULL,
    "cohere": _FULL,
    "mock": {
        "chat": True,
        "streaming": True,
        "tools": False,
        "vision": False,
        "json_schema": False,
    },
}


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 2) if seconds is not None else None


def iso(wall: float | None) -> str | None:
    """A wall-clock time as ISO 8601 UTC; None for none (0 included)."""
    if not wall:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _mono_iso(at: float, now: float) -> str | None:
    """A time.monotonic() instant (0: never) as ISO 8601 UTC."""
    return iso(time.time() + (at - now)) if at else None


def route_view(route: Route, now: float) -> dict[str, Any]:
    """GET /admin/routes/{model}: the policy, each deployment, and the last decision's reason."""
    p, d = route.policy, route.decision
    delay = hedge_delay(p.hedge, route.candidates[0].stats, True) if p.hedge else None
    return {
        "model": route.model,
        "strategy": p.strategy,
        "fallbacks": list(p.fallbacks),
        "context_window_fallbacks": list(p.context_window_fallbacks),
        "hedge": p.hedge.model_dump() if p.hedge is not None else None,
        "hedge_delay_ms": _ms(delay),
        "deployments": [deployment_view(c, now) for c in route.candidates],
        "last_decision": {
            "at": _mono_iso(d.at, now),
            "reason": d.reason(),
            "order": [c.label for c in d.order],
            "skipped": [{"deployment": c.label, "why": why} for c, why in d.skipped],
            "served_by": d.served_by,
            "attempts": d.attempts,
        },
    }


def deployment_view(c: Candidate, now: float) -> dict[str, Any]:
    """One deployment as /admin/routes and /providers show it."""
    d, s = c.deployment, c.stats
    b, p = s.breaker, s.policy
    requests, errors, mean = s.window_counts(now)
    retry_at = b.retry_at(p.breaker_timeout) or 0.0
    return {
        "id": d.label,
        "provider": d.provider.name,
        "model": d.model,
        "weight": d.weight,
        "priority": d.priority,
        "tags": sorted(d.tags),
        "rpm": d.rpm,
        "tpm": d.tpm,
        "status": s.status(now),
        "circuit": {
            "state": b.state
            if not (b.state == OPEN and retry_at and now >= retry_at)
            else "half_open",
            "consecutive_failures": b.failures,
            "opened_at": _mono_iso(b.opened_at, now) if b.state == OPEN else None,
            "half_open_at": _mono_iso(retry_at, now) if retry_at > now else None,
        },
        "cooldown_until": _mono_iso(s.cooldown_until, now) if s.cooldown_until > now else None,
        "in_flight": s.in_flight,
        "window": {
            "seconds": p.window,
            "requests": requests,
            "errors": errors,
            "error_ratio": round(errors / requests, 4) if requests else None,
            "mean_latency_ms": _ms(mean),
        },
        "latency_ewma_ms": {"ttft": _ms(s.ttft_ewma), "total": _ms(s.latency_ewma)},
        "ttft_p95_ms": _ms(s.percentile(95, stream=True)),
        "answer_p95_ms": _ms(s.percentile(95, stream=False)),
        "requests_this_minute": s.minute_requests if s.minute == int(now // 60) else 0,
        "tokens_this_minute": s.minute_tokens if s.minute == int(now // 60) else 0,
        "total_requests": s.total_requests,
        "total_failures": s.total_failures,
        "last_error": s.last_error,
        "last_error_at": iso(s.last_error_at),
        "probe": _probe_view(s.probe),
        "price_per_million": (
            {"input": d.price[0], "output": d.price[1]} if d.price is not None else None
        ),
    }


def _probe_view(probe: ProbeResult | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    return {
        "kind": probe.kind,
        "status": probe.status,
        "at": iso(probe.at),
        "detail": probe.detail,
        "latency_ms": probe.latency_ms,
    }


def provider_views(gw: Gateway, now: float) -> list[dict[str, Any]]:
    """Seed 003's GET /providers: each provider with status, models, capabilities, circuit
    state, recent latency and error rate (over its deployments' rolling windows)."""
    runtime = gw.runtime
    pools = gw.book.by_pool()
    out = []
    for name, p in sorted(runtime.providers.items()):
        public = sorted(m for m, ds in runtime.models.items() if any(d.provider is p for d in ds))
        prefix = p.pool + "|"
        stats = {s.key: s for s in pools.get(p.pool, ())}
        seen = [s for s in stats.values() if s.total_requests]
        statuses = [s.status(now) for s in seen]
        probe = gw.prober.results.get(p.pool)
        status = _provider_status(statuses, probe)
        req = sum(s.window_counts(now)[0] for s in seen)
        err = sum(s.window_counts(now)[1] for s in seen)
        lat = [s.latency_ewma for s in seen if s.latency_ewma is not None]
        ttft = [s.ttft_ewma for s in seen if s.ttft_ewma is not None]
        circuits = {k[len(prefix) :]: s.breaker.state for k, s in stats.items()}
        out.append(
            {
                "name": name,
                "type": p.type,
                "format": p.format,
                "base_url": p.base_url if p.type != "mock" else None,
                "status": status,
                "models": public,
                "upstream_models": sorted(k[len(prefix) :] for k in stats),
                "capabilities": CAPABILITIES["mock" if p.type == "mock" else p.format],
                "circuit_breaker": {
                    "state": _worst_circuit(list(circuits.values())),
                    "deployments": circuits,
                },
                "latency_ms": {
                    "ttft_ewma": _ms(sum(ttft) / len(ttft)) if ttft else None,
                    "total_ewma": _ms(sum(lat) / len(lat)) if lat else None,
                },
                "error_rate": round(err / req, 4) if req else None,
                "requests_in_window": req,
                "in_flight": sum(s.in_flight for s in stats.values()),
                "probe": _probe_view(probe),
            }
        )
    return out


def _worst_circuit(states: list[str]) -> str:
    for state in ("open", "half_open"):
        if state in states:
            return state
    return "closed"


def _provider_status(statuses: list[str], probe: ProbeResult | None) -> str:
    if statuses:
        if all(s == UNHEALTHY for s in statuses):
            return UNHEALTHY
        return DEGRADED if any(s != HEALTHY for s in statuses) else HEALTHY
    return probe.status if probe is not None else HEALTHY


def summary(views: list[dict[str, Any]]) -> dict[str, int]:
    """Seed 003's counts for /health."""
    counts = {"total": len(views), HEALTHY: 0, DEGRADED: 0, UNHEALTHY: 0}
    for v in views:
        counts[v["status"]] += 1
    return counts


def overall(counts: dict[str, int]) -> str:
    if counts["total"] and counts[UNHEALTHY] == counts["total"]:
        return UNHEALTHY
    return DEGRADED if counts[DEGRADED] or counts[UNHEALTHY] else HEALTHY


def _verdict(status: int) -> tuple[str, str]:
    if status < 400 or status in (400, 404, 405, 422):
        return HEALTHY, f"HTTP {status}: reachable"  # it answered: the model is there
    if status == 429:
        return DEGRADED, "HTTP 429: rate limited"
    if status in (401, 403):
        return UNHEALTHY, f"HTTP {status}: the provider refused the gateway's credentials"
    return UNHEALTHY, f"HTTP {status}"


@dataclass
class Prober:
    """Background probes for one worker; results feed DeploymentStats.probe."""

    gw: Gateway
    results: dict[str, ProbeResult] = field(default_factory=dict)  # provider pool -> last probe
    _paid: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (day, count)
    _last_paid: float = 0.0

    async def run(self) -> None:
        while True:
            interval = self.gw.runtime.settings.health.probe_interval
            await asyncio.sleep(interval if interval > 0 else 5.0)
            try:
                await self.probe_once()
            except Exception:  # a probe bug must never stop the prober or the gateway
                log.exception("health probe failed")

    async def probe_once(self) -> None:
        """Probe every provider with a models URL, then the completion probes that are due."""
        runtime = self.gw.runtime
        h = runtime.settings.health
        if h.probe_interval > 0:
            providers = [p for p in runtime.providers.values() if _probeable(p)]
            await asyncio.gather(*(self._probe_provider(runtime, p) for p in providers))
        cp = h.completion_probes
        now = time.monotonic()
        if cp.models and now - self._last_paid >= cp.interval:
            self._last_paid = now
            await self._completion_probes(cp.models, cp.max_tokens, cp.max_per_day)

    async def _probe_provider(self, runtime: Runtime, p: Provider) -> None:
        h = runtime.settings.health
        timeouts = Timeouts(
            connect=min(h.probe_timeout, 5.0), first_byte=h.probe_timeout, total=h.probe_timeout
        )
        headers = {k: v for k, v in p.headers.items() if k.lower() != "content-type"}
        t0 = time.monotonic()
        try:
            status, _ = await self.gw.http.get(
                p.pool, p.models_url, headers, timeouts, p.max_connections
            )
            verdict, detail = _verdict(status)
        except E.GatewayError as err:
            verdict, detail = UNHEALTHY, err.message
        result = ProbeResult(verdict, time.time(), detail, _ms(time.monotonic() - t0))
        self.results[p.pool] = result
        book = self.gw.book
        for d in (d for ds in runtime.models.values() for d in ds if d.provider is p):
            book.get(d.key, p.pool, pinned=True)  # configured ones get the verdict before traffic
        for s in book.stats.values():
            # A deployment's own completion probe says more than its provider's models list.
            if s.pool == p.pool and (s.probe is None or s.probe.kind == "models"):
                s.probe = result

    async def _completion_probes(self, models: list[str], max_tokens: int, cap: int) -> None:
        from llm_proxy.attempt import call  # attempt imports the gateway, which imports us
        from llm_proxy.auth import ANONYMOUS

        router = self.gw.router
        day = int(time.time() // 86400)
        for name in models:
            try:
                route = router.route(name)
            except E.ModelNotFoundError:
                continue
            body = {
                "model": name,
                "messages": [{"role": "user", "content": "Reply with the word OK."}],
                "max_tokens": max_tokens,
            }
            for c in route.candidates:
                used_day, used = self._paid.get(c.deployment.key, (day, 0))
                used = used if used_day == day else 0
                if used >= cap:
                    continue
                self._paid[c.deployment.key] = (day, used + 1)
                t0 = time.monotonic()
                d = c.deployment
                try:
                    payload = d.provider.wire.to_upstream(body, d.model, d.params, False)
                    resp = await call(self.gw, d, payload, {}, ANONYMOUS, False)
                    await resp.read()
                    verdict, detail = HEALTHY, "HTTP 200: answered"
                except E.GatewayError as err:
                    if err.code == "upstream_auth_failed":
                        verdict, detail = UNHEALTHY, err.message
                    elif err.status < 500 and err.status != 429:
                        verdict, detail = HEALTHY, f"HTTP {err.status}: reachable"
                    else:
                        verdict, detail = _verdict(err.status)
                        detail = f"{detail}: {err.code or err.type}"
                c.stats.probe = ProbeResult(
                    verdict, time.time(), detail, _ms(time.monotonic() - t0), kind="completion"
                )


def _probeable(p: Provider) -> bool:
    if not p.models_url or p.type == "mock" or p.signer is not None or p.token_source is not None:
        return False
    # A provider that only forwards its clients' keys has none of its own to probe with.
    return not (p.forward_client_key and p.auth_header not in p.headers)


__all__ = [
    "CAPABILITIES",
    "Prober",
    "deployment_view",
    "iso",
    "overall",
    "provider_views",
    "route_view",
    "summary",
]
