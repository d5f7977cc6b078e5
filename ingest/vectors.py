"""A knowledge base's vector spaces as FAISS files, committed together with its rows.

The whole protocol lives here. A commit writes `vectors-<generation>[.n].faiss` (one file
per space: temp file, fsync, rename) inside the SQLite transaction that stores the rows
and records the new generation and the spaces (`vector_spaces`); SQLite's commit is the
commit point (synchronous=FULL). A crash at any instant leaves the previous generation's
files and the rows that match them; the generation before the current one stays on disk
too (a power loss may undo the last commit), older ones and a killed writer's files are
removed under the writer lock. Readers load the committed generation and reload when
another process has committed a newer one; a writer changes copies (`draft`), so searches
never see a half-applied change.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, overload

from kbqa.errors import IndexMissing
from kbqa.ingest.faults import kill_point
from kbqa.ingest.index import (
    VectorIndex,
    generation_path,
    kept_generations,
    stale_generation_files,
)
from kbqa.ingest.lock import writer_lock
from kbqa.ingest.store import Store
from sqlalchemy.orm import Session

GENERATION = "index_generation"  # meta: the committed generation
SPACES = "vector_spaces"  # meta: [[name, dim, count], ...] in file order
FIRST_SPACE, FIRST_DIM = "embedder", "embedding_dim"  # meta, as older versions wrote them

DefaultSpace = Callable[[], tuple[str, int]]  # (name, dim) of an empty base's first space
Rows = Callable[[Session, "IngestState"], None]  # what a commit writes to the rows


class VectorSpaces(Protocol):
    """What a knowledge base's vector storage does (FAISS files here; PostgreSQL tables in
    `pg_vectors`): readers' spaces, a writer's draft, commits with the rows, clearing."""

    def generation(self) -> int: ...

    def committed(self, default: DefaultSpace) -> dict[str, Any]: ...

    def forget(self) -> None: ...

    def draft(self, default: DefaultSpace) -> IngestState: ...

    def new_space(self, dim: int) -> Any: ...

    def settle(self, state: IngestState, ok: bool) -> None: ...

    def commit(self, state: IngestState, rows: Rows, meta: dict[str, str] | None = None
               ) -> None: ...

    def clear(self) -> None: ...

    def writer_lock(self, on_wait: Callable[[str], None] | None = None, *, sole: bool = False
                    ) -> AbstractContextManager[None]:
        """Held by every writer for its whole run. Where several ingests may write at once
        (PostgreSQL) they share it and `sole` (a rebuild, a migration) waits for them all;
        where one writes at a time (FAISS files) it is always sole."""

    def claims(self) -> AbstractContextManager[FileClaims]:
        """Which files this ingest is reading, so that another ingest at the same time
        leaves them to it."""

    def size_on_disk(self) -> int: ...


class FileClaims(Protocol):
    """Files claimed by one ingest among several writing at once; released when their
    batch is committed, or by the claimant's death (the database drops its locks)."""

    shared: bool  # False: this ingest is the only writer, every claim is granted

    def take(self, file: str, *, wait: bool = False) -> bool:
        """Claim a file; False when another ingest holds it (with `wait`, wait for it)."""

    def release(self, files: Sequence[str]) -> None: ...


class SoleWriterClaims:
    """The one writer holds the writer lock: every file is its own."""

    shared = False

    def take(self, file: str, *, wait: bool = False) -> bool:
        return True

    def release(self, files: Sequence[str]) -> None:
        """Nothing to release."""


@dataclass
class IngestState:
    """A writer's copy of the vector spaces (by embedder name, the first one named in meta
    "embedder") and the generation it starts from and advances."""

    indexes: dict[str, Any]  # VectorIndex, or a PostgreSQL draft of one
    generation: int
    spaces: VectorSpaces
    auto: bool = False  # the automatic embedder: its Latin and multilingual spaces may mix

    @property
    def index(self) -> VectorIndex:
        return next(iter(self.indexes.values()))

    def remove(self, ids: Sequence[int]) -> None:
        for index in self.indexes.values():
            index.remove(ids)

    def add(self, name: str, ids: Sequence[int], vectors: object) -> None:
        import numpy as np

        array = np.asarray(vectors, dtype=np.float32)
        if name not in self.indexes:
            self.indexes[name] = self.spaces.new_space(array.shape[1])
        self.indexes[name].add(ids, array)


def parse_spaces(raw: str) -> list[tuple[str, int, int]]:
    """Meta `vector_spaces` as (name, dimension, vectors; -1 when not recorded).

    Example: parse_spaces('[["minilm", 384, 7], ["use", 512]]') == \
        [("minilm", 384, 7), ("use", 512, -1)]
    """
    return [(str(row[0]), int(row[1]), int(row[2]) if len(row) > 2 else -1)
            for row in json.loads(raw)]


@overload
def recorded_spaces(store: Store) -> list[tuple[str, int]]: ...


@overload
def recorded_spaces(store: Store, counts: Literal[True]) -> list[tuple[str, int, int]]: ...


def recorded_spaces(store: Store, counts: bool = False) -> list[Any]:
    """The committed vector spaces (embedder name, dimension[, vectors]), in file order."""
    raw = store.get_meta(SPACES)
    if raw:
        rows = parse_spaces(raw)
    else:
        built_with = store.get_meta(FIRST_SPACE)  # a knowledge base from before spaces
        rows = [(built_with, int(store.get_meta(FIRST_DIM) or 0), -1)] \
            if built_with else []
    return rows if counts else [(name, dim) for name, dim, _ in rows]


