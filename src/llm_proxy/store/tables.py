"""The store's tables (SQLAlchemy Core). Times are Unix seconds; money is USD.

A migration in store/migrations/versions must accompany every change here.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()


def _limits() -> list[Column[object]]:
    """What keys and teams both carry: models, rate limits, a budget and its period."""
    return [
        Column("models", JSON, nullable=False, default=list),  # globs; [] = any model
        Column("rpm", Integer),
        Column("tpm", Integer),
        Column("max_parallel", Integer),
        Column("max_budget", Float),  # USD per period (or in all, without a period)
        Column("budget_period", String(16)),  # "30d", "7d", "1d", "12h"
        Column("budget_anchor", Float, nullable=False),  # periods count from here
        Column("spend", Float, nullable=False, default=0.0),  # in the period `spend_period`
        Column("spend_period", BigInteger, nullable=False, default=0),  # its period's start
        Column("total_spend", Float, nullable=False, default=0.0),
        Column("metadata", JSON, nullable=False, default=dict),
        Column("disabled", Boolean, nullable=False, default=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False, index=False),
        Column("revoked_at", Float),
    ]


teams = Table(
    "teams",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    *_limits(),
    Index("ix_teams_updated_at", "updated_at"),
)

keys = Table(
    "keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex; never the secret
    Column("key_prefix", String(24), nullable=False),  # what lists show: "sk-llmp-AbCd..."
    Column("name", String(200), nullable=False, default=""),
    Column("user", String(200)),
    Column("team_id", String(40)),
    Column("role", String(16), nullable=False, default="user"),  # "user" | "admin"
    Column("expires_at", Float),
    *_limits(),
    Index("ix_keys_updated_at", "updated_at"),
    Index("ix_keys_team_id", "team_id"),
)

spend_log = Table(
    "spend_log",
    metadata,
    Column("id", String(32), primary_key=True),  # the spooled row's own id: replays are no-ops
    Column("ts", Float, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("key_id", String(40), nullable=False),  # "master" for the master key
    Column("user", String(200), nullable=False, default=""),
    Column("team_id", String(40), nullable=False, default=""),
    Column("model", String(200), nullable=False, default=""),
    Column("provider", String(100), nullable=False, default=""),
    Column("deployment", String(300), nullable=False, default=""),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("ttft_ms", Float),
    Column("status", Integer, nullable=False),
    Column("stream", Boolean, nullable=False, default=False),
    Index("ix_spend_log_ts", "ts"),
    Index("ix_spend_log_key_ts", "key_id", "ts"),
)

# One row per (day, key, model, provider): what reports read, so they stay fast at any log size.
spend_daily = Table(
    "spend_daily",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD (UTC)
    Column("key_id", String(40), primary_key=True),
    Column("team_id", String(40), primary_key=True),
    Column("user", String(200), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("provider", String(100), primary_key=True),
    Column("requests", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
)
