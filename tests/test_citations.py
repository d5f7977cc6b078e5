from __future__ import annotations

import re

import pytest
from kbqa.domain import Chunk, Flag, Hit, Source
from kbqa.llm.citations import (
    answer_sentences,
    best_quote,
    check_citations,
    is_refusal,
    parse_markers,
    refuses,
    strip_markers,
)
from kbqa.text import content_terms


def hit(chunk_id: int, text: str, source: str = "/docs/a.txt", page: int | None = None
        ) -> Source:
    found = Hit(Chunk(chunk_id=chunk_id, source=source, text=text, page=page), 0.5)
    return Source(hits=(found,), text=text)


BANGOR = hit(1, "Roberts was born in Bangor, Wales. He played as a forward.", "/d/bio.txt", 3)
GOALS = hit(2, "He scored 84 league goals for Norwich City.", "/d/goals.txt")


def test_parse_markers() -> None:
    assert parse_markers("A [2]. B [1, 2]. C【3】 D [source 4]") == [2, 1, 3, 4]
    assert parse_markers("no markers") == []


def test_terms_cjk_bigrams_and_words() -> None:
    assert {"伦敦", "敦大"} <= content_terms("伦敦大学")
    assert content_terms("The Pumps were serviced") == {"pump", "serviced"}


def test_a_sentence_about_another_subject_is_not_supported() -> None:
    # "Bangor" is in the source, but the source is not about the Rhine
    checked = check_citations("The Rhine flows past Bangor [1].", "Where does the Rhine flow?",
                              [BANGOR])
    assert not checked.supported and "Rhine" in checked.flags[0].reason


def test_bogus_marker_is_dropped_and_answer_attributed() -> None:
    checked = check_citations("He was born in Bangor [7].", "Where was Roberts born?",
                              [GOALS, BANGOR])
    assert [c.chunk_id for c in checked.citations] == [1]
    assert checked.text == "He was born in Bangor [1]."
    assert checked.supported


def test_wrong_marker_is_replaced_by_the_supporting_source() -> None:
    checked = check_citations("Bangor, Wales [1].", "Where was Roberts born?", [GOALS, BANGOR])
    assert [c.source for c in checked.citations] == ["/d/bio.txt"]
    assert checked.citations[0].page == 3
    assert "Bangor" in checked.citations[0].quote


def test_markers_are_renumbered_to_the_citation_list() -> None:
    checked = check_citations("Born in Bangor [2]; 84 goals [1].", "Tell me about Roberts",
                              [GOALS, BANGOR])
    assert [c.chunk_id for c in checked.citations] == [1, 2]  # Bangor first, as cited
    assert checked.text == "Born in Bangor [1]; 84 goals [2]."


def test_invented_answer_is_not_supported() -> None:
    checked = check_citations("He was born in Cardiff [1].", "Where was Roberts born?", [BANGOR])
    assert not checked.supported
    assert checked.citations == []
    assert checked.flags == [Flag("He was born in Cardiff.", "the source says Bangor, not Cardiff")]
    assert checked.main_failed


def test_each_sentence_is_checked_and_the_unsupported_one_flagged() -> None:
    checked = check_citations("He was born in Bangor [1]. He scored 84 goals [1]. He won the "
                              "World Cup in 1990 [2].", "Tell me about Roberts", [BANGOR, GOALS])
    assert checked.supported and not checked.main_failed
    assert checked.flags == [Flag("He won the World Cup in 1990.",
                                  "the source does not mention World Cup")]
    assert checked.text == ("He was born in Bangor [1]. He scored 84 goals [2]. He won the World "
                            "Cup in 1990 (not supported by the documents: the source does not "
                            "mention World Cup).")
    assert [c.chunk_id for c in checked.citations] == [1, 2]


def test_a_marker_inside_a_sentence_is_checked_against_its_clause() -> None:
    checked = check_citations("Born in Bangor [1]; 84 goals [1].", "Tell me about Roberts",
                              [BANGOR, GOALS])
    assert checked.text == "Born in Bangor [1]; 84 goals [2]."


def test_markers_after_the_full_stop_stay_with_their_sentence() -> None:
    assert answer_sentences("A is 1. [1] B is 2 [2].") == ["A is 1. [1]", "B is 2 [2]."]


def test_a_synonym_is_accepted_and_an_unrelated_word_flagged() -> None:
    def similarity(a: str, b: str) -> float:
        return 0.9 if {a, b} == {"charged", "recharged"} else 0.2

    source = hit(5, "The device must be recharged after eight hours of use.")
    assert check_citations("The device must be charged after eight hours of use [1].",
                           "When?", [source], similarity).flags == []
    checked = check_citations("The device must be cleaned after eight hours of use [1].",
                              "When?", [source], similarity)
    assert checked.flags[0].reason == "the source says recharged, not cleaned"


