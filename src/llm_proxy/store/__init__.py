"""The store: keys, teams and the spend log (SQLAlchemy 2 async, Alembic migrations)."""
