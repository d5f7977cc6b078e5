"""make bench-ingest: ingest speed against the embedder's own floor, re-ingest time, memory.

Data: the BEIR SciFact corpus (../shared/data/scifact/corpus.jsonl, CC BY-NC 2.0), written
out as one .txt file per abstract (title, blank line, text) in a temporary folder. Then:

1. for each embedder backend (torch, int8 ONNX): a full ingest into a fresh knowledge base,
   timed (files/s, chunks/s, peak RSS); the same chunk texts encoded by the embedder alone,
   in one call: the physical floor of this pipeline (the ratio of the two is the
   pipeline's overhead); a re-ingest of the unchanged folder, timed;
2. SciFact test nDCG@10 of each backend, and across backends (a corpus embedded by one,
   queries by the other): whether their vectors can share a knowledge base;
3. per-format results on ../shared/data/docs (how many ingested, failed and why), in a
   child process, with its peak RSS (the 1,225-page book included).

Usage: python bench/ingest.py [--limit N] [--skip-docs] [--backends torch onnx-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CORPUS = SHARED / "scifact" / "corpus.jsonl"
DOCS = SHARED / "docs"


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples this process's resident memory every second while the ingest runs, to show
    whether memory grows with the corpus or stays flat."""

    def __init__(self) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(current_rss_mib())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, fraction: float) -> float:
        if not self.samples:
            return current_rss_mib()
        return self.samples[min(int(fraction * len(self.samples)), len(self.samples) - 1)]


def write_corpus(folder: Path, limit: int | None) -> int:
    count = 0
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and count >= limit:
                break
            doc = json.loads(line)
            body = f"{doc.get('title', '').strip()}\n\n{doc.get('text', '').strip()}\n"
            (folder / f"{doc['_id']}.txt").write_text(body, encoding="utf-8")
            count += 1
    return count


def scifact(limit: int | None, backends: list[str]) -> None:
    """Ingest speed per embedder backend, then each backend's SciFact nDCG@10, and the
    same with the query embedded by the other backend (are their vectors compatible?)."""
    import kbqa  # noqa: F401  (switches every library offline first)
    from kbqa.kb import KnowledgeBase
    from kbqa.settings import from_env

    with tempfile.TemporaryDirectory(prefix="kbqa-bench-") as tmp:
        folder = Path(tmp) / "scifact"
        folder.mkdir()
        files = write_corpus(folder, limit)
        bases: dict[str, KnowledgeBase] = {}
        for backend in backends:
            started = time.perf_counter()
            kb = KnowledgeBase(from_env(home=Path(tmp) / backend, embedder_backend=backend))
            embedder = kb.embedder
            embedder.encode(["warm-up"])  # model load is not ingest work
            load_s = time.perf_counter() - started
            rows = speed_rows(kb, folder, files)
            print(f"\nSciFact ingest ({files} files, one abstract each; embedder "
                  f"{embedder.name}, backend {backend} ({type(embedder).__name__}, loaded or "
                  f"exported in {load_s:.1f} s), {os.cpu_count()} cores)\n")
            print_rows(rows)
            bases[backend] = kb
        if limit is None:
            quality(bases)
        for kb in bases.values():
            kb.close()


def speed_rows(kb: Any, folder: Path, files: int) -> list[tuple[str, str]]:
    from kbqa.domain import ChunkDraft
    from kbqa.ingest.pipeline import embedding_text

    embedder = kb.embedder
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    with RssSampler() as rss:
        report = kb.ingest(folder)
    ingest_s = time.perf_counter() - started
    rss_ingest = peak_rss_mib()

    started = time.perf_counter()
    again = kb.ingest(folder)
    reingest_s = time.perf_counter() - started

    texts = [embedding_text(ChunkDraft(text=c.text, heading=c.heading))
             for c in kb.store.iter_chunks()]
    started = time.perf_counter()
    embedder.encode(texts)
    floor_s = time.perf_counter() - started
    return [
        ("files", f"{files}"),
        ("chunks", f"{report.chunks_added}"),
        ("failed", f"{len(report.failed)}"),
        ("ingest time", f"{ingest_s:.1f} s"),
        ("files/s", f"{files / ingest_s:.1f}"),
        ("chunks/s", f"{report.chunks_added / ingest_s:.1f}"),
        ("embedder alone (floor)", f"{floor_s:.1f} s ({len(texts) / floor_s:.1f} chunks/s)"),
        ("ratio ingest / floor", f"{ingest_s / floor_s:.3f}   (goal <= 1.15)"),
        ("re-ingest unchanged", f"{reingest_s:.2f} s, {again.chunks_added} chunks embedded"
                                "   (goal < 10 s)"),
        ("peak RSS (models loaded)", f"{rss_before:.0f} MiB"),
        ("peak RSS (after ingest)", f"{rss_ingest:.0f} MiB"),
        ("RSS at 25/50/75/100 % of the run",
         " / ".join(f"{rss.at(f):.0f}" for f in (0.25, 0.5, 0.75, 1.0)) + " MiB"),
    ]


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure'.ljust(width)} | value")
    print(f"|-{'-' * width}-|------")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value}")


