"""A knowledge base's vector spaces in PostgreSQL with pgvector (`KBQA_DATABASE_URL=
postgresql+psycopg://...`): the same calls as `FaissSpaces`, without files.

Each space is a table `kbqa_vectors_<n>` (n: its place in meta `vector_spaces`, as the
FAISS files are numbered) of (chunk id, vector(dim)) with an HNSW index for cosine
distance; a row goes with its chunk (foreign key, on delete cascade). A writer's draft
collects additions and removals, and `commit` applies them in the transaction that writes
the rows: one transaction per committed batch, nothing to clean up after a crash.

Several ingests may write at once, on any machine: each holds the writer lock shared (a
rebuild or a migration holds it alone), claims the files it reads with an advisory lock
per file (another ingest skips them, and at its end waits for them: a claimant that dies
loses its locks with its connection, and the waiting ingest reads its files), and commits
under a transaction-scoped lock, so commits apply one at a time to the latest state.
"""

from __future__ import annotations

import json
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from kbqa.errors import EmbedderMismatch, IngestLocked
from kbqa.ingest.faults import kill_point
from kbqa.ingest.index import VectorIndex
from kbqa.ingest.spaces import CROSS_SPACE, LATIN_SPACE
from kbqa.ingest.store import PG_COMMIT_LOCK, Store
from kbqa.ingest.vectors import (
    FIRST_DIM,
    FIRST_SPACE,
    GENERATION,
    SPACES,
    DefaultSpace,
    IngestState,
    Rows,
    parse_spaces,
    recorded_spaces,
)
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

# The HNSW graph: pgvector's defaults are m 16, ef_construction 64; on 1M clustered vectors
# (make bench-backends) they reached recall@10 0.93 at ef_search 800. A denser graph:
HNSW_M, HNSW_EF_CONSTRUCTION = 24, 128
# Candidates HNSW keeps per search: pgvector's most. On 1M clustered vectors (make
# bench-backends, m 24) recall@10 was 0.83 at 100, 0.94 at 400, 0.97 at 1000, whose p50 was
# 15.5 ms on 2 cores; small knowledge bases pay a few milliseconds for it.
EF_SEARCH_MIN = 1000
EF_SEARCH_MAX = 1000
WRITER_LOCK = zlib.crc32(b"kbqa writer")  # advisory lock keys: every writer, shared
COMMIT_LOCK = PG_COMMIT_LOCK  # one commit at a time
CLAIM_CLASS = zlib.crc32(b"kbqa claim") & 0x7FFFFFFF  # (class, file hash): a file's claim


def lock_timeout_ms(seconds: float) -> int:
    """PostgreSQL's lock_timeout for a wait in seconds (0: no limit; its most: 2^31-1 ms).

    Example: lock_timeout_ms(0.5) == 500; lock_timeout_ms(float("inf")) == 0
    """
    if not math.isfinite(seconds) or seconds * 1000 >= 2**31 - 1:
        return 0
    return max(1, int(seconds * 1000))


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
        return self._count if self._count >= 0 else self.count_now()

    def count_now(self) -> int:
        """The vectors in the table now (other writers' commits included)."""
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

    def present(self, ids: Sequence[int]) -> set[int]:
        """Which of `ids` have a vector."""
        with self._engine.connect() as connection:
            return {int(i) for (i,) in connection.execute(
                text(f"SELECT chunk_id FROM {self.table} WHERE chunk_id = ANY(:ids)"),
                {"ids": list(ids)})}

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
        if not self.added and not self.removed:  # counted by the server, not fetched
            return self.committed.count_now() if self.committed is not None else 0
        return len(self.ids())

    def ids(self) -> np.ndarray:
        held = set(self.committed.ids().tolist()) if self.committed is not None else set()
        return np.array(sorted((held - self.removed) | set(self.added)), dtype=np.int64)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        for chunk_id, vector in zip(ids, vectors, strict=True):
            self.added[int(chunk_id)] = np.asarray(vector, dtype=np.float32)
            self.removed.discard(int(chunk_id))

    def remove(self, ids: Sequence[int]) -> int:
        """Returns how many of `ids` had a vector here (as FAISS's remove does)."""
        wanted = {int(i) for i in ids} - self.removed
        held = wanted & set(self.added)
        if self.committed is not None and wanted - held:
            held |= self.committed.present(sorted(wanted - held))
        for chunk_id in wanted:
            self.added.pop(chunk_id, None)
            self.removed.add(chunk_id)
        return len(held)


