"""Property-based tests (Hypothesis) for the pure logic every answer passes through.

The example tests pin behaviour on a few hand-picked inputs; these state what must hold for
*any* input, because real documents and real model output are stranger than examples:
PDFs extract with control characters and stray line breaks, spreadsheets hold lone rows of
prose, Chinese and emoji sit inside English text, and small models write citation markers
in every style ("[1]", "[2, 3]", "【1】", "[source 4]", "[99]").

- The chunker must never lose or invent text and must keep every chunk within the token
  budget the embedder reads (a chunk over it is silently truncated, so its tail can never be
  found by dense search), and a chunk must carry the page and heading of its section, or a
  citation points at the wrong place.
- The lexical tokenizer feeds both the FTS5 index and the MATCH query: a term that breaks
  the MATCH syntax fails a search outright, and a chunk that a query of its own text cannot
  find is invisible to keyword search.
- The citation parser and the renumbering decide which numbers a user sees: a marker that
  points at no citation, or two numbers for one source, sends the user to the wrong passage.

All of it is pure (no model is loaded) and runs in `make test-fast`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from kbqa.domain import Chunk, Citation, Hit, Section, Source
from kbqa.ingest.chunking import chunk_sections
from kbqa.llm.citations import (
    MAX_CITATIONS,
    _citations,
    _clauses,
    _placeholder,
    _renumber,
    answer_sentences,
    check_citations,
    flag_marker,
    parse_markers,
    strip_markers,
)
from kbqa.retrieval.lexical import (
    FTS5_TOKENIZER,
    STOPWORDS,
    TermMatcher,
    index_terms,
    match_expression,
    query_terms,
    searchable,
)
from kbqa.text import tokens

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=50, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])

# -- shared strategies ------------------------------------------------------------------
# Characters that stress the code paths: CJK (sentence ends without spaces, bigrams),
# sentence and clause punctuation of both scripts, brackets of both marker styles,
# full-width and non-ASCII digits, emoji, zero-width and odd whitespace, control characters.
SPICE = list("北京大学你好世界再见。！？；，、【】[]（）“”‘’"
             "abcXYZ019 .!?,;:-|\n\t\r\x00\x0b\x1c\x85\u00a0\u2028\u200b"
             "１２３١٢٣ＡＢ😀🎉é\u0301ﬀ\ue000\ue001")
ANY_TEXT = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(SPICE)), max_size=160)

WORDS = ["alpha", "Beta", "gamma", "The", "pump", "7:15", "Dr.", "U.S.", "E-42", "café",
         "北京大学", "你好", "今天下雨", "😀", "x" * 40, "Roberts", "1990", "a"]
SEPARATORS = [" ", " ", " ", ". ", "! ", "? ", ", ", "\n", "\n\n", "。", "！", "； ", " | "]
# Text shaped like documents: words, sentence ends, line breaks, paragraph breaks.
PROSE = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)),
                 max_size=60).map(lambda pairs: "".join(w + s for w, s in pairs))
DOC_TEXT = st.one_of(PROSE, ANY_TEXT)


def nonspace(text: str) -> str:
    """The text without whitespace: what must survive cutting and re-joining."""
    return "".join(text.split())


def word_count(text: str) -> int:
    return len(text.split())


def char_count(text: str) -> int:
    """Characters that are not whitespace (a CJK-friendly stand-in for a tokenizer)."""
    return len(nonspace(text))


COUNTERS: dict[str, Callable[[str], int]] = {"words": word_count, "chars": char_count}


def is_subsequence(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(ch in rest for ch in needle)


# == 1. the chunker ========================================================================
@FAST
@given(text=DOC_TEXT, counter=st.sampled_from(sorted(COUNTERS)),
       max_tokens=st.integers(1, 40), overlap=st.integers(0, 40), table=st.booleans())
def test_chunking_never_raises_and_gives_clean_deterministic_chunks(
        text: str, counter: str, max_tokens: int, overlap: int, table: bool) -> None:
    section = Section(text, page=2, table=table)
    drafts = chunk_sections([section], COUNTERS[counter], max_tokens, overlap)
    assert drafts == chunk_sections([section], COUNTERS[counter], max_tokens, overlap)
    for draft in drafts:
        assert draft.text and draft.text == draft.text.strip()
    if nonspace(text):
        assert drafts, "a section with text produced no chunk"
    else:
        assert drafts == []


@FAST
@given(text=DOC_TEXT, counter=st.sampled_from(sorted(COUNTERS)),
       max_tokens=st.integers(1, 40), overlap=st.integers(0, 40))
def test_prose_chunks_stay_within_the_token_budget(
        text: str, counter: str, max_tokens: int, overlap: int) -> None:
    count = COUNTERS[counter]
    for draft in chunk_sections([Section(text)], count, max_tokens, overlap):
        assert count(draft.text) <= max_tokens, draft.text


@FAST
@given(text=DOC_TEXT, counter=st.sampled_from(sorted(COUNTERS)), max_tokens=st.integers(1, 40))
def test_without_overlap_prose_chunks_are_the_text_cut_in_order(
        text: str, counter: str, max_tokens: int) -> None:
    """Nothing lost, nothing repeated, nothing reordered: the chunks, read one after the
    other, hold exactly the section's characters (only whitespace may change)."""
    drafts = chunk_sections([Section(text)], COUNTERS[counter], max_tokens, 0)
    assert "".join(nonspace(d.text) for d in drafts) == nonspace(text)


