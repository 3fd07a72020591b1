"""Alembic environment: migrations run on the connection jupyter_opx hands over.

jupyter_opx migrates its store itself when it opens it (see ``store/db.py``);
developers add a revision with ``alembic revision`` against a scratch database.
"""

from alembic import context

from jupyter_opx.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for developers running alembic by hand
    raise SystemExit("run migrations through jupyter_opx (they need a live connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
