"""PostgreSQL: the lexical index's statistics kept beside it, so BM25 reads the chunk
count, total length and each term's chunk count from two small tables instead of counting
`chunk_terms` per query. Statement triggers keep them in step with every insert and delete
(a chunk's cascade included); SQLite's FTS5 keeps its own.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # No writer may add terms between the counting below and the triggers' creation (an
    # older kbqa still running would leave its rows out of the statistics for good).
    op.execute("LOCK TABLE chunk_terms IN SHARE ROW EXCLUSIVE MODE")
    op.execute("CREATE TABLE chunk_terms_totals (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "chunks BIGINT NOT NULL, length BIGINT NOT NULL)")
    op.execute("INSERT INTO chunk_terms_totals SELECT 1, count(*), coalesce(sum(length), 0) "
               "FROM chunk_terms")
    op.execute("CREATE TABLE chunk_terms_stats (term TEXT PRIMARY KEY, "
               "chunks INTEGER NOT NULL)")
    op.execute("INSERT INTO chunk_terms_stats SELECT u.lexeme, count(*) FROM chunk_terms c, "
               "unnest(c.terms) u GROUP BY u.lexeme")
    # The totals row is updated first: every writer queues there, so the terms' rows are
    # always locked in one order and two writers cannot deadlock on them.
    for event, sign, rows in (("INSERT", "+", "added"), ("DELETE", "-", "removed")):
        op.execute(f"""
            CREATE FUNCTION chunk_terms_{event.lower()}_stats() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE chunk_terms_totals SET
                    chunks = chunks {sign} (SELECT count(*) FROM {rows}),
                    length = length {sign} (SELECT coalesce(sum(length), 0) FROM {rows})
                WHERE id = 1;
                INSERT INTO chunk_terms_stats AS s (term, chunks)
                    SELECT u.lexeme, {sign}count(*) FROM {rows} r, unnest(r.terms) u
                    GROUP BY u.lexeme ORDER BY u.lexeme
                ON CONFLICT (term) DO UPDATE SET chunks = s.chunks + excluded.chunks;
                RETURN NULL;
            END $$""")
        op.execute(f"CREATE TRIGGER chunk_terms_{event.lower()}_stats AFTER {event} ON "
                   f"chunk_terms REFERENCING {'NEW' if event == 'INSERT' else 'OLD'} TABLE "
                   f"AS {rows} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION chunk_terms_{event.lower()}_stats()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in ("insert", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS chunk_terms_{event}_stats ON chunk_terms")
        op.execute(f"DROP FUNCTION IF EXISTS chunk_terms_{event}_stats()")
    op.execute("DROP TABLE chunk_terms_stats")
    op.execute("DROP TABLE chunk_terms_totals")
