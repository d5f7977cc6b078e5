from __future__ import annotations

import re

import pytest
from kbqa.domain import Chunk, Hit, Source
from kbqa.llm.citations import (
    answer_sentences,
    best_quote,
    check_citations,
    is_refusal,
    parse_markers,
    strip_markers,
    support,
    terms,
)


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
    assert {"伦敦", "敦大"} <= terms("伦敦大学")
    assert terms("The Pumps were serviced") == {"pump", "serviced"}


def test_support_counts_only_new_terms() -> None:
    assert support("He was born in Bangor.", BANGOR.chunk.text, "Where was he born?") == 1.0
    assert support("He was born in Cardiff.", BANGOR.chunk.text, "Where was he born?") == 0.0


def test_support_needs_the_sentence_subject_too() -> None:
    # "Bangor" is in the source, but the source is not about the Rhine
    assert support("The Rhine flows past Bangor.", BANGOR.chunk.text, "Where does the Rhine flow?"
                   ) < 0.5


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
    assert checked.unsupported == ["He was born in Cardiff."]


def test_each_sentence_is_checked_and_the_unsupported_one_flagged() -> None:
    checked = check_citations("He was born in Bangor [1]. He scored 84 goals [1]. He won the "
                              "World Cup in 1990 [2].", "Tell me about Roberts", [BANGOR, GOALS])
    assert checked.supported
    assert checked.unsupported == ["He won the World Cup in 1990."]
    assert checked.text == ("He was born in Bangor [1]. He scored 84 goals [2]. He won the World "
                            "Cup in 1990 (not supported by the documents).")
    assert [c.chunk_id for c in checked.citations] == [1, 2]


def test_a_marker_inside_a_sentence_is_checked_against_its_clause() -> None:
    checked = check_citations("Born in Bangor [1]; 84 goals [1].", "Tell me about Roberts",
                              [BANGOR, GOALS])
    assert checked.text == "Born in Bangor [1]; 84 goals [2]."


def test_markers_after_the_full_stop_stay_with_their_sentence() -> None:
    assert answer_sentences("A is 1. [1] B is 2 [2].") == ["A is 1. [1]", "B is 2 [2]."]


def test_paraphrase_is_rescued_by_meaning_only_with_some_shared_terms() -> None:
    def close(sentences, passages):
        return [[0.9 for _ in passages] for _ in sentences]

    source = hit(5, "The device must be recharged after eight hours of use.")
    paraphrase = "It needs charging again after eight hours [1]."
    assert check_citations(paraphrase, "When?", [source], close).supported
    assert not check_citations("Completely different words here [1].", "When?", [source],
                               close).supported


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
    assert checked.unsupported == ["He was born in Bangor and won the World Cup in 1990."]
    assert checked.text.endswith("(not supported by the documents).")


def test_an_impossible_number_inside_a_sentence_is_reattributed() -> None:
    checked = check_citations("Born in Bangor [2]; 84 goals [7].", "Tell me about Roberts",
                              [GOALS, BANGOR])
    assert checked.text == "Born in Bangor [1]; 84 goals [2]."
    assert checked.unsupported == []


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
        ("He was born in Bangor [1].", False),
        ("诺里奇位于英格兰东部[1]。", False),
    ],
)
def test_refusal_detection(text: str, refused: bool) -> None:
    assert is_refusal(text) is refused


def test_strip_markers() -> None:
    assert strip_markers("Bangor [1].") == "Bangor."


def test_a_long_sentence_is_quoted_around_the_answer() -> None:
    passage = "Tesla studied in Graz " + "and travelled widely " * 40 + \
        "until his father died in 1879, after which he left " + "for Prague " * 30 + "."
    quote = best_quote(passage, "1879 [1].", "When did his father die?")
    assert "1879" in quote and len(quote) <= 402
    assert quote.startswith("…") and quote.strip("…") in passage
