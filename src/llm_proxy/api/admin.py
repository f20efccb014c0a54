"""/admin/keys, /admin/teams, /admin/spend (master or admin keys) and /v1/key/info (any key).

Writes go to the store (the admin path may wait on it; the call path never does) and are
applied to this process's key book at once, then announced to the others (Redis) or picked up
by their next poll.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from llm_proxy import errors as E
from llm_proxy.auth import Principal
from llm_proxy.gateway import Gateway
from llm_proxy.keys import store
from llm_proxy.keys.records import Holder, KeyIn, TeamIn, iso, public_view
from llm_proxy.limits.plan import NANO
from llm_proxy.spend.report import GroupBy, report, since_day

T = TypeVar("T")


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _err(err: E.GatewayError) -> Response:
    return Response(
        err.to_json(), status_code=err.status, media_type="application/json", headers=err.headers
    )


async def _store(job: Callable[[], Awaitable[T]]) -> T:
    """Run a store operation; an unreachable store is a 503, never a 500."""
    try:
        return await job()
    except LookupError as e:
        raise E.InvalidRequestError(
            str(e).strip("'\""), param="team_id", code="team_not_found"
        ) from None
    except store.TeamHasKeys as e:
        raise E.InvalidRequestError(str(e), status=409, code="team_has_keys") from None
    except E.GatewayError:
        raise
    except Exception as e:
        raise E.ServiceUnavailableError(
            f"The key store is unavailable ({type(e).__name__}); retry shortly.",
            code="store_unavailable",
            headers={"Retry-After": "5"},
        ) from None


def _missing(kind: str, ident: str) -> E.NotFoundError:
    return E.NotFoundError(f"No {kind} with id '{ident}'.", code=f"{kind}_not_found")


def build_admin(gw: Gateway) -> APIRouter:
    r = APIRouter()

    async def changed(h: Holder, old_hash: str | None = None) -> None:
        gw.keys.apply(h)
        if old_hash:
            gw.keys.drop(None, old_hash)
        if gw.bus is not None:
            await gw.bus.announce(h.id, old_hash or (h.key_hash if h.revoked_at else None))

    _key_routes(r, gw, changed)
    _team_routes(r, gw, changed)
    _report_routes(r, gw)
    return r


Changed = Callable[..., Awaitable[None]]


def _key_routes(r: APIRouter, gw: Gateway, changed: Changed) -> None:

    @r.post("/admin/keys", tags=["admin"], status_code=201)
    async def create_key(body: KeyIn) -> Response:
        """Create a virtual key. The secret is in this response only; the store keeps a hash."""
        h, secret = await _store(lambda: store.create_key(gw.engine, body))
        await changed(h)
        return _json({**public_view(h), "key": secret}, 201)

    @r.get("/admin/keys", tags=["admin"])
    async def list_keys(
        team_id: str | None = None, user: str | None = None, include_revoked: bool = False
    ) -> Response:
        got = await _store(
            lambda: store.list_holders(
                gw.engine, "key", team_id=team_id, user=user, include_revoked=include_revoked
            )
        )
        return _json({"object": "list", "data": [public_view(h) for h in got]})

    @r.get("/admin/keys/{key_id}", tags=["admin"])
    async def get_key(key_id: str) -> Response:
        h = await _store(lambda: store.get_key(gw.engine, key_id))
        if h is None:
            return _err(_missing("key", key_id))
        return _json(public_view(h))

    @r.patch("/admin/keys/{key_id}", tags=["admin"])
    async def update_key(key_id: str, body: KeyIn) -> Response:
        h = await _store(lambda: store.update_key(gw.engine, key_id, body))
        if h is None:
            return _err(_missing("key", key_id))
        await changed(h)
        return _json(public_view(h))

    @r.delete("/admin/keys/{key_id}", tags=["admin"])
    async def revoke_key(key_id: str) -> Response:
        """Revoke: refused at once here, within a second everywhere. Spend history is kept."""
        h = await _store(lambda: store.revoke(gw.engine, "key", key_id))
        if h is None:
            return _err(_missing("key", key_id))
        await changed(h)
        return _json(
            {"id": h.id, "object": "key", "revoked": True, "revoked_at": iso(h.revoked_at)}
        )

    @r.post("/admin/keys/{key_id}/rotate", tags=["admin"])
    async def rotate_key(key_id: str) -> Response:
        """A new secret for the key (same id, limits and spend); the old one stops working now."""
        got = await _store(lambda: store.rotate(gw.engine, key_id))
        if got is None:
            return _err(_missing("key", key_id))
        h, secret, old_hash = got
        await changed(h, old_hash)
        return _json({**public_view(h), "key": secret})


def _team_routes(r: APIRouter, gw: Gateway, changed: Changed) -> None:
    @r.post("/admin/teams", tags=["admin"], status_code=201)
    async def create_team(body: TeamIn) -> Response:
        h = await _store(lambda: store.create_team(gw.engine, body))
        await changed(h)
        return _json(public_view(h), 201)

    @r.get("/admin/teams", tags=["admin"])
    async def list_teams() -> Response:
        got = await _store(lambda: store.list_holders(gw.engine, "team"))
        return _json({"object": "list", "data": [public_view(h) for h in got]})

    @r.get("/admin/teams/{team_id}", tags=["admin"])
    async def get_team(team_id: str) -> Response:
        h = await _store(lambda: store.get_team(gw.engine, team_id))
        if h is None:
            return _err(_missing("team", team_id))
        return _json(public_view(h))

    @r.patch("/admin/teams/{team_id}", tags=["admin"])
    async def update_team(team_id: str, body: TeamIn) -> Response:
        h = await _store(lambda: store.update_team(gw.engine, team_id, body))
        if h is None:
            return _err(_missing("team", team_id))
        await changed(h)
        return _json(public_view(h))

    @r.delete("/admin/teams/{team_id}", tags=["admin"])
    async def delete_team(team_id: str) -> Response:
        h = await _store(lambda: store.revoke(gw.engine, "team", team_id))
        if h is None:
            return _err(_missing("team", team_id))
        await changed(h)
        return _json({"id": h.id, "object": "team", "deleted": True})


def _report_routes(r: APIRouter, gw: Gateway) -> None:
    @r.get("/admin/spend", tags=["admin"])
    async def spend(
        group_by: GroupBy = "model",
        from_: str | None = Query(default=None, alias="from"),
        to: str | None = None,
    ) -> Response:
        """Spend grouped by key, team, user, model, provider or day, over [from, to] (dates, or
        `7d` for the last seven days). Read from the daily totals, so fast at any log size."""
        first = last = None
        for name, value in (("from", from_), ("to", to)):
            try:
                day = since_day(value) if value else None
            except (ValueError, OverflowError) as e:
                raise E.InvalidRequestError(str(e), param=name, code="invalid_date") from None
            if name == "from":
                first = day
            else:
                last = day
        rows = await _store(lambda: report(gw.engine, group_by, first, last))
        total = round(sum(x["cost"] for x in rows), 9)
        return _json(
            {
                "object": "list",
                "group_by": group_by,
                "from": first,
                "to": last,
                "data": rows,
                "total_cost": total,
            }
        )

    @r.get("/v1/key/info", tags=["keys"])
    async def key_info(request: Request) -> Response:
        """The calling key's limits, what is left of them now, its budget and its spend."""
        p: Principal = request.scope["state"]["principal"]
        if p.key is None:
            return _json({"key": None, "master": p.admin, "limits": {}, "budget": None})
        doc: dict[str, Any] = {"key": public_view(p.key)}
        doc.update(await _standing(gw, p.key, "k"))
        if p.team is not None:
            doc["team"] = {**public_view(p.team), **(await _standing(gw, p.team, "t"))}
        return _json(doc)


