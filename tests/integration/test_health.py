"""Health from traffic and probes, GET /providers, /health's counts and GET /admin/routes."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from tests.fakes.openai import FakeOpenAI
from tests.integration.routing import ask, config, two


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_providers_show_status_models_capabilities_circuit_latency_errors(
    make: Any, fake: FakeOpenAI
) -> None:
    gw = make(two("fake-flaky"), "health: {min_requests: 2}\n")
    fake.modes["fake-flaky"] = "fake-error-500"
    for _ in range(2):
        ask(gw)
    status, doc = gw.get_json("/providers")
    assert status == 200 and doc["object"] == "list"
    by = {p["name"]: p for p in doc["data"]}
    assert set(by) == {"a", "b", "c", "mock"}
    a, b = by["a"], by["b"]
    assert a["status"] == "unhealthy" and a["error_rate"] == 1.0 and a["requests_in_window"] == 2
    assert a["models"] == ["m"] and a["upstream_models"] == ["fake-flaky"]
    assert a["circuit_breaker"] == {"state": "closed", "deployments": {"fake-flaky": "closed"}}
    assert a["capabilities"]["streaming"] and a["capabilities"]["tools"]
    assert b["status"] == "healthy" and b["error_rate"] == 0.0
    assert b["latency_ms"]["total_ewma"] > 0
    assert by["mock"]["capabilities"]["tools"] is False
    assert doc["summary"] == {"total": 4, "healthy": 3, "degraded": 0, "unhealthy": 1}
    status, health = gw.get_json("/health", key=None)  # public
    assert status == 200
    assert health["status"] == "degraded"
    assert health["providers"] == {"total": 4, "healthy": 3, "degraded": 0, "unhealthy": 1}
    assert gw.get_json("/providers", key="wrong")[0] == 401


def test_unhealthy_deployments_are_tried_last(make: Any, fake: FakeOpenAI) -> None:
    # a fails half its calls: above unhealthy_error_ratio (0.5) it goes behind b.
    gw = make(two("fake-flaky"), "health: {min_requests: 2}\n")
    fake.modes["fake-flaky"] = "fake-error-500"
    ask(gw)
    fake.modes["fake-flaky"] = "fake-plain"
    assert ask(gw).headers["x-llm-proxy-deployment"] == "a/fake-flaky"  # 1 of 2 failed
    _, doc = gw.get_json("/admin/routes/m")
    assert doc["deployments"][0]["status"] == "unhealthy"
    assert doc["last_decision"]["order"] == ["a/fake-flaky", "b/fake-plain"]
    assert ask(gw).headers["x-llm-proxy-deployment"] == "b/fake-plain"
    _, doc = gw.get_json("/admin/routes/m")
    assert doc["last_decision"]["order"] == ["b/fake-plain", "a/fake-flaky"]


def test_free_probe_marks_an_unreachable_provider_and_routing_avoids_it(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    text = config(fake_upstream[1], two("fake-plain"), "health: {probe_interval: 0.2}\n")
    text = text.replace(f"{fake_upstream[1]}/v1", f"{dead}/v1", 1)  # provider a: nobody there
    gw = gateway_factory(text)
    wait_for(lambda: gw.get_json("/providers")[1]["data"][0]["probe"] is not None)
    _, doc = gw.get_json("/providers")
    a = doc["data"][0]
    assert a["name"] == "a" and a["status"] == "unhealthy"
    assert a["probe"]["kind"] == "models" and "connect" in a["probe"]["detail"].lower()
    b = doc["data"][1]
    assert b["status"] == "healthy" and b["probe"]["detail"] == "HTTP 200: reachable"
    assert any(r.path == "/v1/models" and r.method == "GET" for r in fake.requests)
    # Routing: no traffic yet, so the probe decides; b first, a is never dialled.
    raw = ask(gw)
    assert raw.headers["x-llm-proxy-deployment"] == "b/fake-plain"
    assert raw.headers["x-llm-proxy-attempts"] == "1"
    _, health = gw.get_json("/health", key=None)
    assert health["last_check"] is not None and health["providers"]["unhealthy"] == 1


def test_probe_sees_refused_credentials(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    text = config(fake_upstream[1], two("fake-plain"), "health: {probe_interval: 0.2}\n")
    secret = "sk-probe-secret-0123456789"  # provider a's key, sent with its probe
    text = text.replace(
        "    api_key: k\n",
        f"    api_key: {secret}\n    headers: {{X-Fake-Scenario: fake-error-401}}\n",
        1,
    )
    gw = gateway_factory(text)
    wait_for(lambda: gw.get_json("/providers")[1]["data"][0]["probe"] is not None)
    doc = gw.get_json("/providers")[1]
    a = doc["data"][0]
    assert a["status"] == "unhealthy"
    assert a["probe"]["detail"] == "HTTP 401: the provider refused the gateway's credentials"
    assert any(r.headers.get("authorization") == f"Bearer {secret}" for r in fake.requests)
    assert secret not in json.dumps(doc)  # the key went upstream, never into the answer


def test_completion_probes_only_when_configured_and_capped(make: Any, fake: FakeOpenAI) -> None:
    extra = (
        "health:\n  probe_interval: 0.1\n"
        "  completion_probes: {models: [m], interval: 0.1, max_tokens: 8, max_per_day: 2}\n"
    )
    gw = make(two("fake-plain", "fake-error-503"), extra)
    wait_for(lambda: fake.count("fake-error-503") >= 2)
    time.sleep(0.5)  # several more rounds: the cap holds
    probes = [r.body for r in fake.requests if r.body]
    assert len(probes) == 4  # 2 deployments x max_per_day
    assert all(p["max_tokens"] == 8 and p["messages"][0]["content"] for p in probes)
    _, doc = gw.get_json("/admin/routes/m")
    first, second = doc["deployments"]
    assert first["probe"]["kind"] == "completion" and first["probe"]["status"] == "healthy"
    assert second["probe"]["status"] == "unhealthy" and second["status"] == "unhealthy"
    assert first["total_requests"] == 0  # probes are not traffic


def test_no_paid_probes_by_default(make: Any, fake: FakeOpenAI) -> None:
    gw = make(two("fake-plain"), "health: {probe_interval: 0.1}\n")
    wait_for(lambda: any(r.method == "GET" for r in fake.requests))
    time.sleep(0.3)
    assert all(r.method == "GET" and r.path == "/v1/models" for r in fake.requests)
    assert gw.gw.runtime.settings.health.completion_probes.models == []


def test_admin_routes_explains_each_deployment(make: Any, fake: FakeOpenAI) -> None:
    gw = make(
        "  - name: m\n    strategy: least-busy\n    fallbacks: [other]\n    hedge: {delay: 2}\n"
        "    deployments:\n"
        "      - {provider: a, model: fake-ratelimit-30, weight: 2, tags: [eu]}\n"
        "      - {provider: b, model: fake-plain}\n"
        "  - name: other\n    provider: c\n    model: fake-plain\n"
    )
    for _ in range(3):
        ask(gw)
    status, doc = gw.get_json("/admin/routes/m")
    assert status == 200
    assert doc["strategy"] == "least-busy" and doc["fallbacks"] == ["other"]
    assert doc["hedge"]["delay"] == 2 and doc["hedge_delay_ms"] == 2000
    limited, ok = doc["deployments"]
    assert limited["id"] == "a/fake-ratelimit-30" and limited["weight"] == 2
    assert limited["tags"] == ["eu"] and limited["status"] == "degraded"
    assert limited["cooldown_until"] is not None and limited["last_error"].startswith("429")
    assert limited["window"]["requests"] == 1 and limited["window"]["errors"] == 1
    assert ok["in_flight"] == 0 and ok["latency_ewma_ms"]["total"] > 0
    assert ok["answer_p95_ms"] > 0 and ok["ttft_p95_ms"] is None  # plain calls only
    assert ok["circuit"]["state"] == "closed"
    last = doc["last_decision"]
    assert last["skipped"] == [
        {"deployment": "a/fake-ratelimit-30", "why": "cooling down after 429"}
    ]
    assert last["served_by"] == "b/fake-plain" and last["attempts"] == 1
    assert "served by b/fake-plain" in last["reason"]
    assert gw.get_json("/admin/routes/mock/echo")[1]["deployments"][0]["id"] == "mock/echo"
    status, err = gw.get_json("/admin/routes/nope")
    assert status == 404 and err["error"]["code"] == "model_not_found"
    assert gw.get_json("/admin/routes/m", key=None)[0] == 401


def test_providers_that_only_forward_client_keys_are_not_probed(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    text = config(fake_upstream[1], two("fake-plain"), "health: {probe_interval: 0.1}\n")
    text = text.replace("    api_key: k\n", "    forward_client_key: true\n", 1)  # a: no key
    gw = gateway_factory(text)
    wait_for(lambda: gw.get_json("/providers")[1]["data"][1]["probe"] is not None)
    time.sleep(0.3)
    a = gw.get_json("/providers")[1]["data"][0]
    assert a["name"] == "a" and a["probe"] is None and a["status"] == "healthy"
    auth = [r.headers.get("authorization") for r in fake.requests if r.method == "GET"]
    assert auth and all(h == "Bearer k" for h in auth)  # only b (keyed) was probed


def test_routing_endpoints_answer_bad_requests_in_the_openai_shape(
    make: Any, fake: FakeOpenAI
) -> None:
    gw = make(two("fake-plain"))
    status, _, body = gw.post_raw("/providers", {})
    err = json.loads(body)["error"]
    assert status == 405 and err["code"] == "method_not_allowed" and err["type"]
    status, doc = gw.get_json("/admin/routes/")
    assert status == 404 and doc["error"]["code"] in ("unknown_url", "model_not_found")
    status, doc = gw.get_json("/admin/routes/%ff%fe")
    assert status == 404 and set(doc["error"]) == {"message", "type", "param", "code"}
    status, _, body = gw.post_raw(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        {"X-LLM-Proxy-Tags": " , ,", "X-Proxy-Info": "maybe"},
    )
    assert status == 200 and b"_proxy_info" not in body  # empty tags: no filter
