"""Citation checks: parse [n] markers, check every claim against the source it cites,
re-attribute or flag it, and quote the place that states it.

Small local models number their citations unreliably and now and then pick the wrong item
from the right passage, so each clause is checked fact by fact against the place of its
source that it restates (`kbqa.llm.facts`); where rules cannot decide, the second reader
(`kbqa.llm.reader`) is asked. A clause its cited source does not support is attributed to
the source that does, if one does, and flagged with the reason otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from kbqa.domain import GAP, Citation, Flag, Source
from kbqa.llm.facts import (
    FLAGGED,
    NUMBER,
    SUPPORTED,
    UNDECIDED,
    Token,
    Verdict,
    WordSimilarity,
    check_claim,
    claim_tokens,
    pinned_times,
    places,
    stated_in,
    stem,
)
from kbqa.llm.reader import Reader, accepts
from kbqa.retrieval.lexical import query_terms
from kbqa.text import content_terms, is_cjk_text, split_sentences, tokens

MAX_CITATIONS = 4  # = the default top_k: every source given may be cited
MAX_QUOTE_CHARS = 400
ABOUT_QUESTION = 0.5  # share of the question's terms a source cited for "Yes." must hold
# A supported claim whose place holds less than this share of what the place that matches
# the question best holds is true but may not answer the question (another sentence of
# the documents): the second reader decides.
ON_QUESTION = 0.5
UNSUPPORTED_LABEL = {"en": "not supported by the documents", "zh": "文档中没有依据"}
READER_REASON = {
    "en": "the source does not give this as the answer",
    "zh": "来源没有给出这个答案",
}

_MARKER = re.compile(
    r"\[\s*(?:source|sources|资料|来源)?\s*(\d+(?:\s*[,，、;]\s*\d+)*)\s*\]|【\s*(\d+)\s*】",
    re.IGNORECASE,
)

# -- refusals --------------------------------------------------------------------------
# A refusal speaks of the documents (or of not knowing): "The pump cannot find water when
# the filter is clogged" and "No information is kept after 30 days" are answers.
_DOCUMENTS = (r"(?:documents?|sources?|context|texts?|passages?|provided (?:information|"
              r"material)|given (?:information|material)|information (?:provided|given)|"
              r"materials?|excerpts?|articles?)")
_NOT_SAYING = (r"(?:do(?:es)?\s*n[o’']?t|did\s*n[o’']?t|never|fails? to)\s+(?:say|mention|"
               r"contain|provide|include|specify|state|give|indicate|answer|cover|discuss|"
               r"describe|address)")
_NOT_GIVEN = r"(?:not|never) (?:mentioned|provided|specified|stated|found|given|included|covered)"
_REFUSAL = re.compile(
    r"documents don.t say|"
    rf"\b{_DOCUMENTS}\b[^.。]{{0,60}}\b(?:{_NOT_SAYING}|{_NOT_GIVEN}|"
    r"(?:has|have|contains?|includes?|gives?|provides?) no (?:information|mention|answer|"
    r"details?|data))|"
    rf"\b{_NOT_GIVEN}\b[^.。]{{0,60}}\b(?:in|by) the {_DOCUMENTS}|"
    rf"\b(?:there is|there's) no (?:information|mention|answer|data|details?)\b[^.。]{{0,60}}"
    rf"\b(?:in|from) the {_DOCUMENTS}|"
    rf"\bno (?:information|mention|answer|details?)\b[^.。]{{0,40}}\b(?:in|from|by) the "
    rf"{_DOCUMENTS}|"
    r"\b(?:i|we)\s+(?:do not|don.t|cannot|can.t|can not|am unable to|are unable to|could not|"
    r"couldn.t)\s+(?:know|answer|determine|find|tell|say)\b|"
    r"\b(?:cannot|can.t|can not|unable to) (?:be )?(?:answer(?:ed)?|determin(?:e|ed))\b[^.。]"
    rf"{{0,40}}\b(?:from|based on|with|using) the (?:\w+ )?{_DOCUMENTS}|"
    r"^\s*(?:it )?(?:cannot|can.t|can not) be (?:answered|determined)\b|"
    r"^\s*(?:unknown|not known|no answer)\W*$|"
    # Chinese: a not-saying verb with a word for the documents, or 我/无法 + answer.
    r"(?:资料|文档|文件|来源|上下文|文中|原文|文章|材料|提供的信息|给出的信息|所给信息|信息中)"
    r"[^。！？]{0,20}?(?:没有|未|并未|并没有|不)(?:提到|提及|提供|说明|包含|给出|涉及|记载|记录|显示)|"
    r"(?:资料|文档|文件|来源|上下文|文中|原文|文章|材料)[^。！？]{0,12}?(?:没有|无)(?:相关)?"
    r"(?:信息|说明|记载|答案|内容)|"
    r"文档中没有提到|我(?:不知道|无法回答|无法确定|不确定)|^\s*无法(?:回答|确定|判断)|"
    r"(?:根据|从)(?:资料|文档|文件|来源|上下文|文中|原文|材料)[^。！？]{0,10}?无法(?:回答|确定|判断|得知)",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """Does this sentence say the documents do not hold the answer (or that the model does
    not know)? Words like "cannot" or "no information" alone are content.

    Example: is_refusal("The documents don't say.") is True;
             is_refusal("No information is kept after 30 days.") is False
    """
    return bool(_REFUSAL.search(strip_markers(text)[:300]))


def refuses(answer: str) -> bool:
    """Does the answer open with a refusal (a refusal later on is one caveat among facts)?

    Example: refuses("The manual does not mention it, but service is every 450 hours [1].")
    is True; refuses("Every 450 hours [1]. The weight is not mentioned.") is False
    """
    sentences = answer_sentences(answer.strip())
    return bool(sentences) and is_refusal(sentences[0])


# -- markers ---------------------------------------------------------------------------
def parse_markers(text: str) -> list[int]:
    """Source numbers in order of first appearance.

    Example: parse_markers("A [2]. B [1, 2]. C【3】") == [2, 1, 3]
    """
    numbers: list[int] = []
    for match in _MARKER.finditer(text):
        for number in _marker_numbers(match):
            if number not in numbers:
                numbers.append(number)
    return numbers


_NESTED = re.compile(r"\[([\d\s,，、;]*)\[\s*(\d+(?:\s*[,，、;]\s*\d+)*)\s*\]([\d\s,，、;]*)\]")


def flatten_nested_markers(text: str) -> str:
    """A marker written inside another one ("[1 [9]]", "[[1]1]") becomes one marker with
    every number, rather than leaving "[1 ]" behind once the inner one is handled.

    Example: flatten_nested_markers("Bangor [1 [9]].") == "Bangor [1, 9]."
    """
    while True:
        flat = _NESTED.sub(lambda m: "[" + ", ".join(
            re.findall(r"\d+", m.group(1) + " " + m.group(2) + " " + m.group(3))) + "]", text)
        if flat == text:
            return text
        text = flat


def strip_markers(text: str) -> str:
    """Example: strip_markers("Bangor [1].") == "Bangor." """
    text = re.sub(r"[ \t]+([.,;:!?。，；])(?=\s|$)", r"\1", _MARKER.sub("", text))
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def answer_sentences(text: str) -> list[str]:
    """The answer cut into sentences, each keeping the markers written after its full stop.

    Example: answer_sentences("A is 1. [1] B is 2 [2].") == ["A is 1. [1]", "B is 2 [2]."]
    """
    sentences: list[str] = []
    for sentence, _ in split_sentences(text):
        lead = re.match(rf"(?:\s*(?:{_MARKER.pattern}))+", sentence, re.IGNORECASE)
        if lead and sentences:
            sentences[-1] = f"{sentences[-1]} {lead.group(0).strip()}"
            sentence = sentence[lead.end():].strip()
        if sentence:
            sentences.append(sentence)
    return sentences


def flag_marker(reason: str, lang: str) -> str:
    """What is written after a flagged sentence, in the answer's language.

    Example: flag_marker("the source says 1968", "en") ==
             "(not supported by the documents: the source says 1968)"
    """
    label = UNSUPPORTED_LABEL["zh" if lang == "zh" else "en"]
    if lang == "zh":
        return f"（{label}：{reason}）" if reason else f"（{label}）"
    return f"({label}: {reason})" if reason else f"({label})"


def best_quote(passage: str, answer: str, question: str) -> str:
    """The passage sentence that shares most with the answer (then the question); a long one
    is cut to the stretch around the answer's first term found in it.

    Example: best_quote("A cat. Bangor is in Wales.", "Bangor", "Where?") == "Bangor is in Wales."
    """
    sentences = [s for part in passage.split(GAP) for s, _ in split_sentences(part)] or [passage]
    answer_terms = content_terms(strip_markers(answer))
    question_terms = content_terms(question)

    def score(sentence: str) -> tuple[int, int]:
        found = content_terms(sentence)
        return len(found & answer_terms), len(found & question_terms)

    return trim_quote(max(sentences, key=score), answer_terms - question_terms or answer_terms)


def trim_quote(quote: str, terms: set[str]) -> str:
    """A quote longer than MAX_QUOTE_CHARS cut to the stretch around the first of `terms`
    (numbers, then longer words) found in it."""
    if len(quote) <= MAX_QUOTE_CHARS:
        return quote
    lowered = quote.lower()
    ordered = sorted(terms, key=lambda t: (not t.isdigit(), -len(t)))
    found = (re.search(rf"(?<!\w){re.escape(t)}", lowered) for t in ordered)
    at = next((m.start() for m in found if m), 0)
    start = max(0, min(at - MAX_QUOTE_CHARS // 3, len(quote) - MAX_QUOTE_CHARS))
    window = quote[start:start + MAX_QUOTE_CHARS].strip()
    return ("…" if start else "") + window + ("…" if start + MAX_QUOTE_CHARS < len(quote) else "")


# -- the check -------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckedAnswer:
    """The answer with markers renumbered to its citations and flags written in; the
    flagged sentences with their reasons; whether anything was supported; and whether
    the main claim (the first sentence that states something) failed."""

    text: str
    citations: list[Citation]
    flags: list[Flag]
    supported: bool
    main_failed: bool = False
    reader_calls: int = 0


@dataclass(frozen=True)
class _Judged:
    """One clause: the sources that support it, and else why it is flagged."""

    sources: list[int]
    places: dict[int, str]
    flagged: bool
    reason: str = ""


def checkable(sentence: str, question: str) -> bool:
    """Does the sentence state something a source could back (a content term)?

    Example: checkable("It is so.", "What is it?") is False
    """
    return bool(content_terms(strip_markers(sentence))) and not is_refusal(sentence)


class ClaimChecker:
    """Judges clauses against numbered sources: rules first, the reader where they cannot
    decide. Verdicts are computed once per (clause, source)."""

    def __init__(self, question: str, sources: Sequence[Source], lang: str,
                 similarity: WordSimilarity | None, reader: Reader | None) -> None:
        self.question = question
        self.sources = sources
        self.lang = lang
        self.similarity = similarity
        self.reader = reader
        self.reader_calls = 0
        self._asked = {stem(t) for t in query_terms(question)}
        self._best_relevance: float | None = None
        self._pinned_numbers: list[Token] | None = None

    def relevance(self, text: str) -> float:
        """Share of the question's search terms in `text`."""
        if not self._asked:
            return 1.0
        return len(self._asked & {stem(t) for t in tokens(text)}) / len(self._asked)

    def best_relevance(self) -> float:
        """The relevance of the sources' sentence that speaks to the question best."""
        if self._best_relevance is None:
            self._best_relevance = max((self.relevance(place.text) for source in self.sources
                                        for place in places(source.text)), default=0.0)
        return self._best_relevance

    def on_question(self, verdict: Verdict) -> bool:
        """Does the claim's place speak to the question about as well as any place of the
        sources does, and where the question gives a year or date the sources state, next
        to it? (A true sentence about something else answers nothing.)"""
        if self.relevance(verdict.place) < ON_QUESTION * self.best_relevance():
            return False
        context = [t for t in claim_tokens(verdict.context or verdict.place)
                   if t.kind == NUMBER]
        return all(stated_in(n, context) for n in self._pinned())

    def _pinned(self) -> list[Token]:
        """The question's years and dates that some source states."""
        if self._pinned_numbers is None:
            stated = [t for source in self.sources for t in claim_tokens(source.text)
                      if t.kind == NUMBER]
            self._pinned_numbers = pinned_times(self.question, stated)
        return self._pinned_numbers

    def verdict(self, clause: str, index: int) -> Verdict:
        source = self.sources[index]
        topic = f"{Path(source.chunk.source).stem}\n{source.chunk.heading}"
        return _cached_verdict(clause, self.question, source.text, self.lang,
                               self.similarity, topic)

    def read(self, clause: str, verdict: Verdict, index: int) -> bool:
        """The second reader's yes (or, with no reader, the benefit of the doubt); it must
        be surer when the claim's place is not the one that speaks to the question best."""
        if self.reader is None:
            return True
        self.reader_calls += 1
        passage = self.sources[index].text or verdict.place
        p_yes = self.reader(self.question, clause, passage, self.lang)
        return accepts(p_yes, self.lang, self.relevance(verdict.place) >= self.best_relevance())

    def judge(self, clause: str, cited: Sequence[int], main: bool = False) -> _Judged:
        """The cited sources that support the clause; else the one source that does (a
        wrong or missing number); else the reason the cited (or closest) source gives.
        The `main` claim (the answer's first) must also come from a place that speaks to
        the question, or the reader is asked."""
        order = list(dict.fromkeys([*cited, *range(len(self.sources))]))
        verdicts = {i: self.verdict(clause, i) for i in order}
        status = {i: v.status for i, v in verdicts.items()}
        for i, verdict in verdicts.items():  # true, but maybe not what was asked
            if main and verdict.status == SUPPORTED and not self.on_question(verdict):
                status[i] = UNDECIDED
        kept = [i for i in cited if status[i] == SUPPORTED]
        if kept:
            return _Judged(kept, {i: verdicts[i].place for i in kept}, False)
        others = sorted((i for i in order if status[i] == SUPPORTED),
                        key=lambda i: -verdicts[i].score)
        if others:
            return _Judged([others[0]], {others[0]: verdicts[others[0]].place}, False)
        contradicted = any(status[i] == FLAGGED and verdicts[i].contradicts for i in cited)
        open_ = sorted((i for i in order if status[i] == UNDECIDED
                        and (i in cited or self.reader is not None or not contradicted)),
                       key=lambda i: (i not in cited, -verdicts[i].score))
        rejected = ""
        for i in open_[:2]:  # the reader is asked about the likeliest two sources at most
            if self.read(clause, verdicts[i], i):
                return _Judged([i], {i: verdicts[i].place}, False)
            rejected = rejected or READER_REASON["zh" if self.lang == "zh" else "en"]
        flagged = [i for i in order if status[i] == FLAGGED]
        if rejected or not flagged:
            return _Judged([], {}, True, rejected)
        closest = max(flagged, key=lambda i: (i in cited, verdicts[i].score))
        return _Judged([], {}, True, verdicts[closest].reason)