async def _standing(gw: Gateway, h: Holder, tag: str) -> dict[str, Any]:
    """Limits and budget of a key or team as they stand now."""
    limits: dict[str, Any] = {}
    for name, value, prefix in (("rpm", h.rpm, "r"), ("tpm", h.tpm, "t")):
        if value:
            left, reset = await gw.limits.peek(f"{prefix}:{tag}:{h.id}", value, 60.0)
            limits[name] = {"limit": value, "remaining": left, "reset_seconds": round(reset, 3)}
    if h.max_parallel:
        limits["max_parallel_requests"] = {
            "limit": h.max_parallel,
            "in_flight": await gw.limits.in_use(f"p:{tag}:{h.id}"),
        }
    budget: dict[str, Any] | None = None
    now = time.time()
    if h.max_budget is not None:
        counter = await gw.limits.spent(f"b:{tag}:{h.id}:{h.period_key(now)}")
        spent, reserved = counter if counter is not None else (int(h.stored_spend(now) * NANO), 0)
        start, end = h.period_bounds(now)
        budget = {
            "max_budget": h.max_budget,
            "period": h.budget_period,
            "spend": round(spent / NANO, 9),
            "reserved": round(reserved / NANO, 9),
            "remaining": round(max(0.0, h.max_budget - (spent + reserved) / NANO), 9),
            "period_start": iso(start),
            "resets_at": iso(end),
        }
    return {"limits": limits, "budget": budget}


__all__ = ["build_admin"]
