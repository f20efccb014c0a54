"""Shared fixtures: a fake OpenAI upstream and gateways served over real localhost HTTP."""

from __future__ import annotations

import http.client
import json
import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from llm_proxy.app import build_app, create_gateway
from llm_proxy.gateway import Gateway
from llm_proxy.server import GatewayHttpProtocol
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import ServerThread

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "data" / "tiktoken"))

MASTER_KEY = "sk-gw-test-master"
UPSTREAM_KEY = "sk-upstream-secret-value"


@dataclass
class RunningGateway:
    gw: Gateway
    server: ServerThread
    config_path: Path

    @property
    def url(self) -> str:
        return self.server.url

    def get_json(self, path: str, key: str | None = MASTER_KEY) -> tuple[int, Any]:
        """GET a gateway path: (status, parsed JSON body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def post_raw(
        self, path: str, doc: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """POST JSON with the master key: (status, lower-cased headers, whole body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=20)
        try:
            conn.request(
                "POST",
                path,
                json.dumps(doc),
                {"Authorization": f"Bearer {MASTER_KEY}", **(headers or {})},
            )
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def client(self, **kw: Any) -> openai.OpenAI:
        kw.setdefault("api_key", MASTER_KEY)
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 20)
        return openai.OpenAI(base_url=f"{self.url}/v1", **kw)


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    app = FakeOpenAI()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture(scope="session")
def fake_anthropic_upstream() -> Iterator[tuple[Any, str]]:
    from tests.fakes.anthropic import FakeAnthropic

    app = FakeAnthropic()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture(scope="session")
def fake_gemini_upstream() -> Iterator[tuple[Any, str]]:
    from tests.fakes.gemini import FakeGemini

    app = FakeGemini()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture(scope="session")
def fake_cohere_upstream() -> Iterator[tuple[Any, str]]:
    from tests.fakes.cohere import FakeCohere

    app = FakeCohere()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture
def fake(fake_upstream: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    fake_upstream[0].reset()
    return fake_upstream[0]


def default_config(upstream_url: str, extra: str = "") -> str:
    return (
        textwrap.dedent(f"""\
        master_key: {MASTER_KEY}
        log_requests: true
        providers:
          - name: fakeai
            type: openai
            base_url: {upstream_url}/v1
            api_key: ${{FAKE_UPSTREAM_KEY}}
            timeouts: {{connect: 2, first_byte: 3, total: 10}}
          - name: byok
            type: openai
            base_url: {upstream_url}/v1
            forward_client_key: true
        models:
          - name: gpt-test
            provider: fakeai
            model: fake-plain
          - name: tool-model
            provider: fakeai
            model: fake-tool
          - name: hang-model
            provider: fakeai
            model: fake-hang
          - name: slow-model
            provider: fakeai
            model: fake-slow
          - name: badjson-model
            provider: fakeai
            model: fake-badjson
          - name: truncate-model
            provider: fakeai
            model: fake-truncate
          - name: midstream-error-model
            provider: fakeai
            model: fake-midstream-error
          - name: stall-model
            provider: fakeai
            model: fake-stall
          - name: reset-model
            provider: fakeai
            model: fake-reset
          - name: partial-tail-model
            provider: fakeai
            model: fake-partial-tail
          - name: nodone-model
            provider: fakeai
            model: fake-nodone
          - name: notsse-model
            provider: fakeai
            model: fake-notsse
        """)
        + extra
    )


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    running: list[RunningGateway] = []

    def make(
        config_text: str, env: dict[str, str] | None = None, **server_kw: Any
    ) -> RunningGateway:
        path = tmp_path / f"config{len(running)}.yaml"
        path.write_text(config_text)
        full_env = {
            "FAKE_UPSTREAM_KEY": UPSTREAM_KEY,
            "LLM_PROXY_DATA_DIR": str(tmp_path / "data"),
            **(env or {}),
        }
        gw = create_gateway(str(path), full_env)
        server_kw = {"server_header": False, "proxy_headers": False, **server_kw}
        server = ServerThread(build_app(gw), http=GatewayHttpProtocol, **server_kw).start()
        rg = RunningGateway(gw=gw, server=server, config_path=path)
        running.append(rg)
        return rg

    yield make
    for rg in running:
        rg.server.stop()


@pytest.fixture
def gateway(
    gateway_factory: GatewayFactory, fake_upstream: tuple[FakeOpenAI, str]
) -> RunningGateway:
    return gateway_factory(default_config(fake_upstream[1]))


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return gateway.client()


from tests.services import pg_schema, redis_prefix  # noqa: E402, F401  (shared fixtures)
