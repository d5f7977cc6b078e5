"""make bench-answer: answer quality, citations, refusals and speed on SQuAD and CMRC 2018.

Data (public, read in place, nothing copied into the project):
- ../shared/data/squad-v1.1-dev.json: SQuAD v1.1 dev, 48 Wikipedia articles (CC BY-SA 4.0).
- ../shared/data/cmrc2018-trial.json: CMRC 2018 trial set, 256 Chinese passages (CC BY-SA 4.0).

For each set, a fixed (seeded) part of the articles is left out of the index; every other
article is ingested as one text file (title, then its paragraphs). Then, for each model:
- a fixed sample of answerable questions (their article is indexed) is asked through
  `KnowledgeBase.ask_stream`, as a user would: exact match, token F1 (SQuAD's normalisation;
  for CMRC, the official character-level LCS F1), "gold answer contained", citation
  precision (share of citations whose chunk holds a gold answer) and false refusals;
- a fixed sample of questions whose article was left out: the share refused;
- speed, on the questions that reached the model: time to first token (from the call to the
  first streamed piece: search, packing and prompt evaluation included), p50/p95, against
  raw llama.cpp evaluating the same prompt tokens (every --floor-every'th call): cold, from
  an empty cache, and warm, with the fixed instructions and examples already cached as kbqa
  has them from its second question on (TTFT/warm floor is kbqa's own overhead); generation
  tokens/s against raw llama.cpp generating as many tokens after that prompt.

Usage: python bench/answer.py [--models default small] [--only squad cmrc]
       [--questions 200] [--left-out 100] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kbqa
import llama_cpp
import numpy as np
from kbqa.domain import Answer, Hit
from kbqa.kb import KnowledgeBase
from kbqa.llm.answer import relevant_hits
from kbqa.llm.citations import flag_marker, strip_markers
from kbqa.llm.model import LlamaCppGenerator, Message
from kbqa.llm.packaged import PACKAGED_MODELS
from kbqa.llm.prompts import prefix
from kbqa.settings import default_data_dir, from_env
from speed import table

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = {"squad": SHARED / "squad-v1.1-dev.json", "cmrc": SHARED / "cmrc2018-trial.json"}
LEFT_OUT_SHARE = {"squad": 6 / 48, "cmrc": 0.12}  # articles held out for refusal questions
SEED = 2026
QUALITY_TITLE = ("Answer quality (SQuAD: token F1; CMRC: character F1; refusals on left-out "
                 "articles)")
QUALITY_HEADER = ["model", "set", "questions", "EM", "F1", "gold contained", "gold in prompt",
                  "citation precision (n)", "false refusals (of which wrong answers "
                  "withheld)", "flagged, shown",
                  "left-out refused (n)"]


# -- scoring (SQuAD v1.1 and CMRC 2018 evaluation rules) -----------------------------------
def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, gold: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


_ZH_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》……·、「」（）－～『』｛｝【】〔〕〈〉"
                "%,.;!?()[]{}\"'")


def cmrc_segments(text: str) -> list[str]:
    """CMRC's mixed segmentation: each CJK character alone, runs of other letters/digits."""
    segments: list[str] = []
    run = ""
    for ch in text.lower():
        if ch in _ZH_PUNCT or ch.isspace() or re.match(r"[\u4e00-\u9fff]", ch):
            if run:
                segments.append(run)
                run = ""
            if re.match(r"[\u4e00-\u9fff]", ch):
                segments.append(ch)
        else:
            run += ch
    if run:
        segments.append(run)
    return segments


def cmrc_f1(prediction: str, gold: str) -> float:
    pred, ref = cmrc_segments(prediction), cmrc_segments(gold)
    if not pred or not ref:
        return 0.0
    longest = 0  # longest common substring, as the official script does
    previous = [0] * (len(ref) + 1)
    for a in pred:
        current = [0] * (len(ref) + 1)
        for j, b in enumerate(ref, start=1):
            if a == b:
                current[j] = previous[j - 1] + 1
                longest = max(longest, current[j])
        previous = current
    if not longest:
        return 0.0
    precision, recall = longest / len(pred), longest / len(ref)
    return 2 * precision * recall / (precision + recall)