class FaissSpaces:
    """The vector spaces of one knowledge base folder: read, drafted, committed, cleared."""

    def __init__(self, folder: Path, store: Store, *, ann_threshold: int = 0,
                 lock_timeout_s: float = 600.0) -> None:
        self.folder = folder
        self.store = store
        self.ann_threshold = ann_threshold
        self.lock_timeout_s = lock_timeout_s
        self._lock = threading.Lock()
        self._indexes: dict[str, VectorIndex] | None = None
        self._generation = -1

    def generation(self) -> int:
        return int(self.store.get_meta(GENERATION, "0") or 0)

    # -- readers ------------------------------------------------------------------------
    def committed(self, default: DefaultSpace) -> dict[str, VectorIndex]:
        """The committed spaces (reloaded when another process committed since); an empty
        base has one empty space, `default` (called under this object's lock: it must not
        wait for a lock whose holder calls `forget`)."""
        with self._lock:
            generation = self.generation()
            if self._indexes is None or generation != self._generation or generation == 0:
                self._indexes, self._generation = self._read(generation, default)
            return self._indexes

    def _read(self, generation: int, default: DefaultSpace
              ) -> tuple[dict[str, VectorIndex], int]:
        for _ in range(3):  # a writer may replace the files while we read them
            spaces = recorded_spaces(self.store)
            if not spaces:  # nothing committed (yet, or since a rebuild): no files
                name, dim = default()
                return {name: VectorIndex(dim)}, generation
            try:
                indexes = self._load(generation, spaces)
            except RuntimeError:
                indexes = {}
            if len(indexes) == len(spaces) or generation == 0:
                return indexes, generation
            generation = self.generation()
        raise IndexMissing(
            f"the vector files of generation {generation} in {self.folder} are missing or "
            "unreadable: run `python -m kbqa ingest --rebuild DIR` to rebuild the knowledge "
            "base")

    def _load(self, generation: int, spaces: Sequence[tuple[str, int]]
              ) -> dict[str, VectorIndex]:
        """The spaces (name, dim; in file order) of a committed generation; a space without
        a file there is newer, and left out (generation 0 has no files: the first space,
        empty)."""
        if generation == 0:
            return {name: VectorIndex(dim) for name, dim in spaces[:1]}
        loaded = {}
        for position, (name, _) in enumerate(spaces):
            path = generation_path(self.folder, generation, position)
            if path.exists():
                loaded[name] = VectorIndex.load(path)
        return loaded

    def forget(self) -> None:
        """Drop what is cached (the first space's name changed): the next read reloads."""
        with self._lock:
            self._indexes = None

    # -- the writer (holding the knowledge base's writer lock) ---------------------------
    def draft(self, default: DefaultSpace) -> IngestState:
        """Copies of the committed spaces for a writer to change; files a killed writer left
        are removed first."""
        indexes = {name: index.copy() for name, index in self.committed(default).items()}
        with self._lock:
            generation = self._generation
        self._tidy(generation)
        return IngestState(indexes=indexes, generation=generation, spaces=self)

    def settle(self, state: IngestState, ok: bool) -> None:
        """After a writer: its committed spaces are what readers see; after a failure,
        what it changed in memory and did not commit is dropped (the files are read)."""
        with self._lock:
            self._indexes = state.indexes if ok else None
            self._generation = state.generation

    def commit(self, state: IngestState, rows: Rows, meta: dict[str, str] | None = None
               ) -> None:
        """`rows(session, state)` and a new generation of every space, as one unit: on
        failure nothing changes, on disk or in `state`."""
        old, new = state.generation, state.generation + 1
        written: list[Path] = []
        self._tidy(old)
        try:
            with self.store.transaction() as session:
                rows(session, state)
                first, first_index = next(iter(state.indexes.items()))
                self.store.set_meta(session, GENERATION, str(new))
                self.store.set_meta(session, FIRST_SPACE, first)
                self.store.set_meta(session, FIRST_DIM, str(first_index.dim))
                for key, value in (meta or {}).items():
                    self.store.set_meta(session, key, value)
                kill_point("before-vectors")
                for position, name in enumerate(state.indexes):
                    state.indexes[name] = state.indexes[name].reshaped(self.ann_threshold)
                    written.append(generation_path(self.folder, new, position))
                    state.indexes[name].save(written[-1])
                self.store.set_meta(session, SPACES, json.dumps(
                    [[name, index.dim, len(index)] for name, index in state.indexes.items()]))
                kill_point("after-vectors")
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            # The copies took changes that were rolled back: go back to the files.
            state.indexes = self._load(old, [(n, i.dim) for n, i in state.indexes.items()])
            raise
        kill_point("after-commit")
        state.generation = new
        # The generation just superseded stays (readers of it finish; should a power loss
        # undo the commit, the rows it falls back to still have their vectors).
        self._tidy(new)

    def clear(self) -> None:
        """Forget every row and vector (a rebuild); the generation goes on counting, so a
        reader holding old vectors sees a new number and reloads."""
        self.store.clear(meta={GENERATION: str(self.generation() + 1)})
        shutil.rmtree(self.folder, ignore_errors=True)
        with self._lock:
            self._indexes, self._generation = None, -1

    def new_space(self, dim: int) -> VectorIndex:
        return VectorIndex(dim)

    def writer_lock(self, on_wait: Callable[[str], None] | None = None, *, sole: bool = False
                    ) -> AbstractContextManager[None]:
        """One writer at a time: a lock file in the knowledge base folder."""
        return writer_lock(self.folder.parent, self.lock_timeout_s, on_wait=on_wait)

    def claims(self) -> AbstractContextManager[FileClaims]:
        return nullcontext(SoleWriterClaims())

    def _tidy(self, generation: int) -> None:
        for stale in stale_generation_files(self.folder, kept_generations(generation)):
            stale.unlink(missing_ok=True)

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file()) \
            if self.folder.is_dir() else 0
