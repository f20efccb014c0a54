"""Rate limits and concurrency caps over real HTTP: key and team rpm/tpm (GCRA), parallel
slots, per-client-IP limits, and a deployment's own `max_concurrent` with its bounded queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

# The package ships no py.typed: without MYPYPATH=src, mypy sees it as untyped.
from llm_proxy.accounting import estimate_prompt_tokens  # type: ignore[import-untyped, unused-ignore]
from tests.conftest import MASTER_KEY, GatewayFactory, RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import client, config, hi, new_key, request, wait_until

Reply = tuple[int, dict[str, str], Any]
MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> RunningGateway:
    return gateway_factory(config(fake_upstream[1]))


def body(content: str = "hi", model: str = "priced", **kw: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 2,
        **kw,
    }


def chat(url: str, key: str = MASTER_KEY, doc: dict[str, Any] | None = None, **kw: Any) -> Reply:
    return request(url, "POST", "/v1/chat/completions", doc or body(**kw), key=key)


def info(url: str, key: str) -> dict[str, Any]:
    status, _, doc = request(url, "GET", "/v1/key/info", key=key)
    assert status == 200, doc
    return dict(doc)


def started(pool: ThreadPoolExecutor, n: int, call: Callable[[], Reply]) -> Iterator[Future[Reply]]:
    """n calls let go at the same moment from the pool's threads, yielded as they finish."""
    start = threading.Barrier(n)

    def one() -> Reply:
        start.wait()
        return call()

    return as_completed([pool.submit(one) for _ in range(n)])


def together(n: int, call: Callable[[], Reply]) -> list[Reply]:
    with ThreadPoolExecutor(n) as pool:
        return [f.result() for f in started(pool, n, call)]


def refused(reply: Reply, code: str) -> dict[str, Any]:
    """The error of a 429 in the OpenAI shape, with a Retry-After of whole seconds >= 1."""
    status, headers, doc = reply
    assert status == 429, doc
    err = doc["error"]
    assert err["code"] == code and err["type"] == "rate_limit_error", err
    assert set(err) >= {"message", "type", "param", "code"}
    assert headers["retry-after"].isdigit() and int(headers["retry-after"]) >= 1
    return dict(err)


def no_rate_headers(headers: dict[str, str]) -> bool:
    return not [h for h in headers if h.startswith("x-ratelimit")]


def test_key_rpm_counts_down_in_headers_then_refuses_with_retry_after(gw: RunningGateway) -> None:
    k = new_key(gw.url, rpm=5)
    seen = []
    for _ in range(5):
        status, h, doc = chat(gw.url, k["key"])
        assert status == 200 and doc["choices"][0]["message"]["content"] == "fake: hi"
        assert h["x-ratelimit-limit-requests"] == "5" and "x-ratelimit-limit-tokens" not in h
        seen.append((h["x-ratelimit-remaining-requests"], h["x-ratelimit-reset-requests"]))
    # One request per 12 s refills the bucket: the reset is when it is full again.
    assert seen == [("4", "12s"), ("3", "24s"), ("2", "36s"), ("1", "48s"), ("0", "1m0s")]
    reply = chat(gw.url, k["key"])
    err = refused(reply, "rate_limit_exceeded")
    retry = int(reply[1]["retry-after"])
    assert 11 <= retry <= 12  # until the first request's share drips back
    assert "requests per min (RPM): Limit 5" in err["message"] and "this key" in err["message"]
    assert f"try again in {retry}s" in err["message"]
    assert reply[1]["x-ratelimit-limit-requests"] == "5"
    assert reply[1]["x-ratelimit-remaining-requests"] == "0"
    assert info(gw.url, k["key"])["limits"]["rpm"] == {
        "limit": 5,
        "remaining": 0,
        "reset_seconds": pytest.approx(60, abs=2),
    }


def test_the_openai_sdk_sees_the_headers_and_a_rate_limit_error(gw: RunningGateway) -> None:
    k = new_key(gw.url, rpm=5)
    c = client(gw.url, k["key"])
    for left in (4, 3, 2, 1, 0):
        raw = c.chat.completions.with_raw_response.create(model="priced", messages=MSG)
        assert raw.headers["x-ratelimit-remaining-requests"] == str(left)
        assert raw.parse().choices[0].message.content == "fake: hi"
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="priced", messages=MSG)
    assert e.value.status_code == 429 and e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1


