from __future__ import annotations

import pytest
from kbqa.domain import Chunk, Hit
from kbqa.llm.citations import (
    best_quote,
    check_citations,
    is_refusal,
    parse_markers,
    strip_markers,
    support,
    terms,
)


def hit(chunk_id: int, text: str, source: str = "/docs/a.txt", page: int | None = None) -> Hit:
    return Hit(Chunk(chunk_id=chunk_id, source=source, text=text, page=page), 0.5)


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


def test_bogus_marker_is_dropped_and_answer_attributed() -> None:
    checked = check_citations("He was born in Bangor [7].", "Where was Roberts born?",
                              [GOALS, BANGOR])
    assert [c.chunk_id for c in checked.citations] == [1]
    assert checked.text == "He was born in Bangor."
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


def test_every_citation_points_at_a_given_source() -> None:
    sources = [GOALS, BANGOR]
    checked = check_citations("Bangor [1][2][3][99]. 84 goals [2].", "Roberts?", sources)
    given = {h.chunk.chunk_id for h in sources}
    assert checked.citations and all(c.chunk_id in given for c in checked.citations)


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
