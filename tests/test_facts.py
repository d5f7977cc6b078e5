"""The fact-level check (pure): facts found together in the place the answer restates."""

from __future__ import annotations

import pytest
from kbqa.llm.facts import (
    FLAGGED,
    SUPPORTED,
    UNDECIDED,
    Quantity,
    check_claim,
    claim_tokens,
    leans_on_question,
    stem,
)
from kbqa.text import content_terms, sentences, tokens

ROBERTS = ("Iwan Roberts was born in Bangor in 1968 and played as a forward. His footballing "
           "career started at Watford as a trainee before signing his first professional "
           "contract with the club in 1986. He moved to Huddersfield Town in 1990 where he "
           "remained for three seasons before transferring to Leicester City.")
LIBAI = "李白于701年出生于碎叶城，后迁居长安。他一生写了一千多首诗。他没有参加科举考试。"


def verdict(answer: str, question: str, source: str = ROBERTS, lang: str = "en"):
    return check_claim(answer, question, source, lang)


# -- the examples -------------------------------------------------------------------
def test_a_wrong_year_is_flagged_with_what_the_source_says() -> None:
    found = verdict("He was born in Bangor in 1986.", "Where was Iwan Roberts born?")
    assert found.status == FLAGGED
    assert found.reason == "the source says 1968, not 1986"
    assert found.place.startswith("Iwan Roberts was born in Bangor in 1968")


def test_an_inserted_negation_is_flagged() -> None:
    found = verdict("He was not born in Bangor.", "Where was Iwan Roberts born?")
    assert found.status == FLAGGED and found.reason.startswith("the source says the opposite")


def test_a_word_the_source_does_not_use_is_not_passed_as_grounded() -> None:
    assert verdict("Roberts played as a goalkeeper.", "What position did Roberts play?"
                   ).status != SUPPORTED
    assert verdict("Roberts played as a forward.", "What position did Roberts play?"
                   ).status == SUPPORTED


def test_a_name_swapped_for_another_of_the_same_passage_is_flagged() -> None:
    question = "Which club did Iwan Roberts move to in 1990?"
    for answer in ("Iwan Roberts moved to Watford in 1990.", "He moved to Watford."):
        found = verdict(answer, question)
        assert found.status == FLAGGED, answer
        assert found.reason == "the source says Huddersfield Town, not Watford"
    found = verdict("He moved to Leicester City in 1990 where he remained for three seasons "
                    "before transferring to Leicester City.", question)
    assert found.reason == "the source says Huddersfield Town, not Leicester City"


def test_a_bare_answer_found_in_the_passage_is_left_to_the_second_reader() -> None:
    question = "Which club did Iwan Roberts move to in 1990?"
    for answer in ("Huddersfield Town.", "Watford in 1990", "Leicester City"):
        found = verdict(answer, question)
        assert found.status == UNDECIDED and found.bare, answer
    found = verdict("Cardiff City.", question)
    assert found.status == FLAGGED and found.reason == "the source does not mention Cardiff"


def test_a_bare_answer_must_stand_where_the_question_s_number_does() -> None:
    found = verdict("Watford.", "Which club did Iwan Roberts move to in 1990?")
    assert found.status == FLAGGED and found.bare
    assert found.reason.startswith("the source does not say this for 1990")
    company = "该公司于1998年在深圳成立。2005年，公司迁往上海。2010年在北京开设分部。"
    found = verdict("北京", "该公司2010年在哪里开设分部？", company, "zh")
    assert found.status == UNDECIDED  # 2010 is in the answer's sentence
    found = verdict("上海", "该公司2010年在哪里开设分部？", company, "zh")
    assert found.status == FLAGGED and found.reason.startswith("来源没有说这是2010")
    found = verdict("Bangor", "Where was Iwan Roberts born in 1968?")
    assert found.status != FLAGGED  # the question's 1968 is in Bangor's sentence


# -- what must pass -------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    "He moved to Huddersfield Town in 1990 where he remained for three seasons before "
    "transferring to Leicester City.",  # verbatim
    "In 1990 he moved to Huddersfield Town.",  # a phrase moved to the front
    "He remained at Huddersfield Town for three seasons.",  # a shorter clause
    "According to the source, Iwan Roberts moved to Huddersfield Town in 1990.",
])
def test_a_correct_paraphrase_is_accepted(answer: str) -> None:
    assert verdict(answer, "Which club did Iwan Roberts move to in 1990?").status == SUPPORTED


def test_a_synonym_passes_when_the_embedder_finds_it_close() -> None:
    source = "The company began production in 1998."

    def close(a: str, b: str) -> float:
        return 0.9 if {a, b} == {"started", "began"} else 0.1

    answer = "The company started production in 1998."
    assert check_claim(answer, "When?", source, similarity=close).status == SUPPORTED
    assert check_claim("The company stopped production in 1998.", "When?", source,
                       similarity=close).status == FLAGGED


