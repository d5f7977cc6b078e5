"""Chats kept in the knowledge base's own database (real SQLAlchemy on SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import kbqa
import pytest
from kbqa.conversations import Conversations, history_of, title_for
from kbqa.domain import Answer, Citation, Flag
from kbqa.ingest.store import Store


def an_answer(text: str = "450 hours [1].") -> Answer:
    return Answer(text=text, grounded=True, question="How often?", search_query="How often?",
                  citations=[Citation("/d/zephyr.pdf", 2, "every 450 operating hours", 7, 0.8,
                                      "")],
                  unsupported=[Flag("It is blue.", "the source says red")])


@pytest.mark.both_databases
def test_a_chat_keeps_its_turns_and_answers_whole(tmp_path: Path, database_url: str) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'kb.sqlite'}"
    store = Store(url)
    chats = Conversations(store.engine)
    chat = chats.start("How often must the Zephyr X200 pump be serviced?")
    chats.add_turn(chat.conversation_id, "How often?", an_answer())
    chats.add_turn(chat.conversation_id, "And the part?", an_answer("ZK-7731 [1]."))
    store.close()
    reopened = Conversations(Store(url).engine)  # a new process
    turns = reopened.turns(chat.conversation_id)
    assert [t.question for t in turns] == ["How often?", "And the part?"]
    assert turns[0].answer == an_answer()  # citations, flags and query round-trip
    assert history_of(turns) == [
        {"role": "user", "content": "How often?"},
        {"role": "assistant", "content": "450 hours [1]."},
        {"role": "user", "content": "And the part?"},
        {"role": "assistant", "content": "ZK-7731 [1]."}]
    listed = reopened.recent()
    assert [(c.title, c.turns) for c in listed] == [
        ("How often must the Zephyr X200 pump be serviced?", 2)]


@pytest.mark.both_databases
def test_chats_list_newest_first_rename_and_delete(tmp_path: Path, database_url: str) -> None:
    chats = Conversations(Store(database_url or f"sqlite:///{tmp_path / 'kb.sqlite'}").engine)
    first = chats.start("first")
    second = chats.start("second")
    chats.add_turn(first.conversation_id, "q", an_answer())  # activity moves it up
    assert [c.title for c in chats.recent()] == ["first", "second"]
    chats.rename(second.conversation_id, "  Pump   questions ")
    chats.rename(second.conversation_id, "   ")  # an empty title is ignored
    assert chats.get(second.conversation_id).title == "Pump questions"
    chats.delete(first.conversation_id)
    assert [c.title for c in chats.recent()] == ["Pump questions"]
    assert chats.turns(first.conversation_id) == []


def test_long_questions_make_short_titles() -> None:
    title = title_for("word " * 40)
    assert len(title) <= 60 and title.endswith("…")


@pytest.mark.both_databases
def test_chats_live_in_the_knowledge_base_and_survive_a_rebuild(make_kb, docs: Path,
                                                                database: str) -> None:
    kb = make_kb()
    kb.ingest(docs / "team.txt")
    chat = kb.conversations.start("Who leads the Vireo team?")
    kb.conversations.add_turn(chat.conversation_id, "Who leads the Vireo team?", an_answer())
    assert (kb.home / "kb.sqlite").is_file() == (database == "sqlite")  # or in PostgreSQL
    assert not list(kb.home.glob("*conversation*"))
    kb.rebuild()  # a new embedder: documents go, chats stay
    assert kb.is_empty()
    assert [c.title for c in kb.conversations.recent()] == ["Who leads the Vireo team?"]
    kb.ingest(docs / "team.txt")
    assert kbqa.search("Vireo research team", kb=kb)


def test_chats_kept_before_flags_had_reasons_still_open() -> None:
    from kbqa.conversations import answer_from_json

    old = '{"text": "Blue.", "citations": [], "grounded": true, "question": "Colour?", ' \
          '"unsupported": ["It is blue."], "search_query": ""}'
    assert answer_from_json(old).unsupported == [Flag("It is blue.")]
