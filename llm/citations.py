"""Pure citation checks: parse [n] markers, keep only those a source supports, quote it.

Small local models number their citations unreliably, so every marker is checked against the
text of the source it names, and an answer that cites nothing is attributed to the source
that supports it best. The measure is lexical: the answer's content terms that the question
did not already contain (names, numbers, places) must appear in the source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kbqa.domain import Citation, Hit
from kbqa.ingest.chunking import split_sentences

MIN_SUPPORT = 0.25  # a citation needs at least this share of the answer's new terms
GROUNDED_SUPPORT = 0.5  # the best citation must carry half of them for a grounded answer
MAX_CITATIONS = 3
MAX_QUOTE_CHARS = 400

_MARKER = re.compile(
    r"\[\s*(?:source|sources|资料|来源)?\s*(\d+(?:\s*[,，、;]\s*\d+)*)\s*\]|【\s*(\d+)\s*】",
    re.IGNORECASE,
)
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W_]+")
_STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those there here he she they them his her their we you i me my our
    your not no yes do does did done has have had can could would should will shall may might
    what which who whom whose when where why how than then so such also very just about into
    over under after before between during while per via according source sources document
    documents text passage context information provided mentioned states stated says said""".split()  # noqa: SIM905
)
_STOP_BIGRAMS = frozenset({"根据", "资料", "文档", "提到", "来源", "中的", "的是", "这个", "一个"})

_REFUSAL_PATTERNS = re.compile(
    r"documents don.t say|(?:documents?|sources?|context|text|passages?|information)\b[^.]{0,60}"
    r"\b(?:do(?:es)?\s*n[o’']?t|did\s*n[o’']?t|never)\s+(?:say|mention|contain|provide|include|"
    r"specify|state|give|indicate|answer)|\bno (?:information|mention|answer)\b|"
    r"\bnot (?:mentioned|provided|specified|stated|found|available|given)\b|"
    r"\bcannot (?:be )?(?:answer|determine|find|found)|\bunable to (?:answer|determine|find)|"
    r"\bi (?:do not|don.t) know\b|"
    r"没有提到|没有提及|未提及|未提到|没有相关|无法回答|没有找到|未找到|没有说明|无法确定|不包含|"
    r"没有包含|没有给出|未给出|没有信息|无相关",
    re.IGNORECASE,
)


def terms(text: str) -> set[str]:
    """Content terms: case-folded words (light plural folding) and Han-character bigrams.

    Example: terms("Iwan was born in Bangor") == {"iwan", "born", "bangor"}
    """
    found: set[str] = set()
    for run in _HAN_RUN.findall(text):
        if len(run) == 1:
            found.add(run)
        found.update(run[i:i + 2] for i in range(len(run) - 1))
    found -= _STOP_BIGRAMS
    for word in _WORD.findall(_HAN_RUN.sub(" ", text.lower())):
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        if len(word) > 4 and word.endswith("es") and not word.endswith("ses"):
            word = word[:-2]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.add(word)
    return found


def parse_markers(text: str) -> list[int]:
    """Source numbers in order of first appearance.

    Example: parse_markers("A [2]. B [1, 2]. C【3】") == [2, 1, 3]
    """
    numbers: list[int] = []
    for match in _MARKER.finditer(text):
        for raw in re.split(r"[,，、;]", match.group(1) or match.group(2)):
            number = int(raw.strip())
            if number not in numbers:
                numbers.append(number)
    return numbers


def strip_markers(text: str) -> str:
    """Example: strip_markers("Bangor [1].") == "Bangor." """
    return re.sub(r"\s+([.,;:!?。，；])", r"\1", _MARKER.sub("", text)).strip()


def is_refusal(text: str) -> bool:
    """Does the model's answer say the sources do not contain the answer?

    Example: is_refusal("The documents don't say.") is True
    """
    return bool(_REFUSAL_PATTERNS.search(text[:300]))


def support(answer: str, passage: str, question: str) -> float:
    """Share of the answer's new content terms (not in the question) found in the passage.

    Example: support("He was born in Bangor.", "born in Bangor, Wales", "Where born?") == 1.0
    """
    answer_terms = terms(strip_markers(answer))
    novel = answer_terms - terms(question) or answer_terms
    if not novel:
        return 0.0
    return len(novel & terms(passage)) / len(novel)


def best_quote(passage: str, answer: str, question: str) -> str:
    """The passage sentence that shares most with the answer (then the question).

    Example: best_quote("A cat. Bangor is in Wales.", "Bangor", "Where?") == "Bangor is in Wales."
    """
    sentences = [s for s, _ in split_sentences(passage)] or [passage]
    answer_terms = terms(strip_markers(answer))
    question_terms = terms(question)

    def score(sentence: str) -> tuple[int, int]:
        found = terms(sentence)
        return len(found & answer_terms), len(found & question_terms)

    quote = max(sentences, key=score)
    return quote if len(quote) <= MAX_QUOTE_CHARS else quote[:MAX_QUOTE_CHARS].rstrip() + "…"


@dataclass(frozen=True)
class CheckedAnswer:
    """The answer text with markers renumbered to its citations, and whether it is supported."""

    text: str
    citations: list[Citation]
    supported: bool


def check_citations(answer: str, question: str, sources: Sequence[Hit]) -> CheckedAnswer:
    """Keep cited sources that support the answer; attribute an uncited answer; renumber.

    Example: check_citations("Bangor [9].", "Where?", [hit_about_bangor]).citations[0] is
    the Bangor hit (the bogus [9] is dropped, the supporting source attributed).
    """
    scores = [support(answer, hit.chunk.text, question) for hit in sources]
    cited = [n for n in parse_markers(answer) if 1 <= n <= len(sources)]
    keep = [n for n in cited if scores[n - 1] >= MIN_SUPPORT][:MAX_CITATIONS]
    if not keep and sources:
        best = max(range(len(sources)), key=lambda i: (scores[i], sources[i].score))
        if scores[best] >= MIN_SUPPORT:
            keep = [best + 1]
    renumber = {old: new for new, old in enumerate(keep, start=1)}

    def replace(match: re.Match[str]) -> str:
        raw = re.split(r"[,，、;]", match.group(1) or match.group(2))
        mapped = [renumber[int(n)] for n in raw if int(n) in renumber]
        return "".join(f"[{n}]" for n in dict.fromkeys(mapped))

    text = re.sub(r"\s+([.,;:!?。，；])", r"\1", _MARKER.sub(replace, answer)).strip()
    citations = [
        Citation(source=sources[n - 1].chunk.source, page=sources[n - 1].chunk.page,
                 quote=best_quote(sources[n - 1].chunk.text, answer, question),
                 chunk_id=sources[n - 1].chunk.chunk_id, score=sources[n - 1].score,
                 location=sources[n - 1].chunk.location)
        for n in keep
    ]
    supported = bool(keep) and max(scores[n - 1] for n in keep) >= GROUNDED_SUPPORT
    return CheckedAnswer(text=text, citations=citations, supported=supported)
