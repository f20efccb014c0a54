"""The long-lived state one worker serves from: the current routing table, transports, limits."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import time
from pathlib import Path
from typing import Any

from llm_proxy import __version__
from llm_proxy.auth import stored_master_key
from llm_proxy.config.load import ConfigError, LoadedConfig, load_config
from llm_proxy.keys.book import KeyBook, KeyBus
from llm_proxy.limits.concurrency import ConcurrencyLimiter
from llm_proxy.limits.ip import IpPolicy
from llm_proxy.limits.memory import MemoryLimits
from llm_proxy.providers.mock import MockTransport
from llm_proxy.routing.condense import SummaryCache
from llm_proxy.routing.health import Prober
from llm_proxy.routing.router import Router
from llm_proxy.routing.state import StatsBook
from llm_proxy.runtime import Deployment, Runtime, compile_runtime, diff, hash_key
from llm_proxy.spend.spool import Spool
from llm_proxy.spend.writer import SpendWriter
from llm_proxy.store.db import is_sqlite, make_engine, redacted, upgrade
from llm_proxy.upstream.client import AiohttpTransport, Transport

log = logging.getLogger("llm_proxy")


class Gateway:
    """Holds one Router at a time; a reload swaps it in one assignment, so in-flight calls keep theirs."""

    def __init__(
        self,
        loaded: LoadedConfig,
        env: dict[str, str],
        master_sha256: bytes,
        overrides: dict[str, object] | None = None,
    ) -> None:
        self.loaded = loaded
        self.overrides = overrides or {}
        self.env = env
        # Deployment stats (breakers, latency, health) outlive routers: reloads keep them.
        self.book = StatsBook()
        self.router = Router(compile_runtime(loaded.settings, env, master_sha256), self.book)
        self.rng = random.Random()
        self.summaries = SummaryCache()
        self.prober = Prober(self)
        s = loaded.settings
        self.limiter = ConcurrencyLimiter(
            s.max_concurrent_requests, s.max_queued_requests, s.queue_timeout
        )
        self.http = AiohttpTransport()
        self.mock = MockTransport()
        # Keys, limits and spend: served from memory (and Redis), the store written behind.
        self.engine = make_engine(s)
        self.keys = KeyBook(self.engine, s.key_refresh_interval)
        self.redis: Any = None
        self.limits: Any = MemoryLimits()
        self.bus: KeyBus | None = None
        if s.redis_url:
            from redis.asyncio import Redis

            from llm_proxy.limits.redis_limits import RedisLimits

            self.redis = Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=5)
            # A slot or reservation outlives the longest call (every attempt at its timeout);
            # one whose gateway died lapses after that.
            hold = max(600.0, s.max_attempts * s.request_timeout + 60.0)
            self.limits = RedisLimits(self.redis, s.redis_prefix, hold)
            self.bus = KeyBus(self.redis, s.redis_prefix, self.keys)
        self.ip = IpPolicy(s.ip_limits)
        self.spool = Spool(Path(s.data_dir) / "spool", s.spend.spool_max_bytes)
        self.spend = SpendWriter(self.engine, self.spool, s.spend)
        self.deployment_limiters: dict[str, ConcurrencyLimiter] = {}
        self.started = time.time()
        self.version = __version__
        self.reloads = 0
        self._background: set[asyncio.Task[None]] = set()
        self._removed: dict[str, object] = {}  # pool -> the pending retirement's token
        self._stamp = _stamp(loaded.path)

    @property
    def runtime(self) -> Runtime:
        return self.router.runtime

    def transport(self, provider_type: str) -> Transport:
        return self.mock if provider_type == "mock" else self.http

    def reload(self) -> bool:
        """Re-read the config file; swap on success, keep serving the old table on any problem."""
        path = self.loaded.path
        if path is None:
            return False
        try:
            loaded = load_config(path, self.env, self.overrides)
            runtime = compile_runtime(loaded.settings, self.env, _master_for(loaded))
        except ConfigError as e:
            log.error(
                "config reload rejected; still serving the previous config",
                extra={"event": "config_reload_failed", "problems": e.problems},
            )
            return False
        old = self.runtime
        changes = diff(old, runtime)
        self.loaded = loaded
        self.router = Router(runtime, self.book)
        s = loaded.settings
        self.limiter.limit = s.max_concurrent_requests
        self.limiter.max_waiting = s.max_queued_requests
        self.limiter.timeout = s.queue_timeout
        self.ip = IpPolicy(s.ip_limits)
        self.reloads += 1
        log.info("config reloaded", extra={"event": "config_reloaded", "diff": changes})
        # Calls started on the old table may still use its pools: a pool is closed only once it
        # has been out of the table for the longest timeout of the table that last had it.
        live = {p.pool for p in runtime.providers.values()}
        for pool in live:
            self._removed.pop(pool, None)  # back in the table: no longer to be closed
        for p in old.providers.values():
            if p.pool not in live and p.pool not in self._removed:
                token = self._removed[p.pool] = object()
                task = asyncio.get_running_loop().create_task(
                    self._retire_pool(p.pool, p.timeouts.total, token)
                )
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return True

    async def _retire_pool(self, pool: str, grace: float, token: object) -> None:
        await asyncio.sleep(grace)
        if self._removed.get(pool) is token:  # not re-added (nor removed again) meanwhile
            del self._removed[pool]
            await self.http.close({pool})

    def deployment_limiter(self, d: Deployment) -> ConcurrencyLimiter | None:
        """The deployment's own concurrency cap (`max_concurrent`), if it has one."""
        if d.max_concurrent is None:
            return None
        lim = self.deployment_limiters.get(d.key)
        s = self.runtime.settings
        if lim is None:
            lim = self.deployment_limiters[d.key] = ConcurrencyLimiter(
                d.max_concurrent, s.max_queued_requests, s.queue_timeout
            )
        # A reload may change any of these: the next call sees them.
        lim.limit, lim.max_waiting, lim.timeout = (
            d.max_concurrent,
            s.max_queued_requests,
            s.queue_timeout,
        )
        return lim

    async def start(self) -> None:
        """Migrate the store, replay the spool, load the keys; then the background jobs."""
        try:
            await self._migrate()
            await self.spend.flush()
            await self.keys.refresh()
        except Exception as e:
            # Serve anyway (master key, and keys as soon as the store answers): refusing to
            # start is how a store outage becomes a gateway outage.
            self.keys.store_ok = False
            log.error(
                "store unavailable at start; retrying in the background",
                extra={
                    "event": "store_down_at_start",
                    "database": redacted(str(self.engine.url)),
                    "error": f"{type(e).__name__}: {str(e)[:200]}",
                },
            )
            self._spawn(self._migrate_later())
        self._spawn(self.keys.run())
        self._spawn(self.spend.run())
        if self.bus is not None:
            self._spawn(self.bus.run())
        self.start_background()

    async def _migrate(self) -> None:
        if is_sqlite(self.engine):
            lock = Path(self.runtime.settings.data_dir) / ".migrate.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            with lock.open("w") as f:
                await asyncio.to_thread(fcntl.flock, f, fcntl.LOCK_EX)
                await upgrade(self.engine)
        else:
            await upgrade(self.engine, self.runtime.settings.database_schema)

    async def _migrate_later(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            with contextlib.suppress(Exception):
                await self._migrate()
                return

    def _spawn(self, job: Any) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start_background(self) -> None:
        """The config watcher and the health prober (called once the event loop runs)."""
        for job in (self.watch(), self.prober.run()):
            self._spawn(job)

    async def watch(self) -> None:
        """Poll the config file; a changed stamp triggers reload()."""
        path = self.loaded.path
        if path is None:
            return
        while True:
            await asyncio.sleep(self.loaded.settings.reload_interval)
            stamp = _stamp(path)
            if stamp != self._stamp:
                self._stamp = stamp
                self.reload()

    async def aclose(self) -> None:
        """Stop the background jobs, store what the spool holds, close connections; each step
        bounded, so a store that does not answer cannot hold up a shutdown."""
        tasks = list(self._background)
        for t in tasks:
            t.cancel()
        await _bounded(asyncio.gather(*tasks, return_exceptions=True), 2.0)
        await _bounded(self.spend.flush(), 3.0)  # what stays unflushed waits in the spool
        self.spool.close()
        await _bounded(self.http.aclose(), 2.0)
        await _bounded(self.engine.dispose(), 2.0)
        if self.redis is not None:
            await _bounded(self.redis.aclose(), 1.0)


async def _bounded(job: Any, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await job
    except Exception as e:
        log.warning("shutdown step cut short", extra={"error": type(e).__name__})


def _master_for(loaded: LoadedConfig) -> bytes:
    """The master key hash a reloaded config asks for (a changed master_key takes effect)."""
    s = loaded.settings
    if s.master_key:
        return hash_key(s.master_key)
    stored = stored_master_key(s.data_dir)
    if stored is None:
        raise ConfigError(
            ["master_key: removed, and no stored key to fall back to; restart to generate one"]
        )
    return stored


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
