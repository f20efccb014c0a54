"""The transport interface and its aiohttp implementation: bytes out, bytes in, errors typed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp

from llm_proxy.config.schema import Timeouts
from llm_proxy.errors import UpstreamError, UpstreamTimeoutError


class UpstreamResponse(Protocol):
    """What a transport hands back once the response head has arrived."""

    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def send(
        self,
        pool: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeouts: Timeouts,
        max_connections: int = 256,
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status: int = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            data: bytes = await self._resp.read()
            return data
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeoutError("The upstream provider timed out.") from e
        except aiohttp.ClientError as e:
            raise UpstreamError(f"The upstream connection failed: {type(e).__name__}.") from e
        finally:
            self._resp.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeoutError("The upstream provider timed out mid-stream.") from e
        except aiohttp.ClientError as e:
            raise UpstreamError(f"The upstream stream failed: {type(e).__name__}.") from e

    def close(self) -> None:
        # Closing an unfinished response drops its connection: the upstream sees the disconnect.
        self._resp.close()


class AiohttpTransport:
    """One keep-alive ClientSession per pool (a provider), created on first use."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _session(self, pool: str, max_connections: int) -> aiohttp.ClientSession:
        s = self._sessions.get(pool)
        if s is None or s.closed:
            connector = aiohttp.TCPConnector(
                limit=max_connections,
                limit_per_host=max_connections,
                ttl_dns_cache=300,
                keepalive_timeout=30,
            )
            s = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # never share cookies between clients
                trust_env=False,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[pool] = s
        return s

    def _timeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        ct = self._timeouts.get(t)
        if ct is None:
            # `connect` also bounds the wait for a free pooled connection.
            ct = aiohttp.ClientTimeout(
                total=t.total, connect=t.connect, sock_connect=t.connect, sock_read=t.first_byte
            )
            self._timeouts[t] = ct
        return ct

    async def send(
        self,
        pool: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeouts: Timeouts,
        max_connections: int = 256,
    ) -> UpstreamResponse:
        session = self._session(pool, max_connections)
        try:
            resp = await session.post(
                url, data=body, headers=headers, timeout=self._timeout(timeouts)
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeoutError("The upstream provider timed out.") from e
        except aiohttp.ClientConnectorError as e:
            raise UpstreamError("Could not connect to the upstream provider.") from e
        except (aiohttp.ClientError, ValueError) as e:
            # ValueError: aiohttp refused a header or URL (say, a key with a stray newline).
            raise UpstreamError(f"The upstream request failed: {type(e).__name__}.") from e
        return _AiohttpResponse(resp)

    async def get(
        self,
        pool: str,
        url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        max_connections: int = 256,
    ) -> tuple[int, bytes]:
        """A small GET (health probes): (status, body); connection failures are typed errors."""
        session = self._session(pool, max_connections)
        try:
            async with session.get(url, headers=headers, timeout=self._timeout(timeouts)) as r:
                return r.status, await r.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeoutError("The upstream provider timed out.") from e
        except (aiohttp.ClientError, ValueError) as e:
            raise UpstreamError(f"The upstream request failed: {type(e).__name__}.") from e

    async def close(self, pools: set[str]) -> None:
        """Close these pools (providers gone from the routing table)."""
        for k in pools:
            s = self._sessions.pop(k, None)
            if s is not None:
                await s.close()

    async def aclose(self) -> None:
        for s in self._sessions.values():
            await s.close()
        self._sessions.clear()
