from __future__ import annotations

import pytest
from kbqa.domain import Section
from kbqa.ingest.chunking import (
    Unit,
    chunk_sections,
    join_pieces,
    pack_units,
    split_long,
)
from kbqa.text import paragraph_lines, sentences, split_sentences


def words(text: str) -> int:
    return len(text.split())


def chars(text: str) -> int:
    return len(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One two. Three four!", ["One two.", "Three four!"]),
        ("Dr. no split here? Yes.", ["Dr. no split here?", "Yes."]),
        ("你好。今天下雨！明天呢？", ["你好。", "今天下雨！", "明天呢？"]),
        ("“引号。”然后。", ["“引号。”", "然后。"]),
        ("Version 2.5 is out. Next", ["Version 2.5 is out.", "Next"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert [s for s, _ in split_sentences(text)] == expected


def test_paragraph_starts_are_marked() -> None:
    result = split_sentences("A b. C d.\n\nE f.")
    assert result == [("A b.", True), ("C d.", False), ("E f.", True)]


def test_hard_wrapped_lines_are_joined_but_short_lines_kept() -> None:
    wrapped = ("This sentence was wrapped by a PDF exporter in the middle of\n"
               "a thought and continues here.\nPlace of birth Bangor\n- a list item")
    assert paragraph_lines(wrapped) == [
        "This sentence was wrapped by a PDF exporter in the middle of a thought and "
        "continues here.",
        "Place of birth Bangor",
        "- a list item",
    ]


def test_join_pieces_cjk_without_space() -> None:
    assert join_pieces("你好", "世界") == "你好世界"
    assert join_pieces("hello", "world") == "hello world"


def test_split_long_respects_budget_for_cjk_and_latin() -> None:
    cjk = "汉" * 1000
    pieces = split_long(cjk, 100, chars)
    assert all(len(p) <= 100 for p in pieces) and "".join(pieces) == cjk
    latin = " ".join(f"w{i}" for i in range(500))
    pieces = split_long(latin, 50, words)
    assert all(words(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == latin.split()


def test_pack_units_overlap_and_budget() -> None:
    units = [Unit(f"s{i}.", 10, i == 0) for i in range(10)]
    chunks = pack_units(units, max_tokens=30, overlap_tokens=10)
    assert chunks[0] == "s0. s1. s2."
    assert chunks[1].startswith("s2.")  # one sentence of overlap
    covered = " ".join(chunks)
    assert all(f"s{i}." in covered for i in range(10))


def test_chunks_end_at_sentence_ends_and_stay_in_budget() -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(60))
    drafts = chunk_sections([Section(text, page=4)], words, max_tokens=40, overlap_tokens=8)
    assert len(drafts) > 3
    for draft in drafts:
        assert words(draft.text) <= 40
        assert draft.text.endswith(".")
        assert draft.page == 4
    assert [d.ordinal for d in drafts] == list(range(len(drafts)))


def test_chinese_chunks_end_at_sentence_ends() -> None:
    text = "".join(f"这是第{i}个句子，它讲述了一个重要的事实。" for i in range(80))
    drafts = chunk_sections([Section(text)], chars, max_tokens=120, overlap_tokens=20)
    assert len(drafts) > 5
    assert all(d.text.endswith("。") for d in drafts)
    assert all(len(d.text) <= 120 for d in drafts)


def test_sections_never_share_a_chunk() -> None:
    drafts = chunk_sections([Section("Alpha.", page=1), Section("Beta.", page=2)], words, 50, 5)
    assert [(d.text, d.page) for d in drafts] == [("Alpha.", 1), ("Beta.", 2)]


def test_enormous_single_line_is_cut_into_budgeted_chunks() -> None:
    line = "x" * 20000
    drafts = chunk_sections([Section(line)], chars, max_tokens=500, overlap_tokens=0)
    assert sum(len(d.text) for d in drafts) == 20000
    assert all(len(d.text) <= 500 for d in drafts)


def test_an_initial_or_a_title_does_not_end_a_sentence() -> None:
    text = "The assassination of John F. Kennedy [1]. Mr. Smith joined the U.S. Army. It rained."
    assert sentences(text) == ["The assassination of John F. Kennedy [1].",
                               "Mr. Smith joined the U.S. Army.", "It rained."]
