"""Pure fact-level checks: is an answer sentence stated by one place of its source?

A careful reader checks an answer against the place it comes from, not against the whole
passage: the sentence's facts (numbers and dates as values, names, other content words,
and its polarity) must be found together in one sentence of the source, or in two
neighbouring ones. The answer is aligned word by word (Chinese: character by character)
with that place, so a fact that was swapped for another one of the same passage is seen
for what it is: the source says something else at that point.

Three outcomes: `SUPPORTED`, `FLAGGED` (with the reason a user can check, e.g. "the source
says 1968") and `UNDECIDED`, where rules cannot tell: a bare answer ("Watford.") found in
the passage next to other candidates, or a word the source does not use that may be a
synonym. Those go to the second reader (`kbqa.llm.reader`).
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache

from kbqa.domain import GAP
from kbqa.text import CJK, STOPWORDS, sentences

SUPPORTED = "supported"
FLAGGED = "flagged"
UNDECIDED = "undecided"

# Word similarity (0..1) of a word or phrase the answer uses to the one the source has at
# that point; the embedder's cosine in practice.
WordSimilarity = Callable[[str, str], float]
SYNONYM = 0.8  # at least this close: the answer only rephrased the source
UNRELATED = 0.6  # below this: the answer says something else
# A bare answer, leaning on the question ("Watford." to "Which club did he join in 1990?"),
# has no predicate of its own and is this short (content terms of its own).
BARE_TERMS = 5
# A name the source lacks, in place of at most this many facts of the source, is reported
# as a swap ("the source says Bangor, not Cardiff"); in place of more, as not mentioned.
LIKE_FOR_LIKE = 3

# -- tokens ------------------------------------------------------------------------------
WORD, NAME, NUMBER, HAN, NEGATION, FILLER = "word", "name", "number", "han", "neg", "filler"
PUNCT = "punct"  # kept so that a stretch of the source ends where its clause ends

_MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december"  # noqa: SIM905
    .split(), start=1)}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH = r"(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b\.?"
_ORD = r"(?:st|nd|rd|th)?"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_ZH_DIGIT_VALUES = {ch: i for i, ch in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
_ZH_DIGITS = "〇零一二三四五六七八九"
_ZH_NUMERALS = "〇零一二三四五六七八九十百千万亿两"
_SCALES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9,
           "trillion": 1e12, "百": 1e2, "千": 1e3, "万": 1e4, "亿": 1e8}
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "  # noqa: SIM905
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}  # noqa: SIM905
_ORDINALS = {w: i for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"  # noqa: SIM905
    .split(), start=1)}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_TENS, *_ORDINALS, "hundred", "thousand", "million",
                                "billion", "trillion"], key=len, reverse=True))

_QUANTITY = re.compile(
    rf"(?P<dmy>(?P<d1>\d{{1,2}}){_ORD}\s+(?:of\s+)?(?P<m1>{_MONTH}),?\s+(?P<y1>\d{{3,4}}))"
    rf"|(?P<mdy>(?P<m2>{_MONTH})\s+(?P<d2>\d{{1,2}}){_ORD},?\s+(?P<y2>\d{{3,4}}))"
    rf"|(?P<my>(?P<m3>{_MONTH}),?\s+(?P<y3>\d{{4}}))"
    rf"|(?P<dm>(?P<d4>\d{{1,2}}){_ORD}\s+(?:of\s+)?(?P<m4>{_MONTH}))"
    rf"|(?P<md>(?P<m5>{_MONTH})\s+(?P<d5>\d{{1,2}}){_ORD}(?![\d,]))"
    r"|(?P<iso>(?P<y6>\d{4})-(?P<m6>\d{1,2})-(?P<d6>\d{1,2}))"
    rf"|(?P<zhdate>(?P<y7>\d{{2,4}}|[{_ZH_DIGITS}]{{2,4}})年"
    rf"(?:(?P<m7>\d{{1,2}}|[{_ZH_NUMERALS}]{{1,3}})月(?:(?P<d7>\d{{1,2}}|[{_ZH_NUMERALS}]{{1,3}})[日号])?)?)"
    rf"|(?P<zhmd>(?P<m8>\d{{1,2}}|[{_ZH_NUMERALS}]{{1,3}})月(?P<d8>\d{{1,2}}|[{_ZH_NUMERALS}]{{1,3}})[日号])"
    r"|(?P<time>(?P<h>\d{1,2}):(?P<mi>\d{2})(?!\d))"
    rf"|(?P<zhmix>\d+[十百千万亿](?:\d+|[{_ZH_NUMERALS}])+)"  # 8千八百五十, 1万2千
    rf"|(?P<num>(?:{_NUM})(?:\s*(?P<scale>hundred|thousand|million|billion|trillion|[百千万亿]))?)"
    rf"|(?P<words>\b(?:{_NUMBER_WORD})(?:[\s-]+(?:and\s+)?(?:{_NUMBER_WORD}))*\b)"
    rf"|(?P<zh>[{_ZH_NUMERALS}]+)",
    re.IGNORECASE,
)
_CJK_CHAR = re.compile(f"[{CJK}]")
_PIECE = re.compile(rf"[{CJK}]|[^\W_{CJK}]+(?:['’][^\W_{CJK}]+)*|[^\w\s]")
# Measure words after a Chinese numeral: with one of these, a lone numeral is a count.
_ZH_COUNTED = set("个年月日号天次名位人种座条家所岁倍万亿千百米元届场部本项只件层")
# Han characters with no content of their own (particles, copulas, prepositions).
_ZH_FILLER = set("的了是在和有也与及或就都而之其这那为以于被把吗呢吧啊么着过地得所等")
_ZH_NEGATIONS = set("不没无未非别莫勿否")
# Phrases an answer uses to talk about its sources ("根据资料" "according to the sources").
_ZH_DISCOURSE = re.compile(
    "根据|按照|据|资料|文档|文件|来源|文中|原文|提到|提及|显示|表明|指出|记载|所述|中的")
# Pairs where those characters do not negate: 不同 "different", 未来 "future", 非常
# "very", 莫斯科 "Moscow"... (a pair in both texts would cancel out anyway).
_ZH_NOT_NEGATION = {
    "不同", "不断", "不仅", "不过", "不少", "不久", "不管", "不论", "不禁", "不免", "不错",
    "不列", "无论", "无数", "无线", "无锡", "无限", "未来", "非常", "非洲", "否则", "是否",
    "能否", "可否", "与否", "莫斯", "莫过", "别人", "别的", "分别", "特别", "区别", "类别",
    "级别", "识别", "告别", "个别", "性别", "差别", "别名", "别称", "除非", "是非", "别墅",
}
_CONTRACTIONS = [(re.compile(r"\bcan['’]t\b|\bcannot\b", re.I), "can not"),
                 (re.compile(r"\bwon['’]t\b", re.I), "will not"),
                 (re.compile(r"n['’]t\b", re.I), " not")]


@dataclass(frozen=True)
class Quantity:
    """A number or date, compared by value: "1,200" = "1200", "26 June 1968" = "1968-06-26"."""

    value: float | None = None
    year: int | None = None
    month: int | None = None
    day: int | None = None

    @property
    def is_date(self) -> bool:
        return self.month is not None

    @property
    def is_time_point(self) -> bool:
        """A date, or a number that reads as a year (1000-2100): what pins a question."""
        return self.is_date or (self.value is not None and self.value.is_integer()
                                and 1000 <= self.value <= 2100)

    def found_in(self, others: Sequence[Quantity]) -> bool:
        """Is this value stated by one of `others`? A year or day alone is found in a full
        date; a date needs every part it names."""
        for other in others:
            if self.is_date:
                parts = [(self.year, other.year), (self.month, other.month),
                         (self.day, other.day)]
                if other.is_date and all(mine is None or mine == theirs
                                         for mine, theirs in parts):
                    return True
            elif self.value is not None:
                if other.value is not None and math.isclose(self.value, other.value,
                                                             rel_tol=1e-9):
                    return True
                if other.is_date and self.value in (other.year, other.day):
                    return True
        return False


@dataclass(frozen=True)
class Token:
    """One unit of alignment: a word, a Han character, a number or a negation. `key` is
    what compares (stem, value, character); `text` is as written."""

    text: str
    key: str
    kind: str
    quantity: Quantity | None = None


def stem(word: str) -> str:
    """A light English stem, enough to match "moved" with "move" and "cities" with "city".

    Example: stem("moved") == stem("move") == "mov"; stem("running") == "run"
    """
    w = word
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif (len(w) > 4 and w.endswith("ied")) or (len(w) > 4 and w.endswith("ies")):
        w = w[:-3] + "y"
    elif (len(w) > 3 and w.endswith("ed")) or (len(w) > 4 and w.endswith("es") and w[-3] in "sxzh"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]
    return w


def _zh_number(text: str) -> float:
    """Example: _zh_number("三十五") == 35; _zh_number("一九六八") == 1968;
    _zh_number("三亿五千万") == 3.5e8; _zh_number("8千八百五十") == 8850"""
    if len(text) > 1 and all(ch in _ZH_DIGITS for ch in text):  # a year read digit by digit
        return float("".join(str(_ZH_DIGIT_VALUES[ch]) for ch in text))
    total = section = number = 0.0
    for piece in re.findall(r"\d+|.", text):
        ch = piece
        if piece.isdigit():
            number = float(piece)
        elif ch in _ZH_DIGIT_VALUES:
            number = _ZH_DIGIT_VALUES[ch]
        elif ch in "十百千":
            section += (number or 1) * {"十": 10, "百": 100, "千": 1000}[ch]
            number = 0
        elif ch == "万":
            total += (section + number) * 1e4
            section = number = 0
        elif ch == "亿":
            total = (total + section + number) * 1e8
            section = number = 0
    return total + section + number


def _value(raw: str) -> float | None:
    raw = raw.strip()
    if raw.isdigit() or re.fullmatch(_NUM, raw):
        return float(raw.replace(",", ""))
    if all(ch in _ZH_NUMERALS for ch in raw):
        return _zh_number(raw)
    return None


def _words_value(text: str) -> float | None:
    """Example: _words_value("twenty-five") == 25; _words_value("two million") == 2e6"""
    total, current = 0.0, 0.0
    for word in re.split(r"[\s-]+", text.lower()):
        if word == "and":
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word in _ORDINALS:
            current += _ORDINALS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
        else:
            return None
    return total + current


def _quantity(match: re.Match[str], text: str) -> Quantity | None:
    g = match.groupdict()

    def month(raw: str | None) -> int | None:
        if raw is None:
            return None
        raw = raw.lower().rstrip(".")
        if raw in _MONTHS:
            return _MONTHS[raw]
        number = _value(raw)
        return int(number) if number and 1 <= number <= 12 else None

    def int_of(raw: str | None) -> int | None:
        number = _value(raw) if raw else None
        return int(number) if number is not None else None

    for kind, (y, m, d) in {"dmy": ("y1", "m1", "d1"), "mdy": ("y2", "m2", "d2"),
                            "my": ("y3", "m3", None), "dm": (None, "m4", "d4"),
                            "md": (None, "m5", "d5"), "iso": ("y6", "m6", "d6"),
                            "zhdate": ("y7", "m7", "d7"), "zhmd": (None, "m8", "d8")}.items():
        if g[kind]:
            found = Quantity(year=int_of(g[y]) if y else None, month=month(g[m]),
                             day=int_of(g[d]) if d else None)
            if kind == "zhdate" and found.month is None:  # "1990年": a year
                return Quantity(value=float(found.year or 0))
            return found if found.month else None
    if g["time"]:
        return Quantity(value=int(g["h"]) * 60 + int(g["mi"]) + 1e6)  # apart from numbers
    if g["num"]:
        number = float(re.sub(r"[^\d.]", "", re.match(_NUM, g["num"]).group()))  # type: ignore[union-attr]
        scale = (g["scale"] or "").lower()
        return Quantity(value=number * _SCALES.get(scale, 1.0))
    if g["zhmix"]:
        return Quantity(value=_zh_number(g["zhmix"]))
    if g["words"]:
        words = g["words"].lower()
        if words in ("one", "no one") or words in _SCALES:  # "one of", "hundreds"
            return None
        counted = _words_value(words)
        return Quantity(value=counted) if counted is not None else None
    if g["zh"]:
        raw = g["zh"]
        after = text[match.end():match.end() + 1]
        before = text[match.start() - 1:match.start()] if match.start() else ""
        if len(raw) == 1 and raw in "一两" and before != "第" and after not in "年月日号":
            return None  # 一个, 一起, 两人: an article or "a pair", not a stated count
        if len(raw) == 1 and after not in _ZH_COUNTED and before != "第":
            return None  # 十分 "very", 万一 "in case", 千万 "by all means"
        number = _zh_number(raw)
        return Quantity(value=number) if number is not None else None
    return None


def _negation_at(text: str, index: int) -> bool:
    pair_after = text[index:index + 2]
    pair_before = text[max(0, index - 1):index + 1]
    return pair_after not in _ZH_NOT_NEGATION and pair_before not in _ZH_NOT_NEGATION


@lru_cache(maxsize=4096)
def claim_tokens(text: str) -> tuple[Token, ...]:
    """The sentence as alignment tokens: numbers and dates as values, English words
    stemmed (capitalised ones mid-sentence as names), Han characters one by one, negations
    as one kind whatever their wording ("not", "never", 不, 没有...).

    Example: [t.key for t in claim_tokens("He wasn't born on 26 June 1968.")] ==
        ["he", "wa", "¬", "born", "on", "1968-06-26"]
    """
    text = unicodedata.normalize("NFKC", text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    out: list[Token] = []
    position = 0
    for match in _QUANTITY.finditer(text):
        quantity = _quantity(match, text)
        if quantity is None:
            continue
        out.extend(_plain_tokens(text[position:match.start()], at_start=not out))
        key = (f"{quantity.year or ''}-{quantity.month or ''}-{quantity.day or ''}"
               if quantity.is_date else f"{quantity.value:g}")
        out.append(Token(match.group(), key, NUMBER, quantity))
        position = match.end()
    out.extend(_plain_tokens(text[position:], at_start=not out))
    return tuple(out)


def _plain_tokens(text: str, *, at_start: bool) -> list[Token]:
    out: list[Token] = []
    discourse = {i for m in _ZH_DISCOURSE.finditer(text) for i in range(m.start(), m.end())}
    for match in _PIECE.finditer(text):
        piece = match.group()
        if not piece[0].isalnum() and not _CJK_CHAR.match(piece):
            out.append(Token(piece, piece, PUNCT))
            continue
        if _CJK_CHAR.match(piece):
            if piece in _ZH_NEGATIONS and _negation_at(text, match.start()):
                out.append(Token(piece, "¬", NEGATION))
            else:
                filler = piece in _ZH_FILLER or match.start() in discourse
                out.append(Token(piece, piece, FILLER if filler else HAN))
            continue
        lower = re.sub(r"'s$", "", piece.casefold().replace("’", "'"))
        first = at_start and not any(t.kind != PUNCT for t in out)
        if lower in ("not", "never", "no", "none", "nor", "neither", "nothing", "nobody",
                     "nowhere", "without"):
            out.append(Token(piece, "¬", NEGATION))
        elif lower in STOPWORDS or (len(lower) < 2 and not lower.isdigit()):
            out.append(Token(piece, lower, FILLER))
        elif (piece[0].isupper() and (not first or piece.isupper())) or (
                len(piece) > 1 and piece[1:].lower() != piece[1:]):  # Watford, NATO, iPhone
            out.append(Token(piece, stem(lower), NAME))
        else:
            out.append(Token(piece, stem(lower), WORD))
    return out


# -- places ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """One sentence of a source, with the sentences next to it (not across a GAP, where
    the source skips part of its document)."""

    text: str
    tokens: tuple[Token, ...]
    neighbours: tuple[int, ...] = ()


@lru_cache(maxsize=256)
def places(source: str) -> tuple[Place, ...]:
    """The source's sentences as places, each knowing its neighbours."""
    out: list[Place] = []
    for part in source.split(GAP):
        found = sentences(part) or ([part] if part.strip() else [])
        start = len(out)
        for i, sentence in enumerate(found):
            near = tuple(start + j for j in (i - 1, i + 1) if 0 <= j < len(found))
            out.append(Place(sentence, claim_tokens(sentence), near))
    return tuple(out)


