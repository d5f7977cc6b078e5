"""The schema of kbqa before Alembic: documents, chunks, OCR lines, meta, conversations
and the lexical index.

Idempotent on purpose: a knowledge base made by an earlier kbqa (no revision stamped) keeps
its tables and rows, gains only what it lacks (tables, and the columns older releases did
not have), and is stamped.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FTS5_TOKENIZER = "porter unicode61 remove_diacritics 2"  # kbqa.retrieval.lexical's, as of 0001
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    if "documents" not in present:
        op.create_table(
            "documents",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("path", sa.Text, nullable=False, unique=True),
            sa.Column("file", sa.Text, nullable=False, index=True),
            sa.Column("sha256", sa.String(64), nullable=False, index=True),
            sa.Column("content_sha", sa.String(64), nullable=False, index=True),
            sa.Column("same_as", sa.Integer, nullable=True, index=True),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("pages", sa.Integer, nullable=True),
            sa.Column("chunk_count", sa.Integer, nullable=False),
            sa.Column("ingested_at", UTC, nullable=False))
    else:
        _add_columns("documents", [("file", "TEXT"), ("content_sha", "VARCHAR(64)"),
                                   ("same_as", "INTEGER")])
        op.execute("UPDATE documents SET file = path WHERE file IS NULL")
        op.execute("UPDATE documents SET content_sha = sha256 WHERE content_sha IS NULL")
        for column in ("file", "content_sha", "same_as"):  # as a new database has them
            op.execute(f"CREATE INDEX IF NOT EXISTS ix_documents_{column} ON documents "
                       f"({column})")
    if "chunks" not in present:
        op.create_table(
            "chunks",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("document_id", sa.Integer,
                      sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False,
                      index=True),
            sa.Column("ordinal", sa.Integer, nullable=False),
            sa.Column("page", sa.Integer, nullable=True),
            sa.Column("heading", sa.Text, nullable=False),
            sa.Column("location", sa.Text, nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            # AUTOINCREMENT: ids never reused, so a stale vector never aliases a new chunk
            sqlite_autoincrement=True)
    else:
        _add_columns("chunks", [("location", "TEXT DEFAULT ''")])
    if "scan_lines" not in present:
        op.create_table(
            "scan_lines",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("document_id", sa.Integer,
                      sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
            sa.Column("page", sa.Integer, nullable=False),
            sa.Column("line", sa.Integer, nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("left", sa.Float, nullable=False),
            sa.Column("top", sa.Float, nullable=False),
            sa.Column("right", sa.Float, nullable=False),
            sa.Column("bottom", sa.Float, nullable=False),
            sa.Index("ix_scan_lines_page", "document_id", "page"))
    if "meta" not in present:
        op.create_table(
            "meta",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False))
    if "conversations" not in present:
        op.create_table(
            "conversations",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("title", sa.Text, nullable=False),
            sa.Column("created_at", UTC, nullable=False),
            sa.Column("updated_at", UTC, nullable=False, index=True))
    if "conversation_turns" not in present:
        op.create_table(
            "conversation_turns",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("conversation_id", sa.Integer,
                      sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False,
                      index=True),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("asked_at", UTC, nullable=False))
    if bind.dialect.name == "sqlite":
        op.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(terms, "
                   f"tokenize='{FTS5_TOKENIZER}')")
        op.execute("CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms_vocab "
                   "USING fts5vocab(chunk_terms, 'row')")
        op.execute("CREATE TRIGGER IF NOT EXISTS chunk_terms_delete AFTER DELETE ON chunks "
                   "BEGIN DELETE FROM chunk_terms WHERE rowid = old.id; END")
    else:
        op.execute("CREATE TABLE IF NOT EXISTS chunk_terms (chunk_id INTEGER PRIMARY KEY "
                   "REFERENCES chunks(id) ON DELETE CASCADE, terms TSVECTOR NOT NULL, "
                   "length INTEGER NOT NULL)")
        op.execute("CREATE INDEX IF NOT EXISTS ix_chunk_terms_terms ON chunk_terms "
                   "USING gin(terms)")


def _add_columns(table: str, columns: list[tuple[str, str]]) -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for name, sql_type in columns:
        if name not in present:
            op.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS chunk_terms_delete")
        op.execute("DROP TABLE IF EXISTS chunk_terms_vocab")
    op.execute("DROP TABLE IF EXISTS chunk_terms")
    for table in ("conversation_turns", "conversations", "meta", "scan_lines", "chunks",
                  "documents"):
        op.drop_table(table)
