"""Domain objects shared by every layer; library objects are converted at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Section:
    """A span of a loaded document that shares one location (a PDF page, a Markdown section)."""

    text: str
    page: int | None = None
    heading: str = ""


@dataclass(frozen=True)
class Document:
    """A file as loaded: its sections in reading order."""

    source: str
    sections: tuple[Section, ...]
    kind: str = ""

    @property
    def pages(self) -> int | None:
        numbered = [s.page for s in self.sections if s.page is not None]
        return max(numbered) if numbered else None


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it has an id: what chunking produces."""

    text: str
    page: int | None = None
    heading: str = ""
    ordinal: int = 0


@dataclass(frozen=True)
class Chunk:
    """A stored chunk; `chunk_id` is also its vector's id in FAISS."""

    chunk_id: int
    source: str
    text: str
    page: int | None = None
    heading: str = ""
    ordinal: int = 0
    document_id: int = 0


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its relevance score (higher is better)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Citation:
    """A source the answer rests on; `quote` is the supporting passage from the chunk."""

    source: str
    page: int | None
    quote: str
    chunk_id: int
    score: float


@dataclass(frozen=True)
class Answer:
    """What `ask` returns. `grounded` is False when the documents do not answer the question."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    grounded: bool = False
    question: str = ""


@dataclass(frozen=True)
class Failure:
    """A file that could not be ingested, and why (the reason says what to do next)."""

    path: str
    reason: str

    def __iter__(self):  # lets callers unpack `for path, reason in report.failed`
        return iter((self.path, self.reason))


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ingest run; paths are as ingested."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    chunks_added: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """False only when files were offered and none could be ingested."""
        return bool(self.added or self.updated or self.unchanged) or not self.failed

    def summary(self) -> str:
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}, removed {len(self.removed)}, "
            f"failed {len(self.failed)}; {self.chunks_added} chunks embedded "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class KbStats:
    """What the knowledge base holds, for the UI and the CLI."""

    documents: int
    chunks: int
    embedder: str
    updated_at: datetime | None = None
