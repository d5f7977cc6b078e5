"""The default chat model (Qwen2.5 1.5B, packaged) answers the README's example question."""

from __future__ import annotations

import os
from pathlib import Path

import kbqa
import pytest
from conftest import MODELS, SHARED_DATA
from kbqa.settings import DEFAULT_CHAT_MODEL_FILE

pytestmark = pytest.mark.slow


def test_iwan_roberts_birthplace_is_answered_and_cited(make_kb) -> None:
    folder = SHARED_DATA / "docs" / "text"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (benchmark data lives in ../shared/data)")
    from kbqa.llm.model import LlamaCppGenerator

    generator = LlamaCppGenerator(MODELS / DEFAULT_CHAT_MODEL_FILE, n_ctx=4096,
                                  threads=os.cpu_count() or 2)
    kb = make_kb(generator=generator)
    kb.ingest([folder / "norwich-city.txt", folder / "book-war-and-peace-1p.txt",
               folder / "fake-text.txt"])
    answer = kbqa.ask("Where was Iwan Roberts born?", kb=kb)
    assert answer.grounded, answer.text
    assert "Bangor" in answer.text
    assert answer.citations
    assert all(Path(c.source).name == "norwich-city.txt" for c in answer.citations)
    assert any("Bangor" in c.quote for c in answer.citations)


@pytest.fixture(scope="module")
def default_generator():
    from kbqa.llm.model import LlamaCppGenerator

    return LlamaCppGenerator(MODELS / DEFAULT_CHAT_MODEL_FILE, n_ctx=4096,
                             threads=os.cpu_count() or 2)


def test_the_1990_club_is_never_a_grounded_watford(make_kb, default_generator) -> None:
    """The issue's example: the file says he moved to Huddersfield Town in 1990."""
    folder = SHARED_DATA / "docs" / "text"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (benchmark data lives in ../shared/data)")
    kb = make_kb(generator=default_generator, second_reader="on")  # the strictest setting
    kb.ingest([folder / "norwich-city.txt", folder / "fake-text.txt"])
    answer = kbqa.ask("Which club did Iwan Roberts move to in 1990?", kb=kb)
    assert not (answer.grounded and "Watford" in answer.text), answer.text
    assert answer.refused or "Huddersfield" in answer.text or answer.unsupported, answer.text


LIBAI = "李白于701年出生于碎叶城，后迁居长安。他一生写了一千多首诗。他没有参加科举考试。"
ROBERTS = ("His footballing career started at Watford as a trainee before signing his first "
           "professional contract with the club in 1986. He moved to Huddersfield Town in 1990 "
           "where he remained for three seasons before transferring to Leicester City.")


def _source(text: str):
    from kbqa.domain import Chunk, Hit, Source

    return Source(hits=(Hit(Chunk(chunk_id=1, source="/d/bio.txt", text=text), 0.5),),
                  text=text)


def _source(text: str):
    from kbqa.domain import Chunk, Hit, Source

    return Source(hits=(Hit(Chunk(chunk_id=1, source="/d/bio.txt", text=text), 0.5),),
                  text=text)


@pytest.mark.parametrize(("question", "answer", "passage", "lang"), [
    ("Which club did Iwan Roberts move to in 1990?", "Huddersfield Town", ROBERTS, "en"),
    ("李白在哪里出生？", "碎叶城", LIBAI, "zh"),
])
def test_the_second_reader_keeps_the_right_item_of_a_passage(
        default_generator, embedder, question: str, answer: str, passage: str,
        lang: str) -> None:
    from kbqa.llm.citations import check_citations, embedding_similarity
    from kbqa.llm.reader import model_reader

    end = "[1]。" if lang == "zh" else " [1]."
    checked = check_citations(answer + end, question, [_source(passage)],
                              embedding_similarity(embedder.encode), lang=lang,
                              reader=model_reader(default_generator))
    assert checked.reader_calls == 1  # the rules left it open: the reader said yes
    assert not checked.flags and checked.citations, checked.text


@pytest.mark.parametrize(("question", "right", "wrong", "passage", "lang"), [
    ("Which club did Iwan Roberts move to in 1990?", "Huddersfield Town", "Watford", ROBERTS,
     "en"),
    ("李白在哪里出生？", "碎叶城", "长安", LIBAI, "zh"),
])
def test_the_second_reader_ranks_the_right_item_above_its_neighbour(
        default_generator, question: str, right: str, wrong: str, passage: str,
        lang: str) -> None:
    # The 1.5B model's yes is not sure enough to reject every neighbouring item on its own
    # (P(yes) 0.97 for 长安; bench-faithfulness: bare-wrong flagged about 2/3), but it
    # ranks the right one first; the rules catch the rest ("Watford" is flagged for 1990).
    from kbqa.llm.reader import model_reader

    reader = model_reader(default_generator)
    assert reader(question, right, passage, lang) > reader(question, wrong, passage, lang)
