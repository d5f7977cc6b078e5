"""Shared models across sessions: each loaded once, the chat model answering one question at a
time in arrival order with every waiting question told its place, and settings changes or
rebuilds never pulling anything from under a session that is still reading."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import kbqa
import pytest
from conftest import SMALL_MODEL
from kbqa.errors import ModelBusy
from kbqa.settings import from_env
from kbqa.shared import Line, SharedModels
from kbqa.ui_chat import waiting_message


def _wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_line_serves_in_arrival_order_and_tells_each_its_place() -> None:
    line = Line()
    order: list[str] = []
    heard: dict[str, list[int]] = {"b": [], "c": []}
    release = threading.Event()

    def first() -> None:
        with line.turn():
            order.append("a")
            release.wait(10)

    def later(name: str) -> None:
        with line.turn(heard[name].append):
            order.append(name)
            if name == "b":  # hold the model until the one behind has moved up a place
                _wait_until(lambda: 1 in heard["c"])

    threads = [threading.Thread(target=first)]
    threads[0].start()
    _wait_until(lambda: order == ["a"])
    for name, waiting in (("b", 2), ("c", 3)):
        threads.append(threading.Thread(target=later, args=(name,)))
        threads[-1].start()
        _wait_until(lambda waiting=waiting: len(line) == waiting)
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["a", "b", "c"]
    assert heard["b"] == [1, 0]  # one ahead, then its turn
    assert heard["c"] == [2, 1, 0]
    assert len(line) == 0


def test_a_turn_given_up_while_waiting_leaves_the_line() -> None:
    line = Line()
    with line.turn():
        with pytest.raises(ModelBusy, match="Ask again"), line.turn(timeout_s=0.2):
            pass
        assert len(line) == 1  # only the holder
    with line.turn():  # and the line still works
        pass


def test_waiting_message_names_the_place() -> None:
    assert "another question" in waiting_message(1) and "place 2" in waiting_message(1)
    assert "3 other questions" in waiting_message(3) and "place 4" in waiting_message(3)


def test_a_model_is_built_once_when_threads_ask_together() -> None:
    models = SharedModels()
    builds: list[int] = []

    class Model:
        pass

    def build() -> Model:
        builds.append(1)
        time.sleep(0.2)
        return Model()

    got: list[Model] = []
    threads = [threading.Thread(target=lambda: got.append(models.get("m", build)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(builds) == 1 and len({id(m) for m in got}) == 1
    got.clear()  # nobody holds it any more: it is freed, and a later ask loads it again
    models.get("m", build)
    assert len(builds) == 2


@pytest.mark.slow
def test_sessions_asking_together_get_their_own_answers(tmp_path: Path, docs: Path) -> None:
    """Three sessions ask at once through one knowledge base (real small model, int8
    MiniLM): each gets the answer it gets alone, the later ones heard their place."""
    models = SharedModels()
    kb = kbqa.open_kb(tmp_path / "home", model=str(SMALL_MODEL), temperature=0.0,
                      models=models)
    kb.ingest(docs)
    questions = ["How often must the Zephyr X200 pump be serviced?",
                 "Who leads the Vireo research team?",
                 "When does the Lindqvist harbor office open?"]
    alone = {q: kb.ask(q).text for q in questions}
    together: dict[str, str] = {}
    places: dict[str, list[int]] = {q: [] for q in questions}
    errors: list[BaseException] = []

    def session(question: str) -> None:
        try:
            together[question] = kb.ask(question, on_wait=places[question].append).text
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    searches = [kb.search(q, k=3) for q in questions for _ in range(3)]  # a fourth reader
    for thread in threads:
        thread.join(120)
    assert not errors
    assert together == alone
    assert all(hits for hits in searches)
    assert sorted(max(p) for p in places.values()) == [0, 1, 2]  # each heard its place
    assert all(p[-1] == 0 for p in places.values())
    # a second knowledge base of the same process (a settings change) shares the models
    other = kbqa.open_kb(tmp_path / "home", model=str(SMALL_MODEL), temperature=0.0, top_k=3,
                         models=models)
    assert other.generator is kb.generator and other.embedder is kb.embedder


@pytest.mark.slow
def test_a_new_knowledge_base_does_not_cut_off_an_answer_in_flight(tmp_path: Path,
                                                                    docs: Path) -> None:
    """What a settings change does in the app: a new knowledge base object is opened while
    another session's answer is still streaming from the old one; that answer completes."""
    models = SharedModels()
    old = kbqa.open_kb(tmp_path / "home", model=str(SMALL_MODEL), models=models)
    old.ingest(docs)
    stream = old.ask_stream("Who leads the Vireo research team?")
    first = next(stream)  # the answer has begun
    new = kbqa.open_kb(tmp_path / "home", model=str(SMALL_MODEL), top_k=3, models=models)
    assert not new.is_empty()
    rest = list(stream)
    answer = rest[-1]
    assert isinstance(first, str) and isinstance(answer, kbqa.Answer)
    assert "Okonkwo" in answer.text
    assert "Okonkwo" in new.ask("Who leads the Vireo research team?").text