@FAST
@given(text=DOC_TEXT, counter=st.sampled_from(sorted(COUNTERS)),
       max_tokens=st.integers(1, 40), overlap=st.integers(1, 40))
def test_with_overlap_every_chunk_is_a_stretch_of_the_text_and_all_of_it_is_covered(
        text: str, counter: str, max_tokens: int, overlap: int) -> None:
    drafts = chunk_sections([Section(text)], COUNTERS[counter], max_tokens, overlap)
    whole = nonspace(text)
    for draft in drafts:
        assert nonspace(draft.text) in whole, draft.text  # a window of the text, not invented
    assert is_subsequence(whole, "".join(nonspace(d.text) for d in drafts))


ROW = st.lists(st.sampled_from(["north", "south", "42", "7.5", "北京", "😀", "|", "x" * 12]),
               min_size=1, max_size=12).map(" ".join)


@FAST
@given(rows=st.lists(ROW, min_size=2, max_size=15), max_tokens=st.integers(1, 30))
def test_table_chunks_keep_every_row_under_the_header_and_within_budget(
        rows: list[str], max_tokens: int) -> None:
    drafts = chunk_sections([Section("\n".join(rows), table=True)], word_count, max_tokens)
    for draft in drafts:
        assert word_count(draft.text) <= max_tokens, draft.text
    read = "".join(nonspace(d.text) for d in drafts)
    if word_count(rows[0]) <= max_tokens // 2:  # a row never loses the names of its columns
        assert all(d.text.split("\n")[0] == rows[0] for d in drafts)
        assert is_subsequence(nonspace("".join(rows[1:])), read)
    else:  # a header that big is data: cut like any row
        assert read == nonspace("".join(rows))


@FAST
@example(row="a b c", max_tokens=1)
@given(row=ROW, max_tokens=st.integers(1, 30))
def test_a_table_of_one_row_stays_within_budget(row: str, max_tokens: int) -> None:
    drafts = chunk_sections([Section(row, table=True)], word_count, max_tokens)
    assert all(word_count(d.text) <= max_tokens for d in drafts), [d.text for d in drafts]


@FAST
@example(text="north north", max_tokens=1)
@example(text="Supercalifragilisticexpialidocious is a word we use", max_tokens=3)
@given(text=st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=30),
                     min_size=1, max_size=30).map(" ".join),
       max_tokens=st.integers(1, 10))
