"""What a call costs: usage x price (config first, else genai-prices' bundled table)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("llm_proxy")

# Our provider types and names -> genai-prices provider ids (where they differ).
PRICE_PROVIDERS = {"gemini": "google", "vertex": "google", "bedrock": "aws", "xai": "x-ai"}
_M = 1_000_000


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per token."""

    input: float
    output: float
    cached_input: float
    reasoning: float
    per_request: float = 0.0  # USD per answered call (per unit: images)

    def cost(self, prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> float:
        """USD for this usage; cached tokens are part of the prompt, reasoning of the completion."""
        cached = min(cached, prompt)
        reasoning = min(reasoning, completion)
        return (
            (prompt - cached) * self.input
            + cached * self.cached_input
            + (completion - reasoning) * self.output
            + reasoning * self.reasoning
        )

    def worst_case(self, prompt_tokens: int, max_tokens: int, units: int = 1) -> float:
        return (
            prompt_tokens * self.input
            + max_tokens * max(self.output, self.reasoning)
            + units * self.per_request
        )


FREE = Pricing(0.0, 0.0, 0.0, 0.0)


_cache: dict[tuple[str, str, str], Pricing | None] = {}


def catalog_pricing(ptype: str, name: str, model: str) -> Pricing | None:
    """genai-prices' price for the model at this provider (cached; None if it does not know)."""
    k = (ptype, name, model)
    if k in _cache:
        return _cache[k]
    found: Pricing | None = None
    try:
        from genai_prices import Usage, calc_price

        for provider in (PRICE_PROVIDERS.get(name, name), PRICE_PROVIDERS.get(ptype, ptype), None):
            try:
                base = calc_price(
                    Usage(input_tokens=_M, output_tokens=_M), model, provider_id=provider
                )
                cached = calc_price(
                    Usage(input_tokens=_M, cache_read_tokens=_M), model, provider_id=provider
                )
            except LookupError:
                continue
            found = Pricing(
                float(base.input_price) / _M,
                float(base.output_price) / _M,
                float(cached.input_price) / _M,
                float(base.output_price) / _M,
            )
            break
    except Exception as e:  # a price table problem must never fail a call
        log.warning("price lookup failed", extra={"model": model, "error": type(e).__name__})
    _cache[k] = found
    return found


# id(deployment) -> (the deployment, kept alive so its id is not reused; its pricing)
_by_deployment: dict[int, tuple[Any, Pricing]] = {}


def deployment_pricing(d: Any) -> Pricing:
    """The deployment's price: its `price` from config, else the catalog's, else free."""
    hit = _by_deployment.get(id(d))
    if hit is not None:
        return hit[1]
    p = d.price_config
    if p is not None:
        got = Pricing(
            p.input / _M,
            p.output / _M,
            (p.cached_input if p.cached_input is not None else p.input) / _M,
            (p.reasoning if p.reasoning is not None else p.output) / _M,
            p.per_request,
        )
    else:
        got = catalog_pricing(d.provider.type, d.provider.name, d.model) or FREE
    if len(_by_deployment) > 10_000:
        _by_deployment.clear()
    _by_deployment[id(d)] = (d, got)
    return got
