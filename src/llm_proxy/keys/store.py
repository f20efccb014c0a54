"""Key and team operations on the store (the admin API and the CLI; never the hot path)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_proxy.keys.records import Holder, KeyIn, LimitsIn, TeamIn, holder_from_row, parse_time
from llm_proxy.store.tables import keys, teams

SECRET_PREFIX = "sk-llmp-"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def _limit_values(body: LimitsIn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, column in (
        ("models", "models"),
        ("rpm", "rpm"),
        ("tpm", "tpm"),
        ("max_parallel_requests", "max_parallel"),
        ("max_budget", "max_budget"),
        ("budget_period", "budget_period"),
        ("metadata", "metadata"),
        ("disabled", "disabled"),
    ):
        if field in body.model_fields_set:
            out[column] = getattr(body, field)
    if out.get("models", ()) is None:
        out["models"] = []
    if out.get("metadata", ()) is None:
        out["metadata"] = {}
    if out.get("disabled", ()) is None:
        out["disabled"] = False
    return out


def _key_values(body: KeyIn) -> dict[str, Any]:
    out = _limit_values(body)
    for field in ("name", "user", "team_id", "role"):
        if field in body.model_fields_set:
            out[field] = getattr(body, field)
    if out.get("name", "") is None:
        out["name"] = ""
    if out.get("role", "") is None:
        out["role"] = "user"
    if "expires_at" in body.model_fields_set:
        out["expires_at"] = parse_time(body.expires_at)
    return out


def _fresh(now: float) -> dict[str, Any]:
    return {
        "models": [],
        "metadata": {},
        "disabled": False,
        "budget_anchor": now,
        "spend": 0.0,
        "spend_period": int(now),  # the first period starts at the anchor
        "total_spend": 0.0,
        "created_at": now,
        "updated_at": now,
    }


async def _live_team(engine: AsyncEngine, team_id: str) -> None:
    team = await get_team(engine, team_id)
    if team is None or team.revoked_at is not None:
        raise LookupError(f"team {team_id!r} does not exist")


async def create_key(engine: AsyncEngine, body: KeyIn) -> tuple[Holder, str]:
    """(the new key, its secret): the secret exists only in this return value."""
    if body.team_id is not None:
        await _live_team(engine, body.team_id)
    now = time.time()
    secret = new_secret()
    values = {
        **_fresh(now),
        "name": "",
        "role": "user",
        **_key_values(body),
        "id": "key_" + secrets.token_hex(8),
        "key_hash": secret_hash(secret),
        "key_prefix": secret[: len(SECRET_PREFIX) + 4],
    }
    async with engine.begin() as conn:
        await conn.execute(keys.insert().values(**values))
        row = (await conn.execute(select(keys).where(keys.c.id == values["id"]))).one()
    return holder_from_row(row, "key"), secret


async def create_team(engine: AsyncEngine, body: TeamIn) -> Holder:
    now = time.time()
    values = {
        **_fresh(now),
        "name": "",
        **_limit_values(body),
        "id": "team_" + secrets.token_hex(8),
    }
    if body.name is not None:
        values["name"] = body.name
    async with engine.begin() as conn:
        await conn.execute(teams.insert().values(**values))
        row = (await conn.execute(select(teams).where(teams.c.id == values["id"]))).one()
    return holder_from_row(row, "team")


async def get_key(engine: AsyncEngine, key_id: str) -> Holder | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(keys).where(keys.c.id == key_id))).first()
    return holder_from_row(row, "key") if row is not None else None


async def get_team(engine: AsyncEngine, team_id: str) -> Holder | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(teams).where(teams.c.id == team_id))).first()
    return holder_from_row(row, "team") if row is not None else None


async def key_by_hash(engine: AsyncEngine, digest: str) -> Holder | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(keys).where(keys.c.key_hash == digest))).first()
    return holder_from_row(row, "key") if row is not None else None


async def list_holders(
    engine: AsyncEngine,
    kind: Literal["key", "team"],
    *,
    team_id: str | None = None,
    user: str | None = None,
    include_revoked: bool = False,
) -> list[Holder]:
    table = keys if kind == "key" else teams
    q = select(table).order_by(table.c.created_at)
    if not include_revoked:
        q = q.where(table.c.revoked_at.is_(None))
    if kind == "key" and team_id is not None:
        q = q.where(keys.c.team_id == team_id)
    if kind == "key" and user is not None:
        q = q.where(keys.c.user == user)
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [holder_from_row(r, kind) for r in rows]


async def changed_since(engine: AsyncEngine, since: float) -> tuple[list[Holder], list[Holder]]:
    """(keys, teams) updated at or after `since` (revoked ones included: they must be dropped)."""
    async with engine.connect() as conn:
        k = (await conn.execute(select(keys).where(keys.c.updated_at >= since))).all()
        t = (await conn.execute(select(teams).where(teams.c.updated_at >= since))).all()
    return [holder_from_row(r, "key") for r in k], [holder_from_row(r, "team") for r in t]


async def update_key(engine: AsyncEngine, key_id: str, body: KeyIn) -> Holder | None:
    values = _key_values(body)
    if values.get("team_id") is not None:
        await _live_team(engine, values["team_id"])
    return await _update(engine, "key", key_id, values)


async def update_team(engine: AsyncEngine, team_id: str, body: TeamIn) -> Holder | None:
    values = _limit_values(body)
    if "name" in body.model_fields_set and body.name is not None:
        values["name"] = body.name
    return await _update(engine, "team", team_id, values)


async def _update(
    engine: AsyncEngine, kind: Literal["key", "team"], ident: str, values: dict[str, Any]
) -> Holder | None:
    table = keys if kind == "key" else teams
    now = time.time()
    values["updated_at"] = now
    async with engine.begin() as conn:
        if "budget_period" in values:
            current = (
                await conn.execute(select(table.c.budget_period).where(table.c.id == ident))
            ).first()
            if current is not None and current[0] != values["budget_period"]:
                # A new period starts now, with nothing spent in it.
                values.update(budget_anchor=now, spend=0.0, spend_period=int(now))
        done = await conn.execute(
            update(table).where(table.c.id == ident, table.c.revoked_at.is_(None)).values(**values)
        )
        if done.rowcount == 0:
            return None
        row = (await conn.execute(select(table).where(table.c.id == ident))).one()
    return holder_from_row(row, kind)


class TeamHasKeys(Exception):
    """A team is deleted only once none of its keys is live (they would lose its limits)."""


async def revoke(engine: AsyncEngine, kind: Literal["key", "team"], ident: str) -> Holder | None:
    """Revoke a key (or delete a team): the row stays for the spend history."""
    now = time.time()
    table = keys if kind == "key" else teams
    async with engine.begin() as conn:
        if kind == "team":
            live = (
                await conn.execute(
                    select(keys.c.id)
                    .where(keys.c.team_id == ident, keys.c.revoked_at.is_(None))
                    .limit(1)
                )
            ).first()
            if live is not None:
                raise TeamHasKeys(f"team {ident!r} still has live keys: revoke or move them first")
        done = await conn.execute(
            update(table)
            .where(table.c.id == ident, table.c.revoked_at.is_(None))
            .values(revoked_at=now, updated_at=now)
        )
        if done.rowcount == 0:
            return None
        row = (await conn.execute(select(table).where(table.c.id == ident))).one()
    return holder_from_row(row, kind)


async def rotate(engine: AsyncEngine, key_id: str) -> tuple[Holder, str, str] | None:
    """A new secret for the key: (key, new secret, the old hash now invalid)."""
    secret = new_secret()
    now = time.time()
    async with engine.begin() as conn:
        old = (
            await conn.execute(
                select(keys.c.key_hash).where(keys.c.id == key_id, keys.c.revoked_at.is_(None))
            )
        ).first()
        if old is None:
            return None
        await conn.execute(
            update(keys)
            .where(keys.c.id == key_id)
            .values(
                key_hash=secret_hash(secret),
                key_prefix=secret[: len(SECRET_PREFIX) + 4],
                updated_at=now,
            )
        )
        row = (await conn.execute(select(keys).where(keys.c.id == key_id))).one()
    return holder_from_row(row, "key"), secret, old[0]


async def spend_of(engine: AsyncEngine, table: Any) -> list[tuple[str, float, int, float]]:
    """(id, spend, spend_period, total_spend) of every live row of `table` (keys or teams)."""
    q = select(table.c.id, table.c.spend, table.c.spend_period, table.c.total_spend).where(
        table.c.revoked_at.is_(None)
    )
    async with engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3]) for r in (await conn.execute(q)).all()]