def test_words_stay_whole_when_each_fits_the_budget(text: str, max_tokens: int) -> None:
    drafts = chunk_sections([Section(text)], word_count, max_tokens, 0)
    assert [w for d in drafts for w in d.text.split()] == text.split()


SECTION = st.builds(
    Section, text=DOC_TEXT, page=st.one_of(st.none(), st.integers(1, 500)),
    heading=st.sampled_from(["", "Intro", "Safety > Pumps", "第一章"]),
    location=st.sampled_from(["", "slide 3", "sheet Sales, rows 2-40"]), table=st.booleans())


@SLOWER
@given(sections=st.lists(SECTION, max_size=5), max_tokens=st.integers(1, 40),
       overlap=st.integers(0, 20))
def test_each_chunk_keeps_its_own_section_s_place_and_never_spans_two(
        sections: list[Section], max_tokens: int, overlap: int) -> None:
    drafts = chunk_sections(sections, word_count, max_tokens, overlap)
    assert [d.ordinal for d in drafts] == list(range(len(drafts)))
    expected = [(d.text, s.page, s.heading, s.location) for s in sections
                for d in chunk_sections([s], word_count, max_tokens, overlap)]
    assert [(d.text, d.page, d.heading, d.location) for d in drafts] == expected


# == 2. the lexical tokenizer ==============================================================
_MATCHER = TermMatcher()
_FTS = sqlite3.connect(":memory:")
_FTS.execute(f"CREATE VIRTUAL TABLE t USING fts5(terms, tokenize='{FTS5_TOKENIZER}')")


def fts_rows(rows: dict[int, str], match: str) -> set[int]:
    """Rows of a scratch FTS5 table (the store's tokenizer) that `match` finds."""
    with _FTS:
        _FTS.execute("DELETE FROM t")
        _FTS.executemany("INSERT INTO t(rowid, terms) VALUES (?, ?)", list(rows.items()))
        found = {int(r) for (r,) in _FTS.execute("SELECT rowid FROM t WHERE t MATCH ?",
                                                 (match,))}
        _FTS.execute("DELETE FROM t")
    return found


@FAST
@given(text=DOC_TEXT)
def test_index_terms_are_non_empty_single_words(text: str) -> None:
    stored = index_terms(text)
    assert stored == index_terms(text)
    terms = stored.split(" ") if stored else []
    assert terms == tokens(text)
    for term in terms:
        assert term and term.split() == [term]  # no whitespace inside a term
        assert term == term.casefold()


@FAST
@given(query=DOC_TEXT)
def test_query_terms_are_distinct_index_terms_without_stopwords_unless_all_are(
        query: str) -> None:
    terms = query_terms(query)
    assert terms == query_terms(query)
    every = tokens(query)
    assert len(terms) == len(set(terms))
    assert set(terms) <= set(every)
    if every:
        assert terms, "a query with words kept none of them"
    if any(t not in STOPWORDS for t in every):
        assert not any(t in STOPWORDS for t in terms)


@FAST
@given(query=DOC_TEXT)
def test_a_query_of_any_text_is_valid_fts5_syntax(query: str) -> None:
    terms = query_terms(query)
    assume(terms)
    fts_rows({1: "alpha beta"}, match_expression(terms))  # raises OperationalError if not


# NUL is left out: SQLite ends a C string there, and `tokens()` never yields one.
RAW_TERM = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                   min_size=1, max_size=12)


@FAST
@given(terms=st.lists(st.one_of(RAW_TERM, st.sampled_from(
    ['"', '""', "AND", "OR", "NOT", "NEAR", "*", "^x", "a:b", "(", ")", "-", "+", "{x}"])),
    min_size=1, max_size=6))
def test_match_expression_quotes_any_term_so_none_is_read_as_syntax(terms: list[str]) -> None:
    fts_rows({1: "alpha beta"}, match_expression(terms))  # raises OperationalError if not


