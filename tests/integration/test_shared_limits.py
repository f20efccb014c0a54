"""Two gateway processes sharing PostgreSQL and Redis: a budget, an RPM limit and a revocation
hold across both, and a database outage mid-traffic loses neither calls nor spend rows.

The gateways are real `llm-proxy serve` subprocesses; the upstream is the fake OpenAI server of
this test process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MASTER_KEY
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import config, hi, new_key, request, wait_until
from tests.services import PG_HOST, PG_PORT, REDIS_URL
from tests.tcp_proxy import TcpProxy

UPSTREAM_SECRET = "sk-upstream-secret-value"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@dataclass
class Pair:
    a: Proc
    b: Proc
    schema: str
    pg_port: int

    @property
    def urls(self) -> tuple[str, str]:
        return self.a.url, self.b.url

    def logs(self) -> str:
        return self.a.log.read_text(errors="replace") + self.b.log.read_text(errors="replace")


def _start(cfg: Path, data: Path, log: Path) -> Proc:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_PROXY_")}
    env["LLM_PROXY_DATA_DIR"] = str(data)
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_proxy", "serve", "--config", str(cfg), "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return request(url, "GET", "/health", timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(up, timeout=30, step=0.1)
    return Proc(proc, url, log)


def _stop(p: Proc) -> None:
    p.proc.terminate()
    try:
        p.proc.wait(10)
    except subprocess.TimeoutExpired:
        p.proc.kill()


@pytest.fixture
def pair(
    tmp_path: Path,
    fake_upstream: tuple[FakeOpenAI, str],
    fake: FakeOpenAI,
    pg_schema: str,
    redis_prefix: str,
) -> Iterator[Pair]:
    proxy = TcpProxy((PG_HOST, PG_PORT)).start()
    extra = (
        f"database_url: postgresql://postgres@127.0.0.1:{proxy.port}/test\n"
        f"database_schema: {pg_schema}\n"
        f"redis_url: {REDIS_URL}\n"
        f"redis_prefix: {redis_prefix}\n"
        "log_requests: true\n"
        "log_level: DEBUG\n"
        "spend: {flush_interval: 0.2}\n"
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config(fake_upstream[1], extra))
    a = _start(cfg, tmp_path / "data-a", tmp_path / "a.log")
    try:
        b = _start(cfg, tmp_path / "data-b", tmp_path / "b.log")
    except BaseException:
        _stop(a)
        raise
    pair = Pair(a, b, pg_schema, proxy.port)
    pair.proxy = proxy  # type: ignore[attr-defined]
    try:
        yield pair
    finally:
        _stop(a)
        _stop(b)
        proxy.close()


def _rows(schema: str, sql: str) -> list[Any]:
    import asyncpg

    async def go() -> list[Any]:
        conn = await asyncpg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test")
        try:
            await conn.execute(f'SET search_path TO "{schema}"')
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def _burst(urls: tuple[str, ...], key: str, n: int, **kw: Any) -> list[int]:
    """n concurrent calls, alternating between the gateways: their statuses."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futs = [pool.submit(hi, urls[i % len(urls)], key, **kw) for i in range(n)]
        return [f.result() for f in futs]


def test_a_budget_for_10_calls_holds_against_50_concurrent_on_two_processes(pair: Pair) -> None:
    # Each call costs exactly $0.002 (2 output tokens at $1,000 per million) and reserves the
    # same (max_tokens 2), so $0.02 fits 10 of them.
    k = new_key(pair.a.url, max_budget=0.02, budget_period="30d")
    statuses = _burst(pair.urls, k["key"], 50, model="priced-slow", fake_delay=0.5)
    ok = statuses.count(200)
    assert ok >= 10, statuses
    assert set(statuses) <= {200, 429}
    # More calls, one at a time, until the budget refuses: it never lets spend past it.
    for _ in range(20):
        if hi(pair.b.url, k["key"]) != 200:
            break
        ok += 1
    assert ok == 10  # every call really costs its reservation, so exactly 10 fit
    wait_until(
        lambda: _rows(pair.schema, "SELECT count(*) AS n FROM spend_log")[0]["n"] >= 50 + 1,
        timeout=10,
    )
    spent = _rows(pair.schema, f"SELECT sum(cost) AS c FROM spend_log WHERE key_id = '{k['id']}'")
    assert spent[0]["c"] == pytest.approx(0.02)
    status, _, doc = request(
        pair.a.url,
        "POST",
        "/v1/chat/completions",
        {
            "model": "priced",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        },
        key=k["key"],
    )
    assert status == 429 and doc["error"]["code"] == "budget_exceeded"


