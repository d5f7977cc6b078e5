"""The Streamlit app through Streamlit's AppTest, on the real models (and, where marked,
both databases)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, SMALL_MODEL
from streamlit.testing.v1 import AppTest

UI = str(ROOT / "app" / "ui.py")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, home: Path, database_url: str):
    import streamlit as st

    monkeypatch.setenv("KBQA_HOME", str(home))
    if database_url:  # the page and `ingested` below both read it
        monkeypatch.setenv("KBQA_DATABASE_URL", database_url)
    monkeypatch.setenv("KBQA_MODEL", str(SMALL_MODEL))
    monkeypatch.delenv("KBQA_UI_PASSWORD", raising=False)
    monkeypatch.setenv("KBQA_UI_ADDRESS", "127.0.0.1")  # as `kbqa serve` tells the page
    st.cache_resource.clear()
    yield AppTest.from_file(UI, default_timeout=600)
    st.cache_resource.clear()


def ingested(home: Path, *paths: Path) -> None:
    import kbqa

    kb = kbqa.open_kb(home)
    kb.ingest(list(paths))
    kb.close()


def ask(app: AppTest, question: str) -> None:
    app.chat_input[0].set_value(question).run()
    assert not app.exception, app.exception


def chips(app: AppTest) -> list[str]:
    return [block.proto.popover.label for block in app.get("popover")]


def texts(app: AppTest) -> str:
    return "\n".join(m.value for m in app.markdown)


def sidebar_button(app: AppTest, label: str):
    return next(b for b in app.sidebar.button if b.label == label)


@pytest.mark.both_databases
def test_empty_knowledge_base_says_how_to_add_documents(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert "knowledge base is empty" in app.info[0].value
    assert "make ingest DIR=" in app.info[0].value
    assert app.file_uploader  # and offers the upload right there


@pytest.mark.both_databases
@pytest.mark.slow
def test_an_answer_shows_source_chips_with_the_marked_passage(app: AppTest, docs: Path,
                                                              home: Path) -> None:
    ingested(home, docs)
    app.run()
    ask(app, "How often must the Zephyr X200 pump be serviced?")
    answer = app.chat_message[-1]
    assert "450" in " ".join(m.value for m in answer.markdown)
    assert "[1] zephyr-manual.pdf · page 2" in chips(app), chips(app)
    marked = [m.value for m in app.markdown if "<mark>" in m.value]
    assert any("450" in m[m.index("<mark>"):] for m in marked), marked
    assert app.get("image"), "the cited PDF page is shown"
    copied = app.code[-1].value
    assert copied.startswith("**Q:** How often must the Zephyr X200 pump be serviced?")
    assert "zephyr-manual.pdf, page 2" in copied


@pytest.mark.slow
def test_a_scanned_source_shows_the_page_with_its_lines_outlined(app: AppTest, home: Path,
                                                                 tmp_path: Path) -> None:
    from test_ocr import LATIN_FONT, page

    scan = tmp_path / "invoice.png"
    page(["Invoice 2291 from Harbor Supplies", "Total due: 310 EUR by 15 March."],
         LATIN_FONT).save(scan)
    ingested(home, scan)
    app.run()
    ask(app, "What is the total due on invoice 2291?")
    assert "[1] invoice.png · page 1 (OCR)" in chips(app), chips(app)
    shown = [img for element in app.get("image") for img in element.proto.imgs]
    assert [img.caption for img in shown] == [
        "invoice.png, page 1, read by OCR: the lines that hold the quote are outlined"]


@pytest.mark.slow
def test_refusal_looks_different(app: AppTest, docs: Path, home: Path) -> None:
    ingested(home, docs / "team.txt")
    app.run()
    ask(app, "What is the boiling point of mercury?")
    assert app.warning and app.warning[0].value.startswith("The documents don't say.")
    said = [m.value for m in app.chat_message[-1].markdown]
    assert not any("documents don't say" in m for m in said)  # not shown as an answer


@pytest.mark.slow
def test_a_follow_up_keeps_the_conversation(app: AppTest, docs: Path, home: Path) -> None:
    ingested(home, docs)
    app.run()
    ask(app, "When does the Lindqvist harbor office open?")
    ask(app, "And when does it close?")
    assert len(app.chat_message) == 4  # both questions and both answers stay on the page
    last = " ".join(m.value for m in app.chat_message[-1].markdown)
    assert "16:40" in last, last
    assert any(c.startswith("[1] harbor.md") for c in chips(app))


@pytest.mark.both_databases
@pytest.mark.slow
def test_a_conversation_is_kept_and_reopened(app: AppTest, docs: Path, home: Path) -> None:
    ingested(home, docs / "team.txt")
    app.run()
    ask(app, "Who leads the Vireo research team?")
    title = "Who leads the Vireo research team?"
    assert any(b.label == title for b in app.sidebar.button)  # listed at once
    sidebar_button(app, "New chat").click().run()
    assert not app.chat_message
    sidebar_button(app, title).click().run()
    assert [m.markdown[0].value for m in app.chat_message][:1] == [title]
    assert "Okonkwo" in " ".join(m.value for m in app.chat_message[-1].markdown)
    # rename, then delete it
    app.sidebar.text_input[0].set_value("Vireo team").run()
    sidebar_button(app, "Rename").click().run()
    assert any(b.label == "Vireo team" for b in app.sidebar.button)
    sidebar_button(app, "Delete chat").click().run()
    assert not any(b.label == "Vireo team" for b in app.sidebar.button)
    assert not app.chat_message


@pytest.mark.both_databases
@pytest.mark.slow
def test_upload_and_ingest_a_file_then_delete_it(app: AppTest, docs: Path, home: Path) -> None:
    ingested(home, docs / "team.txt")
    app.run()
    app.sidebar.radio[0].set_value("Library").run()
    assert not app.exception
    notes = b"The Osprey ferry leaves Pier 9 at 8:05 every weekday.\n"
    app.file_uploader[0].set_value([("ferry.txt", notes, "text/plain"),
                                    ("empty.pdf", b"", "application/pdf")]).run()
    next(b for b in app.button if b.label == "Add to the knowledge base").click().run()
    assert not app.exception, app.exception
    assert "added 1" in app.success[0].value
    assert any("empty.pdf" in e.value for e in app.error)  # named, with its reason
    import kbqa

    kb = kbqa.open_kb(home)
    assert any(Path(d.path).name == "ferry.txt" for d in kb.documents())
    assert kbqa.search("Osprey ferry Pier 9", kb=kb)[0].chunk.source.endswith("ferry.txt")
    kb.close()
    ferry = str(home / "uploads" / "ferry.txt")
    app.multiselect[0].set_value([ferry]).run()
    next(b for b in app.button if b.label == "Delete 1 document(s)").click().run()
    assert not app.exception
    assert any("Deleted 1 document" in s.value for s in app.success)
    kb = kbqa.open_kb(home)
    assert [Path(d.path).name for d in kb.documents()] == ["team.txt"]
    assert not Path(ferry).exists()  # kbqa's own copy of the upload goes too
    kb.close()


def test_settings_are_checked_saved_and_explained(app: AppTest, home: Path) -> None:
    app.run()
    app.sidebar.radio[0].set_value("Settings").run()
    assert not app.exception
    assert any("top-k" in n.label for n in app.number_input)
    captions = " ".join(c.value for c in app.caption)
    assert "more gives the model more to read" in captions  # each setting says its effect
    next(n for n in app.number_input if "top-k" in n.label).set_value(6)
    app.selectbox[0].set_value("zh")
    app.button[0].click().run()  # the form's Save
    assert not app.exception, app.exception
    assert "top_k = 6" in app.success[0].value
    from kbqa.settings import from_env

    saved = from_env({"KBQA_HOME": str(home)})
    assert (saved.top_k, saved.answer_language) == (6, "zh")


def test_a_missing_model_file_is_refused_on_the_settings_page(app: AppTest, home: Path) -> None:
    app.run()
    app.sidebar.radio[0].set_value("Settings").run()
    app.text_input[0].set_value("/nowhere/model.gguf")
    app.button[0].click().run()
    assert "does not exist on this machine" in app.error[0].value
    assert not (home / "settings.json").exists()


def test_a_password_guards_the_page(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBQA_UI_PASSWORD", "s3cret")
    app.run()
    assert not app.chat_input and not app.info  # nothing of the knowledge base yet
    app.text_input[0].set_value("guess")
    app.button[0].click().run()
    assert "Wrong password" in app.error[0].value
    app.text_input[0].set_value("s3cret")
    app.button[0].click().run()
    assert not app.exception
    assert "knowledge base is empty" in app.info[0].value


def test_wrong_passwords_make_the_next_try_wait(app: AppTest,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from kbqa.ui import login_throttle

    monkeypatch.setenv("KBQA_UI_PASSWORD", "s3cret")
    login_throttle.clear()
    try:
        app.run()
        for _ in range(3):
            app.text_input[0].set_value("guess")
            app.button[0].click().run()
            assert "Wrong password" in app.error[0].value
        app.text_input[0].set_value("s3cret")  # even the right one waits now
        app.button[0].click().run()
        assert "Too many wrong passwords: try again in" in app.error[0].value
        assert not app.chat_input and not app.info
    finally:
        login_throttle.clear()


def test_an_open_address_without_a_password_shows_no_documents(
        app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda name: "0.0.0.0" if name == "server.address"
                        else real(name))  # as `streamlit run --server.address 0.0.0.0`
    app.run()
    assert "without a password" in app.error[0].value
    assert not app.info and not app.chat_input


@pytest.mark.slow
def test_an_exposed_server_ingests_no_folder_outside_its_own(
        app: AppTest, home: Path, docs: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the password on the network, the Library page ingests only the listed folders,
    and Settings loads models only from the models folder: the file system stays closed."""
    listed = tmp_path / "team-docs"
    listed.mkdir()
    (listed / "ferry.txt").write_text("The Osprey ferry leaves Pier 9 at 8:05.\n")
    import streamlit as st

    real = st.get_option
    monkeypatch.setattr(st, "get_option", lambda name: "0.0.0.0" if name == "server.address"
                        else real(name))  # served to the network, as `kbqa serve --host`
    monkeypatch.setenv("KBQA_UI_PASSWORD", "s3cret")
    monkeypatch.setenv("KBQA_INGEST_FOLDERS", str(listed))
    app.run()
    app.text_input[0].set_value("s3cret")
    app.button[0].click().run()
    app.sidebar.radio[0].set_value("Library").run()
    folder = next(t for t in app.text_input if t.label == "Folder")
    folder.set_value(str(docs)).run()
    next(b for b in app.button if b.label == "Ingest the folder").click().run()
    assert not app.exception, app.exception
    assert any("not open to ingest" in e.value for e in app.error)
    import kbqa

    kb = kbqa.open_kb(home)
    assert kb.is_empty()  # nothing of the refused folder was read
    folder = next(t for t in app.text_input if t.label == "Folder")
    folder.set_value(str(listed)).run()
    next(b for b in app.button if b.label == "Ingest the folder").click().run()
    assert any("added 1" in s.value for s in app.success)
    assert [Path(d.path).name for d in kb.documents()] == ["ferry.txt"]
    kb.close()
    app.sidebar.radio[0].set_value("Settings").run()
    app.text_input[0].set_value(str(SMALL_MODEL.parent.parent / "kb.sqlite"))
    app.button[0].click().run()
    assert "outside the models folder" in app.error[0].value
    assert not (home / "settings.json").exists()
