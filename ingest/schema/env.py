"""Alembic's entry: kbqa hands it an open connection (`kbqa.ingest.schema.upgrade`)."""

from alembic import context

context.configure(connection=context.config.attributes["connection"],
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
