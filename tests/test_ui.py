"""The Streamlit page through Streamlit's AppTest, on the real models."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, SMALL_MODEL
from streamlit.testing.v1 import AppTest

UI = str(ROOT / "app" / "ui.py")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import streamlit as st

    monkeypatch.setenv("KBQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KBQA_MODEL", str(SMALL_MODEL))
    st.cache_resource.clear()
    yield AppTest.from_file(UI, default_timeout=600)
    st.cache_resource.clear()


def test_empty_knowledge_base_says_how_to_add_documents(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert "knowledge base is empty" in app.info[0].value
    assert "make ingest DIR=" in app.info[0].value


@pytest.mark.slow
def test_question_shows_answer_with_sources(app: AppTest, docs: Path, tmp_path: Path) -> None:
    import kbqa

    kb = kbqa.open_kb(tmp_path / "home")
    kb.ingest(docs)
    kb.close()
    app.run()
    assert not app.exception
    app.chat_input[0].set_value("How often must the Zephyr X200 pump be serviced?").run()
    assert not app.exception
    answer = app.chat_message[-1]
    assert "450" in " ".join(m.value for m in answer.markdown)
    labels = [e.label for e in app.expander]
    assert any("zephyr-manual.pdf, page 2" in label for label in labels), labels


@pytest.mark.slow
def test_refusal_looks_different(app: AppTest, docs: Path, tmp_path: Path) -> None:
    import kbqa

    kb = kbqa.open_kb(tmp_path / "home")
    kb.ingest(docs / "team.txt")
    kb.close()
    app.run()
    app.chat_input[0].set_value("What is the boiling point of mercury?").run()
    assert not app.exception
    assert app.warning and app.warning[0].value.startswith("The documents don't say.")
