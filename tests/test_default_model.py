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
