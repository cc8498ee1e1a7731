"""Alembic environment: the connection comes from the caller (``sfsync db upgrade``)."""

from alembic import context

from sfsync.state.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when run from the alembic CLI
    raise SystemExit("run migrations through 'sfsync db upgrade'")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
