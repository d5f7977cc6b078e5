"""Retriever.search(query, k, filters) -> ranked Hits: BM25 and dense recall, fused by score
(a calibrated lexical share per embedder and query language) or by RRF (a setting)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from kbqa.domain import Hit
from kbqa.errors import SettingError
from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex
from kbqa.ingest.store import Store
from kbqa.retrieval.dense import dense_search
from kbqa.retrieval.filters import allowed_documents, validate_filters
from kbqa.retrieval.fuse import RRF_K, convex_fusion, dedupe, mmr, reciprocal_rank_fusion
from kbqa.retrieval.lexical import (
    TermMatcher,
    coverage,
    idf,
    match_expression,
    query_terms,
    searchable,
    selective_terms,
)
from kbqa.settings import SEARCH_MODES, Settings, calibrated_lexical_share
from kbqa.text import detect_language


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant (a cross-encoder)."""

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class RetrievalOptions:
    """The ranking knobs of Settings (see there for what each does and the defaults)."""

    fusion_depth: int
    dense_weight: float
    lexical_weight: float
    per_document: int
    mmr_lambda: float
    rerank_depth: int
    fusion: str = "score"
    lexical_share: float = 0.0  # 0: the calibrated share of the embedder and query language

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalOptions:
        return cls(fusion_depth=settings.fusion_depth, dense_weight=settings.dense_weight,
                   lexical_weight=settings.lexical_weight, per_document=settings.per_document,
                   mmr_lambda=settings.mmr_lambda, rerank_depth=settings.rerank_depth,
                   fusion=settings.fusion, lexical_share=settings.lexical_share)


@dataclass(frozen=True)
class Candidates:
    """What recall found for a query, before fusion: BM25 scores (of the candidates that
    match a query term) and dense cosines (of every candidate), with the query's language."""

    language: str
    lexical: list[tuple[int, float]] = field(default_factory=list)
    dense: list[tuple[int, float]] = field(default_factory=list)
    lexical_scores: dict[int, float] = field(default_factory=dict)
    cosines: dict[int, float] = field(default_factory=dict)


