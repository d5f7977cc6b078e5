"""Answers through the real llama.cpp with the packaged small model (Qwen2.5 0.5B)."""

from __future__ import annotations

from pathlib import Path

import kbqa
import pytest
from kbqa.domain import Answer

pytestmark = pytest.mark.slow


@pytest.fixture
def kb(make_kb, docs: Path, small_generator):
    kb = make_kb(generator=small_generator)
    kb.ingest(docs)
    return kb


def test_answer_from_pdf_cites_file_and_page(kb) -> None:
    answer = kbqa.ask("How many operating hours between services of the Zephyr X200 pump?",
                      kb=kb)
    assert answer.grounded, answer.text
    assert "450" in answer.text
    cited = [(Path(c.source).name, c.page) for c in answer.citations]
    assert ("zephyr-manual.pdf", 2) in cited
    assert any("450" in c.quote for c in answer.citations)


def test_citations_point_at_chunks_given_to_the_model(kb, monkeypatch) -> None:
    import kbqa.llm.answer as answer_module

    given: list[int] = []
    real_pack = answer_module.pack_hits

    def spy(*args, **kwargs):
        packed = real_pack(*args, **kwargs)
        given.extend(h.chunk.chunk_id for h in packed)
        return packed

    monkeypatch.setattr(answer_module, "pack_hits", spy)
    answer = kbqa.ask("When does the Lindqvist harbor office open?", kb=kb)
    assert answer.citations, answer.text
    assert {c.chunk_id for c in answer.citations} <= set(given)
    assert any("7:15" in c.quote for c in answer.citations)


def test_unanswerable_question_is_refused_in_english(kb) -> None:
    answer = kbqa.ask("What is the boiling point of mercury?", kb=kb)
    assert answer.grounded is False
    assert answer.citations == []
    assert answer.text.startswith("The documents don't say.")


def test_unanswerable_question_is_refused_in_chinese(kb) -> None:
    answer = kbqa.ask("火星上最高的山有多高？", kb=kb)
    assert answer.grounded is False
    assert answer.text.startswith("文档中没有")


def test_stream_yields_text_then_the_answer(kb) -> None:
    items = list(kbqa.ask_stream("Who leads the Vireo research team?", kb=kb))
    pieces, final = items[:-1], items[-1]
    assert isinstance(final, Answer)
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert "Okonkwo" in "".join(pieces)
    assert final.grounded and Path(final.citations[0].source).name == "team.txt"


def test_asking_an_empty_knowledge_base_says_how_to_add_documents(make_kb, small_generator):
    from kbqa.errors import IndexMissing

    with pytest.raises(IndexMissing, match="make ingest"):
        kbqa.ask("anything?", kb=make_kb("empty", generator=small_generator))
