"""Health, metrics, docs, CORS and security headers as a browser or a probe sees them."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from tests.conftest import MASTER_KEY, RunningGateway, default_config
from tests.fakes.openai import FakeOpenAI


def _req(
    gw: RunningGateway,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.server.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


CHAT = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}).encode()


def test_health_documents_match_the_seeds(gateway: RunningGateway) -> None:
    status, headers, body = _req(gateway, "GET", "/health")
    doc = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    # Seed 001's fields, plus seed 003's provider counts and last probe time.
    assert set(doc) == {
        "status",
        "timestamp",
        "uptime",
        "version",
        "environment",
        "providers",
        "last_check",
    }
    assert doc["status"] == "healthy" and doc["version"] == gateway.gw.version
    n = len(gateway.gw.runtime.providers)
    assert doc["providers"] == {"total": n, "healthy": n, "degraded": 0, "unhealthy": 0}
    assert doc["timestamp"].endswith("Z") and doc["uptime"] >= 0
    status, _, body = _req(gateway, "GET", "/healthz")
    doc = json.loads(body)
    assert status == 200
    assert doc["status"] == "ok" and isinstance(doc["uptime_seconds"], float)
    assert doc["logging"] == {"enabled": True, "level": "INFO"}
    assert doc["cors"] == {"allow_origins": ["*"]}


def test_metrics_and_docs_are_open_and_openapi_lists_chat(gateway: RunningGateway) -> None:
    status, headers, body = _req(gateway, "GET", "/metrics")
    assert status == 200 and b"python_info" in body
    status, _, body = _req(gateway, "GET", "/openapi.json")  # open: /docs needs it
    assert status == 200
    spec = json.loads(body)
    assert "/v1/chat/completions" in spec["paths"]
    assert spec["paths"]["/v1/chat/completions"]["post"]["operationId"] == "createChatCompletion"
    status, headers, body = _req(gateway, "GET", "/docs")
    assert status == 200 and b"swagger" in body.lower()
    assert "content-security-policy" not in headers  # Swagger UI loads from a CDN
    assert headers["x-frame-options"] == "SAMEORIGIN"


def test_security_headers_on_success_and_error(gateway: RunningGateway) -> None:
    for path, hdrs, expect in (
        ("/v1/chat/completions", {"Authorization": f"Bearer {MASTER_KEY}"}, 200),
        ("/v1/chat/completions", {}, 401),
    ):
        status, headers, _ = _req(gateway, "POST", path, CHAT, hdrs)
        assert status == expect
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert len(headers["x-request-id"]) == 32
        assert "server" not in headers


def test_cors_preflight_and_simple_request_echo_allowed_origin(gateway: RunningGateway) -> None:
    status, headers, _ = _req(
        gateway,
        "OPTIONS",
        "/v1/chat/completions",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == "http://app.example"
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "authorization, content-type"
    status, headers, _ = _req(
        gateway,
        "POST",
        "/v1/chat/completions",
        CHAT,
        {"Origin": "http://app.example", "Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "http://app.example"
    assert "x-request-id" in headers["access-control-expose-headers"]
    status, headers, _ = _req(
        gateway, "POST", "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {MASTER_KEY}"}
    )
    assert "access-control-allow-origin" not in headers


@pytest.fixture
def strict_cors(gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]) -> RunningGateway:
    cfg = default_config(fake_upstream[1]) + "cors_allow_origins: [http://good.example]\n"
    return gateway_factory(cfg)


def test_cors_disallowed_origin_gets_no_grant(strict_cors: RunningGateway) -> None:
    status, headers, body = _req(
        strict_cors,
        "OPTIONS",
        "/v1/chat/completions",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert status == 403
    assert json.loads(body)["error"]["code"] == "cors_origin_not_allowed"
    assert "access-control-allow-origin" not in headers
    status, headers, _ = _req(
        strict_cors,
        "POST",
        "/v1/chat/completions",
        CHAT,
        {"Origin": "http://evil.example", "Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert status == 200 and "access-control-allow-origin" not in headers
    status, headers, _ = _req(
        strict_cors,
        "OPTIONS",
        "/v1/chat/completions",
        headers={"Origin": "http://good.example", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204 and headers["access-control-allow-origin"] == "http://good.example"


def test_request_log_line_has_id_model_provider_status_latency(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="llm_proxy.requests")
    _req(
        gateway,
        "POST",
        "/v1/chat/completions",
        CHAT,
        {"Authorization": f"Bearer {MASTER_KEY}", "X-Request-ID": "log-me-1"},
    )
    deadline = time.monotonic() + 3  # the line is written just after the response is sent
    while not (recs := [r for r in caplog.records if r.name == "llm_proxy.requests"]):
        assert time.monotonic() < deadline, "no request log line"
        time.sleep(0.01)
    d = recs[-1].__dict__
    assert (d["request_id"], d["model"], d["provider"], d["status"]) == (
        "log-me-1",
        "mock/echo",
        "mock",
        200,
    )
    assert d["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert d["latency_ms"] > 0
    assert MASTER_KEY not in str(d)


def test_slow_request_head_is_cut_off_with_json_408(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import llm_proxy.server

    monkeypatch.setattr(llm_proxy.server, "HEAD_TIMEOUT", 0.5)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.server.port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        data = b""
        while True:
            try:
                s.sendall(b"X-Slow: 1\r\n")  # a header every 0.1 s, never the blank line
            except OSError:
                break
            time.sleep(0.1)
            s.setblocking(False)
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                chunk = None
            finally:
                s.setblocking(True)
            if chunk == b"":
                break
            if chunk:
                data += chunk
            if time.monotonic() - t0 > 4:
                break
    assert data.startswith(b"HTTP/1.1 408 "), data[:80]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"
    assert 0.4 < time.monotonic() - t0 < 3
    status, _, _ = _req(gateway, "GET", "/health")
    assert status == 200


def test_chat_on_a_public_path_needs_no_key(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    cfg = default_config(fake_upstream[1]) + "public_paths: [/health, /v1/chat/completions]\n"
    gw = gateway_factory(cfg)
    status, _, body = _req(gw, "POST", "/v1/chat/completions", CHAT)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == "hi"
    status, _, _ = _req(gw, "GET", "/metrics")
    assert status == 401  # no longer listed, so no longer open