class Retriever:
    """Ranks chunks for a query; the index comes from a callable so it is always current."""

    def __init__(self, store: Store, embedder: Embedder, index: Callable[[], VectorIndex],
                 options: RetrievalOptions | None = None, matcher: TermMatcher | None = None,
                 reranker: Reranker | None = None) -> None:
        self._store = store
        self._embedder = embedder
        self._index = index
        self.options = options or RetrievalOptions.from_settings(Settings())
        self._matcher = matcher or TermMatcher()
        self._reranker = reranker

    def search(self, query: str, k: int = 10, filters: Mapping[str, Any] | None = None,
               *, mode: str = "hybrid") -> list[Hit]:
        """`mode`: "hybrid" (default), "dense" or "lexical" (for comparisons)."""
        if mode not in SEARCH_MODES:
            raise SettingError(f"search mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
        wanted = validate_filters(filters)
        if not query.strip() or k <= 0:
            return []
        documents = allowed_documents(self._store.documents(), wanted) if wanted else None
        if documents is not None and not documents:
            return []
        depth = max(k, self.options.fusion_depth)
        index = self._index()
        terms, weights, candidates, query_vector = self._recall(query, depth, documents, mode,
                                                                index)
        fused = self.fuse(candidates, mode)
        pool = max(k * 3, self.options.rerank_depth if self._reranker else 0, 20)
        chunks = self._store.chunks_by_id(i for i, _ in fused[:pool])
        ranked = [Hit(chunks[i], score) for i, score in fused[:pool] if i in chunks]
        ranked = dedupe(ranked, key=lambda hit: hit.chunk.text.strip(),
                        group=lambda hit: hit.chunk.document_id,
                        per_group=self.options.per_document)
        if self._reranker is not None:
            ranked = rerank(query, ranked, self._reranker, self.options.rerank_depth)
        if self.options.mmr_lambda > 0 and len(ranked) > k:
            vectors = index.vectors([h.chunk.chunk_id for h in ranked])
            relevance = [1.0 / (RRF_K + rank) for rank in range(len(ranked))]
            ranked = [ranked[i] for i in mmr(relevance, vectors, k, self.options.mmr_lambda)]
        return self._scored(query, terms, weights, ranked[:k], dict(candidates.cosines), index,
                            query_vector)

    def candidates(self, query: str, depth: int | None = None) -> Candidates:
        """Both recalls of a query over the whole collection (calibration reads these)."""
        depth = depth or self.options.fusion_depth
        return self._recall(query, depth, None, "hybrid", self._index())[2]

    def _recall(self, query: str, depth: int, documents: list[int] | None, mode: str,
                index: VectorIndex
                ) -> tuple[list[str], dict[str, float], Candidates, np.ndarray | None]:
        """Query terms with their idf, the candidates of BM25 and dense recall, and the
        query vector. For score fusion every candidate gets both scores: the cosine of a
        BM25-only find, the BM25 of a dense-only one."""
        # Terms FTS5 reads no token in (a lone "・") can match nothing: drop them.
        every = query_terms(query)
        pairs = [(t, s) for t, s in zip(every, self._matcher.stems(every), strict=True) if s]
        terms, stems = [t for t, _ in pairs], [s for _, s in pairs]
        counts = self._store.term_chunk_counts(stems)
        total = max(len(index), 1)
        weights = {t: idf(total, counts.get(s, 0)) for t, s in pairs}
        match = match_expression(selective_terms(terms, [counts.get(s, 0) for s in stems]))
        lexical: list[tuple[int, float]] = []
        if mode != "dense":
            lexical = self._store.lexical_search(match, depth, documents)
        dense: list[tuple[int, float]] = []
        query_vector = None
        if mode != "lexical":
            allowed = self._store.chunk_ids_of(documents) if documents is not None else None
            query_vector, dense = dense_search(query, self._embedder, index, depth, allowed)
        scores, cosines = dict(lexical), dict(dense)
        if mode == "hybrid" and self.options.fusion == "score":
            dense_only = [i for i in cosines if i not in scores]
            scores.update(self._store.lexical_scores(match, dense_only))
            lexical_only = [i for i in scores if i not in cosines]
            if query_vector is not None and lexical_only:
                for i, vector in zip(lexical_only, index.vectors(lexical_only), strict=True):
                    cosines[i] = float(vector @ query_vector)
        candidates = Candidates(detect_language(query), lexical, dense, scores, cosines)
        return terms, weights, candidates, query_vector

    def fuse(self, candidates: Candidates, mode: str = "hybrid",
             share: float | None = None) -> list[tuple[int, float]]:
        """The candidates in one order: by score fusion (`share`, else the setting, else the
        calibrated share of this embedder and the query's language) or by weighted RRF."""
        if mode == "lexical":
            return list(candidates.lexical)
        if mode == "dense":
            return list(candidates.dense)
        if self.options.fusion == "rrf":
            return reciprocal_rank_fusion(
                [[i for i, _ in candidates.dense], [i for i, _ in candidates.lexical]],
                weights=[self.options.dense_weight, self.options.lexical_weight])
        if share is None:
            share = self.options.lexical_share or calibrated_lexical_share(
                self._embedder.name, candidates.language)
        return convex_fusion(candidates.lexical_scores, candidates.cosines, share)

    def _scored(self, query: str, terms: list[str], weights: dict[str, float],
                hits: list[Hit], similarity: dict[int, float], index: VectorIndex,
                query_vector: np.ndarray | None) -> list[Hit]:
        """The hits with the absolute signals the answer step judges relevance by: the
        dense cosine (computed for lexical-only finds too) and the idf-weighted share of
        the query's terms found in the chunk."""
        if not hits:
            return []
        missing = [h.chunk.chunk_id for h in hits if h.chunk.chunk_id not in similarity]
        if missing:
            if query_vector is None:
                query_vector = self._embedder.encode_queries([query])[0]
            for chunk_id, vector in zip(missing, index.vectors(missing), strict=True):
                similarity[chunk_id] = float(vector @ query_vector) if vector.any() else 0.0
        present = self._matcher.present(
            terms, {h.chunk.chunk_id: searchable(h.chunk.heading, h.chunk.text) for h in hits})
        return [replace(h, similarity=similarity[h.chunk.chunk_id],
                        coverage=coverage(terms, present[h.chunk.chunk_id], weights))
                for h in hits]


def rerank(query: str, hits: list[Hit], reranker: Reranker, depth: int) -> list[Hit]:
    """The first `depth` hits re-ordered by the cross-encoder; the rest keep their order."""
    head, tail = hits[:depth], hits[depth:]
    if not head:
        return hits
    scores = reranker.score(query, [h.chunk.text for h in head])
    order = sorted(range(len(head)), key=lambda i: -scores[i])
    return [head[i] for i in order] + tail