def quality(bases: dict[str, Any]) -> None:
    """SciFact test nDCG@10 (dense alone and hybrid) for every pair of (backend that
    embedded the corpus, backend that embeds the query): the diagonal is each backend's
    own quality; off the diagonal says whether one can search the other's vectors."""
    from kbqa.ingest.spaces import Space
    from kbqa.retrieval.retriever import Retriever

    from retrieval import ndcg_at_10, scifact_queries

    queries, qrels = scifact_queries()
    rows = []
    for corpus_backend, kb in bases.items():
        for query_backend, other in bases.items():
            def spaces(kb: Any = kb, other: Any = other) -> list[Space]:
                return [Space(kb.embedder.name, other.embedder, kb.index())]

            retriever = Retriever(kb.store, spaces, kb.retriever().options)
            row = [corpus_backend, query_backend]
            for mode in ("dense", "hybrid"):
                scores = []
                for qid, relevant in qrels.items():
                    hits = retriever.search(queries[qid], 40, mode=mode)
                    ranked = list(dict.fromkeys(Path(h.chunk.source).stem for h in hits))
                    scores.append(ndcg_at_10(ranked, relevant))
                row.append(f"{sum(scores) / len(scores):.4f}")
            rows.append(row)
            print(f"  {row}", flush=True)
    print("\nSciFact test nDCG@10 (300 queries) by the backend that embedded the corpus and "
          "the one that embedded the query\n")
    print("| corpus | query | dense nDCG@10 | hybrid nDCG@10")
    print("|--------|-------|---------------|---------------")
    for row in rows:
        print("| " + " | ".join(row))


def docs_child(home: str) -> None:
    """Runs in a child process: ingest ../shared/data/docs, print per-format JSON."""
    import kbqa  # noqa: F401
    from kbqa.kb import KnowledgeBase
    from kbqa.settings import from_env

    kb = KnowledgeBase(from_env(home=Path(home)))
    started = time.perf_counter()
    report = kb.ingest(DOCS)
    seconds = time.perf_counter() - started
    stored = {d.path: d for d in kb.documents()}
    result = {
        "seconds": seconds, "chunks": report.chunks_added,
        "added": report.added, "failed": [[f.path, f.reason] for f in report.failed],
        "attachments": [p for p in stored if " › " in p],
        "duplicates": report.duplicates,
    }
    print(json.dumps(result))


def docs_table() -> None:
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-docs-") as tmp:
        run = subprocess.run([sys.executable, __file__, "--docs-child", tmp],
                             capture_output=True, text=True, check=True)
        rss = peak_rss_mib(resource.RUSAGE_CHILDREN)
    result = json.loads(run.stdout.strip().splitlines()[-1])

    def suffix(path: str) -> str:
        return Path(path.split(" › ")[0]).suffix.lower() or "(none)"

    on_disk = Counter(suffix(str(p)) for p in DOCS.rglob("*") if p.is_file())
    added = Counter(suffix(p) for p in result["added"])
    failed: dict[str, list[str]] = {}
    for path, reason in result["failed"]:
        if " › " in path:
            continue
        failed.setdefault(suffix(path), []).append(
            f"{Path(path).name}: {re.split(r'[:;(]', reason)[0].strip()}")
    print(f"\n../shared/data/docs: {sum(on_disk.values())} files, {result['chunks']} chunks in "
          f"{result['seconds']:.0f} s; peak RSS {rss:.0f} MiB (the 1,225-page book included); "
          f"{len(result['attachments'])} e-mail attachments stored as documents\n")
    print("| format | files | ingested | failed, and why")
    print("|--------|-------|----------|----------------")
    for fmt, total in sorted(on_disk.items(), key=lambda kv: -kv[1]):
        why = "; ".join(failed.get(fmt, [])) or "-"
        print(f"| {fmt} | {total} | {added.get(fmt, 0)} | {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, help="only the first N abstracts")
    parser.add_argument("--skip-docs", action="store_true", help="no per-format table")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx-int8"],
                        choices=["torch", "onnx-int8"],
                        help="embedder backends to compare (default: both)")
    parser.add_argument("--docs-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.docs_child:
        docs_child(args.docs_child)
        return
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} is missing: the benchmark data lives in ../shared/data")
    scifact(args.limit, args.backends)
    if not args.skip_docs and DOCS.is_dir():
        docs_table()


if __name__ == "__main__":
    main()
