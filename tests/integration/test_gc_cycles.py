"""The hot path leaves no reference cycles behind (decision 0005): cycles cost GC pauses and CPU."""

from __future__ import annotations

import gc
import http.client
import json

import pytest

from tests.conftest import MASTER_KEY, RunningGateway


@pytest.mark.parametrize("stream", [False, True])
def test_requests_leave_no_garbage_cycles(gateway: RunningGateway, stream: bool) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.server.port, timeout=10)
    body = json.dumps(
        {
            "model": "gpt-test",
            "stream": stream,
            "messages": [{"role": "user", "content": "a b c d"}],
        }
    )
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}

    def go(n: int) -> None:
        for _ in range(n):
            conn.request("POST", "/v1/chat/completions", body, headers)
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, data

    go(50)  # warm pools and caches
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        go(200)
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        conn.close()
    kinds: dict[str, int] = {}
    for o in garbage:
        kinds[type(o).__name__] = kinds.get(type(o).__name__, 0) + 1
    assert len(garbage) / 200 < 1, sorted(kinds.items(), key=lambda kv: -kv[1])[:10]