def test_chinese_answer_keeps_markers_without_spaces() -> None:
    source = hit(7, "诺里奇位于英格兰东部，是诺福克郡的首府。")
    checked = check_citations("诺里奇位于英格兰东部[1]。", "诺里奇在哪里？", [source])
    assert checked.text == "诺里奇位于英格兰东部[1]。"
    assert checked.supported


def test_every_citation_points_at_a_given_source() -> None:
    sources = [GOALS, BANGOR]
    checked = check_citations("Bangor [1][2][3][99]. 84 goals [2].", "Roberts?", sources)
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", checked.text)}
    assert numbers == {1, 2} and len(checked.citations) == 2
    assert checked.text == "Bangor [1]. 84 goals [2]."


def test_an_unsupported_clause_after_a_supported_one_is_flagged() -> None:
    checked = check_citations("He was born in Bangor [1] and won the World Cup in 1990.",
                              "Tell me about Roberts", [BANGOR])
    assert [f.sentence for f in checked.flags] == [
        "He was born in Bangor and won the World Cup in 1990."]
    assert checked.text.endswith("(not supported by the documents: the source does not "
                                 "mention World Cup).")


def test_an_impossible_number_inside_a_sentence_is_reattributed() -> None:
    checked = check_citations("Born in Bangor [2]; 84 goals [7].", "Tell me about Roberts",
                              [GOALS, BANGOR])
    assert checked.text == "Born in Bangor [1]; 84 goals [2]."
    assert checked.flags == []


def test_a_yes_answer_keeps_a_source_about_the_question() -> None:
    checked = check_citations("Yes [1].", "Was Roberts born in Bangor?", [BANGOR])
    assert checked.supported and checked.text == "Yes [1]."
    assert not check_citations("Yes [1].", "Is the harbor open on Sundays?", [BANGOR]).supported


def test_line_breaks_and_the_model_s_own_text_survive() -> None:
    checked = check_citations("- Born in Bangor [1]\n- 84 goals [2]", "Roberts?", [BANGOR, GOALS])
    assert checked.text == "- Born in Bangor [1]\n- 84 goals [2]"
    text = "Bangor {{0}} as .NET [1]."
    assert check_citations(text, "Where?", [hit(3, "Bangor {{0}} as .NET")]).text == text


def test_quote_is_the_supporting_sentence() -> None:
    assert best_quote(BANGOR.chunk.text, "Bangor", "Where born?") == \
        "Roberts was born in Bangor, Wales."


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("The documents don't say.", True),
        ("The provided sources do not mention his height.", True),
        ("文档中没有提到这一点。", True),
        ("资料中未提及。", True),
        ("This information is not provided in the sources.", True),
        ("There is no information about his height in the documents.", True),
        ("I don't know.", True),
        ("The answer cannot be determined from the given context.", True),
        ("根据资料无法回答这个问题。", True),
        ("资料中没有相关信息。", True),
        ("He was born in Bangor [1].", False),
        ("诺里奇位于英格兰东部[1]。", False),
        # answers that merely contain "cannot" or "no information" are content
        ("The pump cannot find water when the filter is clogged [1].", False),
        ("No information is kept after 30 days [1].", False),
        ("The X200 is not available in blue [1].", False),
        ("Customers cannot determine the delivery date themselves [1].", False),
        ("他没有提到这件事，而是去了北京[1]。", False),
        ("滤芯堵塞时水泵无法找到水源[1]。", False),
        ("30天后不保留任何信息[1]。", False),
    ],
)
def test_refusal_detection(text: str, refused: bool) -> None:
    assert is_refusal(text) is refused


def test_an_answer_that_says_cannot_is_not_turned_into_a_refusal() -> None:
    assert not refuses("The pump cannot find water when the filter is clogged [1].")
    assert not refuses("No information is kept after 30 days [1].")
    assert refuses("The documents don't say. Closest sources found: a.pdf.")


def test_strip_markers() -> None:
    assert strip_markers("Bangor [1].") == "Bangor."


def test_a_long_sentence_is_quoted_around_the_answer() -> None:
    passage = "Tesla studied in Graz " + "and travelled widely " * 40 + \
        "until his father died in 1879, after which he left " + "for Prague " * 30 + "."
    quote = best_quote(passage, "1879 [1].", "When did his father die?")
    assert "1879" in quote and len(quote) <= 402
    assert quote.startswith("…") and quote.strip("…") in passage