class PgSpaces:
    """The vector spaces of a knowledge base in PostgreSQL (see the module's docstring)."""

    def __init__(self, store: Store, *, lock_timeout_s: float = 600.0) -> None:
        self.store = store
        self.engine = store.engine
        self.lock_timeout_s = lock_timeout_s  # pgvector: created by the schema (0003)

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
        """The rows and vectors as one transaction, applied after every commit another
        ingest made since this one started (its spaces kept, the generation advanced)."""
        try:
            with self.store.transaction() as session:
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                {"key": COMMIT_LOCK})
                raw = Store.meta_in(session, SPACES)
                recorded = {name: dim for name, dim, _ in parse_spaces(raw)} if raw else {}
                _same_embedder(recorded, state)  # before any row is written
                rows(session, state)
                kill_point("before-vectors")
                counts = []
                for position, name in enumerate([*recorded, *(n for n in state.indexes
                                                             if n not in recorded)]):
                    space = state.indexes.get(name)
                    count = self._write(session, position, space) if space is not None else \
                        int(session.execute(text(f"SELECT count(*) FROM {table_of(position)}"))
                            .scalar() or 0)
                    counts.append([name, space.dim if space is not None else recorded[name],
                                   count])
                new = int(Store.meta_in(session, GENERATION, "0") or 0) + 1
                first, first_dim = counts[0][0], counts[0][1]
                self.store.set_meta(session, GENERATION, str(new))
                self.store.set_meta(session, FIRST_SPACE, first)
                self.store.set_meta(session, FIRST_DIM, str(first_dim))
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
        """Empty drafts over the committed tables (after a commit or a rollback), the
        spaces other ingests have made since this one started included."""
        recorded = recorded_spaces(self.store)
        dims = {name: dim for name, dim in recorded}
        dims.update({name: space.dim for name, space in state.indexes.items()
                     if name not in dims})
        position = {name: number for number, (name, _) in enumerate(recorded)}
        return {name: PendingSpace(PgVectorIndex(self.engine, table_of(position[name]), dim)
                                   if name in position else None, dim)
                for name, dim in dims.items()}

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
        for start in range(0, len(items), 1000):  # one statement per 1,000 vectors
            part = items[start:start + 1000]
            session.execute(text(
                # a chunk another ingest deleted since this one read it (a backfill's)
                # gets no vector: the foreign key would refuse the whole commit
                f"INSERT INTO {table} (chunk_id, embedding) SELECT i, CAST(v AS vector) FROM "
                "unnest(CAST(:ids AS integer[]), CAST(:vectors AS text[])) AS x(i, v) "
                "WHERE EXISTS (SELECT 1 FROM chunks WHERE chunks.id = x.i) "
                "ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding"),
                {"ids": [i for i, _ in part], "vectors": [vector_literal(v) for _, v in part]})
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)

    def clear(self) -> None:
        """Forget every row and vector (a rebuild): the vector rows go with their chunks;
        a space of another dimension is remade by the next commit."""
        self.store.clear(meta={GENERATION: str(self.generation() + 1)})

    @contextmanager
    def writer_lock(self, on_wait: Callable[[str], None] | None = None, *, sole: bool = False
                    ) -> Iterator[None]:
        """Held for a writer's whole run across every machine that uses this database: a
        session advisory lock, released when its connection closes (a killed worker's
        too). Ingests share it; `sole` (rebuild, migrate) waits until it is alone."""
        kind = "" if sole else "_shared"
        doing = "other ingests are" if sole else "a rebuild or migration is"
        locked = IngestLocked(
            f"{doing} writing to this PostgreSQL knowledge base; wait for them to finish "
            "and run this again (KBQA_LOCK_TIMEOUT_S sets how long to wait)")
        with self.engine.connect() as connection:
            if not connection.execute(text(f"SELECT pg_try_advisory_lock{kind}(:key)"),
                                      {"key": WRITER_LOCK}).scalar():
                if on_wait:
                    on_wait("waiting for other writers to finish…" if sole else
                            "waiting for a rebuild or migration to finish…")
                # Queued in the server, so new ingests line up behind a waiting rebuild
                # instead of starving it; lock_timeout bounds the wait.
                connection.execute(text(f"SET LOCAL lock_timeout = "
                                        f"{lock_timeout_ms(self.lock_timeout_s)}"))
                try:
                    connection.execute(text(f"SELECT pg_advisory_lock{kind}(:key)"),
                                       {"key": WRITER_LOCK})
                except DBAPIError as exc:
                    connection.rollback()
                    if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                        raise locked from None
                    raise
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text(f"SELECT pg_advisory_unlock{kind}(:key)"),
                                   {"key": WRITER_LOCK})
                connection.commit()

    @contextmanager
    def claims(self) -> Iterator[PgClaims]:
        with self.engine.connect() as connection:
            connection.commit()  # autobegun; advisory locks outlive transactions
            try:
                yield PgClaims(connection, self.lock_timeout_s)
            finally:  # the pool keeps the connection open: claims still held go now
                try:
                    connection.execute(text("SELECT pg_advisory_unlock_all()"))
                    connection.commit()
                except SQLAlchemyError:
                    connection.invalidate()  # closed instead, and the locks with it

    def size_on_disk(self) -> int:
        return 0


