"""make bench-cross: questions in one language about passages in the other.

Data (public, read from ../shared/data, never copied into the project): the SQuAD v1.1 dev
paragraphs (CC BY-SA 4.0) and the CMRC 2018 trial contexts (CC BY-SA 4.0), one .txt file
each, in one knowledge base (the automatic embedder: MiniLM for the English passages, the
multilingual model for every passage). Questions: a seeded sample of SQuAD questions
translated into Chinese, and of CMRC questions translated into English, by the packaged
chat model (greedy; cached in data/cache/, as no parallel question set is in the shared
data). Each question's article side (dev or test) follows bench-retrieval's seeded splits.

Printed, per direction: Recall@1 and @5 of the question's paragraph for the translated
question and for the original one (the same knowledge base), by BM25, dense and hybrid;
then the relevance gate for passages in the other language (cosine only: they share no
terms with the question): its floor fitted on the dev half (see GATE_PASSES), and on the
test half the share of answerable questions it lets through and the share it refuses of
the same questions with their own paragraph taken out of the hits.

Usage: python bench/cross.py [--keep DIR] [--questions N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kbqa  # noqa: F401  (switches every library offline first)
from kbqa.domain import Hit
from kbqa.kb import KnowledgeBase
from kbqa.llm.model import LlamaCppGenerator
from kbqa.settings import from_env
from speed import table

from retrieval import (
    LABEL,
    cmrc_questions,
    ingest_folder,
    knowledge_base,
    squad_items,
    write_cmrc,
    write_squad,
)

SEED = 31
# The cosine floor for a passage in the other language: the highest that still lets half of
# the answerable dev questions reach the model (their own paragraph above it). Cross-language
# cosines separate poorly: a floor that refused 90% of unanswerable questions would let only
# 10-30% of answerable ones through; what passes is still checked fact by fact.
GATE_PASSES = 0.50
PROMPTS = {
    "zh": "Translate this English question into Simplified Chinese. Reply with the "
          "translation only.\n\n{text}",
    "en": "Translate this Chinese question into English. Reply with the translation "
          "only.\n\n{text}",
}
Question = tuple[str, str, str, str]  # part, original, translated, paragraph file stem


def translate(texts: list[str], into: str, cache: Path) -> dict[str, str]:
    """Translations by the packaged chat model, cached (greedy, so a re-run agrees)."""
    done: dict[str, str] = json.loads(cache.read_text(encoding="utf-8")) \
        if cache.is_file() else {}
    todo = [t for t in texts if f"{into}:{t}" not in done]
    if todo:
        settings = from_env()
        model = LlamaCppGenerator(settings.model_path, n_ctx=1024, threads=settings.threads)
        for n, text in enumerate(todo, start=1):
            reply = "".join(model.stream_chat(
                [{"role": "user", "content": PROMPTS[into].format(text=text)}],
                max_tokens=96, temperature=0.0))
            done[f"{into}:{text}"] = reply.strip().splitlines()[0].strip() if reply.strip() \
                else text
            if n % 20 == 0 or n == len(todo):
                print(f"  translated {n}/{len(todo)} into {into}", flush=True)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(done, ensure_ascii=False, indent=0),
                                 encoding="utf-8")
    return {t: done[f"{into}:{t}"] for t in texts}


def sample_questions(per_part: int, cache: Path) -> dict[str, list[Question]]:
    """Seeded SQuAD questions (into Chinese) and CMRC questions (into English), per half."""
    rng = random.Random(SEED)
    _, squad = squad_items()
    _, cmrc = cmrc_questions()
    english = [(part, text, next(iter(gold))) for part, text, gold in squad]
    chinese = [(part, text, f"c{gold:04d}") for text, gold, part in cmrc]
    chosen: dict[str, list[Question]] = {}
    for into, pool in (("zh", english), ("en", chinese)):
        picked = [q for part in ("dev", "test")
                  for q in rng.sample([q for q in pool if q[0] == part], per_part)]
        translated = translate([text for _, text, _ in picked], into, cache)
        chosen[into] = [(part, text, translated[text], stem) for part, text, stem in picked]
    return chosen


def ranked_stems(hits: list[Hit]) -> list[str]:
    return list(dict.fromkeys(Path(h.chunk.source).stem for h in hits))


def recall_rows(kb: KnowledgeBase, questions: dict[str, list[Question]]) -> list[list[str]]:
    rows = []
    names = {"zh": "SQuAD question in Chinese -> English paragraph",
             "en": "CMRC question in English -> Chinese paragraph"}
    for into, items in questions.items():
        for mode in ("lexical", "dense", "hybrid"):
            for label, index in (("translated", 2), ("original", 1)):
                first, five = [], []
                for item in items:
                    ranked = ranked_stems(kb.search(item[index], k=10, mode=mode))
                    first.append(ranked[:1] == [item[3]])
                    five.append(item[3] in ranked[:5])
                rows.append([names[into], label, LABEL[mode],
                             f"{statistics.mean(first):.3f}", f"{statistics.mean(five):.3f}"])
                print(f"  {rows[-1]}", flush=True)
    return rows


def gate_rows(kb: KnowledgeBase, questions: dict[str, list[Question]]) -> list[list[str]]:
    """The floor for passages across languages, fitted on the dev half, shown on the test."""
    rows = []
    for into, items in questions.items():
        found: dict[str, list[tuple[list[float], list[float]]]] = {}
        for part, _, text, stem in items:
            hits = [h for h in kb.search(text, k=16) if h.cross_language]
            found.setdefault(part, []).append(
                ([h.similarity for h in hits if Path(h.chunk.source).stem == stem],
                 [h.similarity for h in hits if Path(h.chunk.source).stem != stem][:8]))

        grid = [round(0.10 + 0.01 * i, 2) for i in range(60)]
        fitted = max((f for f in grid if 1 - refused(found["dev"], f, own=True) >= GATE_PASSES),
                     default=grid[0])
        now = from_env().relevance_floor("", cross_language=True)
        for floor in sorted({fitted, now}):
            mark = " (fitted)" * (floor == fitted) + " (current)" * (floor == now)
            rows.append([f"questions in {into}", f"{floor:.2f}{mark}",
                         f"{100 * (1 - refused(found['test'], floor, own=True)):.1f}%",
                         f"{100 * refused(found['test'], floor, own=False):.1f}%",
                         str(len(found["test"]))])
    return rows


def refused(found: list[tuple[list[float], list[float]]], floor: float, own: bool) -> float:
    """Share of questions whose best cosine (of their own paragraph, or of the others) is
    below the floor."""
    return statistics.mean(max(own_s if own else other_s, default=0.0) < floor
                           for own_s, other_s in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the knowledge base here")
    parser.add_argument("--questions", type=int, default=80,
                        help="questions per direction and half (80)")
    args = parser.parse_args()
    cache = from_env().home / "cache" / "cross-translations.json"
    questions = sample_questions(args.questions, cache)

    def write(folder: Path) -> int:
        return write_squad(folder) + write_cmrc(folder)

    with knowledge_base(args.keep, "cross") as home:
        kb, _, _ = ingest_folder(home, write, "SQuAD paragraphs + CMRC contexts")
        recall = recall_rows(kb, questions)
        gate = gate_rows(kb, questions)
        kb.close()
    table("Cross-language retrieval (one knowledge base of SQuAD v1.1 dev paragraphs and "
          "CMRC 2018 trial contexts; machine-translated questions)",
          ["direction", "question", "retriever", "Recall@1", "Recall@5"], recall)
    table("Relevance gate for passages in the other language (cosine alone; test half)",
          ["direction", "floor", "answerable let through", "own paragraph removed: refused",
           "n"], gate)


if __name__ == "__main__":
    main()
