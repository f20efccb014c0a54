"""Spend rows from the spool to the store, in batches, off the hot path; nothing is lost.

One transaction per batch writes the log rows, adds them to the daily totals and to each key's
and team's spend. A row id already in the log (a segment replayed after a commit whose segment
was not yet deleted) is skipped everywhere, so a replay never counts twice. Only one process
reads a segment (it claims it by renaming it, spend/spool.py), so the check and the insert do not
race. The log insert goes to the driver's executemany directly: it is the per-row cost of the
whole spend path, and SQLAlchemy's per-row parameter handling would be most of it.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_proxy.spend.spool import Spool, read_segment
from llm_proxy.store.tables import keys, spend_daily, spend_log, teams

log = logging.getLogger("llm_proxy")

LOG_COLUMNS = tuple(c.name for c in spend_log.columns)
_LOG_VALUES = operator.itemgetter(*LOG_COLUMNS)
_SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost")


_statements: dict[str, tuple[str, Any]] = {}


def _statements_for(engine: AsyncEngine) -> tuple[str, Any]:
    """(the log insert as driver SQL, the daily-totals upsert), built once per dialect."""
    name = engine.dialect.name
    got = _statements.get(name)
    if got is None:
        cols = ", ".join(f'"{c}"' for c in LOG_COLUMNS)
        if engine.dialect.paramstyle == "numeric_dollar":
            marks = ", ".join(f"${i + 1}" for i in range(len(LOG_COLUMNS)))
        else:
            marks = ", ".join("?" for _ in LOG_COLUMNS)
        insert_log = f"INSERT INTO spend_log ({cols}) VALUES ({marks})"
        ins = (postgresql if name == "postgresql" else sqlite).insert(spend_daily)
        upsert = ins.on_conflict_do_update(
            index_elements=[c.name for c in spend_daily.primary_key.columns],
            set_={s: spend_daily.c[s] + ins.excluded[s] for s in _SUMS},
        )
        got = _statements[name] = (insert_log, upsert)
    return got


async def write_rows(engine: AsyncEngine, rows: list[dict[str, Any]], replay: bool = True) -> int:
    """Store a batch; returns how many rows were new. `replay=False` skips the check for ids
    already stored: only for rows this process spooled and never tried to write before."""
    if not rows:
        return 0
    insert_log, upsert = _statements_for(engine)
    async with engine.begin() as conn:
        fresh = rows
        if replay:
            ids = [r["id"] for r in rows]
            q = select(spend_log.c.id).where(spend_log.c.id.in_(ids))
            known = {x[0] for x in await conn.execute(q)}
            fresh = [r for r in rows if r["id"] not in known] if known else rows
        if not fresh:
            return 0
        try:
            values = [_LOG_VALUES(r) for r in fresh]
        except KeyError:  # a row from an older spool format: missing columns are NULL
            values = [tuple(r.get(c) for c in LOG_COLUMNS) for r in fresh]
        await conn.exec_driver_sql(insert_log, values)
        daily: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0.0])
        owed: dict[tuple[str, str, int], float] = defaultdict(float)
        days: dict[int, str] = {}
        for r in fresh:
            n = int(r["ts"] // 86400)
            day = days.get(n)
            if day is None:
                day = days[n] = time.strftime("%Y-%m-%d", time.gmtime(n * 86400))
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
            try:
                return await self._flush()
            finally:
                self.spool.recount()

    async def _flush(self) -> bool:
        self.spool.rotate()
        for path in self.spool.ready():
            fd = self.spool.claim(path)
            if fd is None:
                continue  # another worker on this data dir is storing it
            try:
                rows = read_segment(path, fd)
                # A segment this process wrote and never tried to store cannot be stored.
                replay = not self.spool.first_try(path)
                for i in range(0, len(rows), self.cfg.batch_size):
                    self.written += await write_rows(
                        self.engine, rows[i : i + self.cfg.batch_size], replay
                    )
                self.spool.done(path)
            except Exception as e:
                if self.down_since is None:
                    self.down_since = time.time()
                    log.warning(
                        "spend store unreachable; rows wait in the spool",
                        extra={"event": "spend_store_down", "error": type(e).__name__},
                    )
                return False
            finally:
                os.close(fd)
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
            try:
                ok = await self.flush()
            except Exception:  # a disk error, say: log it, keep the writer alive, try again
                log.exception("spend flush failed")
                ok = False
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