# -- the verdict -------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What the rules found for one answer sentence against one source."""

    status: str
    reason: str = ""  # for FLAGGED: what the source says instead
    place: str = ""  # the sentence(s) of the source the answer was aligned with
    score: float = 0.0  # share of the answer's facts found in the place
    bare: bool = False  # the answer leans on the question (the second reader decides)
    problems: tuple[str, ...] = field(default=())
    context: str = ""  # the place with its neighbouring sentences
    # FLAGGED because the place says otherwise (not merely because it lacks the fact)
    contradicts: bool = False


_REASONS = {
    "en": {"number": "the source says {says}", "no_number": "the source gives no {asked}",
           "negation": "the source says the opposite: \u201c{says}\u201d",
           "swapped": "the source says {says}, not {asked}",
           "missing": "the source does not mention {asked}",
           "elsewhere": "{asked} is not stated there: the source says \u201c{says}\u201d",
           "unpinned": "the source does not say this for {asked}: \u201c{says}\u201d"},
    "zh": {"number": "来源写的是{says}", "no_number": "来源中没有{asked}",
           "negation": "来源的说法相反：“{says}”",
           "swapped": "来源写的是{says}，不是{asked}",
           "missing": "来源没有提到{asked}",
           "elsewhere": "来源在此处没有说{asked}：“{says}”",
           "unpinned": "来源没有说这是{asked}的情况：“{says}”"},
}


