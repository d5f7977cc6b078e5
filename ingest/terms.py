"""Lexical search over chunk terms, per database: SQLite's FTS5, or PostgreSQL's tsvector.

Both index the same terms (`kbqa.text.tokens()`, FTS5's porter stemmer) and rank by the same
BM25 (k1 1.2, b 0.75, FTS5's idf), so a knowledge base ranks alike on either database.
PostgreSQL gets the terms already cut and stemmed, as a tsvector literal with positions
(no server-side parser: Chinese bigrams stay bigrams), and a GIN index finds the chunks
that hold a query's terms; BM25 is computed in SQL from the positions (term frequency),
the stored term count of each chunk and the collection's totals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kbqa.retrieval.lexical import (
    TERMS_VERSION,
    TermMatcher,
    index_terms,
    match_expression,
    searchable,
)
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25() defaults
# PostgreSQL refuses a tsvector word over this many bytes (a hex dump, words run together):
# such a word is left out of the index, and still counted in the chunk's length.
MAX_LEXEME_BYTES = 2046
TERM_ROWS_BATCH = 2000


class ChunkTerms(Protocol):
    """The lexical index of the chunks, in the chunks' own database and transactions."""

    def insert(self, session: Session, chunks: Sequence[tuple[int, str, str]]) -> None: ...

    def clear(self, session: Session) -> None: ...

    def search(self, engine: Engine, terms: Sequence[str], stems: Sequence[str], limit: int,
               document_ids: Sequence[int] | None,
               counts: Mapping[str, int] | None = None) -> list[tuple[int, float]]:
        """BM25 of the chunks holding any of the terms (`stems`: their stemmed forms;
        `counts`: their chunk counts, when known already): (chunk id, score), best first,
        ties by id."""

    def counts(self, engine: Engine, stems: Sequence[str]) -> dict[str, int]:
        """How many chunks hold each stemmed term."""


class Fts5Terms:
    """An FTS5 table kept in step with `chunks` (inserts here, deletes by trigger; the
    tables come from the schema's migrations)."""

    def insert(self, session: Session, chunks: Sequence[tuple[int, str, str]]) -> None:
        if chunks:
            session.execute(text("INSERT INTO chunk_terms(rowid, terms) VALUES (:id, :terms)"),
                            [{"id": i, "terms": index_terms(searchable(h, b))}
                             for i, h, b in chunks])

    def clear(self, session: Session) -> None:
        session.execute(text("DELETE FROM chunk_terms"))

    def search(self, engine: Engine, terms: Sequence[str], stems: Sequence[str], limit: int,
               document_ids: Sequence[int] | None,
               counts: Mapping[str, int] | None = None) -> list[tuple[int, float]]:
        sql = ("SELECT rowid, bm25(chunk_terms) AS s FROM chunk_terms "
               "WHERE chunk_terms MATCH :match")
        params: dict[str, Any] = {"match": match_expression(terms), "limit": limit}
        if document_ids is not None:
            sql += (" AND rowid IN (SELECT id FROM chunks WHERE document_id IN "
                    "(SELECT value FROM json_each(:ids)))")
            params["ids"] = json.dumps(list(document_ids))
        sql += " ORDER BY s, rowid LIMIT :limit"
        with engine.connect() as connection:
            return [(int(i), -float(s)) for i, s in connection.execute(text(sql), params)]

    def counts(self, engine: Engine, stems: Sequence[str]) -> dict[str, int]:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT term, doc FROM chunk_terms_vocab WHERE term IN "
                     "(SELECT value FROM json_each(:terms))"),
                {"terms": json.dumps(list(stems))})
            return {str(t): int(n) for t, n in rows}


