from __future__ import annotations

import random

from llm_proxy import errors as E
from llm_proxy.routing.retry import backoff, retry_after, retryable, same_deployment_again


def test_what_is_retryable() -> None:
    assert retryable(E.UpstreamError("x"))  # 502
    assert retryable(E.UpstreamTimeoutError("x"))  # 504
    assert retryable(E.RateLimitError("x"))  # 429
    assert retryable(E.ServiceUnavailableError("x"))  # 503
    assert not retryable(E.InvalidRequestError("x"))  # 400
    assert not retryable(E.NotFoundError("x"))  # 404
    assert not retryable(E.ContextLengthExceededError("x"))
    auth = E.UpstreamError("x", code="upstream_auth_failed")
    assert retryable(auth) and not same_deployment_again(auth)


def test_backoff_is_full_jitter_capped_and_respects_retry_after() -> None:
    rng = random.Random(7)
    err = E.UpstreamError("x")
    waits = [backoff(3, 0.5, err, rng) for _ in range(200)]
    assert all(0 <= w <= 4.0 for w in waits) and max(waits) > 2.0  # 0.5 * 2**3 = 4
    assert all(backoff(10, 0.5, err, rng) <= 8.0 for _ in range(50))
    limited = E.RateLimitError("x", headers={"Retry-After": "3"})
    assert retry_after(limited) == 3.0
    assert all(backoff(0, 0.5, limited, rng) >= 3.0 for _ in range(50))
    assert retry_after(E.RateLimitError("x", headers={"Retry-After": "soon"})) is None
