"""Retriever.search(query, k, filters) -> ranked Hits (dense recall through FAISS)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kbqa.domain import Hit
from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex
from kbqa.ingest.store import Store
from kbqa.retrieval.dense import dense_search
from kbqa.retrieval.filters import matches, validate_filters

OVERFETCH_WITH_FILTERS = 10


class Retriever:
    """Ranks chunks for a query; the index comes from a callable so it is always current."""

    def __init__(self, store: Store, embedder: Embedder,
                 index: Callable[[], VectorIndex]) -> None:
        self._store = store
        self._embedder = embedder
        self._index = index

    def search(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None
               ) -> list[Hit]:
        wanted = validate_filters(filters)
        if not query.strip() or k <= 0:
            return []
        fetch = k * OVERFETCH_WITH_FILTERS if wanted else k
        scored = dense_search(query, self._embedder, self._index(), fetch)
        chunks = self._store.chunks_by_id(i for i, _ in scored)
        hits = [Hit(chunks[i], s) for i, s in scored if i in chunks]
        if wanted:
            hits = [h for h in hits if matches(h.chunk, wanted)]
        return hits[:k]
