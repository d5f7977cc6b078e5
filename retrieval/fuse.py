"""Pure ranking steps: score fusion, reciprocal-rank fusion, de-duplication, MMR diversity."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# The usual RRF constant (Cormack et al. 2009): damps the head of each list so that one
# list's first place cannot outvote agreement between lists.
RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Example: reciprocal_rank_fusion([[1, 2], [2, 3]])[0][0] == 2 (found by both lists)."""
    weights = weights if weights is not None else [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def convex_fusion(lexical: Mapping[int, float], dense: Mapping[int, float],
                  lexical_share: float | Mapping[int, float]) -> list[tuple[int, float]]:
    """Example: convex_fusion({1: 8.0, 2: 2.0}, {1: 0.2, 2: 0.6}, 0.5)[0][0] == 1.
    Each candidate scores `lexical_share` x its BM25 over the best BM25 of the query, plus
    the rest x its cosine; `dense` holds every candidate, `lexical` those BM25 matched.
    The share is one for all, or per candidate (the share of the space its cosine is from).
    Unlike RRF this keeps how far apart the scores are, so a decisive BM25 match (a rare
    name) is not outvoted by a weak embedder's first place (bench-retrieval --calibrate)."""
    top = max(lexical.values(), default=0.0)
    shares = lexical_share if isinstance(lexical_share, Mapping) else \
        dict.fromkeys(dense, lexical_share)
    scores = {item: (1 - shares[item]) * cosine
              + (shares[item] * lexical.get(item, 0.0) / top if top > 0 else 0.0)
              for item, cosine in dense.items()}
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def dedupe(items: Sequence[T], key: Callable[[T], Hashable],
           group: Callable[[T], Hashable] | None = None, per_group: int = 0) -> list[T]:
    """Keeps the first of items with equal `key` (the same passage stored twice) and, when
    `per_group` > 0, at most that many per `group` (e.g. per document), in order."""
    seen: set[Hashable] = set()
    taken: dict[Hashable, int] = {}
    kept: list[T] = []
    for item in items:
        identity = key(item)
        if identity in seen:
            continue
        if group is not None and per_group > 0:
            owner = group(item)
            if taken.get(owner, 0) >= per_group:
                continue
            taken[owner] = taken.get(owner, 0) + 1
        seen.add(identity)
        kept.append(item)
    return kept


def mmr(relevance: Sequence[float], vectors: np.ndarray, k: int, lambda_: float = 0.7
        ) -> list[int]:
    """Maximal marginal relevance: indexes of `k` items, each chosen for relevance minus
    `1 - lambda_` times its similarity to those already chosen (vectors L2-normalised)."""
    count = len(relevance)
    if count == 0 or k <= 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    similarity = vectors @ vectors.T
    chosen: list[int] = []
    closest = np.full(count, -np.inf)
    for _ in range(min(k, count)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = lambda_ * rel - (1 - lambda_) * penalty
        value[chosen] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        closest = np.maximum(closest, similarity[best])
    return chosen
