"""Conversations kept in the knowledge base's own database, beside the documents.

Their tables have a metadata of their own, so rebuilding the index (a new embedder) never
touches them, and a server database (`database_url`) holds them the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from kbqa.domain import Answer, Citation, Conversation, Flag, Turn
from sqlalchemy import DateTime, ForeignKey, Integer, Text, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

TITLE_CHARS = 60


class _Base(DeclarativeBase):
    pass


class ConversationRow(_Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class TurnRow(_Base):
    __tablename__ = "conversation_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)  # the Answer as JSON
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def answer_to_json(answer: Answer) -> str:
    return json.dumps(asdict(answer), ensure_ascii=False)


def answer_from_json(raw: str) -> Answer:
    data: dict[str, Any] = json.loads(raw)
    citations = [Citation(**c) for c in data.pop("citations", [])]
    # chats kept before flags had reasons stored the flagged sentences alone
    flags = [Flag(f) if isinstance(f, str) else Flag(**f) for f in data.pop("unsupported", [])]
    return Answer(citations=citations, unsupported=flags, **data)


def title_for(question: str) -> str:
    """Example: title_for("  When does the   office open?") == "When does the office open?" """
    words = " ".join(question.split())
    return words if len(words) <= TITLE_CHARS else words[:TITLE_CHARS - 1].rstrip() + "…"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Conversations:
    """Create, list, rename and delete chats; append and read their turns."""

    def __init__(self, engine: Engine) -> None:
        """`engine`: the knowledge base store's (its schema, these tables included, is
        brought up to date when the `Store` opens)."""
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def start(self, title: str) -> Conversation:
        now = _now()
        with self._sessions.begin() as session:
            row = ConversationRow(title=title_for(title) or "New chat", created_at=now,
                                  updated_at=now)
            session.add(row)
            session.flush()
            return Conversation(row.id, row.title, now, now, 0)

    def recent(self) -> list[Conversation]:
        """Newest activity first."""
        counts = (select(TurnRow.conversation_id, func.count().label("n"))
                  .group_by(TurnRow.conversation_id).subquery())
        query = (select(ConversationRow, counts.c.n)
                 .outerjoin(counts, counts.c.conversation_id == ConversationRow.id)
                 .order_by(ConversationRow.updated_at.desc(), ConversationRow.id.desc()))
        with self._sessions() as session:
            return [Conversation(row.id, row.title, _utc(row.created_at), _utc(row.updated_at),
                                 n or 0) for row, n in session.execute(query)]

    def get(self, conversation_id: int) -> Conversation | None:
        return next((c for c in self.recent() if c.conversation_id == conversation_id), None)

    def rename(self, conversation_id: int, title: str) -> None:
        cleaned = title_for(title)
        if not cleaned:
            return
        with self._sessions.begin() as session:
            session.execute(update(ConversationRow).where(ConversationRow.id == conversation_id)
                            .values(title=cleaned))

    def delete(self, conversation_id: int) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(TurnRow).where(TurnRow.conversation_id == conversation_id))
            session.execute(delete(ConversationRow)
                            .where(ConversationRow.id == conversation_id))

    def add_turn(self, conversation_id: int, question: str, answer: Answer) -> Turn:
        now = _now()
        with self._sessions.begin() as session:
            session.add(TurnRow(conversation_id=conversation_id, question=question,
                                answer=answer_to_json(answer), asked_at=now))
            session.execute(update(ConversationRow).where(ConversationRow.id == conversation_id)
                            .values(updated_at=now))
        return Turn(question, answer, now)

    def turns(self, conversation_id: int) -> list[Turn]:
        query = (select(TurnRow).where(TurnRow.conversation_id == conversation_id)
                 .order_by(TurnRow.id))
        with self._sessions() as session:
            return [Turn(row.question, answer_from_json(row.answer), _utc(row.asked_at))
                    for row in session.scalars(query)]


def history_of(turns: list[Turn]) -> list[dict[str, str]]:
    """The messages `ask(question, history=...)` takes."""
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": turn.answer.text})
    return messages
