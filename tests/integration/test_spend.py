"""Spend accounting end to end, on SQLite and on PostgreSQL: every call's row reaches spend_log
(plain, streamed, failed), the daily totals feed /admin/spend, keys carry their spend, the spool
survives a SIGKILL, and a replayed batch is never counted twice."""

# mypy: disable-error-code="import-untyped"
# (run from the repo, mypy takes llm_proxy for an untyped installed package; MYPYPATH=src types it)

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from llm_proxy.config.schema import Settings
from llm_proxy.keys import store
from llm_proxy.keys.records import KeyIn
from llm_proxy.spend.report import day_of
from llm_proxy.spend.spool import read_segment
from llm_proxy.spend.writer import write_rows
from llm_proxy.store.db import make_engine, upgrade
from llm_proxy.store.tables import keys, spend_daily, spend_log
from tests.conftest import MASTER_KEY, GatewayFactory, RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import PRICED, config, new_key, request, wait_until
from tests.services import store_config

FAST = "spend: {flush_interval: 0.1}\n"
BROKEN = "  - name: broken\n    provider: fakeai\n    model: fake-error-500\n"


@pytest.fixture(params=["sqlite", "postgres"])
def store_lines(request: pytest.FixtureRequest) -> str:
    """The config lines selecting the store (nothing for the default SQLite file)."""
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return store_config(request.param, schema)


@pytest.fixture
def gw(
    gateway_factory: GatewayFactory,
    fake_upstream: tuple[FakeOpenAI, str],
    fake: FakeOpenAI,
    store_lines: str,
) -> RunningGateway:
    return gateway_factory(config(fake_upstream[1], FAST + store_lines, PRICED + BROKEN))


def fetch(settings: Any, stmt: Any) -> list[dict[str, Any]]:
    """Rows of `stmt`, read through an engine of our own (the gateway's lives on its loop)."""

    async def go() -> list[dict[str, Any]]:
        engine = make_engine(settings)
        try:
            async with engine.connect() as conn:
                return [dict(r._mapping) for r in (await conn.execute(stmt)).all()]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def logged(settings: Any, key_id: str, n: int) -> list[dict[str, Any]]:
    """The key's spend_log rows, once the writer has flushed `n` of them (oldest first)."""
    q = select(spend_log).where(spend_log.c.key_id == key_id).order_by(spend_log.c.ts)
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        got[:] = fetch(settings, q)
        return len(got) >= n

    wait_until(enough, timeout=10, step=0.1)
    time.sleep(0.25)  # two more flush intervals: nothing beyond the n rows may turn up
    got[:] = fetch(settings, q)
    return got


def chat(url: str, key: str, model: str = "priced", **kw: Any) -> tuple[int, str, Any]:
    """(status, x-request-id, body) of a "hi" chat call."""
    doc = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **kw}
    status, headers, body = request(url, "POST", "/v1/chat/completions", doc, key=key)
    return status, headers["x-request-id"], body


def settings_of(gw: RunningGateway) -> Settings:
    return gw.gw.runtime.settings


def test_every_call_is_one_spend_row_with_its_usage_and_cost(gw: RunningGateway) -> None:
    k = new_key(gw.url, user="alice")
    ids = []
    for _ in range(4):
        status, rid, body = chat(gw.url, k["key"])
        assert status == 200 and body["choices"][0]["message"]["content"] == "fake: hi"
        ids.append(rid)
    rows = logged(settings_of(gw), k["id"], 4)
    assert len(rows) == 4
    assert sorted(r["request_id"] for r in rows) == sorted(ids) and len(set(ids)) == 4
    for r in rows:
        assert (r["model"], r["provider"], r["deployment"]) == (
            "priced",
            "fakeai",
            "fakeai/fake-plain",
        )
        assert (r["prompt_tokens"], r["completion_tokens"], r["status"]) == (1, 2, 200)
        assert r["cost"] == pytest.approx(0.002)
        assert r["latency_ms"] > 0 and r["ttft_ms"] is None and not r["stream"]
        assert r["user"] == "alice" and r["team_id"] == ""


