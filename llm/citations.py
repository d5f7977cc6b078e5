"""Pure citation checks: parse [n] markers, keep only those a source supports, quote it.

Small local models number their citations unreliably, so every marker is checked against the
text of the source it names, and an answer that cites nothing is attributed to the source
that supports it best. The measure is lexical: the answer's content terms that the question
did not already contain (names, numbers, places) must appear in the source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kbqa.domain import Citation, Source
from kbqa.ingest.chunking import split_sentences

SUPPORT = 0.5  # share of a sentence's new terms its source must hold
WEAK_SUPPORT = 0.25  # ... or this share, when the meaning is close (a paraphrase)
PARAPHRASE = 0.6  # embedding similarity that counts as close in meaning
SIMILARITY_WEIGHT = 0.5  # how much meaning counts, against terms, when choosing a source
MAX_CITATIONS = 4  # = the default top_k: every source given may be cited
MAX_QUOTE_CHARS = 400
MAX_SENTENCES_COMPARED = 40  # per source, when comparing meaning
GAP = " … "  # between sentences of a source that were not next to each other
UNSUPPORTED_FLAG = {"en": "(not supported by the documents)", "zh": "（文档中没有依据）"}

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
    r"\bcannot (?:be )?(?:answer|determine|find|found)|\bunable to (?:answer|determine|find)|"
    r"\bi (?:do not|don.t) know\b|"
    r"没有提到|没有提及|未提及|未提到|没有相关|无法回答|没有找到|未找到|没有说明|无法确定|不包含|"
    r"没有包含|没有给出|未给出|没有信息|无相关",
    re.IGNORECASE,
)
# "not mentioned" & co. are a refusal only when they speak of the documents: "The X200 is
# not available in blue [1]" is an answer.
_NOT_IN_DOCUMENTS = re.compile(
    r"\bnot (?:mentioned|provided|specified|stated|found|available|given)\b[^.]{0,60}"
    r"\b(?:documents?|sources?|context|text|passages?|information)\b|"
    r"\b(?:documents?|sources?|context|text|passages?|information)\b[^.]{0,60}"
    r"\bnot (?:mentioned|provided|specified|stated|found|available|given)\b",
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
    text = re.sub(r"[ \t]+([.,;:!?。，；])(?=\s|$)", r"\1", _MARKER.sub("", text))
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def is_refusal(text: str) -> bool:
    """Does this (first) sentence of an answer say the sources do not contain the answer?

    Example: is_refusal("The documents don't say.") is True
    """
    head = text[:300]
    return bool(_REFUSAL_PATTERNS.search(head) or _NOT_IN_DOCUMENTS.search(head))


def refuses(answer: str) -> bool:
    """Does the answer open with a refusal (a refusal later on is one caveat among facts)?

    Example: refuses("The manual does not mention it, but service is every 450 hours [1].")
    is True; refuses("Every 450 hours [1]. The weight is not mentioned.") is False
    """
    sentences = answer_sentences(answer.strip())
    return bool(sentences) and is_refusal(sentences[0])


def support(answer: str, passage: str, question: str) -> float:
    """How well a passage backs an answer sentence: the share of the sentence's new terms
    (not in the question) found in it, or of all its terms if that is smaller, so that a
    source naming the right-looking fact about another subject does not count.

    Example: support("He was born in Bangor.", "born in Bangor, Wales", "Where born?") == 1.0
    """
    answer_terms = terms(strip_markers(answer))
    if not answer_terms:
        return 0.0
    found = terms(passage)
    novel = answer_terms - terms(question) or answer_terms
    return min(len(novel & found) / len(novel), len(answer_terms & found) / len(answer_terms))


def checkable(sentence: str, question: str) -> bool:
    """Does the sentence state something a source could back (a content term)?

    Example: checkable("It is so.", "What is it?") is False
    """
    return bool(terms(strip_markers(sentence))) and not is_refusal(sentence)


def best_quote(passage: str, answer: str, question: str) -> str:
    """The passage sentence that shares most with the answer (then the question); a long one
    is cut to the stretch around the answer's first term found in it.

    Example: best_quote("A cat. Bangor is in Wales.", "Bangor", "Where?") == "Bangor is in Wales."
    """
    sentences = [s for part in passage.split(GAP) for s, _ in split_sentences(part)] or [passage]
    answer_terms = terms(strip_markers(answer))
    question_terms = terms(question)

    def score(sentence: str) -> tuple[int, int]:
        found = terms(sentence)
        return len(found & answer_terms), len(found & question_terms)

    quote = max(sentences, key=score)
    if len(quote) <= MAX_QUOTE_CHARS:
        return quote
    lowered = quote.lower()
    novel = sorted(answer_terms - question_terms or answer_terms,
                   key=lambda t: (not t.isdigit(), -len(t)))  # numbers, then longer words
    found = (re.search(rf"(?<!\w){re.escape(t)}", lowered) for t in novel)
    at = next((m.start() for m in found if m), 0)
    start = max(0, min(at - MAX_QUOTE_CHARS // 3, len(quote) - MAX_QUOTE_CHARS))
    window = quote[start:start + MAX_QUOTE_CHARS].strip()
    return ("…" if start else "") + window + ("…" if start + MAX_QUOTE_CHARS < len(quote) else "")


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


# Scores, for each answer sentence, how close in meaning it is to each source (0..1); the
# embedder's cosine in practice. It decides between sources and rescues paraphrases, never
# alone: names and numbers must still be found in the source.
Similarity = Callable[[Sequence[str], Sequence[str]], list[list[float]]]


@dataclass(frozen=True)
class CheckedAnswer:
    """The answer with markers renumbered to its citations; the sentences nothing supports."""

    text: str
    citations: list[Citation]
    unsupported: list[str]
    supported: bool


def _best_source(lexical: list[float], meaning: list[float]) -> int:
    return max(range(len(lexical)), key=lambda i: (lexical[i] + SIMILARITY_WEIGHT * meaning[i]))


def _supports(lexical: float, meaning: float) -> bool:
    return lexical >= SUPPORT or (lexical >= WEAK_SUPPORT and meaning >= PARAPHRASE)


def check_citations(answer: str, question: str, sources: Sequence[Source],
                    similarity: Similarity | None = None, *,
                    flag: str = UNSUPPORTED_FLAG["en"]) -> CheckedAnswer:
    """Check each sentence against the sources it cites: keep the markers whose source
    supports it, drop the rest, attribute an uncited (or wrongly cited) sentence to the source
    that supports it best, and flag a sentence no source supports. Markers are renumbered
    in order of first use; each citation quotes the sentence of its source that matches best.

    Example: check_citations("Bangor [9].", "Where?", [source_about_bangor]).citations[0]
    is that source (the bogus [9] dropped, the supporting source attributed).
    """
    lines = [answer_sentences(line) for line in answer.split("\n")]
    sentences = [sentence for line in lines for sentence in line]
    lexical = [[support(s, src.text, question) for src in sources] for s in sentences]
    # Meaning is computed only when terms alone leave a sentence without a clear source.
    unclear = any(checkable(s, question) and not any(v >= SUPPORT for v in lex)
                  and any(v >= WEAK_SUPPORT for v in lex) for s, lex in zip(sentences, lexical,
                                                                           strict=True))
    if similarity is not None and sources and unclear:
        meaning = similarity([strip_markers(s) for s in sentences], [s.text for s in sources])
    else:
        meaning = [[0.0] * len(sources) for _ in sentences]
    space = "" if _is_cjk_text(answer) else " "
    assigned: dict[int, list[str]] = {}  # source index -> the sentences it supports
    unsupported: list[str] = []
    scores = iter(zip(lexical, meaning, strict=True))
    written_lines: list[str] = []
    for line in lines:
        written: list[str] = []
        for sentence in line:
            lex, mean = next(scores)
            plain = strip_markers(sentence)
            clauses = _clauses(sentence, len(sources))
            if checkable(sentence, question):
                decisions = [_clause_sources(clause, cited, sources, question, lex, mean)
                             for clause, cited, _ in clauses]
                missing = any(checkable(clause, question) and not kept
                              for (clause, _, _), kept in zip(clauses, decisions, strict=True))
            else:  # "Yes [1]." or filler: a cited source must at least be about the question
                decisions = [[i for i in cited if support(question, sources[i].text, "")
                              >= SUPPORT] for _, cited, _ in clauses]
                missing = False
            text = _keep_markers(sentence, decisions)
            for (_, _, marked), kept in zip(clauses, decisions, strict=True):
                for i in ([] if marked else kept):  # a clause with no marker of its own
                    text = _insert_before_stop(text, f"{space}{_placeholder(i)}")
            if missing:
                unsupported.append(plain)
                text = _insert_before_stop(text, f"{space}{flag}")
            written.append(text)
            for i in dict.fromkeys(i for kept in decisions for i in kept):
                assigned.setdefault(i, []).append(plain)
        written_lines.append(space.join(written))
    citations, number = _citations(assigned, sources, question)
    text = _renumber("\n".join(written_lines), number)
    return CheckedAnswer(text=text.strip(), citations=citations, unsupported=unsupported,
                         supported=bool(assigned))


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


def _clause_sources(clause: str, cited: list[int], sources: Sequence[Source], question: str,
                    lex: list[float], mean: list[float]) -> list[int]:
    """The sources a clause keeps: those it cites that support it; for a wrong, missing or
    impossible number, the source that supports it best (when one does); for a clause too
    short to check, the cited ones that support the whole sentence."""
    if not checkable(clause, question):
        return [i for i in cited if _supports(lex[i], mean[i])]
    local = [support(clause, source.text, question) for source in sources]
    kept = [i for i in cited if _supports(local[i], mean[i])]
    if kept or not sources:
        return kept
    best = _best_source(local, mean)
    if _supports(local[best], mean[best]):
        return [best]
    return [i for i in cited if _supports(lex[i], mean[i])]


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
    the citation number of each source index that got one."""
    citations: list[Citation] = []
    number: dict[int, int] = {}
    for index, lines in assigned.items():
        source = sources[index]
        quote = best_quote(source.text, " ".join(lines), question)
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


def _is_cjk_text(text: str) -> bool:
    return len(_HAN_RUN.findall(text)) > 0 and len(_HAN_RUN.sub("", text).split()) < 3


def embedding_similarity(encode: Callable[[Sequence[str]], Any]) -> Similarity:
    """A Similarity from an embedder's `encode` (unit vectors): each answer sentence against
    each source's best-matching sentence."""

    def similarity(sentences: Sequence[str], passages: Sequence[str]) -> list[list[float]]:
        parts = [[s for s, _ in split_sentences(p)][:MAX_SENTENCES_COMPARED] or [p]
                 for p in passages]
        flat = [s for part in parts for s in part]
        vectors = encode([*sentences, *flat])
        asked, given = vectors[:len(sentences)], vectors[len(sentences):]
        scores = asked @ given.T
        result: list[list[float]] = []
        for row in scores:
            start, best = 0, []
            for part in parts:
                best.append(float(row[start:start + len(part)].max()))
                start += len(part)
            result.append(best)
        return result

    return similarity