@lru_cache(maxsize=1024)
def _cached_verdict(clause: str, question: str, source: str, lang: str,
                    similarity: WordSimilarity | None, topic: str) -> Verdict:
    return check_claim(clause, question, source, lang, similarity, topic)


def check_citations(answer: str, question: str, sources: Sequence[Source],
                    similarity: WordSimilarity | None = None, *, lang: str = "en",
                    reader: Reader | None = None) -> CheckedAnswer:
    """Check each clause against the sources it cites: keep the markers whose source
    supports it, drop the rest, attribute an uncited (or wrongly cited) clause to the
    source that supports it, and flag a sentence no source supports, with the reason.
    Markers are renumbered in order of first use; each citation quotes the place of its
    source that the answer restates.

    Example: check_citations("Bangor [9].", "Where?", [source_about_bangor]).citations[0]
    is that source (the bogus [9] dropped, the supporting source attributed).
    """
    answer = flatten_nested_markers(answer)
    checker = ClaimChecker(question, sources, lang, similarity, reader)
    space = "" if is_cjk_text(answer) else " "
    assigned: dict[int, list[str]] = {}  # source index -> the places its clauses restate
    flags: list[Flag] = []
    main_failed: bool | None = None  # decided by the first sentence that states something
    written_lines: list[str] = []
    for line in answer.split("\n"):
        written: list[str] = []
        for sentence in answer_sentences(line):
            plain = strip_markers(sentence)
            clauses = _clauses(sentence, len(sources))
            judged: list[_Judged] = []
            states = checkable(sentence, question)
            for clause, cited, _ in clauses:
                body = strip_markers(clause)
                if states and checkable(body, question):
                    first = main_failed is None and not any(j.sources or j.flagged
                                                            for j in judged)
                    judged.append(checker.judge(body, cited, main=first))
                elif states:  # a fragment ("and", "in 1990" alone is checked with the rest)
                    judged.append(_Judged([], {}, False))
                else:  # "Yes [1]." or filler: a cited source must be about the question
                    about = [i for i in cited if _about(question, sources[i].text)]
                    judged.append(_Judged(about, {}, False))
            if states and all(not j.sources and not j.flagged for j in judged):
                # no clause states anything alone: the sentence is judged whole
                judged = [checker.judge(plain, [i for _, c, _ in clauses for i in c],
                                        main=main_failed is None)]
                text = _insert_before_stop(plain, "".join(
                    f"{space}{_placeholder(i)}" for i in judged[0].sources))
            else:
                text = _keep_markers(sentence, [j.sources for j in judged])
                for (_, _, marked), j in zip(clauses, judged, strict=True):
                    for i in ([] if marked else j.sources):  # a clause with no marker
                        text = _insert_before_stop(text, f"{space}{_placeholder(i)}")
            failed = next((j for j in judged if j.flagged), None)
            if failed is not None:
                flags.append(Flag(plain, failed.reason))
                text = _insert_before_stop(text, f"{space}{flag_marker(failed.reason, lang)}")
            if states and main_failed is None:  # the answer's first claim: its first clause
                main_failed = next((j.flagged for j in judged if j.sources or j.flagged), False)
            written.append(text)
            for j in judged:
                for i in j.sources:
                    assigned.setdefault(i, []).append(j.places.get(i, "") or plain)
        written_lines.append(space.join(written))
    citations, number = _citations(assigned, sources, question)
    text = _renumber("\n".join(written_lines), number)
    return CheckedAnswer(text=text.strip(), citations=citations, flags=flags,
                         supported=bool(assigned), main_failed=bool(main_failed),
                         reader_calls=checker.reader_calls)


