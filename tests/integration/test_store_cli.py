"""`llm-proxy db|keys|teams|spend` as a user runs them (subprocesses with a clean environment),
on the default SQLite file in the data dir and on PostgreSQL through a config file; a key made
with the CLI is served by a gateway on the same store."""

# mypy: disable-error-code="import-untyped"
# (run from the repo, mypy takes llm_proxy for an untyped installed package; MYPYPATH=src types it)

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_proxy.config.schema import Settings
from llm_proxy.spend.report import day_of
from llm_proxy.spend.writer import write_rows
from llm_proxy.store.db import make_engine, upgrade
from tests.conftest import GatewayFactory
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import config, hi, wait_until
from tests.services import PG_URL, store_config

EXE = [sys.executable, "-m", "llm_proxy"]
CREATE = [
    *("keys", "create", "--models", "gpt-4o,claude-*", "--rpm", "60", "--tpm", "100000"),
    *("--budget", "10", "--budget-period", "30d", "--expires", "2027-01-01", "--name", "x"),
]


@dataclass
class Store:
    """One store as the CLI and a gateway both reach it."""

    data: Path  # LLM_PROXY_DATA_DIR: where the SQLite file lives
    lines: str  # config lines selecting the store ("" for the SQLite file)
    config: Path | None  # the config file the CLI is given (PostgreSQL)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_PROXY_")}
        env["LLM_PROXY_DATA_DIR"] = str(self.data)
        given = ["--config", str(self.config)] if self.config is not None else []
        return subprocess.run(
            [*EXE, *args, *given], capture_output=True, text=True, timeout=60, env=env
        )

    def ok(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        return r.stdout

    def fails(self, *args: str) -> str:
        """stderr of a command that must exit 1 with a readable message (no traceback)."""
        r = self.run(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        return r.stderr


def _store(tmp_path: Path, backend: str, schema: str | None) -> Store:
    lines = store_config(backend, schema)
    cfg = None
    if lines:
        cfg = tmp_path / "store.yaml"
        cfg.write_text(lines)
    return Store(tmp_path / "data", lines, cfg)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return _store(tmp_path, request.param, schema)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    return _store(tmp_path, "sqlite", None)


def test_db_upgrade_reaches_head_and_is_idempotent(any_store: Store) -> None:
    first = any_store.ok("db", "upgrade")
    assert first.startswith("store at head: ")
    where = PG_URL.replace("postgresql://", "postgresql+asyncpg://")
    if any_store.config is None:
        where = f"sqlite+aiosqlite:///{any_store.data.resolve() / 'llm-proxy.db'}"
        assert (any_store.data / "llm-proxy.db").is_file()
    assert first.strip() == f"store at head: {where}"
    assert any_store.ok("db", "upgrade") == first


def test_key_lifecycle_create_list_update_rotate_revoke(any_store: Store) -> None:
    made = json.loads(any_store.ok(*CREATE, "--json"))
    secret, kid = made["key"], made["id"]
    assert secret.startswith("sk-llmp-") and made["prefix"] == secret[:12]
    assert made["models"] == ["gpt-4o", "claude-*"] and made["name"] == "x"
    assert (made["rpm"], made["tpm"], made["max_budget"]) == (60, 100000, 10.0)
    assert made["budget_period"] == "30d" and made["expires_at"] == "2027-01-01T00:00:00Z"

    listed = any_store.ok("keys", "list")
    head, row = listed.splitlines()
    assert head.split()[:3] == ["id", "prefix", "name"] and "budget_period" in head
    assert row.split()[:3] == [kid, made["prefix"], "x"]
    assert "gpt-4o,claude-*" in row and "100000" in row and "2027-01-01T00:00:00Z" in row
    docs = json.loads(any_store.ok("keys", "list", "--json"))
    assert [(d["id"], d["prefix"], d["rpm"]) for d in docs] == [(kid, made["prefix"], 60)]
    assert "key" not in docs[0]
    for shown in (listed, json.dumps(docs)):
        assert secret not in shown and secret[12:] not in shown

    updated = json.loads(any_store.ok("keys", "update", kid, "--rpm", "5", "--json"))
    assert (updated["id"], updated["rpm"], updated["tpm"]) == (kid, 5, 100000)
    assert "key" not in updated

    rotated = any_store.ok("keys", "rotate", kid).splitlines()
    assert rotated[0] == f"id:  {kid}" and rotated[1].startswith("key: sk-llmp-")
    new_secret = rotated[1].removeprefix("key: ")
    assert new_secret != secret and len(new_secret) == len(secret)

    assert any_store.ok("keys", "revoke", kid).strip() == f"revoked {kid}"
    gone = json.loads(any_store.ok("keys", "list", "--revoked", "--json"))
    assert [d["id"] for d in gone] == [kid] and gone[0]["revoked_at"] is not None
    assert gone[0]["prefix"] == new_secret[:12] and new_secret not in json.dumps(gone)


def test_bad_input_and_unknown_ids_exit_1_with_a_message(sqlite_store: Store) -> None:
    err = sqlite_store.fails("keys", "create", "--budget-period", "30fortnights")
    assert "budget_period" in err and "'30fortnights' is not like 30d" in err
    assert "error: no key with id key_nope" in sqlite_store.fails("keys", "update", "key_nope")
    assert "error: no live key with id key_nope" in sqlite_store.fails("keys", "rotate", "key_nope")
    assert "error: no live key with id key_nope" in sqlite_store.fails("keys", "revoke", "key_nope")
    assert "--by must be key, team, user, model" in sqlite_store.fails("spend", "--by", "planet")


def test_a_bad_since_date_is_a_message_not_a_traceback(sqlite_store: Store) -> None:
    err = sqlite_store.fails("spend", "--since", "last-tuesday")
    assert "error:" in err and "last-tuesday" in err


def test_listing_an_empty_store_is_not_a_crash(sqlite_store: Store) -> None:
    for what, head in (("keys", ["id", "prefix", "name"]), ("teams", ["id", "name", "models"])):
        out = sqlite_store.ok(what, "list")
        assert out.strip() == "(none)" or out.split()[:3] == head, out


def _row(n: int, model: str, cost: float, age_days: float) -> dict[str, Any]:
    return {
        "id": f"{n:032x}",
        "ts": time.time() - age_days * 86400,
        "request_id": f"req-{n}",
        "key_id": "key_cli",
        "user": "",
        "team_id": "",
        "model": model,
        "provider": "fakeai",
        "deployment": f"fakeai/{model}",
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost": cost,
        "latency_ms": 5.0,
        "ttft_ms": None,
        "status": 200 if model != "broken" else 502,
        "stream": False,
        "key_period": None,
        "team_period": None,
    }


def test_spend_prints_the_table_by_model_since_a_week(sqlite_store: Store) -> None:
    rows = [_row(n, "priced", 0.002, 0) for n in range(3)]
    rows += [_row(3, "gpt-4o", 0.5, 1), _row(4, "broken", 0.0, 0), _row(5, "ancient", 9.0, 30)]

    async def seed() -> int:
        engine = make_engine(Settings.model_validate({"data_dir": str(sqlite_store.data)}))
        try:
            await upgrade(engine)
            return int(await write_rows(engine, rows))
        finally:
            await engine.dispose()

    assert asyncio.run(seed()) == 6
    out = sqlite_store.ok("spend", "--by", "model", "--since", "7d").splitlines()
    assert out[0].split() == [
        "model",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost",
    ]
    assert [line.split() for line in out[1:-1]] == [
        ["gpt-4o", "1", "0", "10", "2", "0.5"],
        ["priced", "3", "0", "30", "6", "0.006"],
        ["broken", "1", "1", "10", "2", "0"],
    ]
    first = day_of(time.time() - 6 * 86400)
    assert out[-1] == f"total: $0.506000 since {first}"


def test_a_key_made_with_the_cli_works_on_a_gateway_of_the_same_store(
    any_store: Store,
    gateway_factory: GatewayFactory,
    fake_upstream: tuple[FakeOpenAI, str],
    fake: FakeOpenAI,
) -> None:
    gw = gateway_factory(config(fake_upstream[1], any_store.lines))
    assert gw.gw.runtime.settings.data_dir == str(any_store.data)
    made = json.loads(any_store.ok("keys", "create", "--models", "priced", "--json"))
    took = wait_until(lambda: hi(gw.url, made["key"]) == 200, timeout=2.0, step=0.1)
    assert took < 2.0
    assert hi(gw.url, made["key"], model="priced-slow", fake_delay=0) == 403  # its model globs
    any_store.ok("keys", "revoke", made["id"])
    wait_until(lambda: hi(gw.url, made["key"]) == 401, timeout=2.0, step=0.1)