MAX_SAYS_CHARS = 160  # of a source sentence quoted in a reason


def reason(kind: str, lang: str, *, says: str = "", asked: str = "") -> str:
    """Example: reason("number", "en", says="1968") == "the source says 1968" """
    if len(says) > MAX_SAYS_CHARS:
        says = says[:MAX_SAYS_CHARS].rsplit(" ", 1)[0] + "…"
    return _REASONS["zh" if lang == "zh" else "en"][kind].format(says=says, asked=asked)


def _facts(tokens: Sequence[Token]) -> list[Token]:
    return [t for t in tokens if t.kind in (NAME, NUMBER, WORD, HAN)]


def _question_keys(question: str) -> set[str]:
    return set(_question_kinds(question))


def _question_kinds(question: str) -> dict[str, str]:
    return {t.key: t.kind for t in claim_tokens(question) if t.kind in (NAME, WORD, HAN, NUMBER)}


_EN_PREDICATE = frozenset(
    "is are was were be been being has have had do does did will would can could should may "  # noqa: SIM905
    "might shall must he she it they we i you".split())
_ZH_PREDICATE = set("是在有为于被把了将会能要他她它我你")


def _states(claim: Sequence[Token], asked: set[str]) -> bool:
    """Has the answer a predicate of its own? An auxiliary or a subject pronoun, a past
    tense ("moved"), a Chinese copula or particle, or five words or more that restate part
    of the question ("The north plant makes valves")."""
    for token in claim:
        lower = token.text.lower()
        if (token.kind == FILLER and lower in _EN_PREDICATE) or token.text in _ZH_PREDICATE:
            return True
        if token.kind == WORD and lower.endswith("ed") and len(lower) > 4:
            return True
    return len(claim) >= 5 and any(t.key in asked for t in _facts(claim))


