"""make bench-faithfulness: does the answer check accept right sentences and flag wrong ones?

Data (public, read in place, nothing copied into the project):
- ../shared/data/squad-v1.1-dev.json: SQuAD v1.1 dev (English, CC BY-SA 4.0).
- ../shared/data/cmrc2018-trial.json: CMRC 2018 trial (Chinese, CC BY-SA 4.0).

For a fixed (seeded) sample of questions per language, the question's paragraph is source
[1] and another paragraph source [2] (of the same article in SQuAD; in CMRC, whose
articles are one paragraph each, of another article), as the answer step would give them.
A scripted "model" then answers, citing [1], with:
- verbatim: the paragraph's sentence that holds the gold answer (must be accepted);
- paraphrase: that sentence rephrased by simple templates: a lead-in ("According to the
  source, ..."), the clause that holds the answer, a leading phrase moved to the end,
  common synonyms, another number or date format (must be accepted);
- bare: the gold answer alone (must be accepted);
- swap-article: the gold replaced by the answer to another question of the same article,
  from another paragraph (CMRC: of another article), whose paragraph is then source [2];
- swap-paragraph: ... by the answer to another question of the same paragraph;
- digits: a number of the sentence with a digit changed;
- negation: a negation inserted ("not", "never", 不, 没有, 并非);
- bare-wrong: another answer of the same paragraph alone (the second reader's case).
Every wrong kind must be flagged. Prints accepted and flagged shares per kind and language,
and the check's time per answer (rules, and the second reader's calls when it is on).

Questions are split in two halves by a seeded draw: `--half dev` is where thresholds are
set (`--calibrate` prints the reader's accept/flag shares per P(yes) threshold on it),
`--half test` (the default) is what the figures report.

Usage: python bench/faithfulness.py [--per-language 300] [--half test|dev|all]
       [--reader on|off] [--calibrate] [--out items.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kbqa.domain import Chunk, Hit, Source
from kbqa.ingest.embed import make_embedder
from kbqa.llm.citations import (
    ClaimChecker,
    check_citations,
    embedding_similarity,
    strip_markers,
)
from kbqa.llm.facts import FLAGGED
from kbqa.llm.model import LlamaCppGenerator
from kbqa.llm.prompts import prefix
from kbqa.llm.reader import REJECT_BELOW, REJECT_OFF_QUESTION, model_reader
from kbqa.settings import DEFAULT_EMBEDDER, MULTILINGUAL_EMBEDDER, from_env
from kbqa.text import sentences
from speed import table

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = {"en": SHARED / "squad-v1.1-dev.json", "zh": SHARED / "cmrc2018-trial.json"}
SEED = 2026
RIGHT = ("verbatim", "paraphrase", "bare")
WRONG = ("swap-article", "swap-paragraph", "digits", "negation", "bare-wrong")


@dataclass(frozen=True)
class QA:
    lang: str
    article: int
    paragraph: int
    question: str
    gold: str
    start: int
    context: str


@dataclass(frozen=True)
class Item:
    lang: str
    kind: str
    question: str
    answer: str  # as the scripted model writes it, citing [1]
    sources: tuple[str, ...]  # [1], [2]
    key: str  # which question it came from (for the dev/test split)


# -- data --------------------------------------------------------------------------------
def load(lang: str) -> tuple[list[QA], dict[int, list[str]]]:
    data = json.loads(SETS[lang].read_text(encoding="utf-8"))["data"]
    qas: list[QA] = []
    paragraphs: dict[int, list[str]] = {}
    for a, article in enumerate(data):
        paragraphs[a] = [p["context"] for p in article["paragraphs"]]
        for p, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                answers = [x for x in qa["answers"] if x["text"].strip()]
                if answers:
                    first = answers[0]
                    qas.append(QA(lang, a, p, qa["question"].strip(), first["text"].strip(),
                                  int(first["answer_start"]), paragraph["context"]))
    return qas, paragraphs


def gold_sentence(qa: QA) -> tuple[str, int] | None:
    """The sentence of the paragraph that holds the gold span, and where the span starts
    in it."""
    cursor = 0
    for sentence in sentences(qa.context):
        at = qa.context.find(sentence, cursor)
        if at < 0:
            continue
        cursor = at + len(sentence)
        if at <= qa.start < at + len(sentence):
            inner = qa.start - at
            if sentence[inner:inner + len(qa.gold)] == qa.gold:
                return sentence, inner
            found = sentence.find(qa.gold)
            return (sentence, found) if found >= 0 else None
    return None


def normal(text: str) -> str:
    return re.sub(r"\W+", "", text.casefold())


def distinct(a: str, b: str) -> bool:
    """Neither answer contains the other: swapping one for the other changes the fact."""
    x, y = normal(a), normal(b)
    return bool(x and y) and x not in y and y not in x


def is_number(text: str) -> bool:
    return bool(re.search(r"\d", text))


def pick(rng: random.Random, gold: str, others: list[QA]) -> QA | None:
    """Another answer, of the same type (a number for a number) where there is one."""
    pool = [o for o in others if distinct(o.gold, gold)]
    same = [o for o in pool if is_number(o.gold) == is_number(gold)]
    return rng.choice(same or pool) if pool else None


# -- the scripted answers ----------------------------------------------------------------
_SYNONYMS_EN = {
    "began": "started", "started": "began", "begin": "start", "large": "big",
    "largest": "biggest", "purchased": "bought", "bought": "purchased", "built": "constructed",
    "constructed": "built", "received": "got", "approximately": "about", "located": "situated",
    "famous": "well-known", "however": "but", "many": "numerous", "small": "little",
    "created": "made", "established": "founded", "founded": "established", "died": "passed away",
    "help": "assist", "important": "significant", "often": "frequently", "show": "display",
}
_SYNONYMS_ZH = {"因为": "由于", "但是": "但", "以及": "和", "并且": "而且", "已经": "已",
                "目前": "现在", "开始": "起始", "所以": "因此", "非常": "十分", "主要": "首要"}
_MONTHS = ("January February March April May June July August September October November "  # noqa: SIM905
           "December").split()
_AUX_EN = re.compile(r"\b(is|are|was|were|has|have|had|can|could|will|would|should|may|might|"
                     r"must|does|do|did)\b")
_PAST_EN = re.compile(r"\b([a-z]{3,}ed)\b")
_NEG_ZH = [("可以", "不可以"), ("是", "不是"), ("有", "没有"), ("在", "不在"), ("会", "不会"),
           ("能", "不能"), ("被", "没有被")]


def paraphrase(sentence: str, gold: str, start: int, lang: str, rng: random.Random) -> str:
    """The sentence said another way by fixed templates; the gold answer stays in it."""
    text = sentence
    if lang == "zh":
        clauses = re.split(r"(?<=[，；])", text)
        at = 0
        for i, clause in enumerate(clauses):  # keep the clause with the answer (and the one
            if at <= start < at + len(clause):  # before it when it is short)
                keep = clauses[max(0, i - 1):i + 1] if len(clause) < 12 and i else [clause]
                text = "".join(keep).rstrip("，；") + "。"
                break
            at += len(clause)
        for word, other in _SYNONYMS_ZH.items():
            if word in text and word not in gold:
                text = text.replace(word, other)
        text = re.sub(r"\d{1,3}(?:,\d{3})+", lambda m: m.group().replace(",", ""), text)
        return ("根据资料，" + text) if rng.random() < 0.5 else text
    clauses = re.split(r"(?<=[,;])\s+", text)
    if len(clauses) > 1:
        at = 0
        for i, clause in enumerate(clauses):
            if at <= start < at + len(clause) + 1:
                keep = clauses[max(0, i - 1):i + 1] if len(clause.split()) < 5 and i else [clause]
                text = " ".join(keep).rstrip(",;. ") + "."
                break
            at += len(clause) + 1
    lead = re.match(r"^((?:In|On|At|During|After|Before|By|Since)\s[^,]{2,40}),\s+(.+?)\.?$", text)
    if lead and gold not in lead.group(1):
        rest = lead.group(2)
        text = rest[0].upper() + rest[1:] + " " + lead.group(1)[0].lower() + lead.group(1)[1:] + "."

    def synonym(match: re.Match[str]) -> str:
        word = match.group(0)  # lower-case words only: "The Cosby Show" is a name
        other = _SYNONYMS_EN.get(word)
        return word if other is None or word in gold else other

    text = re.sub(r"\b[a-z]+\b", synonym, text)
    text = re.sub(r"\b\d{1,3}(?:,\d{3})+\b", lambda m: m.group().replace(",", ""), text)
    text = re.sub(rf"\b(\d{{1,2}}) ({'|'.join(_MONTHS)}) (\d{{4}})\b", r"\2 \1, \3", text)
    if rng.random() < 0.5:
        text = "According to the source, " + (text[0].lower() + text[1:] if not
                                              re.match(r"[A-Z][a-z]+\s[A-Z]|[A-Z]{2}", text)
                                              and text.split()[0].lower() in
                                              {"the", "a", "an", "it", "he", "she", "they",
                                               "this", "in", "on", "at"} else text)
    return text


def change_digits(sentence: str, gold: str, start: int, rng: random.Random) -> str | None:
    """A digit of the gold answer (else of another number in the sentence) changed."""
    spans = [m.span() for m in re.finditer(r"\d+", sentence)]
    if not spans:
        return None
    inside = [s for s in spans if start <= s[0] < start + len(gold)]
    lo, hi = rng.choice(inside or spans)
    number = sentence[lo:hi]
    position = rng.randrange(len(number))
    digit = int(number[position])
    new = str((digit + rng.randint(1, 8)) % 10)
    if position == 0 and new == "0" and len(number) > 1:
        new = str(digit % 9 + 1)
    return sentence[:lo] + number[:position] + new + number[position + 1:] + sentence[hi:]


def negate(sentence: str, lang: str) -> str:
    if lang == "zh":
        for word, negated in _NEG_ZH:
            at = sentence.find(word)
            if at >= 0 and sentence[max(0, at - 1):at] not in ("不", "没"):
                return sentence[:at] + negated + sentence[at + len(word):]
        return "并非" + sentence
    aux = _AUX_EN.search(sentence)
    if aux:
        return sentence[:aux.end()] + " not" + sentence[aux.end():]
    past = _PAST_EN.search(sentence)
    if past:
        return sentence[:past.start()] + "never " + sentence[past.start():]
    return "It is not true that " + sentence[0].lower() + sentence[1:]


def cite(text: str, lang: str) -> str:
    text = text.strip()
    stop = re.search(r"[.!?。！？]+[”’」』）)]?$", text)
    body, end = (text[:stop.start()], stop.group()) if stop else (text, "。" if lang == "zh"
                                                                   else ".")
    return f"{body}{'' if lang == 'zh' else ' '}[1]{end}"


def items(lang: str, per_language: int, half: str) -> Iterator[Item]:
    qas, paragraphs = load(lang)
    rng = random.Random(f"{SEED}-{lang}")
    sample = rng.sample(qas, min(per_language, len(qas)))
    by_paragraph: dict[tuple[int, int], list[QA]] = defaultdict(list)
    by_article: dict[int, list[QA]] = defaultdict(list)
    for qa in qas:
        by_paragraph[(qa.article, qa.paragraph)].append(qa)
        by_article[qa.article].append(qa)
    for number, qa in enumerate(sample):
        key = f"{lang}-{number}"
        in_dev = random.Random(f"{SEED}-split-{key}").random() < 0.5
        if half != "all" and in_dev != (half == "dev"):
            continue
        found = gold_sentence(qa)
        if found is None:
            continue
        sentence, start = found
        local = random.Random(f"{SEED}-{key}")
        if lang == "en":
            others = [p for i, p in enumerate(paragraphs[qa.article]) if i != qa.paragraph]
        else:
            others = [paragraphs[a][0] for a in paragraphs if a != qa.article]
        distractor = local.choice(others) if others else ""
        sources = (qa.context, distractor)

        def item(kind: str, answer: str, given: tuple[str, ...] = sources,
                 question: str = qa.question, key: str = key) -> Item:
            return Item(lang, kind, question, cite(answer, lang), given, key)

        yield item("verbatim", sentence)
        yield item("paraphrase", paraphrase(sentence, qa.gold, start, lang, local))
        yield item("bare", qa.gold)
        same_paragraph = [o for o in by_paragraph[(qa.article, qa.paragraph)] if o != qa]
        if lang == "en":
            elsewhere = [o for o in by_article[qa.article] if o.paragraph != qa.paragraph]
        else:
            elsewhere = [o for o in qas if o.article != qa.article]
        other = pick(local, qa.gold, elsewhere)
        if other is not None:
            swapped = sentence[:start] + other.gold + sentence[start + len(qa.gold):]
            yield item("swap-article", swapped, (qa.context, other.context))
        other = pick(local, qa.gold, same_paragraph)
        if other is not None:
            swapped = sentence[:start] + other.gold + sentence[start + len(qa.gold):]
            yield item("swap-paragraph", swapped)
            yield item("bare-wrong", other.gold)
        changed = change_digits(sentence, qa.gold, start, local)
        if changed is not None:
            yield item("digits", changed)
        yield item("negation", negate(sentence, lang))


# -- the run -----------------------------------------------------------------------------
def calibration_rows(scores: list[tuple[str, str, float, bool]]) -> list[list[str]]:
    rows = []
    for lang in ("en", "zh"):
        right = [(p, best) for lg, kind, p, best in scores if lg == lang and kind == "bare"]
        wrong = [(p, best) for lg, kind, p, best in scores if lg == lang and kind == "bare-wrong"]
        if not right or not wrong:
            continue
        now = (REJECT_BELOW[lang], REJECT_OFF_QUESTION[lang])
        lows = sorted({round(now[0] + d, 2) for d in (-0.1, -0.05, 0.0, 0.05)} - {1.0})
        for low in lows:
            for high in sorted({low, round(min(low + 0.1, 0.99), 2),
                                round(min(low + 0.15, 0.99), 2), now[1]}):
                if high < low:
                    continue

                def keeps(pair: tuple[float, bool], low: float = low, high: float = high
                          ) -> bool:
                    p, best = pair
                    return p >= (low if best else high)

                mark = " (used)" if (low, high) == now else ""
                rows.append([lang, f"{low:.2f}", f"{high:.2f}{mark}",
                             f"{100 * statistics.fmean(keeps(x) for x in right):.1f}% "
                             f"({len(right)})",
                             f"{100 * statistics.fmean(not keeps(x) for x in wrong):.1f}% "
                             f"({len(wrong)})"])
    return rows

def source(text: str, number: int) -> Source:
    chunk = Chunk(chunk_id=number, source=f"source-{number}.txt", text=text)
    return Source(hits=(Hit(chunk, 1.0),), text=text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=300,
                        help="questions drawn per language (before the dev/test split)")
    parser.add_argument("--half", choices=["test", "dev", "all"], default="test")
    parser.add_argument("--reader", choices=["on", "off"], default="on",
                        help="the second reader (the default chat model) for claims the "
                             "rules cannot decide")
    parser.add_argument("--calibrate", action="store_true",
                        help="ask the reader about every bare answer and print accepted / "
                             "flagged shares per P(yes) threshold (use with --half dev)")
    parser.add_argument("--out", type=Path, help="write one JSON line per item here")
    args = parser.parse_args()
    missing = [str(p) for p in SETS.values() if not p.is_file()]
    if missing:
        print(f"bench-faithfulness: {', '.join(missing)} absent (see ../shared/data)",
              file=sys.stderr)
        return 2
    settings = from_env()
    embedders = {"en": make_embedder(DEFAULT_EMBEDDER, threads=settings.threads),
                 "zh": make_embedder(MULTILINGUAL_EMBEDDER, threads=settings.threads)}
    reader = None
    generator = None
    if args.reader == "on" or args.calibrate:
        generator = LlamaCppGenerator(settings.model_path, n_ctx=settings.n_ctx,
                                      threads=settings.threads,
                                      n_gpu_layers=settings.n_gpu_layers, seed=settings.seed)
        generator.warm(prefix())
        reader = model_reader(generator)
    out = args.out.open("w", encoding="utf-8") if args.out else None
    outcome: dict[tuple[str, str], list[bool]] = defaultdict(list)  # accepted?
    seconds: dict[str, list[float]] = defaultdict(list)
    reader_calls: dict[str, int] = defaultdict(int)
    reader_scores: list[tuple[str, str, float, bool]] = []  # P(yes), on the best place
    for lang in ("en", "zh"):
        similarity = embedding_similarity(embedders[lang].encode)
        for item in items(lang, args.per_language, args.half):
            sources = [source(text, n) for n, text in enumerate(item.sources, start=1) if text]
            started = time.perf_counter()
            checked = check_citations(item.answer, item.question, sources, similarity,
                                      lang=lang, reader=None if args.calibrate else reader)
            seconds[lang].append(time.perf_counter() - started)
            reader_calls[lang] += checked.reader_calls
            accepted = checked.supported and not checked.flags
            outcome[(lang, item.kind)].append(accepted)
            if args.calibrate and item.kind in ("bare", "bare-wrong") and reader is not None:
                plain = strip_markers(item.answer)
                checker = ClaimChecker(item.question, sources, lang, None, None)
                verdict = checker.verdict(plain, 0)
                if verdict.status == FLAGGED:  # the rules already reject it
                    reader_scores.append((lang, item.kind, -1.0, True))
                else:
                    best = checker.relevance(verdict.place) >= checker.best_relevance()
                    reader_scores.append((lang, item.kind, reader(item.question, plain,
                                                                  item.sources[0], lang), best))
            if out:
                out.write(json.dumps({"lang": lang, "kind": item.kind, "q": item.question,
                                      "answer": item.answer, "accepted": accepted,
                                      "text": checked.text,
                                      "flags": [f.reason for f in checked.flags]},
                                     ensure_ascii=False) + "\n")
        print(f"  {lang}: {sum(len(v) for (k, _), v in outcome.items() if k == lang)} items "
              "checked", file=sys.stderr, flush=True)
    rows = []
    for lang in ("en", "zh"):
        for kind in (*RIGHT, *WRONG):
            got = outcome.get((lang, kind), [])
            if not got:
                continue
            share = statistics.fmean(got) if kind in RIGHT else 1 - statistics.fmean(got)
            goal = "accepted >= 95%" if kind in RIGHT else (
                "flagged >= 70%" if kind == "bare-wrong" else "flagged >= 95%")
            rows.append([lang, kind, str(len(got)),
                         f"{100 * share:.1f}% {'accepted' if kind in RIGHT else 'flagged'}", goal])
    table(f"Faithfulness check ({args.half} half; second reader "
          f"{'calibrating' if args.calibrate else args.reader})",
          ["language", "kind", "answers", "result", "goal"], rows)
    speed_rows = []
    for lang in ("en", "zh"):
        if seconds[lang]:
            speed_rows.append([lang, str(len(seconds[lang])),
                               f"{1000 * statistics.median(seconds[lang]):.1f}",
                               f"{1000 * statistics.fmean(seconds[lang]):.1f}",
                               f"{reader_calls[lang] / len(seconds[lang]):.2f}"])
    table("Check time per answer (ms; the reader's model calls included when on)",
          ["language", "answers", "p50 ms", "mean ms", "reader calls per answer"], speed_rows)
    if args.calibrate:
        table("Second reader on bare answers: P(yes) thresholds (reject below; the second "
              "where the answer's sentence is not the one that speaks to the question best)",
              ["language", "threshold", "off-question threshold", "right ones accepted (n)",
               "wrong ones flagged (n)"], calibration_rows(reader_scores))
    print(f"\n{os.cpu_count()} cores, threads {settings.threads}; embedders "
          f"{DEFAULT_EMBEDDER} (en), {MULTILINGUAL_EMBEDDER} (zh); chat model "
          f"{generator.name if generator else '-'}")
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
