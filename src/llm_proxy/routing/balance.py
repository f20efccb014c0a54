"""Strategies: a model's candidates -> the order to try them in, with the unavailable ones left out.

Every strategy gives a full order (not just a first pick), so failover after the first choice
follows the same logic. Then health reorders: deployments whose circuit is open or which are
cooling down after a 429 are skipped; unhealthy or over-capacity ones go last.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from llm_proxy.routing.state import DeploymentStats
from llm_proxy.runtime import Deployment


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment and what the gateway has observed of it."""

    deployment: Deployment
    stats: DeploymentStats

    @property
    def label(self) -> str:
        return self.deployment.label


Skipped = list[tuple[Candidate, str]]


def _weighted(cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    # Efraimidis-Spirakis: sorting by u**(1/w) is a weighted draw without replacement.
    return sorted(cands, key=lambda c: rng.random() ** (1.0 / c.deployment.weight), reverse=True)


def _least_busy(cands: Sequence[Candidate]) -> list[Candidate]:
    return sorted(cands, key=lambda c: c.stats.in_flight)  # stable: ties keep priority order


def _lowest_latency(cands: Sequence[Candidate], stream: bool) -> list[Candidate]:
    # Unmeasured deployments count as fastest, so each gets tried and measured. Streams go by
    # time to first token, falling back on total latency where no stream was measured yet.
    if stream:
        return sorted(cands, key=lambda c: c.stats.ttft_ewma or c.stats.latency_ewma or 0.0)
    return sorted(cands, key=lambda c: c.stats.latency_ewma or 0.0)


def _lowest_cost(cands: Sequence[Candidate]) -> list[Candidate]:
    # Input and output priced alike: chat prompts and answers are of the same order of size.
    def cost(c: Candidate) -> float:
        p = c.deployment.price
        return p[0] + p[1] if p is not None else float("inf")

    return sorted(cands, key=cost)


def order(
    strategy: str,
    cands: Sequence[Candidate],
    now: float,
    stream: bool,
    rng: random.Random,
) -> tuple[list[Candidate], Skipped]:
    """(candidates to try, in order; those skipped and why). `cands` are in priority order."""
    if len(cands) == 1:  # the common case: nothing to order, demoting changes nothing
        why = cands[0].stats.unavailable(now)
        return ([cands[0]], []) if why is None else ([], [(cands[0], why)])
    if strategy == "weighted":
        cands = _weighted(cands, rng)
    elif strategy == "least-busy":
        cands = _least_busy(cands)
    elif strategy == "lowest-latency":
        cands = _lowest_latency(cands, stream)
    elif strategy == "lowest-cost":
        cands = _lowest_cost(cands)
    first: list[Candidate] = []
    last: list[Candidate] | None = None
    skipped: Skipped = []
    for c in cands:
        why = c.stats.unavailable(now)
        if why is not None:
            skipped.append((c, why))
            continue
        d = c.deployment
        if c.stats.demoted(now, d.rpm, d.tpm) is not None:
            if last is None:
                last = []
            last.append(c)
        else:
            first.append(c)
    if last:
        first += last
    return first, skipped


__all__ = ["Candidate", "order"]