def leans_on_question(answer: str, question: str) -> bool:
    """A bare answer: a short phrase with no predicate of its own ("Watford.", "in 1990",
    "碎叶城"). Its meaning is "the answer to that question is X", which only the pairing in
    the source can confirm; a sentence ("He was born in 1986") states its own.

    Example: leans_on_question("Watford.", "Which club did he join in 1990?") is True
    """
    asked = _question_keys(question)
    claim = [t for t in claim_tokens(answer) if t.kind not in (NEGATION, PUNCT)]
    own = [t for t in _facts(claim) if t.key not in asked or t.kind == NUMBER]
    if not own or _states(claim, asked):
        return False  # a sentence, or a restated question: a yes whose polarity counts
    size = sum(t.kind != HAN for t in own) + (sum(t.kind == HAN for t in own) + 1) // 2
    return size <= BARE_TERMS


def stated_in(token: Token, place: Sequence[Token]) -> bool:
    """Is `token` among `place`'s: numbers by value ("1,200" in "1200 litres"), words by key."""
    if token.kind == NUMBER and token.quantity is not None:
        return token.quantity.found_in([t.quantity for t in place if t.quantity is not None])
    return any(token.key == other.key for other in place)


def pinned_times(question: str, source: Sequence[Token]) -> list[Token]:
    """The question's years and dates that the source states: where an answer to it must
    stand. Example: pinned_times("Who left in 1990?", claim_tokens("In 1990 ...")) names 1990
    """
    return [t for t in claim_tokens(question) if t.kind == NUMBER and t.quantity
            and t.quantity.is_time_point and stated_in(t, source)]