def test_rpm_60_shared_by_two_processes_lets_exactly_60_of_100_through(pair: Pair) -> None:
    k = new_key(pair.a.url, rpm=60)
    statuses = _burst(pair.urls, k["key"], 100)
    assert statuses.count(200) == 60, statuses
    assert statuses.count(429) == 40


def test_a_revoked_key_is_refused_within_a_second_on_both(pair: Pair) -> None:
    k = new_key(pair.a.url)
    assert hi(pair.a.url, k["key"]) == 200 and hi(pair.b.url, k["key"]) == 200
    status, _, _ = request(pair.a.url, "DELETE", f"/admin/keys/{k['id']}")
    assert status == 200
    t0 = time.monotonic()
    for url in pair.urls:
        wait_until(lambda u=url: hi(u, k["key"]) == 401, timeout=1.0, step=0.02)  # type: ignore[misc]
    assert time.monotonic() - t0 < 1.0


def test_postgres_outage_mid_traffic_loses_no_call_and_no_spend_row(pair: Pair) -> None:
    proxy: TcpProxy = pair.proxy  # type: ignore[attr-defined]
    k = new_key(pair.a.url)
    results: list[int] = []
    stop = threading.Event()

    def traffic(url: str) -> None:
        while not stop.is_set():
            results.append(hi(url, k["key"]))
            time.sleep(0.01)

    threads = [threading.Thread(target=traffic, args=(u,)) for u in pair.urls]
    for t in threads:
        t.start()
    time.sleep(0.5)
    proxy.cut()
    during_start = len(results)
    time.sleep(3.0)  # several flush intervals and key polls with the database gone
    during = results[during_start:]
    proxy.restore()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert len(during) > 20 and set(during) == {200}, during
    assert set(results) == {200}
    wait_until(
        lambda: (
            _rows(pair.schema, f"SELECT count(*) AS n FROM spend_log WHERE key_id = '{k['id']}'")[
                0
            ]["n"]
            == len(results)
        ),
        timeout=15,
    )
    assert "spend store unreachable" in pair.logs()


def test_no_secret_reaches_logs_store_or_errors(pair: Pair) -> None:
    k = new_key(pair.a.url, max_budget=1.0)
    rotated = request(pair.a.url, "POST", f"/admin/keys/{k['id']}/rotate")[2]
    assert hi(pair.b.url, rotated["key"]) == 200
    assert hi(pair.b.url, k["key"]) == 401  # an old secret in an error path
    status, _, doc = request(pair.a.url, "GET", "/admin/keys", key=k["key"])
    assert status == 401 and k["key"] not in str(doc)
    wait_until(lambda: bool(_rows(pair.schema, "SELECT count(*) AS n FROM spend_log")[0]["n"]))
    secrets = [k["key"], rotated["key"], MASTER_KEY, UPSTREAM_SECRET]
    logs = pair.logs()
    assert '"request_id"' in logs  # the request log is on: the grep below means something
    dump = ""
    for table in ("keys", "teams", "spend_log", "spend_daily"):
        dump += repr(_rows(pair.schema, f"SELECT * FROM {table}"))
    assert rotated["prefix"] in dump
    for s in secrets:
        assert s not in logs, "a secret is in the logs"
        assert s not in dump, "a secret is in the store"
        assert s[12:] not in dump


def test_a_shared_request_id_cannot_share_a_slot_or_a_reservation(pair: Pair) -> None:
    # Clients choose X-Request-Id; slots and reservations are held under the gateway's own token.
    k = new_key(pair.a.url, max_parallel_requests=2, max_budget=0.006, budget_period="30d")
    same = {"X-Request-Id": "same-id-for-all"}
    statuses = _burst(pair.urls, k["key"], 10, model="priced-slow", fake_delay=0.5, headers=same)
    assert statuses.count(200) == 2, statuses  # two slots, though every call has the same id
    for _ in range(3):
        hi(pair.a.url, k["key"], headers=same)
    wait_until(
        lambda: (
            (
                _rows(
                    pair.schema, f"SELECT sum(cost) AS c FROM spend_log WHERE key_id = '{k['id']}'"
                )[0]["c"]
                or 0
            )
            >= 0.006 - 1e-9
        ),
        timeout=10,
    )
    spent = _rows(pair.schema, f"SELECT sum(cost) AS c FROM spend_log WHERE key_id = '{k['id']}'")
    assert spent[0]["c"] == pytest.approx(0.006)  # 3 calls fit the budget, and no more