def test_rebuild_never_fails_a_search_in_another_session(make_kb, docs: Path) -> None:
    """A rebuild (new embedder) empties the knowledge base in one transaction while another
    session keeps searching: it sees the documents or none, never an error."""
    kb = make_kb()
    kb.ingest(docs)
    reader = kbqa.KnowledgeBase(from_env(home=kb.home, model=str(SMALL_MODEL)),
                                embedder=kb.embedder)
    errors: list[BaseException] = []
    results: list[int] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                results.append(len(reader.search("Vireo research team", k=3)))
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=search)
    thread.start()
    try:
        for _ in range(3):
            kb.rebuild()
            kb.ingest(docs)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert results and max(results) > 0
    assert len(reader.search("Vireo research team", k=3)) > 0


@pytest.mark.models
def test_two_knowledge_bases_of_one_program_share_its_models(tmp_path: Path) -> None:
    """Without `models=`, open_kb uses the process's registry: a second knowledge base (or
    the same one opened twice) does not load the embedder again."""
    first = kbqa.open_kb(tmp_path / "a")
    second = kbqa.open_kb(tmp_path / "b")
    assert first.embedder is second.embedder
    assert first.models is second.models


def test_warm_up_does_not_wait_behind_an_answer(make_kb) -> None:
    """A settings change warms the new knowledge base up while the page waits: with the
    model busy answering, warm-up is skipped rather than held up for minutes."""

    class Generator:
        name, n_ctx = "fake", 4096
        warmed = 0

        def warm(self, messages) -> None:
            Generator.warmed += 1

        def count_tokens(self, text: str) -> int:
            return len(text.split())

    generator = Generator()
    kb = make_kb(generator=generator)
    busy = threading.Event()
    release = threading.Event()

    def answering() -> None:
        with kb.models.line(generator).turn():
            busy.set()
            release.wait(30)

    holder = threading.Thread(target=answering)
    holder.start()
    busy.wait(10)
    started = time.monotonic()
    kb.warm_up()
    assert time.monotonic() - started < 10 and Generator.warmed == 0
    release.set()
    holder.join(10)
    kb.warm_up()
    assert Generator.warmed == 1


def test_a_reader_sees_what_is_ingested_after_a_rebuild(make_kb, docs: Path) -> None:
    """The generation number goes on counting through a rebuild: another knowledge base
    object (another process) holding the old vectors reloads, and its dense search finds
    the documents ingested since."""
    kb = make_kb()
    kb.ingest(docs / "team.txt")
    reader = kbqa.KnowledgeBase(from_env(home=kb.home, model=str(SMALL_MODEL)),
                                embedder=kb.embedder)
    assert reader.search("Vireo research team", k=1, mode="dense")
    kb.rebuild()
    kb.ingest(docs / "harbor.md")
    hits = reader.search("When does the Lindqvist harbor office open?", k=1, mode="dense")
    assert hits and Path(hits[0].chunk.source).name == "harbor.md"