def _han_runs(tokens: Sequence[Token], lo: int, hi: int) -> list[tuple[int, int]]:
    """Runs of consecutive Han content characters in tokens[lo:hi]."""
    runs, start = [], None
    for i in range(lo, hi):
        if tokens[i].kind == HAN:
            start = i if start is None else start
        else:
            if start is not None:
                runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, hi))
    return runs


def _text_of(tokens: Sequence[Token]) -> str:
    out = ""
    for token in tokens:
        if out and not (_CJK_CHAR.match(token.text[:1]) and _CJK_CHAR.match(out[-1:])):
            out += " "
        out += token.text
    return out.strip()


def _alignment(claim: Sequence[Token], place: Sequence[Token]) -> SequenceMatcher[str]:
    return SequenceMatcher(None, [t.key for t in claim], [t.key for t in place],
                           autojunk=False)


def _found_share(claim: Sequence[Token], place: Sequence[Token]) -> float:
    facts = _facts(claim)
    weights = [3.0 if t.kind in (NUMBER, NAME) else 1.0 for t in facts]
    found = sum(w for t, w in zip(facts, weights, strict=True) if stated_in(t, place))
    return round(found / sum(weights), 6) if weights else 0.0


def _aligned_facts(claim: Sequence[Token], place: Sequence[Token], asked: set[str]) -> float:
    """Content of the answer aligned in order with the place. Names the question gives
    count for little: they say whom the answer is about, and every sentence about him may
    name him; the rest says which of them it restates."""
    matcher = _alignment(claim, place)
    weights = {FILLER: 0.1, NEGATION: 0.1, PUNCT: 0.0}
    total = 0.0
    for block in matcher.get_matching_blocks():
        for token in claim[block.a:block.a + block.size]:
            topic = token.key in asked and token.kind in (NAME, HAN)
            total += 0.25 if topic else weights.get(token.kind, 1.0)
    return total


def align(answer: str, source: str, *, bare: bool = False, question: str = ""
          ) -> tuple[Place | None, tuple[Token, ...], float]:
    """The sentence the answer restates (most of its content aligned in order; for a
    bare answer, most of its facts), the tokens of that sentence and the neighbour that
    adds most of the answer's facts (the place where facts may be found), and the share
    of the answer's facts found there."""
    claim = claim_tokens(answer)
    candidates = places(source)
    if not candidates:
        return None, (), 0.0
    asked = _question_keys(question)

    def rank(place: Place) -> tuple[float, ...]:
        share = _found_share(claim, place.tokens)
        aligned = _aligned_facts(claim, place.tokens, asked)
        return (share, aligned, -len(place.tokens)) if bare else (
            aligned, share, -len(place.tokens))

    primary = max(candidates, key=rank)
    window = primary.tokens
    neighbours = [candidates[i] for i in primary.neighbours]
    if neighbours:
        best = max(neighbours, key=lambda p: _found_share(claim, primary.tokens + p.tokens))
        joined = primary.tokens + best.tokens
        if _found_share(claim, joined) > _found_share(claim, window):
            window = joined
    return primary, window, _found_share(claim, window)


