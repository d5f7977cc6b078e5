"""kbqa: private question answering over your own documents, with citations.

    from kbqa import ask
    answer = ask("Where was Iwan Roberts born?")
    print(answer.text, [c.source for c in answer.citations])
"""

from __future__ import annotations

from kbqa.privacy import go_offline

go_offline()  # before any library that could phone home is imported

import os  # noqa: E402
from collections.abc import Callable, Iterator, Mapping, Sequence  # noqa: E402
from functools import lru_cache  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from kbqa.domain import (  # noqa: E402
    Answer,
    Chunk,
    Citation,
    Document,
    Hit,
    IngestReport,
    KbStats,
)
from kbqa.errors import KbqaError  # noqa: E402

if TYPE_CHECKING:
    from kbqa.kb import KnowledgeBase

__all__ = [
    "Answer",
    "Chunk",
    "Citation",
    "Document",
    "Hit",
    "IngestReport",
    "KbStats",
    "KbqaError",
    "KnowledgeBase",
    "ask",
    "ask_stream",
    "default_kb",
    "ingest",
    "open_kb",
    "search",
]


def open_kb(home: str | os.PathLike[str] | None = None, **settings: Any) -> KnowledgeBase:
    """Open (or create) the knowledge base at `home`; settings as in KBQA_* variables."""
    from kbqa.kb import open_kb as _open

    return _open(home, **settings)


@lru_cache(maxsize=1)
def default_kb() -> KnowledgeBase:
    """The one knowledge base the bare functions use (KBQA_HOME, else data/)."""
    return open_kb()


def ask(question: str, *, history: Sequence[Mapping[str, str]] | None = None,
        kb: KnowledgeBase | None = None,
        on_wait: Callable[[int], None] | None = None) -> Answer:
    """Answer from the documents, with checked citations; grounded=False when they don't say.
    The chat model answers one question at a time: `on_wait` hears the questions ahead."""
    return (kb or default_kb()).ask(question, history=_messages(history), on_wait=on_wait)


def ask_stream(question: str, *, history: Sequence[Mapping[str, str]] | None = None,
               kb: KnowledgeBase | None = None,
               on_wait: Callable[[int], None] | None = None) -> Iterator[str | Answer]:
    """Yield text pieces as they are generated, then the final Answer."""
    return (kb or default_kb()).ask_stream(question, history=_messages(history),
                                           on_wait=on_wait)


def search(query: str, k: int = 10, *, filters: Mapping[str, Any] | None = None,
           kb: KnowledgeBase | None = None) -> list[Hit]:
    """The k most relevant chunks for `query`, best first."""
    return (kb or default_kb()).search(query, k, filters=filters)


def ingest(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
           kb: KnowledgeBase | None = None, progress: bool = False) -> IngestReport:
    """Ingest files and folders into the knowledge base; returns what changed and what failed."""
    return (kb or default_kb()).ingest(paths, progress=progress)


def _messages(history: Sequence[Mapping[str, str]] | None) -> list[dict[str, str]] | None:
    if history is None:
        return None
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in history]


def __getattr__(name: str) -> Any:
    if name == "KnowledgeBase":
        from kbqa.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'kbqa' has no attribute {name!r}")
