"""Spend reports from the daily totals (fast at any log size): grouped, over a date range."""

from __future__ import annotations

import time
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_proxy.store.tables import spend_daily

GroupBy = Literal["key", "team", "user", "model", "provider", "day"]
_COLUMN = {
    "key": "key_id",
    "team": "team_id",
    "user": "user",
    "model": "model",
    "provider": "provider",
    "day": "day",
}


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def since_day(text: str) -> str:
    """ "7d" (the last 7 days, today included), "24h", or a date -> the first day, YYYY-MM-DD."""
    from llm_proxy.keys.records import parse_time, period_seconds

    t = text.strip().lower()
    if t and t[-1] in "smhdw" and t[:-1].isdigit():
        span = period_seconds(t) or 0.0
        if span > 100 * 365 * 86400:
            raise ValueError(f"{text!r} reaches back more than 100 years")
        return day_of(time.time() - span + (86400 if t.endswith("d") else 0))
    got = parse_time(text)
    if got is None:
        raise ValueError("a date (2026-12-01) or a span (7d, 24h) is needed")
    return day_of(got)


async def report(
    engine: AsyncEngine, group_by: GroupBy, first: str | None, last: str | None
) -> list[dict[str, Any]]:
    col = spend_daily.c[_COLUMN[group_by]]
    sums = [
        func.sum(spend_daily.c.requests).label("requests"),
        func.sum(spend_daily.c.errors).label("errors"),
        func.sum(spend_daily.c.prompt_tokens).label("prompt_tokens"),
        func.sum(spend_daily.c.completion_tokens).label("completion_tokens"),
        func.sum(spend_daily.c.cached_tokens).label("cached_tokens"),
        func.sum(spend_daily.c.cost).label("cost"),
    ]
    q = select(col.label("group"), *sums).group_by(col)
    if first:
        q = q.where(spend_daily.c.day >= first)
    if last:
        q = q.where(spend_daily.c.day <= last)
    q = (
        q.order_by(col)
        if group_by == "day"
        else q.order_by(func.sum(spend_daily.c.cost).desc(), col)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [
        {
            group_by: r.group,
            "requests": int(r.requests or 0),
            "errors": int(r.errors or 0),
            "prompt_tokens": int(r.prompt_tokens or 0),
            "completion_tokens": int(r.completion_tokens or 0),
            "cached_tokens": int(r.cached_tokens or 0),
            "cost": round(float(r.cost or 0.0), 9),
        }
        for r in rows
    ]
