"""Text primitives every layer shares: the CJK ranges, the tokenizer, the sentence splitter,
content terms and the question's language.

Ingest cuts chunks at these sentences, retrieval indexes these tokens, and the answer
checks compare these terms; one copy keeps the three in step (a sentence the chunker
splits is the sentence a citation quotes).
"""

from __future__ import annotations

import itertools
import re
import unicodedata

# Scripts written without spaces between words: kana, Han (with extension A and the
# compatibility block), hangul.
CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{CJK}]")
_HAN_CHAR = re.compile(f"[{HAN}]")
_LATIN = re.compile(r"[A-Za-z]")
_TOKEN = re.compile(rf"[{CJK}]+|[^\W_{CJK}]+")


def is_cjk(ch: str) -> bool:
    """Example: is_cjk("京") is True; is_cjk("a") is False."""
    return bool(_CJK_CHAR.match(ch))


def cjk_bigrams(run: str) -> list[str]:
    """Example: cjk_bigrams("北京大学") == ["北京", "京大", "大学"]; one character stays one."""
    if len(run) == 1:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]


def tokens(text: str) -> list[str]:
    """Case-folded words and CJK bigrams, in order: what lexical search indexes and matches.

    Example: tokens("E-42 in 北京大学") == ["e", "42", "in", "北京", "京大", "大学"]
    """
    normal = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for match in _TOKEN.finditer(normal):
        token = match.group()
        if _CJK_CHAR.match(token):
            out.extend(cjk_bigrams(token))
        else:
            out.append(token)
    return out


# Words that state nothing a source could back or contradict: function words, and the
# words answers use to talk about their sources ("according to the document").
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    it its this that these those there here he she they them his her their we you i me my our
    your yes do does did done has have had can could would should will shall may might
    what which who whom whose when where why how than then so such also very just about into
    over under after before between during while per via according source sources document
    documents text passage context information provided mentioned states stated says said""".split()  # noqa: SIM905
)
STOP_BIGRAMS = frozenset({"根据", "资料", "文档", "提到", "来源", "中的", "的是", "这个", "一个"})
# Negations change what a sentence says; they are facts, never filler.
NEGATIONS = frozenset({"not", "no", "never", "none", "nor", "neither", "nothing", "nobody",
                       "cannot", "without", "t"})  # "t": the tail of "don't", "isn't"


def fold(word: str) -> str:
    """A light plural fold, so "pumps" matches "pump" (stemming further would merge facts).

    Example: fold("pumps") == "pump"; fold("glass") == "glass"; fold("boxes") == "box"
    """
    if len(word) > 4 and word.endswith("es") and not word.endswith("ses"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_terms(text: str) -> set[str]:
    """Terms that carry content: folded words (not stopwords, not one letter) and CJK bigrams
    (a lone character stands for itself).

    Example: content_terms("Iwan was born in Bangor") == {"iwan", "born", "bangor"}
    """
    found: set[str] = set()
    for token in tokens(text):
        if _CJK_CHAR.match(token):
            if token not in STOP_BIGRAMS:
                found.add(token)
        elif token not in STOPWORDS and token not in NEGATIONS and (
                len(token) > 1 or token.isdigit()):
            found.add(fold(token))
    return found


def detect_language(text: str) -> str:
    """'zh' when Han characters outnumber a third of the Latin letters, else 'en'.

    Example: detect_language("诺维奇在哪里?") == "zh"; detect_language("Where?") == "en"
    """
    han = len(_HAN_CHAR.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh" if han and han * 3 >= latin else "en"


def is_cjk_text(text: str) -> bool:
    """Mostly CJK: sentences of it are joined without spaces.

    Example: is_cjk_text("他在北京。") is True; is_cjk_text("He lives in 北京.") is False
    """
    return bool(_CJK_CHAR.search(text)) and len(_CJK_CHAR.sub(" ", text).split()) < 3


# -- sentences -------------------------------------------------------------------------
# Latin sentence ends need following whitespace and a capital (or digit, quote, CJK) next;
# CJK ends (。！？；) need none.
_NEXT = r"(?=[\"'“‘(\[]?[A-Z0-9" + CJK + r"])"
# ... but not after an initial or a title: "John F. Kennedy", "Mr. Smith", "U.S. Army".
_NOT_AN_END = r"(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bMrs\.)"
_SENTENCE_SPLIT = re.compile(
    r"(?<=[.!?])" + _NOT_AN_END + r"\s+" + _NEXT
    + r"|(?<=[.!?][\"'”’)\]])\s+" + _NEXT
    + r"|(?<=[。！？；])(?![”’」』）)])\s*"
    + r"|(?<=[。！？；!?][”’」』）)])\s*"
)
_TERMINAL = re.compile(r"[.!?:;。！？；：…”’」』)]\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•·+]|\d{1,3}[.)]|[a-zA-Z][.)])\s+")
_SHORT_LINE = 40


def ends_sentence(text: str) -> bool:
    """Does `text` end as a sentence does (not as a heading or a table row)?

    Example: ends_sentence("It opens at 7:15.") and not ends_sentence("1990-1993 Huddersfield")
    """
    return bool(_TERMINAL.search(text))


def paragraph_lines(paragraph: str) -> list[str]:
    """Unwrap hard-wrapped lines, keeping real line breaks (short lines, list items).

    Example: paragraph_lines("a line long enough to have been wrapped by its\\neditor.\\n- item")
             == ["a line long enough to have been wrapped by its editor.", "- item"]
    """
    out: list[list[str]] = []  # pieces per output line, joined once at the end (linear)
    length = 0  # characters of the last line read: a short one ends its output line, so
    # an infobox's rows ("1990-1993 Huddersfield Town") after a long caption stay rows
    for raw in paragraph.split("\n"):
        line = raw.strip()
        if not line:
            continue
        ends = bool(_TERMINAL.search(out[-1][-1])) or length < _SHORT_LINE if out else True
        if not ends and not _LIST_ITEM.match(line):
            out[-1].append(line)
            length = len(line)
        else:
            out.append([line])
            length = len(line)
    lines = []
    for pieces in out:
        parts = [pieces[0]]
        for left, right in itertools.pairwise(pieces):
            parts.append("" if is_cjk(left[-1]) or is_cjk(right[0]) else " ")
            parts.append(right)
        lines.append("".join(parts))
    return lines


def split_sentences(text: str) -> list[tuple[str, bool]]:
    """Sentences in order, each with True where it starts a paragraph (list items stay
    inside theirs: a reference list cut item by item floods retrieval with tiny chunks).

    Example: split_sentences("A b. C d.\n\n你好。再见。") ==
        [("A b.", True), ("C d.", False), ("你好。", True), ("再见。", False)]
    """
    result: list[tuple[str, bool]] = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        first = True
        for line in paragraph_lines(paragraph):
            for sentence in _SENTENCE_SPLIT.split(line):
                sentence = sentence.strip()
                if sentence:
                    result.append((sentence, first))
                    first = False
    return result


def sentences(text: str) -> list[str]:
    """Example: sentences("A b. C d.") == ["A b.", "C d."]"""
    return [sentence for sentence, _ in split_sentences(text)]