class PgClaims:
    """Per-file advisory locks on one connection of this ingest (staging and committing
    threads share it, so a lock guards it)."""

    shared = True

    def __init__(self, connection: Connection, timeout_s: float = 600.0) -> None:
        self._connection = connection
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._held: set[str] = set()

    def take(self, file: str, *, wait: bool = False) -> bool:
        """With `wait`, for at most the lock timeout (a claimant on a machine that hung
        keeps its lock until the server notices)."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            with self._lock:
                if file in self._held:
                    return True
                got = self._connection.execute(
                    text("SELECT pg_try_advisory_lock(:kind, hashtext(:file))"),
                    {"kind": CLAIM_CLASS, "file": file}).scalar()
                self._connection.commit()
                if got:
                    self._held.add(file)
                    return True
            if not wait or time.monotonic() >= deadline:
                return False
            time.sleep(0.2)  # its claimant commits it, or dies and the lock goes with it

    def release(self, files: Sequence[str]) -> None:
        """Best effort: the files are committed; a claim that cannot be released now goes
        with the connection at the end of the ingest."""
        with self._lock:
            try:
                for file in files:
                    if file in self._held:
                        self._connection.execute(
                            text("SELECT pg_advisory_unlock(:kind, hashtext(:file))"),
                            {"kind": CLAIM_CLASS, "file": file})
                        self._held.discard(file)
                self._connection.commit()
            except DBAPIError:
                self._connection.invalidate()  # closed: every claim on it goes
                self._connection.rollback()  # the next claim reconnects
                self._held.clear()


def _same_embedder(recorded: dict[str, int], state: IngestState) -> None:
    """Another ingest may have stored the first vectors since this one checked the
    embedder (several write at once): its space must be this one's."""
    mine = next(iter(state.indexes), None)
    if state.auto and {*recorded, *state.indexes} <= {LATIN_SPACE, CROSS_SPACE}:
        return  # the automatic embedder's two spaces, picked by each folder's script
    if recorded and mine is not None and mine not in recorded:
        first = next(iter(recorded))
        raise EmbedderMismatch(
            f"another ingest stored vectors of {first} in this knowledge base meanwhile; "
            f"this one embeds with {mine}: run every ingest worker with the same "
            "KBQA_EMBEDDER, then run this ingest again")
