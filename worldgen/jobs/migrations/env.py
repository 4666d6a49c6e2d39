"""Alembic environment: always driven programmatically by `worldgen.jobs.db.migrate`."""

from __future__ import annotations

from alembic import context

from worldgen.jobs.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