@SLOWER
@given(heading=st.one_of(st.just(""), PROSE), body=DOC_TEXT)
def test_a_chunk_is_found_by_a_query_of_its_own_words(heading: str, body: str) -> None:
    """Index a chunk, then search with its body (as the retriever does: terms in which FTS5
    reads no token are dropped first): every remaining term is present, and the chunk is
    found whenever any term is left."""
    row = index_terms(searchable(heading, body))
    terms = query_terms(body)
    kept = [t for t, stem in zip(terms, _MATCHER.stems(terms), strict=True) if stem]
    assert _MATCHER.present(kept, {7: searchable(heading, body)})[7] == set(kept)
    if kept:
        assert fts_rows({7: row, 8: "zzzunrelated"}, match_expression(kept)) == {7}


@FAST
@given(heading=ANY_TEXT, body=ANY_TEXT)
def test_the_heading_and_body_are_both_searchable_and_never_glued(heading: str,
                                                                 body: str) -> None:
    assert tokens(searchable(heading, body)) == tokens(heading) + tokens(body)


# == 3. the citation marker parser =========================================================
# A marker as small models write it; the number may be out of range (0, 99).
NUMBER = st.integers(0, 12)


@st.composite
def markers(draw: st.DrawFn) -> tuple[str, list[int]]:
    numbers = draw(st.lists(NUMBER, min_size=1, max_size=3))
    style = draw(st.sampled_from(["[{}]", "[ {} ]", "[source {}]", "[Sources {}]", "[资料{}]",
                                  "【{}】"]))
    if style == "【{}】":
        numbers = numbers[:1]
    joiner = draw(st.sampled_from([", ", ",", "，", "、", "; "]))
    return style.format(joiner.join(str(n) for n in numbers)), numbers


# Answer text around markers: no brackets, so it holds no marker of its own.
PLAIN = st.text(alphabet=st.characters(exclude_characters="[]【】\ue000\ue001",
                                       exclude_categories=("Cs",)), max_size=30)


@st.composite
def marked_text(draw: st.DrawFn) -> tuple[str, list[str], list[list[int]]]:
    """Text with markers: (text, the plain pieces, the numbers of each marker in order)."""
    pieces = [draw(st.one_of(PLAIN, PROSE.map(lambda t: t[:40])))]
    numbers: list[list[int]] = []
    for _ in range(draw(st.integers(0, 5))):
        marker, found = draw(markers())
        numbers.append(found)
        pieces.append(marker)
        pieces.append(draw(PLAIN))
    return "".join(pieces), pieces[::2], numbers


@FAST
@given(text=ANY_TEXT)
def test_marker_parsing_never_raises_and_reads_only_numbers_in_the_text(text: str) -> None:
    numbers = parse_markers(text)
    assert len(numbers) == len(set(numbers))
    written = {int(d) for d in re.findall(r"\d+", text)}
    assert set(numbers) <= written
    strip_markers(text)
    assert nonspace("".join(answer_sentences(text))) == nonspace(text)  # no text lost


@FAST
@given(case=marked_text())
def test_every_marker_style_is_parsed_in_order_of_first_appearance(
        case: tuple[str, list[str], list[list[int]]]) -> None:
    text, plain, numbers = case
    assert parse_markers(text) == list(dict.fromkeys(n for group in numbers for n in group))
    stripped = strip_markers(text)
    assert parse_markers(stripped) == []
    assert nonspace(stripped) == nonspace("".join(plain))


@FAST
@given(case=marked_text(), count=st.integers(0, 6))
def test_out_of_range_numbers_are_dropped_from_the_clauses(
        case: tuple[str, list[str], list[list[int]]], count: int) -> None:
    text, plain, numbers = case
    clauses = _clauses(text, count)
    marked = [cited for _, cited, ends in clauses if ends]
    assert marked == [[n - 1 for n in group if 1 <= n <= count] for group in numbers]
    assert nonspace("".join(body for body, _, _ in clauses)) == nonspace("".join(plain))


