"""make bench-retrieval: retrieval quality (BM25, dense, hybrid) and search latency.

Data (public, read from ../shared/data, never copied into the project):
- BEIR SciFact (scifact/corpus.jsonl, queries.jsonl, qrels/test.tsv; CC BY-NC 2.0): one .txt
  file per abstract, ingested through the real ingest path with default settings;
  nDCG@10 and Recall@100 over the 300 test queries, chunk hits rolled up to documents
  (a document ranks where its best chunk does).
- CMRC 2018 trial (cmrc2018-trial.json; CC BY-SA 4.0): each context one .txt file, each
  question a query; Recall@1 and @5 of the context that holds the question.
- Mixed: both corpora in one knowledge base, English files first and Chinese files first
  (the embedder is chosen from the first files), each language's figures.
- Latency: search p50/p95 per query, without and with the query's embedding, on SciFact
  and on a synthetic 200,000-chunk index (sentences of SciFact re-mixed into new chunks;
  vectors are SciFact chunk vectors, each copied with noise, so they cluster like real
  ones), for exact and IVF vector search; and IVF against exact search alone at several
  sizes, with IVF's recall of the exact top 10 for the real SciFact queries.

Usage: python bench/retrieval.py [--keep DIR] [--only PART ...] [--synthetic N] [--calibrate]
  --calibrate  fit BM25's share in score fusion for each packaged embedder and query
               language on dev queries (SciFact train; SQuAD's and CMRC's dev halves of
               the articles), and report it on the held-out ones (SciFact test; the other
               halves). SQuAD v1.1 dev (../shared/data, CC BY-SA 4.0) is read only here.
  --keep DIR   keep the ingested knowledge bases in DIR and reuse them on the next run.
  --only PART  run some of: scifact cmrc synthetic mixed (default: all; synthetic needs
               SciFact's vectors, so it runs scifact too).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kbqa  # noqa: F401  (switches every library offline first)
from kbqa.domain import ChunkDraft
from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex, generation_path
from kbqa.ingest.vectors import IngestState
from kbqa.kb import KnowledgeBase, open_kb
from kbqa.retrieval.retriever import Retriever
from kbqa.settings import DEFAULT_EMBEDDER, MULTILINGUAL_EMBEDDER
from speed import table

from ingest import SHARED, write_corpus

SCIFACT = SHARED / "scifact"
CMRC = SHARED / "cmrc2018-trial.json"
MODES = ("lexical", "dense", "rrf", "hybrid")
PARTS = ("scifact", "cmrc", "synthetic", "mixed")
LABEL = {"lexical": "BM25 (FTS5)", "dense": "dense", "rrf": "hybrid, RRF (before)",
         "hybrid": "hybrid, score fusion (default)"}
# CMRC articles are split in two by this seed: --calibrate fits on "dev", reports on "test".
CMRC_SPLIT_SEED = 13


class TimedEmbedder:
    """Wraps the real embedder to time query embedding apart from the rest of search."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.last = 0.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.encode_queries(texts)
        finally:
            self.last += time.perf_counter() - started

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens_batch(texts)


@contextmanager
def knowledge_base(keep: Path | None, name: str) -> Iterator[Path]:
    if keep is not None:
        home = keep / name
        home.mkdir(parents=True, exist_ok=True)
        yield home
        return
    with tempfile.TemporaryDirectory(prefix=f"kbqa-bench-{name}-") as tmp:
        yield Path(tmp)


def timed_embedder(kb: KnowledgeBase) -> TimedEmbedder:
    """Puts a TimedEmbedder in front of the knowledge base's embedder."""
    timed = TimedEmbedder(kb.embedder)
    kb._embedder = timed
    return timed