def _about(question: str, passage: str) -> bool:
    asked = content_terms(question)
    return bool(asked) and len(asked & content_terms(passage)) >= ABOUT_QUESTION * len(asked)


def _marker_numbers(match: re.Match[str]) -> list[int]:
    return [int(n) for n in re.split(r"[,，、;]", match.group(1) or match.group(2))]


def _clauses(sentence: str, count: int) -> list[tuple[str, list[int], bool]]:
    """The text before each marker with the (valid, 0-based) sources it names, then any
    text after the last marker; True where the clause ends in a marker.

    Example: _clauses("A [1]; B [2] and C.", 2) == [("A", [0], True), ("; B", [1], True),
                                                   ("and C.", [], False)]
    """
    clauses: list[tuple[str, list[int], bool]] = []
    start = 0
    for match in _MARKER.finditer(sentence):
        cited = [n - 1 for n in _marker_numbers(match) if 1 <= n <= count]
        clauses.append((sentence[start:match.start()].strip(), cited, True))
        start = match.end()
    rest = sentence[start:].strip()
    if rest or not clauses:
        clauses.append((rest, [], False))
    return clauses


def _placeholder(index: int) -> str:
    """A source index in the text until `_renumber`; private-use characters, so nothing the
    model wrote can be mistaken for one."""
    return f"\ue000{index}\ue001"


