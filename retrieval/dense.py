"""Query embedding -> FAISS top-k (ids and cosine scores)."""

from __future__ import annotations

from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex


def dense_search(query: str, embedder: Embedder, index: VectorIndex, k: int
                 ) -> list[tuple[int, float]]:
    vector = embedder.encode([query])[0]
    return index.search(vector, k)
