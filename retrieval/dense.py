"""Query embedding -> FAISS top-k (ids and cosine scores)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex


def dense_search(query: str, embedder: Embedder, index: VectorIndex, k: int,
                 allowed: Sequence[int] | None = None
                 ) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """The query's vector, and the top-k chunks by cosine (only `allowed` ids if given)."""
    vector = embedder.encode_queries([query])[0]
    return vector, index.search(vector, k, allowed)
