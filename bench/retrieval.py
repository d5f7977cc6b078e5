"""make bench-retrieval: retrieval quality (BM25, dense, hybrid) and search latency.

Data (public, read from ../shared/data, never copied into the project):
- BEIR SciFact (scifact/corpus.jsonl, queries.jsonl, qrels/test.tsv; CC BY-NC 2.0): one .txt
  file per abstract, ingested through the real ingest path with default settings;
  nDCG@10 and Recall@100 over the 300 test queries, chunk hits rolled up to documents
  (a document ranks where its best chunk does).
- CMRC 2018 trial (cmrc2018-trial.json; CC BY-SA 4.0): each context one .txt file, each
  question a query; Recall@1 and @5 of the context that holds the question.
- Latency: search p50/p95 per query, without and with the query's embedding, on SciFact
  and on a synthetic 200,000-chunk index (sentences of SciFact re-mixed into new chunks;
  vectors are SciFact chunk vectors, each copied with noise, so they cluster like real
  ones), for exact and IVF vector search; and IVF against exact search alone at several
  sizes, with IVF's recall of the exact top 10 for the real SciFact queries.

Usage: python bench/retrieval.py [--keep DIR] [--only PART ...] [--synthetic N]
  --keep DIR   keep the ingested knowledge bases in DIR and reuse them on the next run.
  --only PART  run some of: scifact cmrc synthetic (default: all; synthetic needs
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
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kbqa  # noqa: F401  (switches every library offline first)
from kbqa.domain import ChunkDraft
from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex, generation_path
from kbqa.kb import KnowledgeBase, open_kb
from speed import table

from ingest import SHARED, write_corpus

SCIFACT = SHARED / "scifact"
CMRC = SHARED / "cmrc2018-trial.json"
MODES = ("lexical", "dense", "hybrid")
PARTS = ("scifact", "cmrc", "synthetic")
LABEL = {"lexical": "BM25 (FTS5)", "dense": "dense", "hybrid": "hybrid (default)"}


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


def ingest_folder(home: Path, write: Callable[[Path], int], label: str
                  ) -> tuple[KnowledgeBase, TimedEmbedder, int]:
    """Writes the corpus once (reused under --keep), ingests it, and says what it holds;
    returns the knowledge base, its timed embedder and its chunk count."""
    folder = home / "files"
    if not folder.is_dir():
        folder.mkdir()
        write(folder)
    kb = open_kb(home / "kb")
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
    """Document names (file stems) in the order of their best chunk."""
    retriever = kb.retriever()
    if options:
        from dataclasses import replace
        retriever.options = replace(retriever.options, **options)
    hits = retriever.search(query, k, mode=mode)
    return list(dict.fromkeys(Path(h.chunk.source).stem for h in hits))


def ndcg_at_10(ranked: Sequence[str], relevant: dict[str, int]) -> float:
    gain = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return gain / best if best else 0.0


def scifact_queries() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    queries = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            queries[item["_id"]] = item["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (SCIFACT / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
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


def bench_scifact(keep: Path | None) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Quality rows; also the chunk vectors and the query vectors, for the synthetic part."""
    queries, qrels = scifact_queries()
    rows = []
    with knowledge_base(keep, "scifact") as home:
        kb, timed, chunks = ingest_folder(home, lambda folder: write_corpus(folder, None),
                                          "SciFact")
        for mode in MODES:
            ndcg, recall = [], []
            for qid, relevant in qrels.items():
                top = ranked_documents(kb, queries[qid], 40, mode)
                deep = ranked_documents(kb, queries[qid], 400, mode, fusion_depth=400)
                ndcg.append(ndcg_at_10(top, relevant))
                found = set(deep[:100]) & set(relevant)
                recall.append(len(found) / len(relevant))
            rows.append([LABEL[mode], f"{statistics.mean(ndcg):.3f}",
                         f"{statistics.mean(recall):.3f}"])
            print(f"  {mode}: nDCG@10 {rows[-1][1]}  R@100 {rows[-1][2]}", flush=True)
        without, with_embedding = latency(kb, [queries[q] for q in qrels], timed)
        _, vectors = kb.index().all_vectors()
        query_vectors = timed.encode_queries([queries[q] for q in qrels])
        kb.close()
    table("SciFact test (300 queries)", ["retriever", "nDCG@10", "Recall@100"], rows)
    return ([["SciFact", f"{chunks:,}", "exact", *_ms(without), *_ms(with_embedding)]],
            vectors, query_vectors)


def bench_cmrc(keep: Path | None) -> list[list[str]]:
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    contexts: list[str] = []
    questions: list[tuple[str, int]] = []
    for article in data:
        for paragraph in article["paragraphs"]:
            contexts.append(paragraph["context"])
            questions.extend((qa["question"], len(contexts) - 1) for qa in paragraph["qas"])

    def write(folder: Path) -> int:
        for i, text in enumerate(contexts):
            (folder / f"c{i:04d}.txt").write_text(text + "\n", encoding="utf-8")
        return len(contexts)

    rows = []
    with knowledge_base(keep, "cmrc") as home:
        kb, timed, chunks = ingest_folder(home, write, "CMRC")
        for mode in MODES:
            at1 = at5 = 0
            for question, gold in questions:
                ranked = ranked_documents(kb, question, 20, mode)
                name = f"c{gold:04d}"
                at1 += ranked[:1] == [name]
                at5 += name in ranked[:5]
            rows.append([LABEL[mode], f"{at1 / len(questions):.3f}",
                         f"{at5 / len(questions):.3f}"])
            print(f"  {mode}: R@1 {rows[-1][1]}  R@5 {rows[-1][2]}", flush=True)
        without, with_embedding = latency(kb, [q for q, _ in questions[:300]], timed)
        kb.close()
    table(f"CMRC 2018 trial ({len(questions)} questions, {len(contexts)} contexts)",
              ["retriever", "Recall@1", "Recall@5"], rows)
    return [["CMRC", f"{chunks:,}", "exact", *_ms(without), *_ms(with_embedding)]]


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
            kb._index, kb._generation = index, kb._current_generation()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="keep (and reuse) knowledge bases here")
    parser.add_argument("--synthetic", type=int, default=200_000, help="chunks (200000)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="parts to run (default: all)")
    args = parser.parse_args()
    if not SCIFACT.is_dir() or not CMRC.is_file():
        raise SystemExit(f"benchmark data missing under {SHARED}")
    latency_rows: list[list[str]] = []
    if "scifact" in args.only or "synthetic" in args.only:
        rows, vectors, query_vectors = bench_scifact(args.keep)
        latency_rows += rows
    if "cmrc" in args.only:
        latency_rows += bench_cmrc(args.keep)
    if "synthetic" in args.only:
        latency_rows += bench_synthetic(args.synthetic, args.keep, vectors)
        dense_scaling(vectors, query_vectors, [20_000, 50_000, 100_000, 200_000])
    table("Search latency per query, ms (k=10, hybrid)",
              ["index", "chunks", "vectors", "p50 w/o embedding", "p95 w/o embedding",
               "p50 with embedding", "p95 with embedding"], latency_rows)


if __name__ == "__main__":
    main()
