"""Which failures may be retried or failed over, and how long to wait before the next attempt."""

from __future__ import annotations

import random

from llm_proxy.errors import ContextLengthExceededError, GatewayError

# Safe to try again: nothing reached the client and the upstream did not refuse the request itself.
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def retryable(err: GatewayError) -> bool:
    """A failure worth another attempt (same deployment or the next one)."""
    if isinstance(err, ContextLengthExceededError):
        return False  # a bigger-context fallback is a separate decision
    return err.status in RETRYABLE_STATUS


def same_deployment_again(err: GatewayError) -> bool:
    """Our own credentials being refused will not heal by retrying the same deployment."""
    return retryable(err) and err.code != "upstream_auth_failed"


def retry_after(err: GatewayError) -> float | None:
    """Seconds the upstream asked us to wait (Retry-After in seconds), if any."""
    value = err.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def backoff(retry: int, base: float, err: GatewayError, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff, never shorter than the upstream's Retry-After."""
    cap = min(8.0, base * (2**retry))
    wait = (rng or random).uniform(0, cap) if cap > 0 else 0.0
    asked = retry_after(err)
    return max(wait, asked) if asked is not None else wait