def normalize(kind: str, text: str) -> str:
    return squad_normalize(text) if kind == "squad" else "".join(cmrc_segments(text))


def _words(text: str) -> str:
    """SQuAD's normalisation, but any non-word character separates words (an em dash too)."""
    return " ".join(w for w in re.findall(r"\w+", text.lower()) if w not in ("a", "an", "the"))


def holds(kind: str, text: str, golds: Sequence[str]) -> bool:
    """Does the text contain a gold answer (SQuAD: as whole words, "1" is not in "1990")?"""
    if kind == "squad":
        padded = f" {_words(text)} "
        return any(_words(g) and f" {_words(g)} " in padded for g in golds)
    text = normalize(kind, text)
    return any(normalize(kind, g) and normalize(kind, g) in text for g in golds)


def scores(kind: str, prediction: str, golds: Sequence[str]) -> tuple[float, float, bool]:
    """Exact match, F1 and containment, each the best over the gold answers."""
    f1 = squad_f1 if kind == "squad" else cmrc_f1
    pred = normalize(kind, prediction)
    exact = max(float(pred == normalize(kind, g)) for g in golds)
    best = max(f1(prediction, g) for g in golds)
    return exact, best, holds(kind, prediction, golds)


_SOURCE_BODY = re.compile(r"<source [^>]*>\n(.*?)\n</source>", re.DOTALL)


def shown_answer(answer: Answer) -> str:
    """The answer as a user reads it, without markers or the flags' notes (a flagged side
    remark is shown, marked; a refusal predicts nothing)."""
    text = answer.text
    for flag in answer.unsupported:
        for lang in ("en", "zh"):
            text = text.replace(flag_marker(flag.reason, lang), "")
    return strip_markers(text)


# -- data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    text: str
    golds: tuple[str, ...]
    article: str


@dataclass
class Dataset:
    kind: str
    articles: dict[str, str]  # file name -> text, the indexed ones
    answerable: list[Question]
    left_out: list[Question]
    left_out_articles: int
    # questions outside both samples, for --calibrate (so the floor is not fitted to the
    # questions it is then measured on)
    spare_answerable: list[Question] = field(default_factory=list)
    spare_left_out: list[Question] = field(default_factory=list)


def load_dataset(kind: str, questions: int, left_out: int) -> Dataset:
    data = json.loads(SETS[kind].read_text(encoding="utf-8"))["data"]
    rng = random.Random(SEED)
    names = [f"{i:03d}-{re.sub(r'[^0-9A-Za-z]+', '-', a.get('title', ''))[:40]}.txt"
             for i, a in enumerate(data)]
    held = set(rng.sample(range(len(data)), max(1, round(len(data) * LEFT_OUT_SHARE[kind]))))
    articles: dict[str, str] = {}
    inside: list[Question] = []
    outside: list[Question] = []
    for i, article in enumerate(data):
        paragraphs = [p["context"].strip() for p in article["paragraphs"]]
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                golds = tuple(dict.fromkeys(a["text"] for a in qa["answers"] if a["text"]))
                if golds:
                    (outside if i in held else inside).append(
                        Question(qa["question"].strip(), golds, names[i]))
        if i not in held:
            title = article.get("title", "").replace("_", " ")
            articles[names[i]] = f"{title}\n\n" + "\n\n".join(paragraphs)
    asked_in = rng.sample(inside, min(questions, len(inside)))
    asked_out = rng.sample(outside, min(left_out, len(outside)))
    taken = set(asked_in) | set(asked_out)
    spare_in = [q for q in inside if q not in taken]
    spare_out = [q for q in outside if q not in taken]
    return Dataset(kind, articles, asked_in, asked_out, len(held),
                   rng.sample(spare_in, min(400, len(spare_in))), spare_out)


