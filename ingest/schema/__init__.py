"""The knowledge base's schema, brought up to date by Alembic migrations on open.

Every table with a fixed shape (documents, chunks, OCR lines, meta, conversations, the
lexical index and its statistics) is created and changed by the revisions in `versions/`,
on SQLite and PostgreSQL alike. A vector space's table is made when the space is (its
width is the embedder's), so it is data, not schema. A knowledge base made before kbqa
used Alembic has no revision: the first revision creates what is missing, adds the
columns older releases lacked, and stamps it.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from kbqa.errors import SettingError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).parent
MIGRATION_LOCK = 7_302_201  # the advisory lock two processes opening one database share
# kbqa's own revision table: a PostgreSQL database may hold another Alembic app's too
VERSION_TABLE = "kbqa_alembic_version"
# Alembic's `context` and `op` are module globals: one upgrade at a time in a process
_IN_PROCESS = threading.Lock()


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory(str(HERE))


def head() -> str:
    """The revision this kbqa writes."""
    revision = _script().get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}
                                      ).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to this kbqa's revision; one process at a time does it, the
    others wait and find it done."""
    with engine.connect() as connection:
        if current(connection) == head():
            return
    with _IN_PROCESS, _one_at_a_time(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # held to this transaction's end
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK})
        found = current(connection)
        if found == head():
            return
        if found is not None and found not in _known():
            raise SettingError(
                f"this knowledge base has schema revision {found}, which this kbqa does not "
                f"know (its newest is {head()}): it was written by a newer kbqa. Update kbqa, "
                "or point KBQA_DATABASE_URL / KBQA_DATA_DIR at another knowledge base")
        command.upgrade(config_for(connection), "head")


def config_for(connection: Connection) -> Config:
    """Alembic's configuration for running revisions on this open connection."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def _known() -> set[str]:
    return {s.revision for s in _script().walk_revisions()}


@contextmanager
def _one_at_a_time(engine: Engine) -> Iterator[None]:
    """SQLite: a lock file beside the database (its DDL is not transactional under
    pysqlite); PostgreSQL locks inside the transaction instead."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.schema.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