def test_admin_spend_sums_by_model_key_and_day_and_counts_streams(gw: RunningGateway) -> None:
    a, b = new_key(gw.url), new_key(gw.url)
    assert chat(gw.url, a["key"])[0] == 200
    assert chat(gw.url, a["key"])[0] == 200
    status, rid, raw = chat(gw.url, a["key"], stream=True, stream_options={"include_usage": True})
    assert status == 200 and b'"usage"' in raw and raw.rstrip().endswith(b"data: [DONE]")
    assert chat(gw.url, b["key"], model="priced-slow", fake_delay=0)[0] == 200
    s = settings_of(gw)
    rows = logged(s, a["id"], 3)
    assert len(rows) == 3 and len(logged(s, b["id"], 1)) == 1
    streamed = [r for r in rows if r["stream"]]
    assert [r["request_id"] for r in streamed] == [rid]
    assert streamed[0]["ttft_ms"] is not None and streamed[0]["ttft_ms"] > 0
    assert streamed[0]["completion_tokens"] == 2 and streamed[0]["cost"] == pytest.approx(0.002)

    def report(query: str) -> dict[str, Any]:
        status, _, doc = request(gw.url, "GET", f"/admin/spend?{query}")
        assert status == 200, doc
        return dict(doc)

    by_model = report("group_by=model")
    got = [
        (x["model"], x["requests"], x["completion_tokens"], x["errors"]) for x in by_model["data"]
    ]
    assert got == [("priced", 3, 6, 0), ("priced-slow", 1, 2, 0)]
    assert [x["cost"] for x in by_model["data"]] == pytest.approx([0.006, 0.002])
    assert by_model["total_cost"] == pytest.approx(0.008)
    by_key = report("group_by=key")
    assert [(x["key"], x["requests"], x["prompt_tokens"]) for x in by_key["data"]] == [
        (a["id"], 3, 3),
        (b["id"], 1, 1),
    ]
    today = day_of(time.time())
    by_day = report("group_by=day")
    assert [(x["day"], x["requests"]) for x in by_day["data"]] == [(today, 4)]
    assert by_day["data"][0]["cost"] == pytest.approx(0.008)
    same = report(f"group_by=day&from={today}&to={today}")
    assert same["from"] == today and same["to"] == today
    assert same["total_cost"] == pytest.approx(0.008)
    assert report("group_by=model&from=7d")["total_cost"] == pytest.approx(0.008)
    before = day_of(time.time() - 86400)
    empty = report(f"group_by=model&to={before}")
    assert empty["data"] == [] and empty["total_cost"] == 0
    after = day_of(time.time() + 86400)
    assert report(f"group_by=key&from={after}")["data"] == []


def test_keys_carry_their_spend_in_the_store(gw: RunningGateway) -> None:
    budgeted = new_key(gw.url, max_budget=5, budget_period="30d")
    for _ in range(3):
        assert chat(gw.url, budgeted["key"])[0] == 200
    s = settings_of(gw)
    assert len(logged(s, budgeted["id"], 3)) == 3
    stored = fetch(s, select(keys.c.spend, keys.c.total_spend).where(keys.c.id == budgeted["id"]))
    assert stored[0]["spend"] == pytest.approx(0.006)
    assert stored[0]["total_spend"] == pytest.approx(0.006)
    status, _, doc = request(gw.url, "GET", f"/admin/keys/{budgeted['id']}")
    assert status == 200
    assert doc["spend"] == pytest.approx(0.006) and doc["total_spend"] == pytest.approx(0.006)


def test_a_key_without_a_budget_still_adds_up_its_total_spend(gw: RunningGateway) -> None:
    plain = new_key(gw.url)
    for _ in range(2):
        assert chat(gw.url, plain["key"])[0] == 200
    assert len(logged(settings_of(gw), plain["id"], 2)) == 2
    status, _, doc = request(gw.url, "GET", f"/admin/keys/{plain['id']}")
    assert status == 200
    assert doc["total_spend"] == pytest.approx(0.004), doc


