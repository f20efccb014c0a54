"""Alembic environment: runs on the connection store.db.upgrade() hands over."""

from __future__ import annotations

from alembic import context

from llm_proxy.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only store.db.upgrade() runs migrations
    raise RuntimeError("run migrations with `llm-proxy db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
