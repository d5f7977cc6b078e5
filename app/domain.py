"""Domain objects shared by every layer; library objects are converted at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


def place_label(location: str, page: int | None) -> str:
    """Example: place_label("", 2) == "page 2"; place_label("slide 3", None) == "slide 3" """
    return location or (f"page {page}" if page else "")


@dataclass(frozen=True)
class Section:
    """A span of a loaded document that shares one location (a page, a slide, a heading).

    `page` is the page or slide number; `location` says where it is in words ("slide 3",
    "sheet Sales, rows 2-40") when a page number alone would not. A `table` section holds
    one row per line, its first line the header, so chunks are cut between rows only.
    """

    text: str
    page: int | None = None
    heading: str = ""
    location: str = ""
    table: bool = False
    scan: Scan | None = None  # the page was read by OCR: its lines and their boxes


@dataclass(frozen=True)
class OcrLine:
    """A line of text the OCR model read, with its box on the page image (pixels, or
    fractions of the page's width and height once stored: see `Scan.normalized`)."""

    text: str
    left: float
    top: float
    right: float
    bottom: float
    score: float = 1.0

    @property
    def height(self) -> float:
        return max(self.bottom - self.top, 1.0)

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True)
class Scan:
    """The lines OCR read on one page image, in reading order, and the image's size: kept
    so a citation can show the page with the lines that support it outlined."""

    width: float
    height: float
    lines: tuple[OcrLine, ...]

    def normalized(self) -> tuple[OcrLine, ...]:
        """The boxes as fractions of the page (0-1): they fit the page drawn at any size."""
        w, h = max(self.width, 1.0), max(self.height, 1.0)
        return tuple(OcrLine(ln.text, ln.left / w, ln.top / h, ln.right / w, ln.bottom / h,
                             ln.score) for ln in self.lines)


@dataclass(frozen=True)
class ScanView:
    """A cited scanned page as shown: PNG bytes, and how many of its recognised lines are
    outlined as holding the quote (0: the page is shown, the quote was not placed)."""

    png: bytes
    outlined: int


@dataclass(frozen=True)
class Document:
    """A file as loaded: its sections in reading order, and documents it carries (e-mail
    attachments), each ingested as a document of its own."""

    source: str
    sections: tuple[Section, ...]
    kind: str = ""
    attachments: tuple[Attachment, ...] = ()

    @property
    def pages(self) -> int | None:
        numbered = [s.page for s in self.sections if s.page is not None]
        return max(numbered) if numbered else None


@dataclass(frozen=True)
class Attachment:
    """A document inside another (an e-mail attachment), or why it could not be read."""

    name: str
    sha256: str
    document: Document | None = None
    error: str = ""


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it has an id: what chunking produces."""

    text: str
    page: int | None = None
    heading: str = ""
    ordinal: int = 0
    location: str = ""


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
    location: str = ""

    @property
    def place(self) -> str:
        """Where the chunk is, for people: "slide 3", "page 2", or ""."""
        return place_label(self.location, self.page)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk. `score` ranks (fused, higher is better); `similarity` (dense
    cosine) and `coverage` (share of the query's idf-weighted terms in the chunk, 0..1) are
    absolute, for deciding whether anything relevant was found at all."""

    chunk: Chunk
    score: float
    similarity: float = 0.0
    coverage: float = 0.0
    space: str = ""  # the embedder whose cosine `similarity` is (its relevance floor applies)
    cross_language: bool = False  # the passage is in another language than the question


# Between two sentences of a source that were not next to each other in the document.
GAP = " … "


@dataclass(frozen=True)
class Source:
    """One numbered source given to the model: a retrieved chunk, or neighbouring chunks of
    one document merged (their overlap said once), or the sentences of them chosen for the
    prompt (joined by GAP where they were not adjacent). `hits` are in document order."""

    hits: tuple[Hit, ...]
    text: str

    @property
    def chunk(self) -> Chunk:
        return self.hits[0].chunk

    @property
    def score(self) -> float:
        return max(h.score for h in self.hits)

    def chunk_with(self, quote: str) -> Chunk:
        """The merged chunk a quote comes from (the first when it spans two)."""
        probe = " ".join(quote.strip("…")[:60].split())  # line breaks may differ
        return next((h.chunk for h in self.hits if probe in " ".join(h.chunk.text.split())),
                    self.chunk)


