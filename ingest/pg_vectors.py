"""A knowledge base's vector spaces in PostgreSQL with pgvector (`KBQA_DATABASE_URL=
postgresql+psycopg://...`): the same calls as `FaissSpaces`, without files.

Each space is a table `kbqa_vectors_<n>` (n: its place in meta `vector_spaces`, as the
FAISS files are numbered) of (chunk id, vector(dim)) with an HNSW index for cosine
distance; a row goes with its chunk (foreign key, on delete cascade). A writer's draft
collects additions and removals, and `commit` applies them in the transaction that writes
the rows: one transaction per committed batch, nothing to clean up after a crash. Writers
take a PostgreSQL advisory lock instead of a lock file, so workers on other machines wait
for each other too.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from kbqa.errors import IngestLocked, SettingError
from kbqa.ingest.faults import kill_point
from kbqa.ingest.index import VectorIndex
from kbqa.ingest.store import Store
from kbqa.ingest.vectors import (
    FIRST_DIM,
    FIRST_SPACE,
    GENERATION,
    SPACES,
    DefaultSpace,
    IngestState,
    Rows,
    recorded_spaces,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# The HNSW graph: pgvector's defaults are m 16, ef_construction 64; on 1M clustered vectors
# (make bench-backends) they reached recall@10 0.93 at ef_search 800. A denser graph:
HNSW_M, HNSW_EF_CONSTRUCTION = 24, 128
# Candidates HNSW keeps per search: pgvector's most. On 1M clustered vectors (make
# bench-backends, m 24) recall@10 was 0.83 at 100, 0.94 at 400, 0.97 at 1000, whose p50 was
# 15.5 ms on 2 cores; small knowledge bases pay a few milliseconds for it.
EF_SEARCH_MIN = 1000
EF_SEARCH_MAX = 1000
WRITER_LOCK = zlib.crc32(b"kbqa writer")  # the advisory lock's key


def table_of(position: int) -> str:
    return f"kbqa_vectors_{position}"


def vector_literal(vector: Sequence[float] | np.ndarray) -> str:
    """Example: vector_literal([0.5, 1.0]) == "[0.5,1]" """
    return "[" + ",".join(f"{float(x):.8g}" for x in vector) + "]"


def parse_vector(value: Any) -> np.ndarray:
    if isinstance(value, str):
        return np.array([float(x) for x in value.strip("[]").split(",") if x], np.float32)
    return np.asarray(value, dtype=np.float32)


class PgVectorIndex:
    """A committed space, read from its table at each call (always current)."""

    kind = "hnsw"

    def __init__(self, engine: Any, table: str, dim: int, count: int = -1) -> None:
        self._engine = engine
        self.table = table
        self.dim = dim
        self._count = count  # as the last commit recorded it (-1: unknown, counted)

    def __len__(self) -> int:
        """The vector count: from the commit's record when given (a count(*) of a
        million-row table costs more than the search)."""
        if self._count >= 0:
            return self._count
        with self._engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {self.table}")).scalar()
                       or 0)

    def copy(self) -> PgVectorIndex:
        return self

    def search(self, vector: np.ndarray, k: int, allowed: Sequence[int] | None = None
               ) -> list[tuple[int, float]]:
        """Top-k (chunk id, cosine); with `allowed`, exact over those chunks."""
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        params: dict[str, Any] = {"q": vector_literal(vector), "k": k}
        where = ""
        if allowed is not None:
            where, params["allowed"] = "WHERE chunk_id = ANY(:allowed)", list(allowed)
        with self._engine.begin() as connection:
            ef = min(max(EF_SEARCH_MIN, k), EF_SEARCH_MAX)  # pgvector allows up to 1000
            connection.execute(text(f"SET LOCAL hnsw.ef_search = {ef}"))
            rows = connection.execute(text(
                f"SELECT chunk_id, 1 - (embedding <=> CAST(:q AS vector)) FROM {self.table} "
                f"{where} ORDER BY embedding <=> CAST(:q AS vector), chunk_id LIMIT :k"), params)
            return [(int(i), float(s)) for i, s in rows]

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if len(ids) == 0:
            return out
        row_of = {int(i): row for row, i in enumerate(ids)}
        with self._engine.connect() as connection:
            for chunk_id, value in connection.execute(
                    text(f"SELECT chunk_id, embedding FROM {self.table} "
                         "WHERE chunk_id = ANY(:ids)"), {"ids": list(row_of)}):
                out[row_of[int(chunk_id)]] = parse_vector(value)
        return out

    def ids(self) -> np.ndarray:
        with self._engine.connect() as connection:
            return np.array([int(i) for (i,) in connection.execute(
                text(f"SELECT chunk_id FROM {self.table}"))], dtype=np.int64)

    def similarities(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Cosines computed by the server: no vector crosses the wire."""
        if len(ids) == 0:
            return {}
        with self._engine.connect() as connection:
            return {int(i): float(s) for i, s in connection.execute(text(
                f"SELECT chunk_id, 1 - (embedding <=> CAST(:q AS vector)) FROM {self.table} "
                "WHERE chunk_id = ANY(:ids)"), {"q": vector_literal(vector),
                                                "ids": [int(i) for i in ids]})}


