"""Each upstream failure -> the right routing behaviour, counted at the fake upstream.

Scenarios are the fake's (tests/fakes/openai.py): 429 with Retry-After, 500/502/503, a hang,
a reset mid-body, a reset before the first stream event, an error event before any content,
a stream cut mid-way (tests/integration/routing.py has the shared config).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.routing import REPLY, USER, ask, seen, two


def stream_text(gw: RunningGateway) -> str:
    chunks = gw.client().chat.completions.create(model="m", messages=USER, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize(
    "failure",
    [
        "fake-error-500",
        "fake-error-502",
        "fake-error-503",
        "fake-error-429",
        "fake-hang",
        "fake-reset-body",
    ],
)
def test_plain_failure_fails_over_to_the_healthy_deployment(
    make: Any, fake: FakeOpenAI, failure: str
) -> None:
    gw = make(two(failure))
    raw = ask(gw)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-llm-proxy-deployment"] == "b/fake-plain"
    assert raw.headers["x-llm-proxy-attempts"] == "2"
    assert float(raw.headers["x-llm-proxy-latency-ms"]) > 0
    assert seen(fake) == [failure, "fake-plain"]
    if failure == "fake-hang":
        time.sleep(0.2)
        assert fake.disconnects == ["fake-hang"]  # the timed-out attempt's connection was closed


@pytest.mark.parametrize(
    "failure", ["fake-error-503", "fake-reset-head", "fake-early-error", "fake-hang"]
)
def test_stream_failing_before_its_first_content_fails_over_unseen(
    make: Any, fake: FakeOpenAI, failure: str
) -> None:
    """The head is held back until the first content, so the client sees only b's stream."""
    gw = make(two(failure))
    status, headers, raw = gw.post_raw(
        "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True}
    )
    body = raw.decode()
    assert status == 200 and headers["x-llm-proxy-deployment"] == "b/fake-plain"
    assert '"error"' not in body and body.endswith("data: [DONE]\n\n")
    assert stream_text(gw) == REPLY
    assert seen(fake) == [failure, "fake-plain", failure, "fake-plain"]


@pytest.mark.parametrize("cut", ["fake-reset", "fake-truncate", "fake-midstream-error"])
def test_no_retry_after_output_reached_the_client(make: Any, fake: FakeOpenAI, cut: str) -> None:
    gw = make(two(cut), "num_retries: 2\n")
    got = ""
    with pytest.raises(openai.APIError):
        for c in gw.client().chat.completions.create(model="m", messages=USER, stream=True):
            got += c.choices[0].delta.content or "" if c.choices else ""
    assert got == "fake:"  # the first word went out, then the error event ended the stream
    assert seen(fake) == [cut]


