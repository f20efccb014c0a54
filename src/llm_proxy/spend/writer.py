"""Spend rows from the spool to the store, in batches, off the hot path; nothing is lost.

One transaction per batch writes the log rows, adds them to the daily totals and to each key's
and team's spend. A row id already in the log (a batch replayed after a lost commit) is skipped
everywhere, so a replay never counts twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_proxy.spend.spool import Spool, read_segment
from llm_proxy.store.tables import keys, spend_daily, spend_log, teams

log = logging.getLogger("llm_proxy")

LOG_COLUMNS = tuple(c.name for c in spend_log.columns)
_SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost")


def _insert(engine: AsyncEngine, table: Any) -> Any:
    return (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(table)


async def write_rows(engine: AsyncEngine, rows: list[dict[str, Any]]) -> int:
    """Store a batch; returns how many rows were new."""
    if not rows:
        return 0
    log_rows = [{c: r.get(c) for c in LOG_COLUMNS} for r in rows]
    async with engine.begin() as conn:
        ins = _insert(engine, spend_log).on_conflict_do_nothing(index_elements=["id"])
        got = await conn.execute(ins.returning(spend_log.c.id), log_rows)
        new_ids = {r[0] for r in got}
        fresh = [r for r in rows if r["id"] in new_ids]
        if not fresh:
            return 0
        daily: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0.0])
        owed: dict[tuple[str, str, int], float] = defaultdict(float)
        for r in fresh:
            day = time.strftime("%Y-%m-%d", time.gmtime(r["ts"]))
            k = (day, r["key_id"], r["team_id"], r["user"], r["model"], r["provider"])
            d = daily[k]
            d[0] += 1
            d[1] += 1 if r["status"] >= 400 else 0
            d[2] += r["prompt_tokens"]
            d[3] += r["completion_tokens"]
            d[4] += r["cached_tokens"]
            d[5] += r["cost"]
            if r.get("key_period") is not None:
                owed[("key", r["key_id"], r["key_period"])] += r["cost"]
            if r.get("team_period") is not None and r["team_id"]:
                owed[("team", r["team_id"], r["team_period"])] += r["cost"]
        ins = _insert(engine, spend_daily)
        upsert = ins.on_conflict_do_update(
            index_elements=[c.name for c in spend_daily.primary_key.columns],
            set_={s: spend_daily.c[s] + ins.excluded[s] for s in _SUMS},
        )
        await conn.execute(
            upsert,
            [
                {
                    "day": k[0],
                    "key_id": k[1],
                    "team_id": k[2],
                    "user": k[3],
                    "model": k[4],
                    "provider": k[5],
                    **dict(zip(_SUMS, v, strict=True)),
                }
                for k, v in daily.items()
            ],
        )
        for (kind, ident, period), cost in sorted(owed.items(), key=lambda x: x[0][2]):
            t = keys if kind == "key" else teams
            await conn.execute(
                update(t)
                .where(t.c.id == ident)
                .values(
                    spend=case(
                        (t.c.spend_period == period, t.c.spend + cost),
                        (t.c.spend_period < period, cost),
                        else_=t.c.spend,
                    ),
                    spend_period=case((t.c.spend_period < period, period), else_=t.c.spend_period),
                    total_spend=t.c.total_spend + cost,
                )
            )
    return len(fresh)


class SpendWriter:
    """Rotates the spool every flush_interval and moves ready segments to the store."""

    def __init__(self, engine: AsyncEngine, spool: Spool, cfg: Any) -> None:
        self.engine = engine
        self.spool = spool
        self.cfg = cfg
        self.down_since: float | None = None
        self.written = 0
        self._lock = asyncio.Lock()

    async def flush(self) -> bool:
        """Move every ready row to the store; False if the store refused (rows stay spooled)."""
        async with self._lock:
            self.spool.rotate()
            for path in self.spool.ready():
                rows = read_segment(path)
                try:
                    for i in range(0, len(rows), self.cfg.batch_size):
                        self.written += await write_rows(
                            self.engine, rows[i : i + self.cfg.batch_size]
                        )
                except Exception as e:
                    if self.down_since is None:
                        self.down_since = time.time()
                        log.warning(
                            "spend store unreachable; rows wait in the spool",
                            extra={"event": "spend_store_down", "error": type(e).__name__},
                        )
                    return False
                self.spool.done(path)
            if self.down_since is not None:
                log.info(
                    "spend store reachable again; spool flushed",
                    extra={
                        "event": "spend_store_up",
                        "down_s": round(time.time() - self.down_since, 1),
                    },
                )
                self.down_since = None
            return True

    async def run(self) -> None:
        wait = self.cfg.flush_interval
        next_retention = time.monotonic() + 60.0
        while True:
            await asyncio.sleep(wait)
            ok = await self.flush()
            # While the store is down, back off (up to 5 s) instead of hammering it.
            wait = self.cfg.flush_interval if ok else min(max(wait * 2, 0.5), 5.0)
            if ok and self.cfg.retention_days and time.monotonic() >= next_retention:
                next_retention = time.monotonic() + 3600.0
                await self.prune()

    async def prune(self) -> int:
        """Drop log rows past the retention (the daily totals keep their sums)."""
        cutoff = time.time() - self.cfg.retention_days * 86400
        try:
            async with self.engine.begin() as conn:
                got = await conn.execute(delete(spend_log).where(spend_log.c.ts < cutoff))
            return int(got.rowcount or 0)
        except Exception as e:
            log.warning("spend retention pass failed", extra={"error": type(e).__name__})
            return 0
