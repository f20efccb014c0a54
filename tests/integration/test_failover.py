"""Retries, failover between deployments and model fallbacks, counted at the fake upstream."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.integration.routing import USER
from tests.integration.routing import seen as _models

TWO = """  - name: m
    deployments:
      - {provider: a, model: %s}
      - {provider: b, model: %s}
"""


def test_fails_over_to_the_healthy_deployment(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-error-500", "fake-plain"))
    raw = gw.client().chat.completions.with_raw_response.create(model="m", messages=USER)
    assert raw.parse().choices[0].message.content == "fake: are you there"
    assert raw.headers["x-llm-proxy-attempts"] == "2"
    assert raw.headers["x-llm-proxy-deployment"] == "b/fake-plain"
    assert raw.parse().model == "m"
    assert _models(fake) == ["fake-error-500", "fake-plain"]


def test_stream_fails_over_before_the_first_byte(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-error-503", "fake-plain"))
    text = "".join(
        c.choices[0].delta.content or ""
        for c in gw.client().chat.completions.create(model="m", messages=USER, stream=True)
        if c.choices
    )
    assert text == "fake: are you there"
    assert _models(fake) == ["fake-error-503", "fake-plain"]


def test_client_errors_are_not_retried(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-error-400", "fake-plain"))
    with pytest.raises(openai.BadRequestError):
        gw.client().chat.completions.create(model="m", messages=USER)
    assert _models(fake) == ["fake-error-400"]
    with pytest.raises(openai.BadRequestError) as e:
        gw.client().chat.completions.create(
            model="m", messages=USER, extra_body={"fake_context": True}
        )
    assert e.value.code == "context_length_exceeded"
    assert _models(fake) == ["fake-error-400", "fake-error-400"]


def test_retries_same_deployment_then_fails_over(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-error-500", "fake-plain"), "num_retries: 2\nretry_backoff: 0.05\n")
    r = gw.client().chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "fake: are you there"
    assert _models(fake) == ["fake-error-500"] * 3 + ["fake-plain"]


def test_retry_after_is_honoured_or_failed_over(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-error-429", "fake-plain"), "num_retries: 1\nmax_retry_wait: 5\n")
    t0 = time.monotonic()
    gw.client().chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - t0 >= 2.0  # the fake's Retry-After: 2
    assert _models(fake) == ["fake-error-429", "fake-error-429", "fake-plain"]
    fake.reset()
    quick = make(TWO % ("fake-error-429", "fake-plain"), "num_retries: 1\nmax_retry_wait: 1\n")
    t0 = time.monotonic()
    quick.client().chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - t0 < 1.5  # too long a wait: straight to the other deployment
    assert _models(fake) == ["fake-error-429", "fake-plain"]


def test_every_deployment_failing_is_503_with_details(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-error-500", "fake-error-502"))
    with pytest.raises(openai.InternalServerError) as e:
        gw.client().chat.completions.create(model="m", messages=USER)
    assert e.value.status_code == 503
    body: Any = e.value.body
    assert body["code"] == "providers_unavailable" and body["type"] == "service_unavailable_error"
    details = body["details"]
    assert details["attempts"] == 2 and details["providers_tried"] == ["a", "b"]
    assert [x["deployment"] for x in details["errors"]] == ["fake-error-500", "fake-error-502"]


def test_model_fallbacks_and_attempt_cap(make: Any, fake: FakeOpenAI) -> None:
    models = (
        "  - name: primary\n    provider: a\n    model: fake-error-502\n    fallbacks: [backup]\n"
        "  - name: backup\n    provider: b\n    model: fake-plain\n"
    )
    gw = make(models)
    r = gw.client().chat.completions.create(model="primary", messages=USER)
    assert r.model == "primary" and r.choices[0].message.content == "fake: are you there"
    assert _models(fake) == ["fake-error-502", "fake-plain"]
    fake.reset()
    capped = make(
        TWO % ("fake-error-500", "fake-plain"),
        "num_retries: 5\nretry_backoff: 0\nmax_attempts: 3\n",
    )
    with pytest.raises(openai.InternalServerError):
        capped.client().chat.completions.create(model="m", messages=USER)
    assert _models(fake) == ["fake-error-500"] * 3


def test_no_retry_once_output_reached_the_client(make: Any, fake: FakeOpenAI) -> None:
    gw = make(TWO % ("fake-midstream-error", "fake-plain"), "num_retries: 2\n")
    with pytest.raises(openai.APIError):
        list(gw.client().chat.completions.create(model="m", messages=USER, stream=True))
    assert _models(fake) == ["fake-midstream-error"]
