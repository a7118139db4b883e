"""Alembic environment: migrations run in code on the connection `upgrade()` hands over."""

from alembic import context

from connectors.scheduler.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