def test_stall_after_content_ends_with_an_error_event(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-stall"))
    with pytest.raises(openai.APIError) as e:
        list(gw.client().chat.completions.create(model="m", messages=USER, stream=True))
    assert "timed out" in str(e.value)
    assert seen(fake) == ["fake-stall"]


def test_retries_wait_for_retry_after(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        "  - name: m\n    provider: a\n    model: fake-ratelimit-1\n    fallbacks: [m2]\n"
        "  - name: m2\n    provider: b\n    model: fake-plain\n",
        "num_retries: 2\nretry_backoff: 0.01\n",
    )
    assert ask(gw).parse().choices[0].message.content == REPLY
    assert seen(fake) == ["fake-ratelimit-1"] * 3 + ["fake-plain"]
    at = [r.at for r in fake.requests]
    gaps = [b - a for a, b in itertools.pairwise(at[:3])]
    assert all(1.0 <= g < 1.5 for g in gaps), gaps  # Retry-After: 1, and no more than that


def test_retry_backoff_is_exponential_with_full_jitter(make: Any, fake: FakeOpenAI) -> None:
    # retry_backoff 0.2: waits drawn from [0, 0.2], [0, 0.4], [0, 0.8]
    gw = make(two("fake-error-500"), "num_retries: 3\nretry_backoff: 0.2\n")
    assert ask(gw).headers["x-llm-proxy-attempts"] == "5"
    assert seen(fake) == ["fake-error-500"] * 4 + ["fake-plain"]
    at = [r.at for r in fake.requests]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    for k, cap in enumerate((0.2, 0.4, 0.8)):
        assert 0 <= gaps[k] < cap + 0.15, gaps


def test_per_deployment_num_retries(make: Any, fake: FakeOpenAI) -> None:
    models = (
        "  - name: m\n    deployments:\n"
        "      - {provider: a, model: fake-error-502, num_retries: 1}\n"
        "      - {provider: b, model: fake-plain}\n"
    )
    gw = make(models, "retry_backoff: 0\n")
    assert ask(gw).headers["x-llm-proxy-attempts"] == "3"
    assert seen(fake) == ["fake-error-502", "fake-error-502", "fake-plain"]


def test_per_deployment_timeouts_override_the_providers(make: Any, fake: FakeOpenAI) -> None:
    # The providers' first_byte timeout is 0.5 s; a's own 3 s lets its 1 s answer through.
    models = (
        "  - name: m\n    deployments:\n"
        "      - {provider: a, model: fake-first-1000, timeouts: {connect: 1, first_byte: 3, total: 5}}\n"
        "      - {provider: b, model: fake-plain}\n"
        "  - name: short\n    deployments:\n"
        "      - {provider: a, model: fake-first-1000}\n"
        "      - {provider: b, model: fake-plain}\n"
    )
    gw = make(models)
    assert ask(gw).headers["x-llm-proxy-deployment"] == "a/fake-first-1000"
    raw = gw.client().chat.completions.with_raw_response.create(model="short", messages=USER)
    assert raw.headers["x-llm-proxy-deployment"] == "b/fake-plain"  # a timed out at 0.5 s
    assert seen(fake) == ["fake-first-1000", "fake-first-1000", "fake-plain"]


def test_client_errors_go_straight_back(make: Any, fake: FakeOpenAI) -> None:
    for status, exc in ((400, openai.BadRequestError), (404, openai.NotFoundError)):
        fake.reset()
        gw = make(two(f"fake-error-{status}"), "num_retries: 3\n")
        with pytest.raises(exc):
            ask(gw)
        assert seen(fake) == [f"fake-error-{status}"]


def test_request_time_limit_stops_further_attempts(make: Any, fake: FakeOpenAI) -> None:
    models = (
        "  - name: m\n    deployments:\n"
        "      - {provider: a, model: fake-hang, timeouts: {connect: 1, first_byte: 5, total: 5}}\n"
        "      - {provider: b, model: fake-plain}\n"
    )
    gw = make(models, "max_request_time: 0.4\n")
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        ask(gw)
    assert time.monotonic() - t0 < 1.5
    assert e.value.status_code == 504
    body: Any = e.value.body
    assert body["code"] == "request_deadline"
    assert seen(fake) == ["fake-hang"]  # no time was left for b


def test_circuit_opens_after_threshold_and_closes_after_a_good_probe(
    make: Any, fake: FakeOpenAI
) -> None:
    gw = make(two("fake-flaky"), "circuit_breaker_threshold: 3\ncircuit_breaker_timeout: 0.5\n")
    fake.modes["fake-flaky"] = "fake-error-500"
    for _ in range(3):
        assert ask(gw).headers["x-llm-proxy-deployment"] == "b/fake-plain"
    assert fake.count("fake-flaky") == 3
    _, routes = gw.get_json("/admin/routes/m")
    flaky = routes["deployments"][0]
    assert flaky["circuit"]["state"] == "open" and flaky["circuit"]["consecutive_failures"] == 3
    assert flaky["status"] == "unhealthy"
    assert "skipped" not in routes["last_decision"]["reason"]
    # Open: a is not even tried.
    for _ in range(3):
        raw = ask(gw)
        assert raw.headers["x-llm-proxy-attempts"] == "1"
    assert fake.count("fake-flaky") == 3
    _, routes = gw.get_json("/admin/routes/m")
    assert "skipped a/fake-flaky (circuit open)" in routes["last_decision"]["reason"]
    # After the timeout, one probe; it succeeds, so the circuit closes and a serves again.
    fake.modes["fake-flaky"] = "fake-plain"
    time.sleep(0.6)
    assert ask(gw).headers["x-llm-proxy-deployment"] == "a/fake-flaky"
    assert ask(gw).headers["x-llm-proxy-deployment"] == "a/fake-flaky"
    assert fake.count("fake-flaky") == 5
    _, routes = gw.get_json("/admin/routes/m")
    assert routes["deployments"][0]["circuit"]["state"] == "closed"


def test_a_failed_probe_reopens_the_circuit(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-error-503"), "circuit_breaker_threshold: 2\ncircuit_breaker_timeout: 0.3\n")
    for _ in range(2):
        ask(gw)
    time.sleep(0.4)
    ask(gw)  # the probe: fails, circuit open again
    ask(gw)
    ask(gw)
    assert fake.count("fake-error-503") == 3


def test_half_open_lets_a_single_probe_through(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-flaky"), "circuit_breaker_threshold: 1\ncircuit_breaker_timeout: 0.3\n")
    fake.modes["fake-flaky"] = "fake-error-500"
    ask(gw)
    fake.modes["fake-flaky"] = "fake-first-400"  # the probe will succeed, slowly
    time.sleep(0.4)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        served = list(pool.map(lambda _: ask(gw).headers["x-llm-proxy-deployment"], range(6)))
    assert fake.count("fake-flaky") == 2  # the first failure, then exactly one probe
    assert sorted(served) == ["a/fake-flaky"] + ["b/fake-plain"] * 5


def test_cooldown_after_429_honours_retry_after(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-ratelimit-1"))
    assert ask(gw).headers["x-llm-proxy-deployment"] == "b/fake-plain"
    for _ in range(3):  # cooling down: straight to b
        assert ask(gw).headers["x-llm-proxy-attempts"] == "1"
    assert fake.count("fake-ratelimit-1") == 1
    time.sleep(1.1)
    ask(gw)
    assert fake.count("fake-ratelimit-1") == 2


def test_cooldown_without_retry_after_uses_cooldown_time(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-error-429-plain"), "cooldown_time: 0.5\n")
    ask(gw)
    ask(gw)
    assert fake.count("fake-error-429-plain") == 1
    time.sleep(0.6)
    ask(gw)
    assert fake.count("fake-error-429-plain") == 2


def test_every_deployment_cooling_down_is_429_with_retry_after(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-ratelimit-5", "fake-ratelimit-3"))
    with pytest.raises(openai.APIStatusError) as e:
        ask(gw)
    assert e.value.status_code == 503  # both tried and failed: seed 003's 503
    with pytest.raises(openai.RateLimitError) as rl:
        ask(gw)  # both cooling down now: nothing is sent upstream
    assert rl.value.response.headers["retry-after"] == "3"
    body: Any = rl.value.body
    assert body["code"] == "rate_limit_exceeded"
    assert [x["code"] for x in body["details"]["errors"]] == ["cooling down after 429"] * 2
    assert len(fake.requests) == 2


def test_every_circuit_open_is_503_fast(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        two("fake-error-500", "fake-error-502"),
        "circuit_breaker_threshold: 1\ncircuit_breaker_timeout: 30\n",
    )
    with pytest.raises(openai.InternalServerError):
        ask(gw)
    t0 = time.monotonic()
    with pytest.raises(openai.InternalServerError) as e:
        ask(gw)
    assert time.monotonic() - t0 < 0.5
    assert e.value.status_code == 503
    assert 25 <= int(e.value.response.headers["retry-after"]) <= 30
    body: Any = e.value.body
    assert body["type"] == "service_unavailable_error" and body["code"] == "providers_unavailable"
    assert [x["code"] for x in body["details"]["errors"]] == ["circuit open"] * 2
    assert len(fake.requests) == 2


def test_error_details_name_attempts_providers_and_types(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-error-500", "fake-hang"))
    with pytest.raises(openai.InternalServerError) as e:
        ask(gw)
    body: Any = e.value.body
    d = body["details"]
    assert d["attempts"] == 2 and d["providers_tried"] == ["a", "b"]
    assert [x["error_type"] for x in d["errors"]] == ["UpstreamError", "UpstreamTimeoutError"]


def test_proxy_info_in_the_body_when_asked(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-error-500"))
    raw = ask(gw, extra_headers={"X-Proxy-Info": "true"})
    info = raw.http_response.json()["_proxy_info"]
    assert info["provider"] == "b" and info["deployment"] == "b/fake-plain"
    assert info["attempt_number"] == 2 and info["response_time"] > 0
    assert info["request_id"] == raw.headers["x-request-id"]
    assert "_proxy_info" not in ask(gw).http_response.json()


def test_a_request_the_format_refuses_does_not_judge_the_deployment(
    gateway_factory: Any, fake_anthropic_upstream: tuple[Any, str]
) -> None:
    # Anthropic cannot do n > 1: the translator refuses before anything is sent, so neither
    # the window nor the breaker (here half-open, waiting for a real probe) hears of it.
    fake_a, url = fake_anthropic_upstream
    fake_a.reset()
    gw = gateway_factory(
        f"master_key: {MASTER_KEY}\ncircuit_breaker_threshold: 1\ncircuit_breaker_timeout: 0.2\n"
        f"providers:\n  - name: claude\n    type: anthropic\n    base_url: {url}/v1\n"
        "    api_key: k\nmodels:\n  - name: m\n    provider: claude\n    model: claude-error-500\n"
    )
    with pytest.raises(openai.InternalServerError):
        ask(gw)  # opens the circuit
    time.sleep(0.3)
    with pytest.raises(openai.BadRequestError):
        ask(gw, n=2)
    _, doc = gw.get_json("/admin/routes/m")
    dep = doc["deployments"][0]
    assert dep["total_requests"] == 1 and dep["in_flight"] == 0
    assert dep["circuit"]["state"] == "half_open"  # still waiting for a real probe
    assert len(fake_a.requests) == 1  # the n=2 request never left the gateway


def test_fallback_models_without_tagged_deployments_are_skipped(
    make: Any, fake: FakeOpenAI
) -> None:
    gw = make(
        "  - name: m\n    fallbacks: [other]\n    deployments:\n"
        "      - {provider: a, model: fake-error-500, tags: [eu]}\n"
        "  - name: other\n    provider: b\n    model: fake-plain\n"
    )
    with pytest.raises(openai.InternalServerError) as e:
        ask(gw, extra_headers={"X-LLM-Proxy-Tags": "eu"})
    assert e.value.status_code == 502  # a's own error, not a 400 about the fallback's tags
    assert seen(fake) == ["fake-error-500"]


def test_max_attempts_bounds_context_fallbacks_too(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        "  - name: m\n    provider: a\n    model: fake-context-10\n"
        "    context_window_fallbacks: [big]\n"
        "  - name: big\n    provider: b\n    model: fake-plain\n",
        "max_attempts: 1\n",
    )
    with pytest.raises(openai.BadRequestError) as e:
        ask(gw)
    assert e.value.code == "context_length_exceeded"
    assert seen(fake) == ["fake-context-10"]