class PgTerms:
    """A tsvector per chunk (its stemmed terms with positions) and its term count, GIN
    indexed; rows go with their chunk (foreign key, on delete cascade). The collection's
    totals and each term's chunk count are kept by triggers (schema revision 0002)."""

    def __init__(self, matcher: TermMatcher | None = None) -> None:
        self._matcher = matcher or TermMatcher()

    def insert(self, session: Session, chunks: Sequence[tuple[int, str, str]]) -> None:
        for start in range(0, len(chunks), TERM_ROWS_BATCH):
            part = chunks[start:start + TERM_ROWS_BATCH]
            streams = self._matcher.token_streams(
                {i: index_terms(searchable(h, b)) for i, h, b in part})
            # One statement per batch (arrays unnested by the server): an executemany is a
            # statement per row, and the statistics trigger would run once for each.
            session.execute(text(
                "INSERT INTO chunk_terms (chunk_id, terms, length) SELECT i, CAST(t AS "
                "tsvector), n FROM unnest(CAST(:ids AS integer[]), CAST(:terms AS text[]), "
                "CAST(:lengths AS integer[])) AS x(i, t, n)"),
                {"ids": [i for i, _, _ in part],
                 "terms": [tsvector_literal(streams.get(i, [])) for i, _, _ in part],
                 "lengths": [len(streams.get(i, [])) for i, _, _ in part]})

    def clear(self, session: Session) -> None:
        session.execute(text("DELETE FROM chunk_terms"))

    def search(self, engine: Engine, terms: Sequence[str], stems: Sequence[str], limit: int,
               document_ids: Sequence[int] | None,
               counts: Mapping[str, int] | None = None) -> list[tuple[int, float]]:
        # FTS5 scores each OR'ed term: a stem two query terms share counts twice there.
        weight: dict[str, int] = {}
        for stem in stems:
            if stem:
                weight[stem] = weight.get(stem, 0) + 1
        wanted = list(weight)
        if not wanted:
            return []
        known = counts or {}
        if any(s not in known for s in wanted):
            known = {**known, **self.counts(engine, [s for s in wanted if s not in known])}
        found = {s: [known[s], weight[s]] for s in wanted if known.get(s)}
        filters = ""
        params: dict[str, Any] = {"query": tsquery_literal(wanted), "limit": limit,
                                  "stems": wanted, "k1": BM25_K1, "b": BM25_B,
                                  "df": json.dumps(found)}
        if document_ids is not None:
            filters = (" AND c.chunk_id IN (SELECT id FROM chunks WHERE document_id = "
                       "ANY(:ids))")
            params["ids"] = list(document_ids)
        sql = f"""
            WITH totals AS (SELECT chunks::float8 AS n,
                                   length::float8 / greatest(chunks, 1) AS avgdl
                            FROM chunk_terms_totals),
                 df AS (SELECT key AS term, (value->>0)::float8 AS n,
                               (value->>1)::float8 AS w
                        FROM json_each(CAST(:df AS json)))
            SELECT c.chunk_id, sum(
                     df.w * greatest(ln((totals.n - df.n + 0.5) / (df.n + 0.5)), 1e-6)
                     * (t.tf * (:k1 + 1))
                     / (t.tf + :k1 * (1 - :b + :b * c.length / totals.avgdl))) AS score
            FROM chunk_terms c
            CROSS JOIN totals
            CROSS JOIN LATERAL (SELECT u.lexeme AS term,
                                       coalesce(array_length(u.positions, 1), 1) AS tf
                                FROM unnest(ts_filter(setweight(c.terms, 'A',
                                                                CAST(:stems AS text[])),
                                                      '{{a}}')) AS u) AS t
            JOIN df ON df.term = t.term
            WHERE c.terms @@ CAST(:query AS tsquery){filters}
            GROUP BY c.chunk_id
            ORDER BY score DESC, c.chunk_id
            LIMIT :limit"""
        with engine.connect() as connection:
            return [(int(i), float(s)) for i, s in connection.execute(text(sql), params)]

    def counts(self, engine: Engine, stems: Sequence[str]) -> dict[str, int]:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT term, chunks FROM chunk_terms_stats WHERE term = ANY(:stems) "
                     "AND chunks > 0"), {"stems": list(dict.fromkeys(s for s in stems if s))})
            return {str(t): int(n) for t, n in rows}


def _quoted(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(tokens: Sequence[str]) -> str:
    """The terms as a tsvector with their positions (1-based; PostgreSQL keeps up to 16383).

    Example: tsvector_literal(["engin", "北京", "engin"]) == "'engin':1,3 '北京':2"
    """
    positions: dict[str, list[int]] = {}
    for number, token in enumerate(tokens, start=1):
        if len(token.encode("utf-8")) <= MAX_LEXEME_BYTES:
            positions.setdefault(token, []).append(min(number, 16383))
    return " ".join(f"{_quoted(t)}:{','.join(map(str, p[:256]))}" for t, p in positions.items())


def tsquery_literal(stems: Sequence[str]) -> str:
    """Example: tsquery_literal(["engin", "北京"]) == "'engin' | '北京'" """
    return " | ".join(_quoted(s) for s in stems)


def terms_version_stale(stored: str | None) -> bool:
    return stored != TERMS_VERSION