def ingest_folder(home: Path, write: Callable[[Path], int], label: str, **settings: Any
                  ) -> tuple[KnowledgeBase, TimedEmbedder, int]:
    """Writes the corpus once (reused under --keep), ingests it, and says what it holds;
    returns the knowledge base, its timed embedder and its chunk count."""
    folder = home / "files"
    if not folder.is_dir():
        folder.mkdir()
        write(folder)
    kb = open_kb(home / "kb", **settings)
    started = time.perf_counter()
    report = kb.ingest(folder, progress=True)
    seconds = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"ingest failed for {len(report.failed)} files: {report.failed[:3]}")
    timed = timed_embedder(kb)
    documents, chunks = kb.store.counts()
    print(f"{label}: {documents} documents, {chunks} chunks, embedder {timed.name}, "
          f"ingest {seconds:.0f} s", flush=True)
    return kb, timed, chunks


def ranked_documents(kb: KnowledgeBase, query: str, k: int, mode: str, **options: Any
                     ) -> list[str]:
    """Document names (file stems) in the order of their best chunk; mode "rrf" is hybrid
    search with reciprocal-rank fusion."""
    retriever = kb.retriever()
    if mode == "rrf":
        mode, options = "hybrid", {**options, "fusion": "rrf"}
    if options:
        retriever.options = replace(retriever.options, **options)
    hits = retriever.search(query, k, mode=mode)
    return list(dict.fromkeys(Path(h.chunk.source).stem for h in hits))