GATE_REFUSES = 0.90  # the relevance floor is the lowest that refuses this share of the fit set


def calibrate(kb: KnowledgeBase, dataset: Dataset) -> list[list[str]]:
    """The relevance floor of the knowledge base's embedder, fitted on questions outside the
    benchmark's samples and reported on the samples. A question is refused before any model
    call when no hit reaches the floor (`relevant_hits`: similarity + coverage). Fit set: the
    spare answerable questions, the spare left-out ones, and each spare answerable question
    again with its own article's hits taken out ("pseudo left-out": CMRC has only a few dozen
    real spare left-out questions; the two refuse alike, see the table). The fitted floor is
    the lowest that refuses GATE_REFUSES of the fit set's left-out questions."""
    def hits(question: Question) -> tuple[list[Hit], list[Hit]]:
        found = kb.search(question.text, k=16)
        live = found[:max(kb.settings.top_k * 2, 8)]
        return live, [h for h in found if Path(h.chunk.source).name != question.article][:8]

    def refused(found: list[Hit], floor: float) -> bool:
        return not relevant_hits(found, lambda h: kb.settings.relevance_floor(
            h.space, h.cross_language) if h.cross_language else floor)

    def share(sets: list[list[Hit]], floor: float) -> float:
        return sum(refused(found, floor) for found in sets) / max(len(sets), 1)

    spare = [hits(q) for q in dataset.spare_answerable]
    fit_in = [live for live, _ in spare]
    pseudo = [without for _, without in spare]
    real = [hits(q)[0] for q in dataset.spare_left_out]
    test_in = [hits(q)[0] for q in dataset.answerable]
    test_out = [hits(q)[0] for q in dataset.left_out]
    now = kb.settings.relevance_floor(kb.embedder.name)
    grid = [round(0.30 + 0.02 * i, 2) for i in range(46)]
    fitted = next((f for f in grid if share(real + pseudo, f) >= GATE_REFUSES), grid[-1])
    rows = []
    for floor in sorted({*(f for f in grid if abs(f - fitted) <= 0.1), now}):
        mark = " (fitted)" * (floor == fitted) + " (current)" * (floor == now)
        rows.append([dataset.kind, kb.embedder.name, f"{floor:.2f}{mark}",
                     f"{100 * share(real, floor):.1f}% ({len(real)})",
                     f"{100 * share(pseudo, floor):.1f}% ({len(pseudo)})",
                     f"{100 * share(fit_in, floor):.1f}% ({len(fit_in)})",
                     f"{100 * share(test_out, floor):.1f}% ({len(test_out)})",
                     f"{100 * share(test_in, floor):.1f}% ({len(test_in)})"])
    return rows


# -- timing --------------------------------------------------------------------------------
@dataclass
class Call:
    """One model call as seen from outside: what it was given and when pieces came."""

    messages: list[Message]
    started: float
    first: float | None = None
    last: float | None = None
    text: str = ""


@dataclass
class Recorder:
    """Wraps the real generator to see each prompt and time its stream (the Generator
    protocol, delegated)."""

    inner: LlamaCppGenerator
    calls: list[Call] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)  # the second reader's calls, seconds

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def n_ctx(self) -> int:
        return self.inner.n_ctx

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        return self.inner.count_prompt(messages)

    def warm(self, messages: Sequence[Message]) -> None:
        self.inner.warm(messages)

    def choice_probabilities(self, messages: Sequence[Message],
                             choices: Sequence[Sequence[str]]) -> list[float]:
        started = time.perf_counter()
        result = self.inner.choice_probabilities(messages, choices)
        self.reads.append(time.perf_counter() - started)
        return result

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int,
                    temperature: float, reply_start: str = "") -> Iterator[str]:
        call = Call(list(messages), time.perf_counter())
        self.calls.append(call)
        for piece in self.inner.stream_chat(messages, max_tokens=max_tokens,
                                            temperature=temperature, reply_start=reply_start):
            now = time.perf_counter()
            call.first = call.first or now
            call.last = now
            call.text += piece
            yield piece