def check_claim(answer: str, question: str, source: str, lang: str = "en",
                similarity: WordSimilarity | None = None, topic: str = "") -> Verdict:
    """Align an answer sentence with the sentence of `source` it restates, then look for
    what a careful reader would catch: a number, name or term where that sentence has
    another one (a fact swapped), a negation on one side only, and facts that neither it
    nor a neighbouring sentence states. Terms the answer takes from the question (a name
    standing for "he" in the source) need not be there, if the source (or its `topic`: the
    document's title and heading) names them somewhere; numbers always must.

    Example: check_claim("He was born in 1986.", "When was he born?",
                         "Iwan Roberts was born in Bangor in 1968.").reason
             == "the source says 1968, not 1986"
    """
    claim = claim_tokens(answer)
    if not _facts(claim):
        return Verdict(UNDECIDED, bare=True)
    bare = leans_on_question(answer, question)
    primary, window, score = align(answer, source, bare=bare, question=question)
    if primary is None:
        return Verdict(FLAGGED, reason("missing", lang, asked=_text_of(_facts(claim))))
    candidates = places(source)
    source_keys = {t.key for p in candidates for t in p.tokens}
    # The question's terms are given, not claimed: "Iwan Roberts" for the source's "he".
    # A name must still be the source's subject somewhere ("The Rhine flows past Bangor"
    # is not backed by a text that never names the Rhine).
    known = source_keys | {t.key for t in claim_tokens(topic)}
    asked = {key for key, kind in _question_kinds(question).items()
             if kind != NAME or key in known}
    source_text = " ".join(p.text for p in candidates)
    window_text = "".join(t.text for t in window)
    problems: list[str] = []
    problem_kinds: list[str] = []
    undecided: list[str] = []

    def problem(kind: str, *, says: str = "", asked: str = "") -> None:
        problems.append(reason(kind, lang, says=says, asked=asked))
        problem_kinds.append(kind)
    matcher = _alignment(claim, primary.tokens)
    place = primary.tokens

    def substitution(token_text: str, span: Sequence[Token], dropped: Sequence[Token],
                     kind: str, nearest: Sequence[Token] = ()) -> None:
        """The answer has `token_text` where the sentence has `span` (whose `dropped`
        facts the answer lacks): a swap, unless the two are near-synonyms (words and Han
        runs only: names and numbers are exact). `nearest`: the words at the same point."""
        says = _stretch(span, dropped)
        if kind in (WORD, HAN):
            close = max((similarity(token_text, _text_of([t])) for t in nearest or says),
                        default=None) if similarity else None
            if close is not None and close >= SYNONYM:
                return
            if close is None or close >= UNRELATED:
                undecided.append(token_text)
                return
        problem("swapped", says=_text_of(says), asked=token_text)

    # Polarity: a negation on one side only, within the stretch the answer restates.
    blocks = [b for b in matcher.get_matching_blocks()
              if any(t.kind not in (FILLER, PUNCT) for t in claim[b.a:b.a + b.size])]
    if blocks and not bare:
        lo, hi = blocks[0].b, blocks[-1].b + blocks[-1].size
        while lo > 0 and blocks[0].b - lo < 3 and place[lo - 1].kind in (FILLER, NEGATION):
            lo -= 1  # "没有[参加]", "not [all] of": a negation just before counts
        if sum(t.kind == NEGATION for t in claim) != sum(
                t.kind == NEGATION for t in place[lo:hi]):
            problem("negation", says=primary.text)

    # A fact of the place is "dropped" when the answer has it nowhere but in the stretch
    # aligned with another occurrence: "the [first] ... the first" keeps one of two.
    aligned = {i for b in matcher.get_matching_blocks() for i in range(b.a, b.a + b.size)}
    loose = [t for i, t in enumerate(claim) if i not in aligned]

    # A fact of the place said at another point of the answer ("born in 1968 in Bangor"
    # for "born in Bangor in 1968") is moved, not swapped in, when the answer does not
    # also say it where the place does ("The UMC is a [United Methodist Church]").
    unmatched = [t for j, t in enumerate(place) if j not in {
        k for b in matcher.get_matching_blocks() for k in range(b.b, b.b + b.size)}]

    def moved(token: Token) -> bool:
        return token.kind != NUMBER and any(_same(token, t) for t in unmatched)

    def dropped_in(span: Sequence[Token]) -> list[Token]:
        return [t for t in span if t.kind in (NAME, NUMBER, WORD, HAN)
                and not any(_same(t, c) for c in loose)]

    neighbour = window[len(place):]

    def runs_on(i1: int, i2: int, j1: int, j2: int) -> bool:
        """Does the answer go on (or start) with a neighbouring sentence here: the
        stretch reaches the sentence's end (start), and the answer's rest (beginning), a
        clause (or most of the neighbour) of two content words or more, is all in that
        neighbour? A bare phrase there ("on a replica of [SAP Center in San Jose]") fills
        the sentence's own slot with the neighbour's item: a swap, not a second sentence."""
        if all(t.kind == PUNCT for t in place[j2:]):
            rest = list(claim[i1:])
        elif all(t.kind == PUNCT for t in place[:j1]):
            rest = list(claim[:i2])
        else:
            return False
        content = _facts(rest)
        if len(content) < 2 or not all(stated_in(t, neighbour) for t in content):
            return False
        said = _facts(neighbour)
        return _states(rest, set()) or sum(stated_in(t, content) for t in said) * 2 >= len(said)

    checked: set[int] = set()  # claim positions judged as substitutions
    if not bare:
        for skipped, token_at in _skips(claim, place, matcher):
            token = claim[token_at]
            if token.kind != NUMBER and token.key in asked:
                continue
            dropped = dropped_in(skipped)
            same_kind = [t for t in dropped if t.kind == token.kind
                         or {t.kind, token.kind} <= {NAME, WORD}]
            if token.kind == NAME and skipped and skipped[-1].kind == NAME:
                continue  # "Iwan [Wyn] Roberts": a name said shorter
            if same_kind and token.kind in (NAME, NUMBER, HAN):
                checked.add(token_at)
                says = _text_of(_stretch(skipped, dropped))
                problem("swapped", says=says, asked=_phrase_at(claim, token_at))
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "replace":
                continue
            span = place[j1:j2]
            dropped = dropped_in(span)
            if not dropped:
                continue
            kinds = {t.kind for t in dropped}
            names = [t for t in dropped if t.kind == NAME]
            numbers = [t for t in dropped if t.kind == NUMBER]
            before = len(problems)
            for i in sorted(range(i1, i2), key=lambda k: claim[k].kind == WORD):
                token = claim[i]
                if token.kind not in (NAME, NUMBER, WORD) or (
                        token.kind != NUMBER and token.key in asked):
                    continue
                if runs_on(i1, i2, j1, j2):
                    continue  # the answer runs on into a neighbouring sentence
                checked.add(i)
                if stated_in(token, span) or moved(token):
                    continue
                # the place's words at the same point: counted back from the next match
                at = j2 - (i2 - i)
                nearest = [t for t in span[max(0, at - j1 - 2):max(0, at - j1 + 3)]
                           if t in dropped]
                if token.kind == NUMBER:
                    substitution(token.text, span, numbers or dropped, NUMBER)
                elif token.kind == NAME and token.key not in source_keys and (
                        not names or len(dropped) > LIKE_FOR_LIKE):
                    problem("missing", asked=_phrase_at(claim, i))  # not a like-for-like swap
                elif token.kind == NAME or not kinds <= {WORD}:  # names and numbers: exact
                    substitution(_phrase_at(claim, i), span, names or numbers or dropped, NAME)
                else:  # a word of its own, or of the place moved here: a swap unless akin
                    substitution(token.text, span, dropped, WORD, nearest)
            for start, end in _han_runs(claim, i1, i2):
                # the question's words, or the place's said in another order, with one
                # character of its own at most ("Ember市长由..." for "...饰演Ember市长")
                if sum(t.key not in asked and not moved(t) for t in claim[start:end]) < 2:
                    continue
                if any(t.kind == HAN for t in dropped):
                    checked.update(range(start, end))
                    substitution("".join(t.text for t in claim[start:end]), span, dropped, HAN)
            # A number or name of the place replaced by other content, even content the
            # question or the place itself holds ("his patent in [1802]" -> "in Richard
            # Trevithick"): the answer drops the fact and puts something else in its slot.
            # (Han characters are left to the run check above: a Chinese answer often drops
            # a date and rewords the rest, "因为它位于..." for "2007年6月，作为...".)
            put = [t for t in _facts(claim[i1:i2]) if t.kind != HAN and not moved(t)]
            if (len(problems) == before and (numbers or names) and put
                    and not runs_on(i1, i2, j1, j2)):
                checked.update(range(i1, i2))
                problem("swapped", says=_text_of(_stretch(span, numbers or names)),
                        asked=_text_of(claim[i1:i2]))

    # Facts the answer states that the place (the sentence and its neighbour) lacks; names
    # and numbers first, so that the reason names the fact that matters most.
    for i, token in sorted(enumerate(claim), key=lambda it: it[1].kind == WORD):
        if i in checked or token.kind not in (NAME, NUMBER, WORD):
            continue
        if token.kind != NUMBER and token.key in asked:
            continue  # the question's own terms: the subject "he" stands for
        if stated_in(token, window):
            continue
        if token.kind == NUMBER:
            stated = [t.text for t in window if t.kind == NUMBER]
            if stated:
                problem("number", says=", ".join(dict.fromkeys(stated)))
            else:
                problem("no_number", asked=token.text)
        elif token.kind == NAME or bare:
            if token.key not in source_keys:
                problem("missing", asked=_phrase_at(claim, i))
            else:
                problem("elsewhere", asked=_phrase_at(claim, i), says=primary.text)
        else:
            undecided.append(token.text)
    for start, end in _han_runs(claim, 0, len(claim)):
        run = "".join(t.text for t in claim[start:end])
        pending = [t for k, t in enumerate(claim[start:end], start=start)
                   if k not in checked and t.key not in asked]
        if not pending or run in window_text:
            continue
        parts = [p for p in _pieces_missing(run, window_text) if len(p) > 1]
        if not parts:
            continue
        if bare and not any(p in source_text for p in parts):
            problem("missing", asked=parts[0])
        elif bare:
            problem("elsewhere", asked=parts[0], says=primary.text)
        elif _says_much_else(parts, claim):
            problem("elsewhere" if any(p in source_text for p in parts) else "missing",
                    asked=max(parts, key=len), says=primary.text)
        else:
            undecided.append(parts[0])

    if bare and not problems:
        # "Which club did he join in 1990?" - "Norwich City": the answer stands for the
        # whole question, so a year or date the question gives must be where the answer is
        # (its sentence or the one before), when the source states it anywhere (the 1990
        # line names another club).
        pinned = pinned_times(question, [u for p in candidates for u in p.tokens])
        at = candidates.index(primary)  # the sentence, and the one before that frames it
        near = [u for i in (at, *(j for j in primary.neighbours if j < at))
                for u in candidates[i].tokens]
        away = [t for t in pinned if not stated_in(t, near)]
        if away:
            problem("unpinned", asked=away[0].text, says=primary.text)
    context = " ".join(candidates[i].text for i in sorted(
        {candidates.index(primary), *primary.neighbours}))
    if problems:
        contradicts = any(k not in ("missing", "no_number") for k in problem_kinds)
        return Verdict(FLAGGED, problems[0], primary.text, score, bare, tuple(problems),
                       context, contradicts)
    if bare or undecided:
        return Verdict(UNDECIDED, "", primary.text, score, bare, tuple(undecided), context)
    return Verdict(SUPPORTED, "", primary.text, score, bare, (), context)