def test_key_tpm_charges_the_estimate_then_settles_to_real_usage(gw: RunningGateway) -> None:
    k = new_key(gw.url, tpm=60)
    big = body("x" * 300)
    assert estimate_prompt_tokens(big) > 60
    reply = chat(gw.url, k["key"], big)
    err = refused(reply, "tokens_exceed_limit")  # could never fit: not a matter of waiting
    assert f"Limit 60, Requested {estimate_prompt_tokens(big)}" in err["message"]
    assert reply[1]["x-ratelimit-limit-tokens"] == "60"
    assert info(gw.url, k["key"])["limits"]["tpm"]["remaining"] == 60  # nothing was taken

    doc = body("y" * 90)  # one long word: a high estimate, a real usage of 3 words
    est = estimate_prompt_tokens(doc)
    assert 2 * est > 60  # a second call fits only if the first one gave tokens back
    status, h, out = chat(gw.url, k["key"], doc)
    assert status == 200, out
    used = out["usage"]["total_tokens"]
    assert used == 3 and used < est
    assert h["x-ratelimit-limit-tokens"] == "60"
    assert h["x-ratelimit-remaining-tokens"] == str(60 - est)
    assert h["x-ratelimit-reset-tokens"] == f"{est}s"  # one token a second comes back
    assert "x-ratelimit-limit-requests" not in h
    wait_until(lambda: info(gw.url, k["key"])["limits"]["tpm"]["remaining"] == 60 - used)
    status, h, out = chat(gw.url, k["key"], doc)
    assert status == 200, out
    assert h["x-ratelimit-remaining-tokens"] == str(60 - used - est)


def test_max_parallel_requests_refuses_the_excess_and_frees_slots(gw: RunningGateway) -> None:
    k = new_key(gw.url, max_parallel_requests=2)
    slow = body(model="priced-slow", fake_delay=1.0)
    with ThreadPoolExecutor(5) as pool:
        done = started(pool, 5, lambda: chat(gw.url, k["key"], slow))
        early = [next(done).result() for _ in range(3)]  # the refusals come back at once
        held = info(gw.url, k["key"])["limits"]["max_parallel_requests"]
        late = [f.result() for f in done]
    for reply in early:
        err = refused(reply, "too_many_parallel_requests")
        assert "already has 2 requests in flight" in err["message"]
    assert held == {"limit": 2, "in_flight": 2}
    assert [s for s, _, _ in late] == [200, 200]
    assert all(d["choices"][0]["message"]["content"] == "fake: hi" for _, _, d in late)
    wait_until(lambda: info(gw.url, k["key"])["limits"]["max_parallel_requests"]["in_flight"] == 0)
    assert chat(gw.url, k["key"], body(model="priced-slow", fake_delay=0))[0] == 200


def test_team_rpm_is_shared_by_its_keys_on_top_of_their_own(gw: RunningGateway) -> None:
    status, _, team = request(gw.url, "POST", "/admin/teams", {"name": "t", "rpm": 3})
    assert status == 201, team
    a = new_key(gw.url, team_id=team["id"], rpm=10)
    b = new_key(gw.url, team_id=team["id"], rpm=1)
    status, h, _ = chat(gw.url, a["key"])
    assert status == 200  # headers report the tightest bucket: the team's
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("3", "2")
    status, h, _ = chat(gw.url, b["key"])
    assert status == 200  # here b's own limit is the tightest
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("1", "0")
    err = refused(chat(gw.url, b["key"]), "rate_limit_exceeded")
    assert "this key" in err["message"] and "Limit 1" in err["message"]
    status, h, _ = chat(gw.url, a["key"])  # b's refusal took nothing from the team
    assert status == 200 and h["x-ratelimit-remaining-requests"] == "0"
    reply = chat(gw.url, a["key"])
    err = refused(reply, "rate_limit_exceeded")
    assert "this team" in err["message"] and "Limit 3" in err["message"]
    assert reply[1]["x-ratelimit-limit-requests"] == "3"
    got = info(gw.url, a["key"])
    assert got["limits"]["rpm"]["remaining"] == 8  # 2 calls: the team's refusal took nothing
    assert got["team"]["id"] == team["id"] and got["team"]["limits"]["rpm"]["remaining"] == 0
    assert info(gw.url, b["key"])["limits"]["rpm"]["remaining"] == 0


