"""FAISS vectors keyed by chunk id, saved as immutable generation files.

Each commit writes `vectors-<generation>.faiss` beside the previous one (temp file, fsync,
rename); SQLite then records the new generation in the same transaction as the chunk rows.
A crash at any instant leaves the previous generation file, and the rows that match it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

_GENERATION_FILE = re.compile(r"^vectors-(\d+)\.faiss$")


class VectorIndex:
    """Exact inner-product search over L2-normalised vectors, with add/remove by id."""

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected {len(ids)} vectors of {self.dim} dims, got {vectors.shape}")
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                 np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> int:
        if len(ids) == 0:
            return 0
        selector = np.asarray(ids, dtype=np.int64)
        return int(self._index.remove_ids(selector))  # type: ignore[arg-type]

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if len(self) == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        scores, ids = self._index.search(query, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the whole new one, never a part."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        index = faiss.read_index(str(path))
        return cls(index.d, index)


def generation_path(folder: Path, generation: int) -> Path:
    return folder / f"vectors-{generation:08d}.faiss"


def stale_generation_files(folder: Path, keep: int) -> list[Path]:
    """Files of other generations (left by a crash or superseded), safe to delete under lock."""
    if not folder.is_dir():
        return []
    stale = []
    for path in folder.iterdir():
        match = _GENERATION_FILE.match(path.name)
        if (match and int(match.group(1)) != keep) or path.name.endswith(".faiss.tmp"):
            stale.append(path)
    return stale


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