@dataclass(frozen=True)
class Citation:
    """A source the answer rests on; `quote` is the supporting passage from the chunk."""

    source: str
    page: int | None
    quote: str
    chunk_id: int
    score: float
    location: str = ""

    @property
    def place(self) -> str:
        """As `Chunk.place`: "sheet Prices", "page 2", or ""."""
        return place_label(self.location, self.page)


@dataclass(frozen=True)
class Flag:
    """A sentence of an answer that its sources do not support, and why ("the source says
    1968"), so a user can check it."""

    sentence: str
    reason: str = ""


@dataclass(frozen=True)
class Answer:
    """What `ask` returns. `grounded` is True only when every sentence of the answer was
    checked against its sources and passed; `refused` when the answer is "the documents
    don't say" (nothing relevant was found, the model said so, or its main claim failed
    the check). `unsupported` holds the sentences no source supports, each with the reason
    (shown flagged, never as fact); `search_query` is what was searched (a follow-up
    rewritten to stand alone)."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    grounded: bool = False
    question: str = ""
    unsupported: list[Flag] = field(default_factory=list)
    search_query: str = ""

    @property
    def refused(self) -> bool:
        """A refusal cites nothing; an answer with a flagged side remark still cites."""
        return not self.citations


@dataclass(frozen=True)
class Failure:
    """A file that could not be ingested, and why (the reason says what to do next)."""

    path: str
    reason: str

    def __iter__(self):  # lets callers unpack `for path, reason in report.failed`
        return iter((self.path, self.reason))


@dataclass
class IngestReport:
    """The outcome of one ingest run; paths are as ingested. Not frozen: the run fills it in
    as files are staged, embedded and committed (its lists grew in place even when it was
    marked frozen), and hands it over when it ends."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    chunks_added: int = 0
    seconds: float = 0.0
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False only when files were offered and none could be ingested."""
        return bool(self.added or self.updated or self.unchanged) or not self.failed

    def summary(self) -> str:
        stored_once = (f" ({len(self.duplicates)} identical to a file already stored, kept once)"
                       if self.duplicates else "")
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}, removed {len(self.removed)}, "
            f"failed {len(self.failed)}{stored_once}; {self.chunks_added} chunks embedded "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class IngestProgress:
    """Where a running ingest is: files read (of all found) and chunks embedded (of those
    planned so far); `current` is the last file read."""

    files_done: int
    files_total: int
    chunks_done: int
    chunks_planned: int
    current: str = ""
    # OCR of the file being read: pages done of its scanned pages (0 of 0: none)
    ocr_done: int = 0
    ocr_total: int = 0

    @property
    def fraction(self) -> float:
        """Reading is quick next to embedding, so embedded chunks weigh most."""
        files = self.files_done / self.files_total if self.files_total else 1.0
        chunks = self.chunks_done / self.chunks_planned if self.chunks_planned else files
        return min(1.0, 0.3 * files + 0.7 * min(chunks, files))


@dataclass(frozen=True)
class KbStats:
    """What the knowledge base holds, for the UI and the CLI."""

    documents: int
    chunks: int
    embedder: str
    updated_at: datetime | None = None
    size_bytes: int = 0  # the database and vector files


@dataclass(frozen=True)
class Turn:
    """One question of a conversation and the answer it got."""

    question: str
    answer: Answer
    asked_at: datetime


@dataclass(frozen=True)
class Conversation:
    """A chat kept in the knowledge base, newest activity first in lists."""

    conversation_id: int
    title: str
    created_at: datetime
    updated_at: datetime
    turns: int = 0
