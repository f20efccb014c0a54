"""PostgreSQL and Redis for the tests that need them: a schema or key prefix per run.

Where a service is missing those tests skip, except under CI=true, where it is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg} (CI=true: a missing service is a failure)")
    pytest.skip(msg)


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema in the `test` database, dropped afterwards."""
    need("PostgreSQL", PG_HOST, PG_PORT)
    schema = unique("llmp_test")
    yield schema
    _drop_schema(schema)


def _drop_schema(schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test")
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix in Redis, its keys deleted afterwards."""
    need("Redis", REDIS_HOST, REDIS_PORT)
    prefix = unique("llmp_test")
    yield prefix
    import redis

    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        for k in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(k)
    finally:
        r.close()


def store_config(backend: str, schema: str | None) -> str:
    """Config lines selecting the store: the default SQLite file, or PostgreSQL in `schema`."""
    if backend == "sqlite":
        return ""
    return f"database_url: {PG_URL}\ndatabase_schema: {schema}\n"