def raw_floor(generator: LlamaCppGenerator, messages: list[Message], n_generate: int
              ) -> tuple[float, float, float]:
    """Raw llama.cpp on the same prompt tokens: (cold, warm, generation) seconds. Cold: the
    whole prompt from an empty cache. Warm: only what follows the fixed instructions and
    examples, with those in the cache, as kbqa has them from its second question on.
    Generation: the n-1 decode steps after the first of `n_generate` greedy tokens."""
    llm = generator._llm  # the bench measures the library under kbqa directly
    tokens = generator.prompt_tokens(messages)
    fixed = generator.prompt_tokens(prefix())
    shared = next((i for i, (a, b) in enumerate(zip(tokens, fixed, strict=False)) if a != b),
                  min(len(tokens), len(fixed)))
    llm.reset()
    llm._ctx.kv_cache_clear()
    started = time.perf_counter()
    llm.eval(tokens[:shared])
    middle = time.perf_counter()
    llm.eval(tokens[shared:])
    ended = time.perf_counter()
    vocab = llama_cpp.llama_vocab_n_tokens(llm._model.vocab)

    def greedy() -> int:  # argmax of the last logits: no sampler state shared with kbqa
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                       shape=(vocab,))
        return int(np.argmax(logits))

    token = greedy()  # the first token comes with the prompt, as kbqa's first piece does
    generating = time.perf_counter()
    for _ in range(n_generate - 1):  # the n-1 steps between kbqa's first and last piece
        if llm.n_tokens >= llm.n_ctx():
            break
        llm.eval([token])
        token = greedy()
    return ended - started, ended - middle, time.perf_counter() - generating


