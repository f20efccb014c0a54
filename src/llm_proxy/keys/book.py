"""Every key and team, held in memory: the hot path never waits on the store.

Loaded at start, then polled for changes every `key_refresh_interval`; with Redis, a change made
anywhere (admin API, CLI) is also announced on a channel and applied within milliseconds. When
the store is down, the keys already known keep working. A key not known yet (made on another
replica a moment ago) is looked up once, in the background of that one request, and a miss is
remembered for a while so wrong keys cannot hammer the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from llm_proxy.keys import store
from llm_proxy.keys.records import Holder
from llm_proxy.store import tables

log = logging.getLogger("llm_proxy")

NEGATIVE_TTL = 5.0  # seconds a key the store did not know is not asked about again
OVERLAP = 5.0  # re-read changes this far back: clock skew between replicas writing updated_at
TOMBSTONE_TTL = 60.0  # a dropped key id ignores rows read before its drop for this long
SPEND_EVERY = 10  # every this many polls, re-read every key's and team's stored spend


class KeyBook:
    def __init__(self, engine: AsyncEngine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self.by_hash: dict[str, Holder] = {}
        self.by_id: dict[str, Holder] = {}
        self.teams: dict[str, Holder] = {}
        self.since = 0.0
        self.loaded = False
        self.store_ok = True
        self._misses: dict[str, float] = {}
        self._lookups: dict[str, asyncio.Future[Holder | None]] = {}
        self._dropped: dict[str, float] = {}  # key id -> when it was dropped (time.time())
        self._polls = 0
        self.wake = asyncio.Event()

    def get(self, digest: str) -> Holder | None:
        return self.by_hash.get(digest)

    def team_of(self, key: Holder) -> Holder | None:
        return self.teams.get(key.team_id) if key.team_id else None

    def apply(self, h: Holder) -> None:
        """Take in a key or team as the store has it now (revoked ones are dropped)."""
        if h.kind == "team":
            if h.revoked_at is None:
                self.teams[h.id] = h
            else:
                self.teams.pop(h.id, None)
            return
        old = self.by_id.get(h.id)
        if old is not None and h.updated_at < old.updated_at:
            return  # read before the change we hold
        dropped = self._dropped.get(h.id)
        if dropped is not None and h.revoked_at is None and h.updated_at < dropped:
            return  # read before a revocation or rotation this book has already applied
        if old is not None and old.key_hash != h.key_hash:
            self.by_hash.pop(old.key_hash, None)  # rotated: the old secret stops working now
        if h.revoked_at is None:
            self.by_id[h.id] = h
            self.by_hash[h.key_hash] = h
            self._misses.pop(h.key_hash, None)
        else:
            self.by_id.pop(h.id, None)
            self.by_hash.pop(h.key_hash, None)

    def drop(self, key_id: str | None, digest: str | None) -> None:
        """Forget a key at once (revocation, rotation): before the store is even re-read."""
        now = time.time()
        if len(self._dropped) > 10_000:
            self._dropped = {k: t for k, t in self._dropped.items() if now - t < TOMBSTONE_TTL}
        h = self.by_id.pop(key_id, None) if key_id else None
        if h is not None:
            self.by_hash.pop(h.key_hash, None)
        if digest:
            gone = self.by_hash.pop(digest, None)
            if gone is not None:
                self.by_id.pop(gone.id, None)
                key_id = key_id or gone.id
        if key_id:
            self._dropped[key_id] = now - OVERLAP

    async def refresh(self) -> None:
        started = time.time()
        keys, teams = await store.changed_since(self.engine, self.since - OVERLAP)
        for t in teams:
            self.apply(t)
        for k in keys:
            self.apply(k)
        self.since = started
        self._polls += 1
        if self._polls % SPEND_EVERY == 0:
            await self._refresh_spend()
        self.loaded = True
        if not self.store_ok:
            log.info("key store reachable again", extra={"event": "key_store_up"})
        self.store_ok = True

    async def _refresh_spend(self) -> None:
        """The writer adds spend without touching updated_at (it would make every busy key a
        change): re-read it now and then, in place, for /v1/key/info and budget seeds."""
        for table, held in ((tables.keys, self.by_id), (tables.teams, self.teams)):
            for ident, spend, period, total in await store.spend_of(self.engine, table):
                h = held.get(ident)
                if h is not None:
                    h.spend, h.spend_period, h.total_spend = spend, period, total

    async def lookup(self, digest: str) -> Holder | None:
        """A key not in memory: ask the store once (one query per digest at a time)."""
        now = time.monotonic()
        if self._misses.get(digest, 0.0) > now or not self.store_ok:
            return None
        fut = self._lookups.get(digest)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._lookups[digest] = fut
        found: Holder | None = None
        try:
            found = await self._fetch(digest)
        finally:
            del self._lookups[digest]
            fut.set_result(found)  # also when cancelled: the others waiting give up too
        return found

    async def _fetch(self, digest: str) -> Holder | None:
        try:
            found = await store.key_by_hash(self.engine, digest)
            if found is not None and found.team_id and found.team_id not in self.teams:
                team = await store.get_team(self.engine, found.team_id)
                if team is not None:
                    self.apply(team)
        except Exception as e:
            log.warning("key lookup failed", extra={"error": type(e).__name__})
            return None
        if found is not None:
            self.apply(found)
        if found is None or found.revoked_at is not None or self.by_id.get(found.id) is None:
            if len(self._misses) > 100_000:
                self._misses.clear()
            self._misses[digest] = time.monotonic() + NEGATIVE_TTL
            return None
        return found

    async def run(self) -> None:
        """Poll the store for changes; a notice on the bus (or a local change) wakes it early."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval)
            self.wake.clear()
            try:
                await self.refresh()
            except Exception as e:
                if self.store_ok:
                    log.warning(
                        "key store unreachable; serving the keys already known",
                        extra={"event": "key_store_down", "error": type(e).__name__},
                    )
                self.store_ok = False


class KeyBus:
    """Changes announced through Redis pub/sub, so every replica applies them within ms."""

    def __init__(self, redis: Any, prefix: str, book: KeyBook) -> None:
        self.redis = redis
        self.channel = f"{prefix}:keys"
        self.book = book

    async def announce(self, key_id: str | None, digest: str | None = None) -> None:
        try:
            await self.redis.publish(self.channel, orjson.dumps({"id": key_id, "hash": digest}))
        except Exception as e:  # the store poll still carries it within key_refresh_interval
            log.warning("key change notice not sent", extra={"error": type(e).__name__})

    async def run(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(self.channel)
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    try:
                        doc = orjson.loads(msg["data"])
                    except orjson.JSONDecodeError:
                        continue
                    if doc.get("hash"):
                        self.book.drop(doc.get("id"), doc["hash"])
                    self.book.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("key channel lost; resubscribing", extra={"error": type(e).__name__})
                await asyncio.sleep(1.0)
