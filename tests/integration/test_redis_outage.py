"""Redis going away must not take the gateway with it: limits fall back to this process."""

from __future__ import annotations

import socket
from typing import Any

from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import config, hi, new_key, request


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_redis_falls_back_to_limits_in_this_process(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    extra = f"redis_url: redis://127.0.0.1:{_closed_port()}/0\n"
    gw = gateway_factory(config(fake_upstream[1], extra))
    k = new_key(gw.url, rpm=3, max_budget=1.0)
    assert [hi(gw.url, k["key"]) for _ in range(4)] == [200, 200, 200, 429]
    status, _, info = request(gw.url, "GET", "/v1/key/info", key=k["key"])
    assert status == 200 and info["limits"]["rpm"]["remaining"] == 0
    assert info["budget"]["spend"] == 0.006