# -- the run -------------------------------------------------------------------------------
def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_model(kb: KnowledgeBase, dataset: Dataset, model_key: str, floor_every: int,
              out: Any) -> tuple[list[str], list[str]]:
    path = default_data_dir() / "models" / PACKAGED_MODELS[model_key].file_name
    s = kb.settings
    recorder = Recorder(LlamaCppGenerator(path, n_ctx=s.n_ctx, threads=s.threads,
                                          n_gpu_layers=s.n_gpu_layers, seed=s.seed))
    kb = KnowledgeBase(s, embedder=kb.embedder, generator=recorder)
    kb.warm_up()  # as the chat does at start: models loaded, fixed prefix evaluated
    chunk_text: dict[int, str] = {}
    ems, f1s, contained, in_prompt, precise, cited, refused_in = [], [], [], [], [], [], 0
    ttfts, floors, warm_floors, ratios, prompt_sizes, totals = [], [], [], [], [], []
    flagged = withheld = 0
    gen_tokens = gen_seconds = raw_tokens = raw_seconds = 0.0
    refused_out = 0
    asked = [(q, True) for q in dataset.answerable] + [(q, False) for q in dataset.left_out]
    for number, (question, answerable) in enumerate(asked, start=1):
        before = len(recorder.calls)
        started = time.perf_counter()
        final: Answer | None = None
        reads_before = len(recorder.reads)
        for item in kb.ask_stream(question.text):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        total = time.perf_counter() - started
        call = recorder.calls[-1] if len(recorder.calls) > before else None
        row: dict[str, Any] = {"set": dataset.kind, "model": model_key, "q": question.text,
                               "gold": question.golds, "answerable": answerable,
                               "answer": final.text, "grounded": final.grounded,
                               "refused": final.refused, "shown": shown_answer(final),
                               "unsupported": [[f.sentence, f.reason] for f in final.unsupported],
                               "model_called": bool(call), "seconds": round(total, 3),
                               "reads": len(recorder.reads) - reads_before}
        if call is not None:
            totals.append(total)
        if call is not None and call.first is not None:
            ttft = call.first - started
            ttfts.append(ttft)
            generated = max(recorder.count_tokens(call.text), 1)
            if call.last and generated > 1:
                gen_tokens += generated - 1
                gen_seconds += call.last - call.first
            prompt = recorder.count_prompt(call.messages)
            prompt_sizes.append(prompt)
            row.update(ttft=round(ttft, 3), prompt_tokens=prompt, raw=call.text)
            if len(ttfts) > 1 and (len(ttfts) % floor_every == 0 or floor_every == 1):
                cold, warm, raw_gen = raw_floor(recorder.inner, call.messages, generated)
                floors.append(cold)
                warm_floors.append(warm)
                ratios.append(ttft / warm)
                if generated > 1:
                    raw_tokens += generated - 1
                    raw_seconds += raw_gen
                row.update(floor=round(cold, 3), warm_floor=round(warm, 3))
        if answerable:
            prediction = "" if final.refused else shown_answer(final)
            flagged += not final.refused and not final.grounded
            exact, f1, contains = scores(dataset.kind, prediction, question.golds)
            ems.append(exact)
            f1s.append(f1)
            contained.append(contains)
            if call is not None:
                bodies = " ".join(_SOURCE_BODY.findall(call.messages[-1]["content"]))
                in_prompt.append(holds(dataset.kind, bodies, question.golds))
                row.update(in_prompt=in_prompt[-1], prompt=call.messages[-1]["content"])
            else:
                in_prompt.append(False)
            refused_in += final.refused
            withheld += final.refused and wrong_answer_withheld(dataset.kind, row)
            missing = [c.chunk_id for c in final.citations if c.chunk_id not in chunk_text]
            for chunk_id, chunk in kb.store.chunks_by_id(missing).items():
                chunk_text[chunk_id] = chunk.text
            for citation in final.citations:
                precise.append(holds(dataset.kind, chunk_text.get(citation.chunk_id, ""),
                                     question.golds))
            row.update(citations=[[c.chunk_id, c.page, c.quote] for c in final.citations],
                       precise=precise[len(precise) - len(final.citations):])
            cited.append(len(final.citations))
            row.update(em=exact, f1=round(f1, 3), contained=contains)
        else:
            refused_out += final.refused
        if out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
        if number % 20 == 0 or number == len(asked):
            print(f"  {dataset.kind}/{model_key}: {number}/{len(asked)} asked; F1 so far "
                  f"{100 * statistics.fmean(f1s or [0]):.1f}", file=sys.stderr, flush=True)
    answered = len(dataset.answerable)
    quality = [
        model_key, dataset.kind, str(answered),
        f"{100 * statistics.fmean(ems):.1f}", f"{100 * statistics.fmean(f1s):.1f}",
        f"{100 * statistics.fmean(contained):.1f}%", f"{100 * statistics.fmean(in_prompt):.1f}%",
        f"{100 * statistics.fmean(precise):.1f}% ({len(precise)})" if precise else "-",
        f"{100 * refused_in / answered:.1f}% ({100 * withheld / answered:.1f}%)",
        f"{100 * flagged / answered:.1f}%",
        f"{100 * refused_out / max(len(dataset.left_out), 1):.1f}% ({len(dataset.left_out)})",
    ]
    gen_rate = gen_tokens / gen_seconds if gen_seconds else 0.0
    raw_rate = raw_tokens / raw_seconds if raw_seconds else 0.0
    speed = [
        model_key, dataset.kind, str(len(ttfts)),
        f"{statistics.median(prompt_sizes):.0f}" if prompt_sizes else "-",
        f"{statistics.median(ttfts):.2f}" if ttfts else "-",
        f"{percentile(ttfts, 0.95):.2f}" if ttfts else "-",
        f"{statistics.median(totals):.2f}" if totals else "-",
        f"{len(recorder.reads) / max(len(totals), 1):.2f}",
        f"{statistics.median(recorder.reads):.2f}" if recorder.reads else "-",
        f"{statistics.median(floors):.2f} ({len(floors)})" if floors else "-",
        f"{statistics.median(warm_floors):.2f}" if warm_floors else "-",
        f"{statistics.median(ratios):.2f}" if ratios else "-",
        f"{gen_rate:.1f}", f"{raw_rate:.1f}",
        f"{gen_rate / raw_rate:.2f}" if raw_rate else "-",
    ]
    return quality, speed