def test_failed_calls_are_recorded_with_their_status_and_no_cost(gw: RunningGateway) -> None:
    k = new_key(gw.url)
    status, rid, doc = chat(gw.url, k["key"], model="broken")
    assert status >= 500 and doc["error"]["message"]
    assert chat(gw.url, k["key"])[0] == 200
    rows = logged(settings_of(gw), k["id"], 2)
    failed = [r for r in rows if r["request_id"] == rid]
    assert len(rows) == 2 and len(failed) == 1
    assert failed[0]["status"] == status and failed[0]["model"] == "broken"
    assert failed[0]["cost"] == 0 and failed[0]["completion_tokens"] == 0
    status, _, rep = request(gw.url, "GET", "/admin/spend?group_by=model")
    got = {x["model"]: (x["requests"], x["errors"]) for x in rep["data"]}
    assert got == {"priced": (1, 0), "broken": (1, 1)}
    assert rep["total_cost"] == pytest.approx(0.002)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(cfg: Path, data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_PROXY_", "OPENAI_"))}
    env["LLM_PROXY_DATA_DIR"] = str(data)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_proxy", "serve", "--config", str(cfg), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=out,
        )

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return request(f"http://127.0.0.1:{port}", "GET", "/health", timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(healthy, timeout=20, step=0.1)
    return proc


def test_the_spool_survives_a_sigkill_and_is_stored_once_after_restart(
    tmp_path: Path, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    data, port, log = tmp_path / "data", _free_port(), tmp_path / "gateway.log"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config(fake_upstream[1], "spend: {flush_interval: 3600}\n"))
    settings = Settings.model_validate({"data_dir": str(data)})
    spool = data / "spool"
    url = f"http://127.0.0.1:{port}"

    def spooled() -> list[dict[str, Any]]:
        return [r for p in sorted(spool.glob("*.*")) for r in read_segment(p)]

    proc = _serve(cfg, data, port, log)
    try:
        ids = []
        for _ in range(20):
            status, rid, _ = chat(url, MASTER_KEY)
            assert status == 200
            ids.append(rid)

        wait_until(lambda: len(spooled()) >= 20, timeout=5)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert sorted(r["request_id"] for r in spooled()) == sorted(ids)
    assert list(spool.glob("*.open")), "the killed gateway's segment was never rotated"
    assert fetch(settings, select(func.count().label("n")).select_from(spend_log))[0]["n"] == 0

    proc = _serve(cfg, data, port, log)  # the same data dir: the dead segment is replayed
    try:
        q = select(spend_log.c.id, spend_log.c.request_id, spend_log.c.cost)
        wait_until(lambda: len(fetch(settings, q)) >= 20, timeout=10, step=0.1)
        assert chat(url, MASTER_KEY)[0] == 200  # one more row for the clean shutdown to flush
    finally:
        proc.terminate()
        proc.wait(15)
    rows = fetch(settings, q)
    assert len(rows) == 21 and len({r["id"] for r in rows}) == 21
    assert set(ids) < {r["request_id"] for r in rows}
    assert sum(r["cost"] for r in rows) == pytest.approx(21 * 0.002)
    daily = fetch(settings, select(func.sum(spend_daily.c.requests).label("n")))
    assert daily[0]["n"] == 21
    assert not [p for p in spool.iterdir() if p.stat().st_size], "segments left behind"


def _row(key_id: str, period: int, n: int) -> dict[str, Any]:
    return {
        "id": f"{n:032x}",
        "ts": time.time(),
        "request_id": f"req-{n}",
        "key_id": key_id,
        "user": "",
        "team_id": "",
        "model": "priced",
        "provider": "fakeai",
        "deployment": "fakeai/fake-plain",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost": 0.002,
        "latency_ms": 3.0,
        "ttft_ms": None,
        "status": 200,
        "stream": False,
        "key_period": period,
        "team_period": None,
    }


def test_a_replayed_batch_is_not_counted_twice(tmp_path: Path, store_lines: str) -> None:
    settings = Settings.model_validate(
        {**(yaml.safe_load(store_lines) or {}), "data_dir": str(tmp_path)}
    )

    async def go() -> tuple[list[int], dict[str, Any]]:
        engine = make_engine(settings)
        try:
            await upgrade(engine, settings.database_schema)
            h, _ = await store.create_key(engine, KeyIn(max_budget=10, budget_period="30d"))
            period = h.period_key(time.time())
            rows = [_row(h.id, period, n) for n in range(3)]
            wrote = [await write_rows(engine, rows), await write_rows(engine, rows)]
            wrote.append(await write_rows(engine, [*rows[1:], _row(h.id, period, 3)]))
            async with engine.connect() as conn:
                got = {
                    "log": (
                        await conn.execute(select(func.count()).select_from(spend_log))
                    ).scalar(),
                    "daily": (
                        await conn.execute(select(spend_daily.c.requests, spend_daily.c.cost))
                    ).all(),
                    "key": (
                        await conn.execute(
                            select(keys.c.spend, keys.c.total_spend).where(keys.c.id == h.id)
                        )
                    ).one(),
                }
            return wrote, got
        finally:
            await engine.dispose()

    wrote, got = asyncio.run(go())
    assert wrote == [3, 0, 1]
    assert got["log"] == 4
    assert [(n, pytest.approx(c)) for n, c in got["daily"]] == [(4, pytest.approx(0.008))]
    assert tuple(got["key"]) == (pytest.approx(0.008), pytest.approx(0.008))


def test_a_stream_cut_short_by_the_client_is_billed_for_what_it_used(gw: RunningGateway) -> None:
    import openai

    k = new_key(gw.url)
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=k["key"], max_retries=0, timeout=20)
    words = " ".join(f"w{i}" for i in range(40))
    seen = 0
    with c.chat.completions.create(
        model="priced",
        messages=[{"role": "user", "content": words}],
        stream=True,
        extra_body={"fake_delay": 0.05},
    ) as s:
        for chunk in s:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += 1
            if seen == 5:
                break  # the client hangs up after five words of 41
    (row,) = logged(settings_of(gw), k["id"], 1)
    assert row["status"] == 499 and row["stream"] is True
    assert 5 <= row["completion_tokens"] < 41  # the chunks relayed before the hang-up
    assert row["prompt_tokens"] > 0  # the prompt was sent upstream: it is billed (estimated)
    assert row["cost"] == pytest.approx(row["completion_tokens"] * 0.001)
