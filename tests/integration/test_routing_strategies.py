"""Strategies, capacity, tags and context-window fallbacks, counted at the fake upstream."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import openai
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.integration.routing import USER, ask


def model(strategy: str, *deployments: str) -> str:
    lines = "".join(f"      - {d}\n" for d in deployments)
    return f"  - name: m\n    strategy: {strategy}\n    deployments:\n{lines}"


def served(gw: Any, n: int, **kw: Any) -> list[str]:
    return [ask(gw, **kw).headers["x-llm-proxy-deployment"] for _ in range(n)]


def test_priority_orders_by_priority_then_config_order(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "priority",
            "{provider: a, model: fake-error-500, priority: 2}",
            "{provider: b, model: fake-error-502, priority: 1}",
            "{provider: c, model: fake-plain, priority: 2}",
        )
    )
    assert served(gw, 1) == ["c/fake-plain"]
    assert [r.body["model"] for r in fake.requests if r.body] == [
        "fake-error-502",
        "fake-error-500",
        "fake-plain",
    ]


def test_weighted_splits_first_attempts_by_weight(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "weighted",
            "{provider: a, model: fake-plain, weight: 3}",
            "{provider: b, model: fake-plain, weight: 1}",
        )
    )
    got = served(gw, 400)
    share = got.count("a/fake-plain") / len(got)
    assert 0.67 <= share <= 0.83, share  # 0.75 expected; 400 draws keep within about 4 sigma
    assert fake.count("fake-plain") == 400  # one attempt each


def test_least_busy_spreads_concurrent_calls(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "least-busy",
            "{provider: a, model: fake-first-400}",
            "{provider: b, model: fake-first-400}",
        )
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = []
        for _ in range(4):
            futures.append(pool.submit(lambda: ask(gw).headers["x-llm-proxy-deployment"]))
            time.sleep(0.05)  # each call starts while the earlier ones are still in flight
        got = sorted(f.result() for f in futures)
    assert got == ["a/fake-first-400"] * 2 + ["b/fake-first-400"] * 2


def test_lowest_latency_learns_the_faster_deployment(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "lowest-latency",
            "{provider: a, model: fake-first-150}",
            "{provider: b, model: fake-first-5}",
        )
    )
    got = served(gw, 8)
    # Unmeasured deployments go first (each gets measured once), then the faster one wins.
    assert got == ["a/fake-first-150"] + ["b/fake-first-5"] * 7
    stream = gw.client().chat.completions.with_raw_response.create(
        model="m", messages=USER, stream=True
    )
    assert stream.headers["x-llm-proxy-deployment"] == "b/fake-first-5"  # by time to first token


def test_lowest_cost_uses_configured_and_catalogue_prices(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "lowest-cost",
            "{provider: a, model: gpt-4o}",  # genai-prices: $2.50 / $10 per million
            "{provider: b, model: gpt-4o-mini}",  # genai-prices: $0.15 / $0.60
            "{provider: c, model: fake-plain, price: {input: 0.01, output: 0.02}}",
        )
    )
    assert served(gw, 3) == ["c/fake-plain"] * 3
    status, doc = gw.get_json("/admin/routes/m")
    assert status == 200
    prices = {d["id"]: d["price_per_million"] for d in doc["deployments"]}
    assert prices == {
        "a/gpt-4o": {"input": 2.5, "output": 10.0},
        "b/gpt-4o-mini": {"input": 0.15, "output": 0.6},
        "c/fake-plain": {"input": 0.01, "output": 0.02},
    }
    assert doc["last_decision"]["order"] == ["c/fake-plain", "b/gpt-4o-mini", "a/gpt-4o"]


def test_rpm_capacity_sends_the_excess_elsewhere(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "priority",
            "{provider: a, model: fake-plain, rpm: 2}",
            "{provider: b, model: fake-plain}",
        )
    )
    # The count is per calendar minute: do not straddle one (checked once the gateway is up,
    # with room for four calls on a loaded machine).
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.1)
    assert served(gw, 4) == ["a/fake-plain"] * 2 + ["b/fake-plain"] * 2


def test_tpm_capacity_counts_real_usage(make: Any, fake: FakeOpenAI) -> None:
    # The fake's usage: 3 prompt words + 4 completion words = 7 tokens a call.
    gw = make(
        model(
            "priority",
            "{provider: a, model: fake-plain, tpm: 10}",
            "{provider: b, model: fake-plain}",
        )
    )
    if time.time() % 60 > 50:  # per calendar minute, as above
        time.sleep(60 - time.time() % 60 + 0.1)
    assert served(gw, 3) == ["a/fake-plain", "a/fake-plain", "b/fake-plain"]


def test_tags_pick_deployments(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        model(
            "priority",
            "{provider: a, model: fake-plain, tags: [eu]}",
            "{provider: b, model: fake-plain, tags: [us, gpu]}",
        )
    )
    assert served(gw, 1) == ["a/fake-plain"]
    assert served(gw, 1, extra_headers={"X-LLM-Proxy-Tags": "us"}) == ["b/fake-plain"]
    assert served(gw, 1, extra_headers={"X-LLM-Proxy-Tags": "gpu, us"}) == ["b/fake-plain"]
    with pytest.raises(openai.BadRequestError) as e:
        ask(gw, extra_headers={"X-LLM-Proxy-Tags": "asia"})
    body: Any = e.value.body
    assert body["code"] == "no_matching_deployment" and body["param"] == "X-LLM-Proxy-Tags"


def test_context_window_fallback_takes_the_bigger_model(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        "  - name: m\n    provider: a\n    model: fake-context-50\n"
        "    context_window_fallbacks: [big]\n    fallbacks: [other]\n"
        "  - name: big\n    provider: b\n    model: fake-context-100000\n"
        "  - name: other\n    provider: c\n    model: fake-plain\n",
        "condensation: {enabled: false}\n",
    )
    short = gw.client().chat.completions.with_raw_response.create(model="m", messages=USER)
    assert short.headers["x-llm-proxy-deployment"] == "a/fake-context-50"
    long = [{"role": "user", "content": "word " * 40}]
    raw = gw.client().chat.completions.with_raw_response.create(model="m", messages=long)
    assert raw.headers["x-llm-proxy-deployment"] == "b/fake-context-100000"
    assert raw.parse().model == "m"
    # Not a failure to fail over from: the plain fallback model was never asked.
    assert fake.count("fake-plain") == 0


def test_reload_keeps_what_routing_learned(make: Any, fake: FakeOpenAI) -> None:
    extra = "circuit_breaker_threshold: 1\ncircuit_breaker_timeout: 30\nreload_interval: 0.1\n"
    models = model(
        "priority", "{provider: a, model: fake-error-500}", "{provider: b, model: fake-plain}"
    )
    gw = make(models, extra)
    ask(gw)  # opens a's circuit
    text = gw.config_path.read_text() + "  - name: added\n    provider: b\n    model: fake-plain\n"
    gw.config_path.write_text(text)
    deadline = time.monotonic() + 5
    while gw.gw.reloads == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.gw.reloads == 1
    assert ask(gw).headers["x-llm-proxy-attempts"] == "1"  # still open after the reload
    assert fake.count("fake-error-500") == 1
