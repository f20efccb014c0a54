"""Engines and migrations: a SQLite file in data_dir by default, PostgreSQL by `database_url`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x6C6C6D70  # "llmp": one migration at a time across replicas (PostgreSQL)


def database_url(settings: Any) -> str:
    """The async SQLAlchemy URL for the settings (drivers filled in: aiosqlite, asyncpg)."""
    url: str | None = settings.database_url
    if not url:
        path = Path(settings.data_dir).resolve() / "llm-proxy.db"
        return f"sqlite+aiosqlite:///{path}"
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def redacted(url: str) -> str:
    """The URL without its password, for logs and errors."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database_url>"


def make_engine(settings: Any) -> AsyncEngine:
    url = database_url(settings)
    kw: dict[str, Any] = {}
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
        kw["connect_args"] = {"timeout": 30}
    else:
        connect: dict[str, Any] = {"timeout": 5, "command_timeout": 10}
        if settings.database_schema:
            connect["server_settings"] = {"search_path": settings.database_schema}
        kw.update(connect_args=connect, pool_pre_ping=True, pool_size=5, max_overflow=5)
    engine = create_async_engine(url, **kw)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never wait on the spend writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


async def upgrade(engine: AsyncEngine, schema: str | None = None) -> None:
    """Apply every Alembic migration not yet applied (safe to run from many replicas at once)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
            if schema:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade_sync)


def _upgrade_sync(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def upgrade_blocking(settings: Any) -> str:
    """`llm-proxy db upgrade`: migrate, return the (redacted) URL migrated."""

    async def run() -> None:
        engine = make_engine(settings)
        try:
            await upgrade(engine, settings.database_schema)
        finally:
            await engine.dispose()

    asyncio.run(run())
    return redacted(database_url(settings))
