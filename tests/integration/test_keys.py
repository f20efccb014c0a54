"""Virtual keys through the admin API, on SQLite and on PostgreSQL: create, use, list, update,
rotate, revoke; model globs, expiry, admin-only paths, teams and the caller's own view."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import MASTER_KEY, RunningGateway
from tests.fakes.openai import FakeOpenAI
from tests.integration.accounts import client, config, hi, new_key, request
from tests.services import store_config


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        schema = request.getfixturevalue("pg_schema")
        return store_config("postgres", schema)
    return ""


@pytest.fixture
def gw(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI, backend: str
) -> RunningGateway:
    return gateway_factory(config(fake_upstream[1], backend))


def test_a_created_key_works_once_shown_and_is_stored_as_a_hash(gw: RunningGateway) -> None:
    k = new_key(gw.url, name="app-1", user="alice", metadata={"env": "test"})
    assert k["prefix"] == k["key"][:12] and k["name"] == "app-1" and k["user"] == "alice"
    r = client(gw.url, k["key"]).chat.completions.create(
        model="priced", messages=[{"role": "user", "content": "hello there"}]
    )
    assert r.choices[0].message.content == "fake: hello there"
    status, _, listed = request(gw.url, "GET", "/admin/keys")
    assert status == 200
    mine = [x for x in listed["data"] if x["id"] == k["id"]]
    assert len(mine) == 1 and "key" not in mine[0] and mine[0]["prefix"] == k["prefix"]
    assert k["key"] not in str(listed)
    status, _, one = request(gw.url, "GET", f"/admin/keys/{k['id']}")
    assert status == 200 and one["metadata"] == {"env": "test"} and "key" not in one


def test_wrong_and_missing_keys_are_401_in_the_openai_shape(gw: RunningGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw.url, "sk-llmp-not-a-real-key").models.list()
    assert e.value.status_code == 401
    status, _, doc = request(gw.url, "POST", "/v1/chat/completions", {"model": "priced"}, key="")
    assert status == 401 and doc["error"]["code"] == "invalid_api_key"
    assert set(doc["error"]) >= {"message", "type", "param", "code"}


def test_models_are_limited_by_globs(gw: RunningGateway) -> None:
    k = new_key(gw.url, models=["priced-*", "gpt-4o"])
    assert hi(gw.url, k["key"], model="priced-slow", fake_delay=0) == 200
    status, _, doc = request(
        gw.url,
        "POST",
        "/v1/chat/completions",
        {"model": "priced", "messages": [{"role": "user", "content": "x"}]},
        key=k["key"],
    )
    assert status == 403
    assert doc["error"]["code"] == "model_not_allowed" and doc["error"]["param"] == "model"


def test_update_changes_limits_at_once(gw: RunningGateway) -> None:
    k = new_key(gw.url)
    status, _, doc = request(gw.url, "PATCH", f"/admin/keys/{k['id']}", {"models": ["nothing-*"]})
    assert status == 200 and doc["models"] == ["nothing-*"]
    assert hi(gw.url, k["key"]) == 403
    request(gw.url, "PATCH", f"/admin/keys/{k['id']}", {"models": None, "disabled": True})
    assert hi(gw.url, k["key"]) == 401
    request(gw.url, "PATCH", f"/admin/keys/{k['id']}", {"disabled": False})
    assert hi(gw.url, k["key"]) == 200


def test_rotate_replaces_the_secret_and_revoke_refuses_at_once(gw: RunningGateway) -> None:
    k = new_key(gw.url)
    assert hi(gw.url, k["key"]) == 200
    status, _, rotated = request(gw.url, "POST", f"/admin/keys/{k['id']}/rotate")
    assert status == 200 and rotated["id"] == k["id"] and rotated["key"] != k["key"]
    assert hi(gw.url, k["key"]) == 401
    assert hi(gw.url, rotated["key"]) == 200
    status, _, doc = request(gw.url, "DELETE", f"/admin/keys/{k['id']}")
    assert status == 200 and doc["revoked"] is True
    assert hi(gw.url, rotated["key"]) == 401
    status, _, doc = request(gw.url, "DELETE", f"/admin/keys/{k['id']}")
    assert status == 404 and doc["error"]["code"] == "key_not_found"
    status, _, listed = request(gw.url, "GET", "/admin/keys?include_revoked=true")
    assert [x["revoked_at"] is not None for x in listed["data"] if x["id"] == k["id"]] == [True]


def test_expired_keys_are_refused(gw: RunningGateway) -> None:
    k = new_key(gw.url, expires_at=time.time() + 1.0)
    assert hi(gw.url, k["key"]) == 200
    time.sleep(1.1)
    status, _, doc = request(
        gw.url, "POST", "/v1/chat/completions", {"model": "priced", "messages": []}, key=k["key"]
    )
    assert status == 401 and doc["error"]["code"] == "key_expired"


def test_admin_paths_need_the_master_or_an_admin_key(gw: RunningGateway) -> None:
    user = new_key(gw.url)
    admin = new_key(gw.url, role="admin")
    for path in ("/admin/keys", "/admin/spend", "/providers"):
        status, _, doc = request(gw.url, "GET", path, key=user["key"])
        assert status == 403 and doc["error"]["code"] == "admin_only", path
    status, _, made = request(gw.url, "POST", "/admin/keys", {"name": "by-admin"}, key=admin["key"])
    assert status == 201 and made["name"] == "by-admin"


def test_bad_admin_input_is_a_clear_4xx(gw: RunningGateway) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/admin/keys", {"budget_period": "30 fortnights"}, 400, "budget_period"),
        ("POST", "/admin/keys", {"rpm": 0}, 400, "rpm"),
        ("POST", "/admin/keys", {"expires_at": "tomorrow-ish"}, 400, "expires_at"),
        ("POST", "/admin/keys", {"surprise": 1}, 400, "surprise"),
        ("POST", "/admin/keys", b"{not json", 400, ""),
        ("POST", "/admin/keys", {"team_id": "team_nope"}, 400, "team_id"),
        ("PATCH", "/admin/keys/key_nope", {"rpm": 5}, 404, ""),
        ("GET", "/admin/teams/team_nope", None, 404, ""),
        ("GET", "/admin/spend?group_by=planet", None, 400, "group_by"),
        ("GET", "/admin/spend?from=last-tuesday", None, 400, "from"),
        ("GET", "/admin/spend?to=99999999999999w", None, 400, "to"),
        ("POST", "/admin/keys", {"max_budget": 1e300}, 400, "max_budget"),
        ("POST", "/admin/keys", b'{"max_budget": Infinity}', 400, "max_budget"),
        ("POST", "/admin/keys", {"rpm": 2**40}, 400, "rpm"),
        ("POST", "/admin/keys", {"budget_period": "1" * 40 + "d"}, 400, "budget_period"),
    ]
    for method, path, body, want, param in cases:
        status, _, doc = request(gw.url, method, path, body)
        assert status == want, (path, body, doc)
        assert set(doc["error"]) >= {"message", "type", "param", "code"}
        if param:
            assert param in (doc["error"]["param"] or "") + doc["error"]["message"], doc


def test_teams_carry_limits_over_their_keys_and_the_caller_sees_its_own(gw: RunningGateway) -> None:
    status, _, team = request(
        gw.url, "POST", "/admin/teams", {"name": "search", "models": ["priced*"], "rpm": 3}
    )
    assert status == 201 and team["id"].startswith("team_")
    a = new_key(gw.url, team_id=team["id"], rpm=100, max_budget=5, budget_period="30d")
    b = new_key(gw.url, team_id=team["id"])
    assert hi(gw.url, a["key"]) == 200
    assert hi(gw.url, b["key"]) == 200
    assert hi(gw.url, a["key"]) == 200
    assert hi(gw.url, b["key"]) == 429  # the team's 3 per minute, shared by both keys
    status, _, info = request(gw.url, "GET", "/v1/key/info", key=a["key"])
    assert status == 200
    assert info["key"]["id"] == a["id"] and "key_hash" not in str(info)
    assert info["limits"]["rpm"]["limit"] == 100 and info["limits"]["rpm"]["remaining"] == 98
    budget = info["budget"]
    assert budget["max_budget"] == 5 and budget["period"] == "30d"
    assert budget["spend"] == pytest.approx(0.004) and budget["remaining"] == pytest.approx(4.996)
    assert info["team"]["id"] == team["id"] and info["team"]["limits"]["rpm"]["remaining"] == 0
    # A team with live keys stays: deleting it would free its keys from its limits.
    status, _, doc = request(gw.url, "DELETE", f"/admin/teams/{team['id']}")
    assert status == 409 and doc["error"]["code"] == "team_has_keys"
    for k in (a, b):
        request(gw.url, "DELETE", f"/admin/keys/{k['id']}")
    status, _, _ = request(gw.url, "DELETE", f"/admin/teams/{team['id']}")
    assert status == 200
    status, _, teams = request(gw.url, "GET", "/admin/teams")
    assert team["id"] not in str(teams)
    status, _, doc = request(gw.url, "POST", "/admin/keys", {"team_id": team["id"]})
    assert status == 400 and doc["error"]["code"] == "team_not_found"


def test_the_master_key_still_works_and_has_no_key_info(gw: RunningGateway) -> None:
    assert hi(gw.url, MASTER_KEY) == 200
    status, _, info = request(gw.url, "GET", "/v1/key/info")
    assert status == 200 and info["key"] is None and info["master"] is True


def test_the_store_holds_hashes_never_secrets(gw: RunningGateway, tmp_path: Path) -> None:
    k = new_key(gw.url)
    rotated = request(gw.url, "POST", f"/admin/keys/{k['id']}/rotate")[2]
    raw = _store_dump(gw, tmp_path)
    assert rotated["prefix"].encode() in raw  # the dump is readable: the grep below means something
    for secret in (k["key"], rotated["key"]):
        assert secret.encode() not in raw
        assert secret[12:].encode() not in raw


def _store_dump(gw: RunningGateway, tmp_path: Path) -> bytes:
    """Every byte the store holds: the SQLite file and its WAL, or every PostgreSQL row."""
    schema = gw.gw.runtime.settings.database_schema
    if schema is None:
        db = tmp_path / "data" / "llm-proxy.db"
        wal = db.with_name(db.name + "-wal")
        return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    import asyncio

    import asyncpg

    from tests.services import PG_URL

    async def dump() -> bytes:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'SET search_path TO "{schema}"')
            rows = [await conn.fetch(f"SELECT * FROM {t}") for t in ("keys", "teams")]
            return repr(rows).encode()
        finally:
            await conn.close()

    return asyncio.run(dump())


def test_a_budget_for_10_calls_holds_against_50_concurrent(gw: RunningGateway) -> None:
    from concurrent.futures import ThreadPoolExecutor

    k = new_key(gw.url, max_budget=0.02, budget_period="30d")  # 10 calls at $0.002
    with ThreadPoolExecutor(max_workers=50) as pool:
        futs = [
            pool.submit(hi, gw.url, k["key"], model="priced-slow", fake_delay=0.3)
            for _ in range(50)
        ]
        statuses = [f.result() for f in futs]
    assert statuses.count(200) == 10 and statuses.count(429) == 40, statuses
    status, _, info = request(gw.url, "GET", "/v1/key/info", key=k["key"])
    assert info["budget"]["spend"] == pytest.approx(0.02)
    assert info["budget"]["reserved"] == 0 and info["budget"]["remaining"] == pytest.approx(0)
    status, _, doc = request(
        gw.url,
        "POST",
        "/v1/chat/completions",
        {"model": "priced", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        key=k["key"],
    )
    assert status == 429 and doc["error"]["code"] == "budget_exceeded"
    assert doc["error"]["type"] == "insufficient_quota"


def test_budgets_reset_on_their_period(gw: RunningGateway) -> None:
    k = new_key(gw.url, max_budget=0.002, budget_period="2s")  # one $0.002 call per 2 seconds
    _, _, info = request(gw.url, "GET", "/v1/key/info", key=k["key"])
    resets = info["budget"]["resets_at"]
    assert hi(gw.url, k["key"]) == 200
    assert hi(gw.url, k["key"]) == 429
    time.sleep(2.1)
    assert hi(gw.url, k["key"]) == 200
    _, _, info = request(gw.url, "GET", "/v1/key/info", key=k["key"])
    assert info["budget"]["resets_at"] > resets and info["budget"]["spend"] == pytest.approx(0.002)


FALLBACKS = (
    "  - name: cheap\n"
    "    provider: fakeai\n"
    "    model: fake-error-500\n"
    "    price: {input: 0, output: 1000}\n"
    "    fallbacks: [dear]\n"
    "  - name: dear\n"
    "    provider: fakeai\n"
    "    model: fake-plain\n"
    "    price: {input: 0, output: 100000}\n"
)


def test_fallbacks_respect_the_key_and_its_budget_reserves_their_price(
    gateway_factory: Any, fake_upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI
) -> None:
    gw = gateway_factory(config(fake_upstream[1], "", FALLBACKS))
    only_cheap = new_key(gw.url, models=["cheap"])
    status, _, _ = request(
        gw.url,
        "POST",
        "/v1/chat/completions",
        {"model": "cheap", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        key=only_cheap["key"],
    )
    assert status == 502 and "fake-plain" not in [
        r.body.get("model") for r in fake.requests if r.body
    ]
    # Both allowed: 2 output tokens at the fallback's $0.1 per token must fit the budget,
    # though the model asked for costs a hundredth of that.
    both = new_key(gw.url, max_budget=0.1, budget_period="30d")
    assert hi(gw.url, both["key"], model="cheap") == 429
    roomy = new_key(gw.url, max_budget=0.2, budget_period="30d")
    assert hi(gw.url, roomy["key"], model="cheap") == 200  # served by `dear`


def test_a_budgeted_call_without_an_output_limit_gets_the_reserved_one(
    gw: RunningGateway, fake: FakeOpenAI
) -> None:
    k = new_key(gw.url, max_budget=5.0)
    doc = {"model": "priced", "messages": [{"role": "user", "content": "hi"}]}
    status, _, _ = request(gw.url, "POST", "/v1/chat/completions", doc, key=k["key"])
    assert status == 200
    sent = [r.body for r in fake.requests if r.body][-1]
    assert sent["max_completion_tokens"] == 4096  # spend.reserve_max_tokens: what was reserved
    # It reserved 4096 tokens at $0.001 ($4.096) and was settled to its real $0.002, so a
    # second call fits the $5; a $4 budget cannot cover the reservation at all.
    status, _, _ = request(gw.url, "POST", "/v1/chat/completions", doc, key=k["key"])
    assert status == 200
    small = new_key(gw.url, max_budget=4.0)
    status, _, err = request(gw.url, "POST", "/v1/chat/completions", doc, key=small["key"])
    assert status == 429 and err["error"]["code"] == "budget_exceeded"