# == 4. citation renumbering ===============================================================
@st.composite
def placeholder_text(draw: st.DrawFn) -> tuple[str, list[str], list[int]]:
    """Checked text before renumbering: (text, plain pieces, source index of each marker)."""
    pieces = [draw(PLAIN)]
    indices: list[int] = []
    for _ in range(draw(st.integers(0, 8))):
        index = draw(st.integers(0, 6))
        indices.append(index)
        pieces.append(_placeholder(index))
        pieces.append(draw(st.one_of(st.just(""), st.just(" "), PLAIN)))
    return "".join(pieces), pieces[::2], indices


@FAST
@given(case=placeholder_text(), data=st.data())
def test_renumbering_maps_each_source_to_one_number_and_keeps_the_text(
        case: tuple[str, list[str], list[int]], data: st.DataObject) -> None:
    text, plain, indices = case
    # The numbering _citations gives: sources in order of first use, some left out (over
    # MAX_CITATIONS), some sharing a number (the same quote of the same file).
    first_use = list(dict.fromkeys(indices))
    numbered = [i for i in first_use if data.draw(st.booleans())]
    number: dict[int, int] = {}
    for i in numbered:
        share = number and data.draw(st.booleans())
        number[i] = data.draw(st.sampled_from(sorted(set(number.values())))) if share \
            else max(number.values(), default=0) + 1
    out = _renumber(text, number)
    assert "\ue000" not in out and "\ue001" not in out
    expected = list(dict.fromkeys(number[i] for i in indices if i in number))
    assert parse_markers(out) == expected == list(range(1, len(expected) + 1))
    assert nonspace(re.sub(r"\[\d+\]", "", out)) == nonspace("".join(plain))


SOURCE_TEXTS = [
    ("/d/bio.txt", "Roberts was born in Bangor, Wales. He played as a forward."),
    ("/d/goals.txt", "He scored 84 league goals for Norwich City."),
    ("/d/harbor.txt", "The Lindqvist harbor office opens at 7:15 and closes at 16:40."),
    ("/d/zh.txt", "诺里奇位于英格兰东部，是诺福克郡的首府。"),
    ("/d/pump.txt", "Service the pump every 450 hours. Rinse the inlet filter weekly."),
    ("/d/bio.txt", "Roberts was born in Bangor, Wales. He played as a forward."),  # same file
]
CLAIMS = ["He was born in Bangor", "Roberts played as a forward", "He scored 84 league goals",
          "The office opens at 7:15", "It closes at 16:40", "诺里奇位于英格兰东部",
          "Service the pump every 450 hours", "He won the World Cup in 1990", "Yes",
          "The filter is rinsed weekly", "He was born in Cardiff", "It is so"]


def source(chunk_id: int, path: str, text: str) -> Source:
    return Source(hits=(Hit(Chunk(chunk_id=chunk_id, source=path, text=text), 0.5),), text=text)


SOURCES = st.lists(st.sampled_from(range(len(SOURCE_TEXTS))), min_size=1, max_size=6).map(
    lambda picks: [source(n + 1, *SOURCE_TEXTS[i]) for n, i in enumerate(picks)])


@st.composite
def answers(draw: st.DrawFn) -> str:
    """A model's answer: claims (true, false or empty) with markers of any style and number,
    before or after the full stop, on one line or several."""
    sentences = []
    for _ in range(draw(st.integers(1, 5))):
        claim = draw(st.sampled_from(CLAIMS))
        stop = "。" if re.search(r"[\u4e00-\u9fff]$", claim) else "."
        marks = "".join(draw(st.lists(markers().map(lambda m: m[0]), max_size=2)))
        space = "" if stop == "。" or not marks else " "
        sentences.append(draw(st.sampled_from([f"{claim}{space}{marks}{stop}",
                                               f"{claim}{stop} {marks}"])).strip())
    return draw(st.sampled_from([" ", "\n", "\n- "])).join(sentences)