OWN_WORDS = 0.3  # a claim whose Han content is this much not in its place says another thing


def _says_much_else(parts: Sequence[str], claim: Sequence[Token]) -> bool:
    """Are the claim's Han stretches missing from its place a clause of their own (six
    characters or more, and a third of its Han content), not a rephrased word or two?"""
    missing = sum(len(p) for p in parts)
    han = sum(t.kind == HAN for t in claim)
    return missing >= 6 and missing >= OWN_WORDS * han


def _skips(claim: Sequence[Token], place: Sequence[Token], matcher: SequenceMatcher[str]
           ) -> list[tuple[list[Token], int]]:
    """Where the answer goes straight on to a fact the place states only after other
    content: "出生于[碎叶城，后迁居]长安" read as "出生于长安". Returns (the skipped place
    content, the claim position of the fact that follows)."""
    found = []
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    for before, after in itertools.pairwise(blocks):
        if after.a != before.a + before.size or after.b == before.b + before.size:
            continue  # the answer has words of its own here, or nothing was skipped
        first = next((k for k in range(after.a, after.a + after.size)
                      if claim[k].kind != FILLER), None)
        if first is None or first - after.a > 1:
            continue
        found.append((list(place[before.b + before.size:after.b]), first))
    return found


def _stretch(span: Sequence[Token], facts: Sequence[Token]) -> list[Token]:
    """What the source says at one point: from the first of `facts` in `span`, the tokens
    of its kind next to it ("Huddersfield Town", "碎叶城"), not every fact of the span."""
    start = next((i for i, t in enumerate(span) if any(t is f for f in facts)), None)
    if start is None:
        return list(facts[:1])
    run = [span[start]]
    for token in span[start + 1:]:
        if token.kind != run[-1].kind or token.kind == NUMBER:
            break
        run.append(token)
    return run


