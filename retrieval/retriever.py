"""Retriever.search(query, k, filters) -> ranked Hits: BM25 and dense recall, fused by score
(a calibrated lexical share per embedder and query language) or by RRF (a setting).

Dense recall searches every vector space of the knowledge base (see kbqa.ingest.spaces);
each candidate is then scored by the first space, in the order that suits the query's
language, that holds its vector, with that space's calibrated share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from kbqa.domain import Hit
from kbqa.errors import SettingError
from kbqa.ingest.embed import MULTILINGUAL_NAMES
from kbqa.ingest.spaces import LATIN_SPACE, Space, is_cjk_text, preference
from kbqa.ingest.store import Store
from kbqa.retrieval.dense import dense_search
from kbqa.retrieval.filters import allowed_documents, validate_filters
from kbqa.retrieval.fuse import RRF_K, convex_fusion, dedupe, mmr, reciprocal_rank_fusion
from kbqa.retrieval.lexical import (
    TermMatcher,
    coverage,
    idf,
    query_terms,
    searchable,
    selective_terms,
)
from kbqa.settings import (
    CROSS_LANGUAGE_WEIGHT,
    SEARCH_MODES,
    Settings,
    calibrated_lexical_share,
)
from kbqa.text import detect_language

# BM25 matches scored per query in score fusion; a dense find below them counts as no match
# (its share of the best BM25 is then tiny anyway).
LEXICAL_SCORED = 5000


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
    match a query term) and dense cosines (of every candidate, each from the space in
    `spaces`), with the query's language."""

    language: str
    lexical: list[tuple[int, float]] = field(default_factory=list)
    dense: list[tuple[int, float]] = field(default_factory=list)
    lexical_scores: dict[int, float] = field(default_factory=dict)
    cosines: dict[int, float] = field(default_factory=dict)
    spaces: dict[int, str] = field(default_factory=dict)
    cross: frozenset[int] = frozenset()  # candidates in the other language than the query


class _Scorer:
    """Cosines of one query against chunks, each from the first space in `order` that
    holds the chunk's vector (query vectors made on first need)."""

    def __init__(self, query: str, spaces: Sequence[Space], language: str) -> None:
        self._query = query
        self._spaces = {space.name: space for space in spaces}
        self.order = preference(list(self._spaces), language)
        self.vectors: dict[str, np.ndarray] = {}
        self.found: dict[str, dict[int, float]] = {}  # dense recall's hits per space

    def vector(self, name: str) -> np.ndarray:
        if name not in self.vectors:
            self.vectors[name] = self._spaces[name].embedder.encode_queries([self._query])[0]
        return self.vectors[name]

    def recall(self, depth: int, allowed: Sequence[int] | None) -> None:
        for name, space in self._spaces.items():
            vector, hits = dense_search(self._query, space.embedder, space.index, depth,
                                        allowed)
            self.vectors[name], self.found[name] = vector, dict(hits)

    def score(self, ids: Sequence[int]) -> dict[int, tuple[str, float]]:
        scored: dict[int, tuple[str, float]] = {}
        remaining = list(ids)
        for name in self.order:
            if not remaining:
                break
            known = self.found.get(name, {})
            unknown = [i for i in remaining if i not in known]
            for i in remaining:
                if i in known:
                    scored[i] = (name, known[i])
            if unknown:  # the cosines of chunks dense recall did not bring
                index = self._spaces[name].index
                for i, cosine in index.similarities(self.vector(name), unknown).items():
                    scored[i] = (name, cosine)
            remaining = [i for i in remaining if i not in scored]
        scored.update((i, (self.order[0], 0.0)) for i in remaining)  # held by no space
        return scored

    def first_index(self) -> Any:
        return self._spaces[self.order[0]].index

    def cross_language(self, chosen: Mapping[int, str]) -> frozenset[int]:
        """The chunks in the other script than the query's, told by the MiniLM space (it
        holds exactly the Latin-script chunks when there are two spaces). `chosen`: the
        space that scored each chunk; for a query MiniLM scores first, that says it."""
        latin = self._spaces.get(LATIN_SPACE)
        if latin is None or len(self._spaces) < 2 or not chosen:
            return frozenset()
        if self.order[0] == LATIN_SPACE:  # not scored by MiniLM: it does not hold the chunk
            return frozenset(i for i, name in chosen.items() if name != LATIN_SPACE)
        ids = list(chosen)
        held = latin.index.vectors(ids).any(axis=1)
        return frozenset(i for i, h in zip(ids, held, strict=True) if h)


