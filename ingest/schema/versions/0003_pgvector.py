"""PostgreSQL: the pgvector extension, created here, under the migration lock (two
processes opening a new database at once both ran CREATE EXTENSION IF NOT EXISTS, and the
second failed on the first's row).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from kbqa.errors import SettingError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(sa.text(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar()
    if not available:
        raise SettingError(
            "this PostgreSQL server has no pgvector extension: install pgvector there "
            "(https://github.com/pgvector/pgvector#installation), or point "
            "KBQA_DATABASE_URL at a server that has it")
    try:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except sa.exc.DBAPIError as exc:
        raise SettingError(
            f"the PostgreSQL server cannot create the pgvector extension ({exc.orig}): have "
            "an administrator run `CREATE EXTENSION vector` in this database") from None


def downgrade() -> None:
    """The extension stays: other schemas of the database may use it."""
