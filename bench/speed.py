"""make bench: ingest speed and answer latency on this machine, printed as tables.

Data: ../shared/data/docs/text (public sample documents, see ../shared/data/README.md);
nothing is copied into the project. Run: python bench/speed.py [--docs DIR] [--models ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kbqa
from kbqa.domain import Answer
from kbqa.kb import KnowledgeBase
from kbqa.llm.model import LlamaCppGenerator
from kbqa.llm.packaged import PACKAGED_MODELS
from kbqa.settings import default_data_dir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = ROOT.parent / "shared" / "data" / "docs" / "text"
QUESTIONS = [
    "Where was Iwan Roberts born?",
    "Which club did Iwan Roberts join in 1997?",
    "How many caps did Iwan Roberts win for Wales?",
    "Who was Norwich City's manager when Roberts arrived?",
    "How many goals did Iwan Roberts score for Norwich City?",
]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              + " |")


def bench_ingest(kb: kbqa.KnowledgeBase, docs: Path) -> None:
    started = time.perf_counter()
    report = kb.ingest(docs)
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = kb.ingest(docs)
    second = time.perf_counter() - started
    files = len(report.added) + len(report.updated)
    table(
        f"Ingest of {docs} ({os.cpu_count()} cores, embedder {kb.embedder.name})",
        ["files ingested", "failed", "chunks", "seconds", "chunks/s", "files/s",
         "re-ingest unchanged (s)", "chunks re-embedded"],
        [[str(files), str(len(report.failed)), str(report.chunks_added), f"{first:.1f}",
          f"{report.chunks_added / first:.1f}", f"{files / first:.2f}", f"{second:.2f}",
          str(again.chunks_added)]],
    )


def bench_answers(kb: kbqa.KnowledgeBase, model_key: str, questions: list[str]) -> list[str]:
    path = default_data_dir() / "models" / PACKAGED_MODELS[model_key].file_name
    started = time.perf_counter()
    generator = LlamaCppGenerator(path, n_ctx=kb.settings.n_ctx, threads=kb.settings.threads,
                                  n_gpu_layers=kb.settings.n_gpu_layers)
    load = time.perf_counter() - started
    kb = KnowledgeBase(kb.settings, embedder=kb.embedder, generator=generator)
    kb.search("warm-up", k=1)  # embedder and index loaded before timing
    ttfts, totals, rates, grounded = [], [], [], 0
    for question in questions:
        started = time.perf_counter()
        first = None
        text = ""
        final = None
        for item in kb.ask_stream(question):
            if isinstance(item, Answer):
                final = item
            else:
                first = first or time.perf_counter() - started
                text += item
        total = time.perf_counter() - started
        ttfts.append(first or total)
        totals.append(total)
        if first and total > first:
            rates.append((generator.count_tokens(text) - 1) / (total - first))
        grounded += bool(final and final.grounded)
    return [model_key, path.name, f"{load:.1f}", f"{statistics.median(ttfts):.2f}",
            f"{max(ttfts):.2f}", f"{statistics.median(totals):.2f}",
            f"{statistics.median(rates):.1f}" if rates else "-", f"{grounded}/{len(questions)}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--models", nargs="+", default=["default", "small"],
                        choices=list(PACKAGED_MODELS))
    args = parser.parse_args()
    if not args.docs.is_dir():
        print(f"bench: {args.docs} is absent; pass --docs DIR", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-") as home:
        kb = kbqa.open_kb(home)
        bench_ingest(kb, args.docs)
        rows = [bench_answers(kb, key, QUESTIONS) for key in args.models]
        table(
            f"Answers: {len(QUESTIONS)} questions about norwich-city.txt, streamed "
            f"(n_ctx {kb.settings.n_ctx}, top_k {kb.settings.top_k}, "
            f"context budget {kb.settings.context_tokens} tokens)",
            ["model", "file", "load (s)", "TTFT p50 (s)", "TTFT max (s)", "answer p50 (s)",
             "gen tokens/s", "grounded"],
            rows,
        )
        kb.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