QUESTIONS = ["Tell me about Roberts", "Where was Roberts born?", "When does the office open?",
             "诺里奇在哪里？", "How often is the pump serviced?"]


def without_flags(checked_text: str, reasons: list[str]) -> str:
    for reason in reasons:
        for lang in ("en", "zh"):
            checked_text = checked_text.replace(flag_marker(reason, lang), "")
    return checked_text


@SLOWER
@given(answer=answers(), question=st.sampled_from(QUESTIONS), sources=SOURCES)
def test_checked_answers_cite_one_to_k_in_order_of_first_use(
        answer: str, question: str, sources: list[Source]) -> None:
    checked = check_citations(answer, question, sources)
    cited = parse_markers(checked.text)
    assert cited == list(range(1, len(checked.citations) + 1)), checked.text
    assert {int(n) for n in re.findall(r"\[(\d+)\]", checked.text)} == set(cited)
    assert len(checked.citations) <= min(MAX_CITATIONS, len(sources))
    assert checked.supported == bool(checked.citations)
    given_ids = {s.chunk.chunk_id for s in sources}
    assert all(c.chunk_id in given_ids and c.quote for c in checked.citations)
    # one number per distinct (file, quote): never two numbers for the same passage
    assert len({(c.source, c.quote) for c in checked.citations}) == len(checked.citations)
    assert check_citations(answer, question, sources) == checked


@SLOWER
@given(answer=answers(), question=st.sampled_from(QUESTIONS), sources=SOURCES)
def test_checking_changes_only_markers_and_flag_notes(
        answer: str, question: str, sources: list[Source]) -> None:
    checked = check_citations(answer, question, sources)
    body = without_flags(checked.text, [f.reason for f in checked.flags])
    assert nonspace(strip_markers(body)) == nonspace(strip_markers(answer))


@SLOWER
@given(answer=ANY_TEXT, question=st.sampled_from(QUESTIONS), sources=SOURCES)
def test_checking_any_model_output_never_raises_or_cites_a_missing_source(
        answer: str, question: str, sources: list[Source]) -> None:
    checked = check_citations(answer, question, sources)
    assert set(parse_markers(checked.text)) <= set(range(1, len(checked.citations) + 1))


@SLOWER
@example(claim="He was born in Bangor", outer=1, inner=9)
@given(claim=st.sampled_from(CLAIMS), outer=NUMBER, inner=NUMBER)
def test_a_marker_nested_in_brackets_never_leaves_a_marker_that_cites_nothing(
        claim: str, outer: int, inner: int) -> None:
    sources = [source(1, *SOURCE_TEXTS[0]), source(2, *SOURCE_TEXTS[1])]
    checked = check_citations(f"{claim} [{outer} [{inner}]].", "Where was Roberts born?",
                              sources)
    assert set(parse_markers(checked.text)) <= set(range(1, len(checked.citations) + 1)), \
        checked.text


@FAST
@given(sources=SOURCES, data=st.data())
def test_citation_numbers_follow_first_use_and_point_at_their_source(
        sources: list[Source], data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(sources))))
    used = order[:data.draw(st.integers(0, len(sources)))]
    assigned = {i: [data.draw(st.sampled_from(["", *sources[i].text.split(". "), "Invented."]))]
                for i in used}
    citations, number = _citations(assigned, sources, "Where was Roberts born?")
    assert all(isinstance(c, Citation) for c in citations)
    assert len(citations) <= MAX_CITATIONS
    assert sorted(set(number.values())) == list(range(1, len(citations) + 1))
    firsts = list(dict.fromkeys(number[i] for i in assigned if i in number))
    assert firsts == list(range(1, len(citations) + 1))  # numbered in order of first use
    for i, n in number.items():
        assert citations[n - 1].source == sources[i].chunk.source
    if len(citations) < MAX_CITATIONS:
        assert set(number) == set(assigned)  # only the cap leaves a used source out
