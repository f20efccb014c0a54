"""The long-lived state one worker serves from: the current routing table, transports, limits."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path

from llm_proxy import __version__
from llm_proxy.auth import stored_master_key
from llm_proxy.config.load import ConfigError, LoadedConfig, load_config
from llm_proxy.limits.concurrency import ConcurrencyLimiter
from llm_proxy.providers.mock import MockTransport
from llm_proxy.routing.condense import SummaryCache
from llm_proxy.routing.health import Prober
from llm_proxy.routing.router import Router
from llm_proxy.routing.state import StatsBook
from llm_proxy.runtime import Runtime, compile_runtime, diff, hash_key
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

    def start_background(self) -> None:
        """The config watcher and the health prober (called once the event loop runs)."""
        loop = asyncio.get_running_loop()
        for job in (self.watch(), self.prober.run()):
            task = loop.create_task(job)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

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
        for t in self._background:
            t.cancel()
        await self.http.aclose()


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