# -- numbers and dates as values ------------------------------------------------------------
@pytest.mark.parametrize(("written", "same_as"), [
    ("1,200", "1200"), ("26 June 1968", "1968-06-26"), ("June 26, 1968", "26 June 1968"),
    ("1968年6月26日", "June 26, 1968"), ("two million", "2,000,000"), ("3万", "30000"),
    ("三十五", "35"), ("一九六八年", "1968"), ("twenty-five", "25"), ("16:40", "16:40"),
    ("8千八百五十", "八千八百五十"), ("1万2千", "12000"),
])
def test_numbers_and_dates_compare_as_values(written: str, same_as: str) -> None:
    mine = [t.quantity for t in claim_tokens(written) if t.quantity]
    theirs = [t.quantity for t in claim_tokens(same_as) if t.quantity]
    assert mine and all(q.found_in(theirs) for q in mine), (written, same_as)


def test_a_year_is_found_in_a_full_date_but_not_the_other_way() -> None:
    year = Quantity(value=1968.0)
    date = Quantity(year=1968, month=6, day=26)
    assert year.found_in([date]) and not date.found_in([year])


def test_a_number_that_differs_is_flagged_however_it_is_written() -> None:
    source = "The pump holds 1,200 litres and was installed on 26 June 1968."
    assert verdict("It holds 1200 litres.", "How much?", source).status == SUPPORTED
    assert verdict("It holds 1,300 litres.", "How much?", source).status == FLAGGED
    assert verdict("It was installed on June 26, 1968.", "When?", source).status == SUPPORTED
    assert verdict("It was installed on 27 June 1968.", "When?", source).status == FLAGGED


def test_a_fact_must_be_in_one_place_not_scattered_over_the_passage() -> None:
    source = ("The north plant opened in 1990. It makes valves. The south plant opened in "
              "2004. It makes pumps.")
    assert verdict("The north plant makes valves.", "What does it make?", source
                   ).status == SUPPORTED
    found = verdict("The north plant makes pumps.", "What does it make?", source)
    assert found.status != SUPPORTED


# -- Chinese --------------------------------------------------------------------------------
def test_chinese_facts_are_checked_by_character_and_value() -> None:
    question = "李白在哪里出生？"
    assert verdict("李白于701年出生于碎叶城。", question, LIBAI, "zh").status == SUPPORTED
    wrong_place = verdict("李白于701年出生于长安。", question, LIBAI, "zh")
    assert wrong_place.status == FLAGGED and wrong_place.reason == "来源写的是碎叶城，不是长安"
    wrong_year = verdict("李白于702年出生于碎叶城。", question, LIBAI, "zh")
    assert wrong_year.reason == "来源写的是701年，不是702年"
    assert verdict("他一生写了两千多首诗。", "李白写了多少首诗？", LIBAI, "zh").status == FLAGGED
    assert verdict("根据资料，李白于701年出生于碎叶城。", question, LIBAI, "zh").status == SUPPORTED


@pytest.mark.parametrize("answer", ["李白参加了科举考试。", "李白不是于701年出生于碎叶城。"])
def test_chinese_negation_on_one_side_only_is_flagged(answer: str) -> None:
    found = verdict(answer, "李白参加科举考试了吗？", LIBAI, "zh")
    assert found.status == FLAGGED and found.reason.startswith("来源的说法相反")


def test_words_with_negation_characters_are_not_negations() -> None:
    source = "两种型号的颜色不同，非常适合户外使用。"
    assert verdict("两种型号的颜色不同。", "颜色一样吗？", source, "zh").status == SUPPORTED


def test_chinese_bare_answers() -> None:
    assert verdict("碎叶城", "李白在哪里出生？", LIBAI, "zh").status == UNDECIDED
    assert verdict("上海", "李白在哪里出生？", LIBAI, "zh").reason == "来源没有提到上海"


# -- the shared text module -----------------------------------------------------------------
def test_one_tokenizer_and_one_sentence_splitter_serve_every_layer() -> None:
    assert tokens("E-42 in 北京大学") == ["e", "42", "in", "北京", "京大", "大学"]
    assert content_terms("The Pumps were not serviced") == {"pump", "serviced"}
    assert sentences("A b. C d.\n\n你好。再见。") == ["A b.", "C d.", "你好。", "再见。"]


def test_stem_and_bare_answers() -> None:
    assert stem("moved") == stem("move") and stem("cities") == stem("city")
    assert leans_on_question("Watford.", "Which club did he join in 1990?")
    assert not leans_on_question("He was born in Bangor in 1986.", "Where was he born?")
