"""FAISS vectors keyed by chunk id, saved as immutable generation files.

Each commit writes `vectors-<generation>.faiss` beside the previous one (temp file, fsync,
rename); SQLite then records the new generation in the same transaction as the chunk rows
(synchronous=FULL: durable when it returns). A crash at any instant leaves the previous
generation file, and the rows that match it; the generation before the current one is kept
too, so a power loss that undoes the last commit still finds its vectors.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

_FAISS: Any = faiss  # the stubs lack some of the names used below
# vectors-<generation>.faiss for a knowledge base's first vector space, and
# vectors-<generation>.<n>.faiss for its n-th other one (see kbqa.ingest.spaces).
_GENERATION_FILE = re.compile(r"^vectors-(\d+)(?:\.\d+)?\.faiss$")


# Inverted lists per vector count: ~4·sqrt(n), the usual IVF sizing; probes per search.
IVF_LISTS_PER_SQRT = 4
IVF_PROBE_SHARE = 1 / 24
IVF_TRAIN_PER_LIST = 40  # faiss wants at least 39 points per list
# An IVF index is re-clustered when the collection has grown or shrunk this much since its
# lists were trained (its lists would be too few or too many for fast, accurate probes).
IVF_RETRAIN_FACTOR = 4.0


class VectorIndex:
    """Inner-product search over L2-normalised vectors, with add/remove by id: exact (flat)
    for small collections, inverted lists (IVF) above a size threshold (`reshaped`)."""

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self._index: Any = index if index is not None else \
            faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ivf: Any = _as_ivf(self._index)
        if self._ivf is not None:
            self._ivf.nprobe = _probes(self._ivf.nlist)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def copy(self) -> VectorIndex:
        return VectorIndex(self.dim, faiss.clone_index(self._index))

    @property
    def kind(self) -> str:
        return f"ivf{self._ivf.nlist}" if self._ivf is not None else "flat"

    def reshaped(self, ann_threshold: int) -> VectorIndex:
        """This index, or a rebuilt one of the kind that suits its size: flat below
        `ann_threshold` vectors (0 = always flat), IVF above, re-clustered when the size
        has moved IVF_RETRAIN_FACTOR away from the size its lists were made for."""
        count = len(self)
        want_ivf = ann_threshold > 0 and count >= ann_threshold
        if self._ivf is None and not want_ivf:
            return self
        if self._ivf is not None and want_ivf:
            fitted = _lists_for(count)
            ratio = max(fitted, self._ivf.nlist) / min(fitted, self._ivf.nlist)
            if ratio ** 2 < IVF_RETRAIN_FACTOR:
                return self
        ids, vectors = self.all_vectors()
        fresh = VectorIndex(self.dim, _new_ivf(self.dim, vectors) if want_ivf else None)
        fresh.add(ids, vectors)
        return fresh

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) held, for rebuilding in another shape."""
        ids = self.ids()
        if self._ivf is None:
            flat = faiss.downcast_index(self._index.index)
            return ids, flat.reconstruct_n(0, flat.ntotal)
        return ids, self.vectors(ids)

    def ids(self) -> np.ndarray:
        """Every chunk id held."""
        if self._ivf is None:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        invlists: Any = self._ivf.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(self._ivf.nlist) if invlists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of these ids (rows of zeros for ids not held)."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for row, chunk_id in enumerate(ids):
            try:
                out[row] = self._index.reconstruct(int(chunk_id))
            except RuntimeError:
                continue
        return out

    def similarities(self, vector: np.ndarray, ids: Sequence[int]) -> dict[int, float]:
        """Inner product of `vector` with each held id's vector (ids not held are left out)."""
        rows = self.vectors(ids)
        return {int(i): float(row @ vector) for i, row in zip(ids, rows, strict=True)
                if row.any()}

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
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
        return int(self._index.remove_ids(selector))

    def search(self, vector: np.ndarray, k: int, allowed: Sequence[int] | None = None
               ) -> list[tuple[int, float]]:
        """Top-k (id, inner product); `allowed` restricts the search to those ids."""
        if len(self) == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        params: Any = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            # A filter may keep ids outside the probed lists: probe them all (exact).
            params = (_FAISS.SearchParametersIVF(sel=selector, nprobe=self._ivf.nlist)
                      if self._ivf is not None else _FAISS.SearchParameters(sel=selector))
        scores, ids = self._index.search(query, min(k, len(self)), params=params)
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


def _as_ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    return faiss.try_extract_index_ivf(index)


def _lists_for(count: int) -> int:
    return max(16, int(IVF_LISTS_PER_SQRT * math.sqrt(max(count, 1))))


def _probes(lists: int) -> int:
    return max(8, round(lists * IVF_PROBE_SHARE))


def _new_ivf(dim: int, vectors: np.ndarray) -> faiss.Index:
    """IVF-flat (inner product) trained on a sample of `vectors`, ids kept by a hash map so
    removal and reconstruction by chunk id work."""
    lists = min(_lists_for(len(vectors)), max(1, len(vectors) // IVF_TRAIN_PER_LIST))
    quantizer: Any = faiss.IndexFlatIP(dim)
    ivf: Any = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = min(len(vectors), lists * IVF_TRAIN_PER_LIST)
    picks = np.random.default_rng(0).choice(len(vectors), size=sample, replace=False)
    ivf.train(np.ascontiguousarray(vectors[np.sort(picks)], dtype=np.float32))
    ivf.set_direct_map_type(_FAISS.DirectMap.Hashtable)
    ivf.nprobe = _probes(lists)
    ivf.own_fields = True
    quantizer.this.disown()
    return ivf


def generation_path(folder: Path, generation: int, space: int = 0) -> Path:
    """The file of a generation's `space`-th vector space (0: the first, named in meta)."""
    suffix = f".{space}" if space else ""
    return folder / f"vectors-{generation:08d}{suffix}.faiss"


def kept_generations(current: int) -> set[int]:
    """The committed generation and the one before it: a power loss can undo the last
    SQLite commit, and its rows must then still find their vectors."""
    return {current, current - 1}


def stale_generation_files(folder: Path, keep: set[int]) -> list[Path]:
    """Files of other generations (left by a crash or superseded), safe to delete under lock."""
    if not folder.is_dir():
        return []
    stale = []
    for path in folder.iterdir():
        match = _GENERATION_FILE.match(path.name)
        if (match and int(match.group(1)) not in keep) or path.name.endswith(".faiss.tmp"):
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