IP = "ip_limits: {exempt: [], default: {limit: 3, window: 900}, inference: {limit: 2, window: 900}}\n"


def test_ip_limits_on_inference_other_and_public_paths(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(config(fake_upstream[1], IP))
    for left in ("1", "0"):
        status, h, doc = chat(gw.url)
        assert status == 200, doc
        assert h["x-ratelimit-limit"] == "2" and h["x-ratelimit-remaining"] == left
        assert time.time() < int(h["x-ratelimit-reset"]) <= time.time() + 901
        assert "x-ratelimit-limit-requests" not in h  # the master key has no rpm of its own
    reply = chat(gw.url)
    err = refused(reply, "rate_limit_exceeded")
    assert "this client" in err["message"] and "Limit 2 per 900s" in err["message"]
    assert 400 <= int(reply[1]["retry-after"]) <= 450  # one request per 450 s drips back
    assert reply[1]["x-ratelimit-limit"] == "2" and reply[1]["x-ratelimit-remaining"] == "0"
    assert int(reply[1]["x-ratelimit-reset"]) > time.time()
    for left in ("2", "1", "0"):  # other routes: the default limit, a bucket of their own
        status, h, doc = request(gw.url, "GET", "/v1/key/info")
        assert status == 200 and doc["master"] is True
        assert h["x-ratelimit-limit"] == "3" and h["x-ratelimit-remaining"] == left
    reply = request(gw.url, "GET", "/v1/key/info")
    assert "Limit 3 per 900s" in refused(reply, "rate_limit_exceeded")["message"]
    assert reply[1]["x-ratelimit-limit"] == "3"
    for _ in range(5):
        status, h, _ = request(gw.url, "GET", "/health", key="")
        assert status == 200 and no_rate_headers(h)


def test_a_route_of_its_own_wins_over_the_default_and_inference_limits(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    extra = (
        "ip_limits: {exempt: [], inference: {limit: 50}, "
        "routes: {/v1/chat/completions: {limit: 1, window: 60}, /providers: {limit: 1}}}\n"
    )
    gw = gateway_factory(config(fake_upstream[1], extra))
    status, h, _ = chat(gw.url)
    assert status == 200 and h["x-ratelimit-limit"] == "1"
    assert "Limit 1 per 60s" in refused(chat(gw.url), "rate_limit_exceeded")["message"]
    status, h, _ = request(gw.url, "GET", "/providers")
    assert status == 200 and h["x-ratelimit-limit"] == "1"
    refused(request(gw.url, "GET", "/providers"), "rate_limit_exceeded")
    status, h, _ = request(gw.url, "GET", "/v1/key/info")
    assert status == 200 and h["x-ratelimit-limit"] == "100"  # the built-in default


def test_ip_and_key_limits_are_taken_together_or_not_at_all(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    extra = "ip_limits: {exempt: [], inference: {limit: 2}}\n"
    gw = gateway_factory(config(fake_upstream[1], extra))
    k = new_key(gw.url, rpm=1)
    status, h, _ = chat(gw.url, k["key"])
    assert status == 200
    assert h["x-ratelimit-remaining"] == "1" and h["x-ratelimit-remaining-requests"] == "0"
    assert "this key" in refused(chat(gw.url, k["key"]), "rate_limit_exceeded")["message"]
    status, h, _ = chat(gw.url)  # the key's refusal took nothing from the IP's bucket
    assert status == 200 and h["x-ratelimit-remaining"] == "0"
    assert "this client" in refused(chat(gw.url), "rate_limit_exceeded")["message"]


@pytest.mark.parametrize(
    "extra",
    [
        "ip_limits: {enabled: false, exempt: [], default: {limit: 1}, inference: {limit: 1}}\n",
        "ip_limits: {default: {limit: 1}, inference: {limit: 1}}\n",  # loopback exempt
    ],
    ids=["disabled", "loopback-exempt"],
)
def test_ip_limits_off_or_exempt_limit_nothing(
    gateway_factory: GatewayFactory,
    fake_upstream: tuple[FakeOpenAI, str],
    fake: FakeOpenAI,
    extra: str,
) -> None:
    gw = gateway_factory(config(fake_upstream[1], extra))
    for _ in range(4):
        status, h, doc = chat(gw.url)
        assert status == 200 and no_rate_headers(h), doc
        status, h, doc = request(gw.url, "GET", "/providers")
        assert status == 200 and no_rate_headers(h), doc


PAIR = (
    "  - name: pair\n"
    "    deployments:\n"
    "      - {provider: fakeai, model: fake-slow, max_concurrent: 1}\n"
    "      - {provider: fakeai, model: fake-plain}\n"
)


def test_deployment_max_concurrent_queues_then_fails_over(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(config(fake_upstream[1], "queue_timeout: 0.2\n", PAIR))

    def timed(delay: float) -> Callable[[], Reply]:
        def call() -> Reply:
            t0 = time.monotonic()
            status, h, doc = chat(gw.url, model="pair", fake_delay=delay)
            return status, {**h, "elapsed": str(time.monotonic() - t0)}, doc

        return call

    got = together(3, timed(0.8))
    assert [s for s, _, _ in got] == [200, 200, 200], got
    served = [(h["x-llm-proxy-deployment"], h["x-llm-proxy-attempts"]) for _, h, _ in got]
    assert served == [("fakeai/fake-plain", "2")] * 2 + [("fakeai/fake-slow", "1")]
    for _, h, _ in got[:2]:  # waited out the queue, then failed over, well before 0.8 s
        assert 0.2 <= float(h["elapsed"]) < 0.7
    upstream = [r.body["model"] for r in fake.requests if r.body]
    assert sorted(upstream) == ["fake-plain", "fake-plain", "fake-slow"]  # the queued never left
    fake.reset()
    got = together(2, timed(0.05))  # a slot freed within queue_timeout: no failover
    assert [h["x-llm-proxy-deployment"] for _, h, _ in got] == ["fakeai/fake-slow"] * 2
    assert [r.body["model"] for r in fake.requests if r.body] == ["fake-slow"] * 2


def test_the_master_key_and_unlimited_keys_get_no_rate_limits(gw: RunningGateway) -> None:
    limited = new_key(gw.url, rpm=1, tpm=10, max_parallel_requests=1)
    assert chat(gw.url, limited["key"])[0] == 200
    assert chat(gw.url, limited["key"])[0] == 429
    plain = new_key(gw.url)
    for key in (MASTER_KEY, plain["key"]):
        for _ in range(6):
            status, h, doc = chat(gw.url, key)
            assert status == 200 and no_rate_headers(h), doc
    assert info(gw.url, plain["key"])["limits"] == {}
    assert info(gw.url, MASTER_KEY)["limits"] == {}


def test_waiting_out_a_deployments_own_cap_is_no_upstream_failure(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    extra = "queue_timeout: 0.2\ncircuit_breaker_threshold: 2\n"
    gw = gateway_factory(config(fake_upstream[1], extra, PAIR))
    with ThreadPoolExecutor(3) as pool:
        done = started(pool, 3, lambda: chat(gw.url, model="pair", fake_delay=0.8))
        assert [next(done).result()[0] for _ in range(2)] == [200, 200]  # failed over
        _, doc = gw.get_json("/providers")  # fake-slow is still answering its one call
        [fakeai] = [p for p in doc["data"] if p["name"] == "fakeai"]
        assert fakeai["circuit_breaker"]["deployments"]["fake-slow"] == "closed"


def test_a_reloaded_queue_timeout_applies_to_deployment_caps(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    text = config(fake_upstream[1], "reload_interval: 0.1\nqueue_timeout: 0.2\n", PAIR)
    gw = gateway_factory(text)
    assert chat(gw.url, model="pair")[0] == 200  # the deployment's limiter exists from here
    new = gw.config_path.with_suffix(".new")
    new.write_text(text.replace("queue_timeout: 0.2", "queue_timeout: 5"))
    new.replace(gw.config_path)
    wait_until(lambda: gw.gw.reloads == 1)
    assert gw.gw.runtime.settings.queue_timeout == 5
    got = together(2, lambda: chat(gw.url, model="pair", fake_delay=0.6))
    assert [h["x-llm-proxy-deployment"] for _, h, _ in got] == ["fakeai/fake-slow"] * 2


def test_wrong_keys_count_against_the_client_ip(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    extra = "ip_limits: {exempt: [], inference: {limit: 3, window: 900}}\n"
    gw = gateway_factory(config(fake_upstream[1], extra))
    statuses = [hi(gw.url, f"sk-llmp-guess-{i}") for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
