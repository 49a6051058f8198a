"""Alembic environment: edgenas always passes an open connection (``config.attributes``)."""

from alembic import context

from edgenas.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