def wrong_answer_withheld(kind: str, row: dict[str, Any]) -> bool:
    """A refusal that cost nothing: the model answered, and its answer held no gold (the
    check withheld a wrong answer rather than a right one)."""
    return bool(row.get("model_called")) and "raw" in row and \
        not holds(kind, strip_markers(row["raw"]), row["gold"])


def refused_of(row: dict[str, Any]) -> bool:
    """A saved row's refusal (runs before flags had reasons: not grounded)."""
    return bool(row.get("refused", not row["grounded"]))


def flagged_share(rows: Sequence[dict[str, Any]]) -> float:
    """Answers shown with a flagged sentence (not refused, not wholly grounded)."""
    return statistics.fmean(not refused_of(r) and not r["grounded"] for r in rows)


def rescore(results: Path, keep: Path) -> list[list[str]]:
    """The quality table again from a --out file, with the scoring functions as they are now
    (chunk texts read from the --keep knowledge bases)."""
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    table_rows = []
    for model, kind in dict.fromkeys((r["model"], r["set"]) for r in rows):
        mine = [r for r in rows if (r["model"], r["set"]) == (model, kind)]
        asked = [r for r in mine if r["answerable"]]
        left = [r for r in mine if not r["answerable"]]
        kb = kbqa.open_kb(keep / kind / "kb")
        ids = {c[0] for r in asked for c in r.get("citations", [])}
        texts = {i: c.text for i, c in kb.store.chunks_by_id(ids).items()}
        kb.close()
        ems, f1s, contained, in_prompt, precise = [], [], [], [], []
        for r in asked:
            prediction = "" if refused_of(r) else r.get("shown", strip_markers(r["answer"]))
            exact, f1, contains = scores(kind, prediction, r["gold"])
            ems.append(exact)
            f1s.append(f1)
            contained.append(contains)
            bodies = " ".join(_SOURCE_BODY.findall(r.get("prompt", "")))
            in_prompt.append(holds(kind, bodies, r["gold"]))
            precise += [holds(kind, texts.get(c[0], ""), r["gold"])
                        for c in r.get("citations", [])]
        withheld_share = statistics.fmean(refused_of(r) and wrong_answer_withheld(kind, r)
                                          for r in asked)
        table_rows.append([
            model, kind, str(len(asked)), f"{100 * statistics.fmean(ems):.1f}",
            f"{100 * statistics.fmean(f1s):.1f}", f"{100 * statistics.fmean(contained):.1f}%",
            f"{100 * statistics.fmean(in_prompt):.1f}%",
            f"{100 * statistics.fmean(precise):.1f}% ({len(precise)})" if precise else "-",
            f"{100 * statistics.fmean(refused_of(r) for r in asked):.1f}% "
            f"({100 * withheld_share:.1f}%)",
            f"{100 * flagged_share(asked):.1f}%",
            f"{100 * sum(refused_of(r) for r in left) / max(len(left), 1):.1f}% "
            f"({len(left)})"])
    return table_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["default", "small"],
                        choices=list(PACKAGED_MODELS))
    parser.add_argument("--only", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--questions", type=int, default=200, help="answerable, per set")
    parser.add_argument("--left-out", type=int, default=100,
                        help="questions whose article is not indexed, per set")
    parser.add_argument("--floor-every", type=int, default=4,
                        help="measure the raw llama.cpp floor on every Nth model call")
    parser.add_argument("--out", type=Path, help="write one JSON line per question here")
    parser.add_argument("--keep", type=Path,
                        help="keep the documents and knowledge bases here; a later run "
                             "re-uses them (unchanged files are not re-embedded)")
    parser.add_argument("--rescore", type=Path, metavar="RESULTS",
                        help="only print the quality table again from a --out file of an "
                             "earlier run (needs its --keep folder)")
    parser.add_argument("--calibrate", action="store_true",
                        help="no model: print refusal shares per relevance floor, on questions "
                             "outside the benchmark's samples")
    args = parser.parse_args()
    if args.rescore:
        if not args.keep:
            parser.error("--rescore needs the --keep folder of the run")
        table(QUALITY_TITLE, QUALITY_HEADER, rescore(args.rescore, args.keep))
        return 0
    missing = [str(SETS[k]) for k in args.only if not SETS[k].is_file()]
    if missing:
        print(f"bench-answer: {', '.join(missing)} absent (see ../shared/data)", file=sys.stderr)
        return 2
    out = args.out.open("w", encoding="utf-8") if args.out else None
    quality_rows, speed_rows, notes = [], [], []
    for kind in args.only:
        dataset = load_dataset(kind, args.questions, args.left_out)
        with tempfile.TemporaryDirectory(prefix=f"kbqa-bench-{kind}-") as tmp:
            base = args.keep / kind if args.keep else Path(tmp)
            folder = base / "docs"
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in dataset.articles.items():
                (folder / name).write_text(text, encoding="utf-8")
            kb = kbqa.open_kb(base / "kb")
            started = time.perf_counter()
            report = kb.ingest(folder)
            notes.append(f"{kind}: {len(dataset.articles)} articles indexed "
                         f"({report.chunks_added} chunks, embedder {kb.embedder.name}, "
                         f"{time.perf_counter() - started:.0f} s), "
                         f"{dataset.left_out_articles} left out")
            print(notes[-1], file=sys.stderr, flush=True)
            if args.calibrate:
                speed_rows.extend(calibrate(kb, dataset))
                kb.close()
                continue
            for model in args.models:
                quality, speed = run_model(kb, dataset, model, args.floor_every, out)
                quality_rows.append(quality)
                speed_rows.append(speed)
            kb.close()
    settings = from_env()
    notes.append(f"{os.cpu_count()} cores, threads {settings.threads}, n_ctx {settings.n_ctx}, "
                 f"top_k {settings.top_k}, context budget {settings.context_tokens} tokens, "
                 f"answer up to {settings.max_answer_tokens} tokens")
    if args.calibrate:
        table("Relevance floor calibration (refused before any model call; fit on spare "
              "questions, reported on the benchmark's samples)",
              ["set", "embedder", "floor", "fit: left-out refused", "fit: pseudo left-out "
               "refused", "fit: answerable refused", "sample: left-out refused",
               "sample: answerable refused"],
              speed_rows)
        print("\n" + "\n".join(notes))
        return 0
    table(QUALITY_TITLE, QUALITY_HEADER, quality_rows)
    table("Speed (TTFT: from the call to the first streamed piece. Floors: raw llama.cpp "
          "evaluating the same prompt tokens; cold from an empty cache, warm with the fixed "
          "instructions and examples cached, as kbqa has them after its first question)",
          ["model", "set", "model calls", "prompt tokens p50", "TTFT p50 (s)",
           "TTFT p95 (s)", "answer p50 (s)", "reader calls/answer", "reader p50 (s)",
           "cold floor p50 (s) (n)", "warm floor p50 (s)",
           "TTFT/warm floor p50", "gen tok/s", "raw gen tok/s", "gen ratio"],
          speed_rows)
    print("\n" + "\n".join(notes))
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