class Retriever:
    """Ranks chunks for a query; the index comes from a callable so it is always current."""

    def __init__(self, store: Store, spaces: Callable[[], Sequence[Space]],
                 options: RetrievalOptions | None = None, matcher: TermMatcher | None = None,
                 reranker: Reranker | None = None) -> None:
        self._store = store
        self._spaces = spaces
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
        terms, weights, candidates, scorer = self._recall(query, depth, documents, mode)
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
            vectors = scorer.first_index().vectors([h.chunk.chunk_id for h in ranked])
            relevance = [1.0 / (RRF_K + rank) for rank in range(len(ranked))]
            ranked = [ranked[i] for i in mmr(relevance, vectors, k, self.options.mmr_lambda)]
        return self._scored(terms, weights, ranked[:k], candidates, scorer)

    def candidates(self, query: str, depth: int | None = None) -> Candidates:
        """Both recalls of a query over the whole collection (calibration reads these)."""
        depth = depth or self.options.fusion_depth
        return self._recall(query, depth, None, "hybrid")[2]

    def _recall(self, query: str, depth: int, documents: list[int] | None, mode: str
                ) -> tuple[list[str], dict[str, float], Candidates, _Scorer]:
        """Query terms with their idf, the candidates of BM25 and dense recall, and the
        scorer of cosines. For score fusion every candidate gets both scores: the cosine
        of a BM25-only find, the BM25 of a dense-only one."""
        spaces = self._spaces()
        language = detect_language(query)
        scorer = _Scorer(query, spaces, language)
        # Terms FTS5 reads no token in (a lone "・") can match nothing: drop them.
        every = query_terms(query)
        pairs = [(t, s) for t, s in zip(every, self._matcher.stems(every), strict=True) if s]
        terms, stems = [t for t, _ in pairs], [s for _, s in pairs]
        counts = self._store.term_chunk_counts(stems)
        total = max(max(len(space.index) for space in spaces), 1)
        weights = {t: idf(total, counts.get(s, 0)) for t, s in pairs}
        chosen_terms = selective_terms(terms, [counts.get(s, 0) for s in stems])
        stem_of = dict(pairs)
        lexical: list[tuple[int, float]] = []
        exact = mode == "hybrid" and self.options.fusion == "score"
        if mode != "dense":
            # Score fusion needs the BM25 of dense recall's finds too: one query for the
            # best LEXICAL_SCORED matches costs what the top `depth` does (FTS5 scores every
            # match either way), where a second query for those rows cost 4-10x more.
            lexical = self._store.lexical_search(
                chosen_terms, [stem_of[t] for t in chosen_terms],
                max(depth, LEXICAL_SCORED) if exact else depth, documents, counts)
        dense: list[tuple[int, float]] = []
        chosen: dict[int, tuple[str, float]] = {}
        if mode != "lexical":
            allowed = self._store.chunk_ids_of(documents) if documents is not None else None
            scorer.recall(depth, allowed)
            if len(spaces) == 1:
                dense = list(scorer.found[spaces[0].name].items())
                chosen = {i: (spaces[0].name, c) for i, c in dense}
            else:  # one list by each chunk's own cosine
                chosen = scorer.score(list(dict.fromkeys(
                    i for found in scorer.found.values() for i in found)))
                dense = sorted(((i, c) for i, (_, c) in chosen.items()),
                               key=lambda pair: (-pair[1], pair[0]))[:depth]
                chosen = {i: chosen[i] for i, _ in dense}
        scores = dict(lexical)
        lexical = lexical[:depth]
        if exact:
            scores = {i: scores[i] for i in dict.fromkeys([*(i for i, _ in lexical), *chosen])
                      if i in scores}
            chosen.update(scorer.score([i for i in scores if i not in chosen]))
        spaces_of = {i: name for i, (name, _) in chosen.items()}
        candidates = Candidates(language, lexical, dense, scores,
                                {i: c for i, (_, c) in chosen.items()}, spaces_of,
                                scorer.cross_language(spaces_of) if exact
                                else frozenset())
        return terms, weights, candidates, scorer

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
        if share is None and self.options.lexical_share:
            share = self.options.lexical_share
        if share is not None:
            shares = dict.fromkeys(candidates.cosines, share)
        else:
            by_space = {name: calibrated_lexical_share(name, candidates.language)
                        for name in set(candidates.spaces.values())}
            shares = {i: by_space[name] for i, name in candidates.spaces.items()}
        # A passage in the other language can have no BM25 score: its cosine alone, weighted
        # by CROSS_LANGUAGE_WEIGHT, stands for the whole score (bench-cross, dev halves).
        cosines = {i: c * CROSS_LANGUAGE_WEIGHT / (1 - shares[i])
                   if i in candidates.cross and shares[i] < 1 else c
                   for i, c in candidates.cosines.items()}
        return convex_fusion(candidates.lexical_scores, cosines, shares)

    def _scored(self, terms: list[str], weights: dict[str, float], hits: list[Hit],
                candidates: Candidates, scorer: _Scorer) -> list[Hit]:
        """The hits with the absolute signals the answer step judges relevance by: the
        dense cosine (computed for lexical-only finds too) with the space it came from, and
        the idf-weighted share of the query's terms found in the chunk."""
        if not hits:
            return []
        scored = {i: (candidates.spaces[i], c) for i, c in candidates.cosines.items()}
        missing = [h.chunk.chunk_id for h in hits if h.chunk.chunk_id not in scored]
        scored.update(scorer.score(missing))
        present = self._matcher.present(
            terms, {h.chunk.chunk_id: searchable(h.chunk.heading, h.chunk.text) for h in hits})
        chinese = candidates.language == "zh"
        return [replace(h, similarity=scored[h.chunk.chunk_id][1],
                        space=scored[h.chunk.chunk_id][0],
                        coverage=coverage(terms, present[h.chunk.chunk_id], weights),
                        cross_language=scored[h.chunk.chunk_id][0] in MULTILINGUAL_NAMES
                        and is_cjk_text(h.chunk.text) != chinese)
                for h in hits]


def rerank(query: str, hits: list[Hit], reranker: Reranker, depth: int) -> list[Hit]:
    """The first `depth` hits re-ordered by the cross-encoder; the rest keep their order."""
    head, tail = hits[:depth], hits[depth:]
    if not head:
        return hits
    scores = reranker.score(query, [h.chunk.text for h in head])
    order = sorted(range(len(head)), key=lambda i: -scores[i])
    return [head[i] for i in order] + tail