def _keep_markers(sentence: str, decisions: list[list[int]]) -> str:
    """The sentence with each marker replaced by the placeholders of its kept sources."""
    pending = iter(decisions)

    def replace(match: re.Match[str]) -> str:
        return "".join(_placeholder(i) for i in dict.fromkeys(next(pending, [])))

    return _MARKER.sub(replace, sentence).strip()


def _insert_before_stop(text: str, addition: str) -> str:
    stop = re.search(r"[.!?。！？]+$", text)
    if stop:
        return text[:stop.start()] + addition + text[stop.start():]
    return text + addition


def _renumber(text: str, number: dict[int, int]) -> str:
    def replace(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"[{number[index]}]" if index in number else ""

    text = re.sub("\ue000(\\d+)\ue001", replace, text)
    text = re.sub(r"(\[\d+\])(?:\1)+", r"\1", text)  # two sources that were one citation
    text = re.sub(r"[ \t]+([.,;:!?。，；！？])(?=\s|$)", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text)


def _citations(assigned: dict[int, list[str]], sources: Sequence[Source], question: str
               ) -> tuple[list[Citation], dict[int, int]]:
    """At most MAX_CITATIONS citations, in order of first use, one per distinct quote; and
    the citation number of each source index that got one. The quote is the place the
    answer restates (several places of one source joined by GAP)."""
    citations: list[Citation] = []
    number: dict[int, int] = {}
    for index, restated in assigned.items():
        source = sources[index]
        found = [p for p in dict.fromkeys(restated) if p and p in source.text]
        if found:
            quote = trim_quote(GAP.join(found), content_terms(" ".join(found)))
        else:
            quote = best_quote(source.text, " ".join(restated), question)
        chunk = source.chunk_with(quote)
        same = next((n for n, c in enumerate(citations, start=1)
                     if (c.source, c.quote) == (chunk.source, quote)), None)
        if same is not None:
            number[index] = same
            continue
        if len(citations) >= MAX_CITATIONS:
            continue
        citations.append(Citation(source=chunk.source, page=chunk.page, quote=quote,
                                  chunk_id=chunk.chunk_id, score=source.score,
                                  location=chunk.location))
        number[index] = len(citations)
    return citations, number


def embedding_similarity(encode: Callable[[Sequence[str]], Any]) -> WordSimilarity:
    """A WordSimilarity from an embedder's `encode` (unit vectors): how close a word or
    phrase the answer uses is to the one the source has at that point."""

    @lru_cache(maxsize=2048)
    def similarity(first: str, second: str) -> float:
        vectors = encode([first, second])
        return float(vectors[0] @ vectors[1])

    return similarity