class PendingSpace:
    """A writer's view of a space: the committed table plus what it added and removed."""

    def __init__(self, committed: PgVectorIndex | None, dim: int) -> None:
        self.committed = committed
        self.dim = dim
        self.added: dict[int, np.ndarray] = {}
        self.removed: set[int] = set()

    def __len__(self) -> int:
        return len(self.ids())

    def ids(self) -> np.ndarray:
        held = set(self.committed.ids().tolist()) if self.committed is not None else set()
        return np.array(sorted((held - self.removed) | set(self.added)), dtype=np.int64)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        for chunk_id, vector in zip(ids, vectors, strict=True):
            self.added[int(chunk_id)] = np.asarray(vector, dtype=np.float32)
            self.removed.discard(int(chunk_id))

    def remove(self, ids: Sequence[int]) -> int:
        for chunk_id in ids:
            self.added.pop(int(chunk_id), None)
            self.removed.add(int(chunk_id))
        return len(ids)


class PgSpaces:
    """The vector spaces of a knowledge base in PostgreSQL (see the module's docstring)."""

    def __init__(self, store: Store, *, lock_timeout_s: float = 600.0) -> None:
        self.store = store
        self.engine = store.engine
        self.lock_timeout_s = lock_timeout_s
        try:
            with self.engine.begin() as connection:
                connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
        except DBAPIError as exc:
            raise SettingError(
                "the PostgreSQL server cannot create the pgvector extension ("
                f"{str(exc.orig).strip()}): install pgvector there, or have an administrator "
                "run `CREATE EXTENSION vector` in this database") from None

    def generation(self) -> int:
        return int(self.store.get_meta(GENERATION, "0") or 0)

    def committed(self, default: DefaultSpace) -> dict[str, Any]:
        spaces = recorded_spaces(self.store, counts=True)
        if not spaces:
            name, dim = default()
            return {name: VectorIndex(dim)}  # an empty space until the first commit
        return {name: PgVectorIndex(self.engine, table_of(position), dim, count)
                for position, (name, dim, count) in enumerate(spaces)}

    def forget(self) -> None:
        """Nothing is cached: every read goes to the tables."""

    def draft(self, default: DefaultSpace) -> IngestState:
        committed = self.committed(default)
        indexes: dict[str, Any] = {
            name: PendingSpace(space if isinstance(space, PgVectorIndex) else None, space.dim)
            for name, space in committed.items()}
        return IngestState(indexes=indexes, generation=self.generation(), spaces=self)

    def new_space(self, dim: int) -> PendingSpace:
        return PendingSpace(None, dim)

    def settle(self, state: IngestState, ok: bool) -> None:
        """Nothing to hand over: readers read the tables."""

    def commit(self, state: IngestState, rows: Rows, meta: dict[str, str] | None = None
               ) -> None:
        new = state.generation + 1
        try:
            with self.store.transaction() as session:
                rows(session, state)
                kill_point("before-vectors")
                counts = []
                for position, (name, space) in enumerate(state.indexes.items()):
                    counts.append([name, space.dim, self._write(session, position, space)])
                first, first_space = next(iter(state.indexes.items()))
                self.store.set_meta(session, GENERATION, str(new))
                self.store.set_meta(session, FIRST_SPACE, first)
                self.store.set_meta(session, FIRST_DIM, str(first_space.dim))
                self.store.set_meta(session, SPACES, json.dumps(counts))
                for key, value in (meta or {}).items():
                    self.store.set_meta(session, key, value)
                kill_point("after-vectors")
        except BaseException:
            state.indexes = self._fresh(state)  # the rolled-back changes are dropped
            raise
        kill_point("after-commit")
        state.generation = new
        state.indexes = self._fresh(state)

    def _fresh(self, state: IngestState) -> dict[str, Any]:
        """Empty drafts over the committed tables (after a commit or a rollback)."""
        recorded = {name: position for position, (name, _) in
                    enumerate(recorded_spaces(self.store))}
        return {name: PendingSpace(PgVectorIndex(self.engine, table_of(recorded[name]),
                                                 space.dim) if name in recorded else None,
                                   space.dim)
                for name, space in state.indexes.items()}

    def _write(self, session: Session, position: int, space: PendingSpace) -> int:
        """Apply a draft to its table (made, or remade for another dimension, here: DDL is
        part of the transaction); returns the space's vector count."""
        table = table_of(position)
        dim = session.execute(text(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attname = 'embedding'"), {"t": table}).scalar()
        if dim is not None and int(dim) != space.dim:
            session.execute(text(f"DROP TABLE {table}"))
        session.execute(text(
            f"CREATE TABLE IF NOT EXISTS {table} (chunk_id INTEGER PRIMARY KEY REFERENCES "
            f"chunks(id) ON DELETE CASCADE, embedding vector({space.dim}) NOT NULL)"))
        session.execute(text(
            f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw "
            f"(embedding vector_cosine_ops) WITH (m = {HNSW_M}, "
            f"ef_construction = {HNSW_EF_CONSTRUCTION})"))
        if space.removed:
            session.execute(text(f"DELETE FROM {table} WHERE chunk_id = ANY(:ids)"),
                            {"ids": sorted(space.removed)})
        items = list(space.added.items())
        for start in range(0, len(items), 1000):
            session.execute(text(
                f"INSERT INTO {table} (chunk_id, embedding) VALUES (:id, CAST(:v AS vector)) "
                "ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding"),
                [{"id": i, "v": vector_literal(v)} for i, v in items[start:start + 1000]])
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)

    def clear(self) -> None:
        """Forget every row and vector (a rebuild): the vector rows go with their chunks;
        a space of another dimension is remade by the next commit."""
        self.store.clear(meta={GENERATION: str(self.generation() + 1)})

    @contextmanager
    def writer_lock(self, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """One writer at a time across every machine that uses this database: a session
        advisory lock, released when its connection closes (a killed worker's too)."""
        with self.engine.connect() as connection:
            deadline = time.monotonic() + self.lock_timeout_s
            told = False
            while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                         {"key": WRITER_LOCK}).scalar():
                connection.rollback()
                if time.monotonic() >= deadline:
                    raise IngestLocked(
                        "another ingest is writing to this PostgreSQL knowledge base; wait "
                        "for it to finish and run this again (KBQA_LOCK_TIMEOUT_S sets how "
                        "long to wait)")
                if on_wait and not told:
                    on_wait("waiting for another ingest to finish…")
                    told = True
                time.sleep(0.2)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": WRITER_LOCK})
                connection.commit()

    def size_on_disk(self) -> int:
        return 0
