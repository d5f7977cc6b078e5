"""Alembic's entry: kbqa hands it an open connection (`kbqa.ingest.schema.upgrade`)."""

from alembic import context
from kbqa.ingest.schema import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"],
                  version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