def ndcg_at_10(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    gain = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return gain / best if best else 0.0


def scifact_queries(split: str = "test") -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Query texts, and the relevant abstracts of each query of `split` (test or train)."""
    queries = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            queries[item["_id"]] = item["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (SCIFACT / "qrels" / f"{split}.tsv").open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            query, doc, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels.setdefault(query, {})[doc] = int(score)
    return queries, qrels


def latency(kb: KnowledgeBase, queries: Sequence[str], timed: TimedEmbedder
            ) -> tuple[list[float], list[float]]:
    """Per-query search time in ms: without, and with, the query's embedding."""
    without, with_embedding = [], []
    retriever = kb.retriever()
    retriever.search(queries[0], 10)  # warm caches and the embedder
    for query in queries:
        timed.last = 0.0
        started = time.perf_counter()
        retriever.search(query, 10)
        total = time.perf_counter() - started
        with_embedding.append(total * 1000)
        without.append((total - timed.last) * 1000)
    return without, with_embedding


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def scifact_quality(kb: KnowledgeBase, mode: str, deep: bool = True) -> list[str]:
    """Mean nDCG@10 and (unless not `deep`) Recall@100 of the 300 SciFact test queries."""
    queries, qrels = scifact_queries()
    ndcg, recall = [], []
    for qid, relevant in qrels.items():
        ndcg.append(ndcg_at_10(ranked_documents(kb, queries[qid], 40, mode), relevant))
        if deep:
            found = ranked_documents(kb, queries[qid], 400, mode, fusion_depth=400)[:100]
            recall.append(len(set(found) & set(relevant)) / len(relevant))
    return [f"{statistics.mean(ndcg):.3f}", f"{statistics.mean(recall):.3f}" if deep else "-"]


def cmrc_quality(kb: KnowledgeBase, mode: str) -> list[str]:
    """Recall@1 and @5 of every CMRC question, then of the test half's."""
    _, questions = cmrc_questions()
    hits: dict[str, list[tuple[bool, bool]]] = {"all": [], "test": []}
    for question, gold, part in questions:
        ranked = ranked_documents(kb, question, 20, mode)
        name = f"c{gold:04d}"
        result = (ranked[:1] == [name], name in ranked[:5])
        hits["all"].append(result)
        if part == "test":
            hits["test"].append(result)
    return [f"{statistics.mean(r[k] for r in hits[group]):.3f}"
            for group in ("all", "test") for k in (0, 1)]


def bench_scifact(keep: Path | None) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Quality rows; also the chunk vectors and the query vectors, for the synthetic part."""
    queries, qrels = scifact_queries()
    rows = []
    with knowledge_base(keep, "scifact") as home:
        kb, timed, chunks = ingest_folder(home, lambda folder: write_corpus(folder, None),
                                          "SciFact")
        for mode in MODES:
            rows.append([LABEL[mode], *scifact_quality(kb, mode)])
            print(f"  {mode}: nDCG@10 {rows[-1][1]}  R@100 {rows[-1][2]}", flush=True)
        without, with_embedding = latency(kb, [queries[q] for q in qrels], timed)
        _, vectors = kb.index().all_vectors()
        query_vectors = timed.encode_queries([queries[q] for q in qrels])
        kb.close()
    table("SciFact test (300 queries)", ["retriever", "nDCG@10", "Recall@100"], rows)
    return ([["SciFact", f"{chunks:,}", "exact", *_ms(without), *_ms(with_embedding)]],
            vectors, query_vectors)


def cmrc_questions() -> tuple[list[str], list[tuple[str, int, str]]]:
    """Contexts, and (question, its context's number, "dev" or "test") by a seeded split of
    the articles (a whole article on one side)."""
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    rng = random.Random(CMRC_SPLIT_SEED)
    contexts: list[str] = []
    questions: list[tuple[str, int, str]] = []
    for article in data:
        part = "dev" if rng.random() < 0.5 else "test"
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            questions.extend((qa["question"], len(contexts) - 1, part)
                             for qa in paragraph["qas"])
    return contexts, questions


def write_cmrc(folder: Path) -> int:
    contexts, _ = cmrc_questions()
    for i, text in enumerate(contexts):
        (folder / f"c{i:04d}.txt").write_text(text + "\n", encoding="utf-8")
    return len(contexts)


def bench_cmrc(keep: Path | None) -> list[list[str]]:
    contexts, questions = cmrc_questions()
    test_count = sum(part == "test" for _, _, part in questions)
    rows = []
    with knowledge_base(keep, "cmrc") as home:
        kb, timed, chunks = ingest_folder(home, write_cmrc, "CMRC")
        for mode in MODES:
            rows.append([LABEL[mode], *cmrc_quality(kb, mode)])
            print(f"  {mode}: R@1 {rows[-1][1]}  R@5 {rows[-1][2]}", flush=True)
        without, with_embedding = latency(kb, [q for q, _, _ in questions[:300]], timed)
        kb.close()
    table(f"CMRC 2018 trial ({len(questions)} questions, {len(contexts)} contexts; the test "
          f"half: {test_count} questions of the articles --calibrate does not fit on)",
          ["retriever", "Recall@1", "Recall@5", "test half R@1", "test half R@5"], rows)
    return [["CMRC", f"{chunks:,}", "exact", *_ms(without), *_ms(with_embedding)]]


def bench_mixed(keep: Path | None) -> None:
    """SciFact's abstracts and CMRC's passages in one knowledge base, English files first
    and Chinese files first: each language's figures beside its own knowledge base's."""
    rows = []
    for first, second in (("en", "zh"), ("zh", "en")):
        def write(folder: Path, order: tuple[str, str] = (first, second)) -> int:
            for rank, language in enumerate(order, start=1):
                part = folder / f"{rank}-{language}"
                part.mkdir()
                if language == "en":
                    write_corpus(part, None)
                else:
                    write_cmrc(part)
            return 0

        with knowledge_base(keep, f"mixed-{first}-first") as home:
            kb, _, _ = ingest_folder(home, write, f"mixed, {first} files first")
            for mode in ("lexical", "dense", "hybrid"):
                rows.append([f"{first} files first", kb.stats().embedder, LABEL[mode],
                             scifact_quality(kb, mode, deep=False)[0],
                             *cmrc_quality(kb, mode)[:2]])
                print(f"  {rows[-1]}", flush=True)
            kb.close()
    table("One knowledge base with SciFact (5,183 English abstracts) and CMRC 2018 trial (256 "
          "Chinese passages): SciFact test nDCG@10, CMRC Recall@1 / @5",
          ["file order", "embedder", "retriever", "SciFact nDCG@10", "CMRC R@1", "CMRC R@5"],
          rows)


def _ms(values: Sequence[float]) -> list[str]:
    return [f"{percentile(values, 0.5):.1f}", f"{percentile(values, 0.95):.1f}"]


def synthetic_texts(count: int, seed: int = 7) -> Iterator[str]:
    """Chunks of 6-10 SciFact sentences drawn at random: real term statistics, new texts."""
    sentences: list[str] = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"]
            sentences.extend(s.strip() + "." for s in text.split(". ") if len(s) > 20)
    rng = random.Random(seed)
    for _ in range(count):
        yield " ".join(rng.choice(sentences) for _ in range(rng.randint(6, 10)))


def noisy_copies(base: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` unit vectors, each a base vector plus noise (cosine ~0.9 to its original)."""
    rng = np.random.default_rng(seed)
    picks = base[rng.integers(0, len(base), count)]
    noise = rng.standard_normal(picks.shape).astype(np.float32) * (0.45 / math.sqrt(base.shape[1]))
    out = picks + noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def bench_synthetic(size: int, keep: Path | None, base: np.ndarray) -> list[list[str]]:
    """Search latency at `size` chunks, exact and IVF; the index is built directly (rows,
    FTS5 terms, vectors from `base`) because embedding 200k chunks takes hours here."""
    queries, qrels = scifact_queries()
    texts = [queries[q] for q in qrels]
    rows = []
    with knowledge_base(keep, f"synthetic-{size}") as home:
        kb = open_kb(home / "kb")
        timed = timed_embedder(kb)
        if kb.store.counts()[1] < size:
            build_synthetic(kb, size, base)
        exact = VectorIndex.load(generation_path(kb.vectors_dir, 1))
        for kind, index in (("exact", exact), ("IVF", exact.reshaped(1))):
            kb.vectors.settle(IngestState({kb.embedder.name: index}, kb.vectors.generation(),
                                          kb.vectors), ok=True)  # search this one
            without, with_embedding = latency(kb, texts, timed)
            rows.append([f"synthetic ({index.kind})", f"{size:,}", kind,
                         *_ms(without), *_ms(with_embedding)])
            print(f"  {kind}: p50 {rows[-1][3]} ms without embedding", flush=True)
        kb.close()
    return rows


def build_synthetic(kb: KnowledgeBase, size: int, base: np.ndarray) -> None:
    started = time.perf_counter()
    dim = base.shape[1]
    index = VectorIndex(dim)
    vectors = noisy_copies(base, size, seed=3)
    per_document = 10
    texts = synthetic_texts(size)
    with kb.store.transaction() as session:
        for number in range(0, size, per_document):
            drafts = [ChunkDraft(text=next(texts), ordinal=i, page=None, heading="")
                      for i in range(per_document)]
            ids = kb.store.put_document(
                session, path=f"/synthetic/doc{number // per_document:06d}.txt",
                file=f"/synthetic/doc{number // per_document:06d}.txt",
                sha256=f"{number:064d}", content_sha=f"{number:064d}", size=1, kind="txt",
                pages=None, drafts=drafts)
            index.add(ids, vectors[number:number + len(ids)])
        kb.store.set_meta(session, "index_generation", "1")
        kb.store.set_meta(session, "embedder", kb.embedder.name)
        kb.store.set_meta(session, "embedding_dim", str(dim))
        index.save(generation_path(kb.vectors_dir, 1))
    print(f"synthetic index of {size:,} chunks built in {time.perf_counter() - started:.0f} s",
          flush=True)


def dense_scaling(base: np.ndarray, queries: np.ndarray, sizes: Sequence[int]) -> None:
    """Exact vs IVF vector search alone at several sizes: where the threshold comes from."""
    rows = []
    for size in sizes:
        exact = VectorIndex(base.shape[1])
        exact.add(np.arange(size), noisy_copies(base, size, seed=size))
        approx = exact.reshaped(1)
        timings: dict[str, list[float]] = {"exact": [], "ivf": []}
        overlap = []
        for probe in queries:
            found = {}
            for name, index in (("exact", exact), ("ivf", approx)):
                started = time.perf_counter()
                found[name] = {i for i, _ in index.search(probe, 100)[:10]}
                timings[name].append((time.perf_counter() - started) * 1000)
            overlap.append(len(found["exact"] & found["ivf"]) / 10)
        rows.append([f"{size:,}", approx.kind, f"{statistics.median(timings['exact']):.1f}",
                     f"{statistics.median(timings['ivf']):.1f}",
                     f"{statistics.mean(overlap):.3f}"])
        print(f"  {rows[-1]}", flush=True)
    table(f"Vector search alone, top 100, {len(queries)} SciFact queries ({base.shape[1]} dims; "
          "SciFact chunk vectors copied with noise)",
          ["vectors", "IVF lists", "exact p50 ms", "IVF p50 ms", "IVF recall of exact top 10"],
          rows)


SHARES = tuple(round(0.05 * i, 2) for i in range(1, 20))
SQUAD = SHARED / "squad-v1.1-dev.json"
SQUAD_SPLIT_SEED = 5
Item = tuple[str, str, dict[str, int]]  # "dev" or "test", query, relevant file stems


def squad_items() -> tuple[list[str], list[Item]]:
    """SQuAD v1.1 dev paragraphs (one file each) and the first question of each, split by
    article (seeded) into dev and test."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    rng = random.Random(SQUAD_SPLIT_SEED)
    paragraphs: list[str] = []
    items: list[Item] = []
    for article in data:
        part = "dev" if rng.random() < 0.5 else "test"
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            items.append((part, paragraph["qas"][0]["question"], {f"p{len(paragraphs):05d}": 1}))
    return paragraphs, items


def write_squad(folder: Path) -> int:
    paragraphs, _ = squad_items()
    for n, text in enumerate(paragraphs, start=1):
        (folder / f"p{n:05d}.txt").write_text(text + "\n", encoding="utf-8")
    return len(paragraphs)


class Found:
    """One query set's candidates from one knowledge base, scored for any BM25 share."""

    def __init__(self, kb: KnowledgeBase, items: Sequence[Item]) -> None:
        self.retriever = kb.retriever()
        self.found = [(part, self.retriever.candidates(query), relevant)
                      for part, query, relevant in items]
        ids = {i for _, c, _ in self.found for i in c.cosines} | \
            {i for _, c, _ in self.found for i, _ in c.lexical}
        self.stem = {i: Path(chunk.source).stem for i, chunk in kb.store.chunks_by_id(ids).items()}
        self.rrf = Retriever(kb.store, kb.spaces,
                             replace(self.retriever.options, fusion="rrf"))
        self.counts = f"{sum(p == 'dev' for p, _, _ in items)} / " \
            f"{sum(p == 'test' for p, _, _ in items)}"

    def score(self, part: str, fuse: Callable[[Any], list[tuple[int, float]]]
              ) -> tuple[float, float]:
        """Mean nDCG@10 and Recall@1 of `part`'s queries in the order `fuse` gives."""
        ndcg, first = [], []
        for where, candidates, relevant in self.found:
            if where != part:
                continue
            ranked = list(dict.fromkeys(self.stem[i] for i, _ in fuse(candidates)
                                        if i in self.stem))
            ndcg.append(ndcg_at_10(ranked, relevant))
            first.append(float(bool(ranked) and ranked[0] in relevant))
        return statistics.mean(ndcg), statistics.mean(first)

    def at(self, part: str, share: float) -> float:
        return self.score(part, lambda c: self.retriever.fuse(c, share=share))[0]


def calibrate(keep: Path | None) -> None:
    """BM25's share in score fusion per embedder and query language: the share with the
    best mean nDCG@10 over the dev queries of that language's sets (the mean of the sets'
    means, so no set outweighs another), reported on their held-out queries beside each
    part alone and RRF. English: SciFact (train queries / test queries) and SQuAD v1.1 dev
    (articles split in two); Chinese: CMRC 2018 trial (articles split in two)."""
    queries, train = scifact_queries("train")
    _, test = scifact_queries("test")
    scifact_items = [("dev", queries[q], r) for q, r in train.items()] + \
        [("test", queries[q], r) for q, r in test.items()]
    _, cmrc = cmrc_questions()
    cmrc_items = [(part, q, {f"c{gold:04d}": 1}) for q, gold, part in cmrc]
    sets: list[tuple[str, str, Callable[[Path], int], list[Item]]] = [
        ("SciFact", "en", lambda folder: write_corpus(folder, None), scifact_items),
        ("SQuAD", "en", write_squad, squad_items()[1]),
        ("CMRC", "zh", write_cmrc, cmrc_items)]
    rows = []
    for embedder in (DEFAULT_EMBEDDER, MULTILINGUAL_EMBEDDER):
        by_language: dict[str, list[tuple[str, Found]]] = {}
        for corpus, language, write, items in sets:
            with knowledge_base(keep, f"calibrate-{corpus.lower()}-{embedder}") as home:
                kb, _, _ = ingest_folder(home, write, f"{corpus} ({embedder})",
                                         embedder=embedder)
                by_language.setdefault(language, []).append((corpus, Found(kb, items)))
                kb.close()
        for language, found in by_language.items():
            dev = {share: statistics.mean(f.at("dev", share) for _, f in found)
                   for share in SHARES}
            best = max(SHARES, key=lambda s: (dev[s], -abs(s - 0.5)))
            for corpus, f in found:
                rows.append(calibration_row(embedder, corpus, language, f, best))
                print(f"  {rows[-1]}", flush=True)
    table("Score fusion: BM25's share per embedder and query language, fitted on the dev "
          "queries (mean nDCG@10), reported on the test queries",
          ["embedder", "queries", "dev / test queries", "share", "dev nDCG@10",
           "test nDCG@10", "test BM25", "test dense", "test RRF",
           "test R@1 (BM25, RRF)"], rows)


def calibration_row(embedder: str, corpus: str, language: str, found: Found, share: float
                    ) -> list[str]:
    test, test_r1 = found.score("test", lambda c: found.retriever.fuse(c, share=share))
    lexical, lexical_r1 = found.score("test", lambda c: found.retriever.fuse(c, "lexical"))
    dense, _ = found.score("test", lambda c: found.retriever.fuse(c, "dense"))
    rrf, rrf_r1 = found.score("test", lambda c: found.rrf.fuse(c))
    return [embedder, f"{corpus} ({language})", found.counts, f"{share:.2f}",
            f"{found.at('dev', share):.4f}", f"{test:.4f}", f"{lexical:.4f}", f"{dense:.4f}",
            f"{rrf:.4f}", f"{test_r1:.3f} ({lexical_r1:.3f}, {rrf_r1:.3f})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="keep (and reuse) knowledge bases here")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit BM25's share in score fusion per embedder and language")
    parser.add_argument("--synthetic", type=int, default=200_000, help="chunks (200000)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="parts to run (default: all)")
    args = parser.parse_args()
    if not SCIFACT.is_dir() or not CMRC.is_file():
        raise SystemExit(f"benchmark data missing under {SHARED}")
    if args.calibrate:
        calibrate(args.keep)
        return
    latency_rows: list[list[str]] = []
    if "scifact" in args.only or "synthetic" in args.only:
        rows, vectors, query_vectors = bench_scifact(args.keep)
        latency_rows += rows
    if "cmrc" in args.only:
        latency_rows += bench_cmrc(args.keep)
    if "mixed" in args.only:
        bench_mixed(args.keep)
    if "synthetic" in args.only:
        latency_rows += bench_synthetic(args.synthetic, args.keep, vectors)
        dense_scaling(vectors, query_vectors, [20_000, 50_000, 100_000, 200_000])
    table("Search latency per query, ms (k=10, hybrid)",
              ["index", "chunks", "vectors", "p50 w/o embedding", "p95 w/o embedding",
               "p50 with embedding", "p95 with embedding"], latency_rows)


if __name__ == "__main__":
    main()