def _phrase_at(claim: Sequence[Token], at: int) -> str:
    """The claim's name (or Han run) around position `at`: "Leicester City", not "City"."""
    kind = claim[at].kind
    if kind not in (NAME, HAN):
        return claim[at].text
    start = at
    while start > 0 and claim[start - 1].kind == kind:
        start -= 1
    end = at + 1
    while end < len(claim) and claim[end].kind == kind:
        end += 1
    return _text_of(claim[start:end])


def _same(a: Token, b: Token) -> bool:
    if a.kind == NUMBER and b.kind == NUMBER and a.quantity and b.quantity:
        return a.quantity.found_in([b.quantity]) or b.quantity.found_in([a.quantity])
    return a.key == b.key


def _pieces_missing(run: str, text: str) -> list[str]:
    """The stretches of a Han run that `text` does not hold: a character counts as held
    when it starts (or continues) a stretch of two or more found in the text.

    Example: _pieces_missing("出生于长安", "出生于碎叶城，长居安") == ["长安"]
    """
    held = [False] * len(run)
    for i in range(len(run) - 1):
        if run[i:i + 2] in text:
            held[i] = held[i + 1] = True
    missing: list[str] = []
    start = None
    for i, is_held in enumerate([*held, True]):
        if not is_held and start is None:
            start = i
        elif is_held and start is not None:
            missing.append(run[start:i])
            start = None
    return missing
