"""SQLAlchemy schema and queries: documents, chunks and metadata (the source of truth)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kbqa.domain import Chunk, ChunkDraft, OcrLine, Scan
from kbqa.errors import SettingError
from kbqa.ingest.schema import upgrade
from kbqa.ingest.terms import ChunkTerms, Fts5Terms, PgTerms
from kbqa.retrieval.lexical import TERMS_VERSION
from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # `path` is what citations show ("mail.eml › report.pdf" for an attachment); `file` is
    # the file on disk it came from, whose hash `sha256` decides "unchanged".
    path: Mapped[str] = mapped_column(Text, unique=True)
    file: Mapped[str] = mapped_column(Text, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # The document's own bytes: two paths with the same content share one set of chunks,
    # held by the first; the others point at it with `same_as`.
    content_sha: Mapped[str] = mapped_column(String(64), index=True)
    same_as: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChunkRow(Base):
    __tablename__ = "chunks"
    # AUTOINCREMENT: ids are never reused, so a stale vector can never alias a new chunk.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heading: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)


class ScanLineRow(Base):
    """A line OCR read on a page, its box in fractions of the page image (0-1): what a
    citation outlines on the scan."""

    __tablename__ = "scan_lines"
    __table_args__ = (Index("ix_scan_lines_page", "document_id", "page"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    page: Mapped[int] = mapped_column(Integer)
    line: Mapped[int] = mapped_column(Integer)  # reading order on the page
    text: Mapped[str] = mapped_column(Text)
    left: Mapped[float] = mapped_column(Float)
    top: Mapped[float] = mapped_column(Float)
    right: Mapped[float] = mapped_column(Float)
    bottom: Mapped[float] = mapped_column(Float)


class MetaRow(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class StoredDocument:
    """A document row as the rest of kbqa sees it."""

    document_id: int
    path: str
    sha256: str
    kind: str
    pages: int | None
    chunk_count: int
    ingested_at: datetime
    file: str = ""
    content_sha: str = ""
    same_as: int | None = None
    size: int = 0  # of `file` when it was ingested


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL: readers never block the writer; a killed writer leaves the last commit intact.
    # The mode is kept in the file. Switching a new file is refused at once, busy timeout
    # or not, while another connection switches it (processes opening a new knowledge base
    # together): try again.
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    # FULL: a commit is on disk when it returns, so the vector files it supersedes can go
    # (NORMAL may undo several commits on a power loss). One fsync per commit: noise.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """All SQL lives here; callers get domain objects back."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise SettingError(f"KBQA_DATABASE_URL names a {self.dialect} database: kbqa keeps "
                               "its knowledge base in SQLite (the default) or PostgreSQL "
                               "(postgresql+psycopg://...)")
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.terms: ChunkTerms = PgTerms() if self.dialect == "postgresql" else Fts5Terms()
        self.lexical = True
        self._ensure_terms()

    def _ensure_terms(self) -> None:
        """The lexical index of chunk terms, kept in step with `chunks` (inserts in
        `put_document`; deletes follow the chunk rows), rebuilt from the chunk text when
        it was made by another tokenizer version."""
        if self.get_meta("terms_version") == TERMS_VERSION:
            return
        with self.transaction() as session:
            if self.dialect == "postgresql":  # one rebuild, between commits: look again
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                {"key": PG_COMMIT_LOCK})
                if self.meta_in(session, "terms_version") == TERMS_VERSION:
                    return
            self.terms.clear(session)
            rows = session.execute(select(ChunkRow.id, ChunkRow.heading, ChunkRow.text)
                                   .execution_options(yield_per=2000))
            batch: list[tuple[int, str, str]] = []
            for chunk_id, heading, body in rows:
                batch.append((chunk_id, heading, body))
                if len(batch) >= 2000:
                    self.terms.insert(session, batch)
                    batch = []
            self.terms.insert(session, batch)
            self.set_meta(session, "terms_version", TERMS_VERSION)

    def close(self) -> None:
        self.engine.dispose()

    def clear(self, meta: dict[str, str] | None = None) -> None:
        """Forget every document, chunk and setting of the index (for a rebuild); other
        tables in the same database (conversations) stay."""
        # Rows are deleted, tables stay, in one transaction: a search in another session or
        # process sees the old rows or none, never a missing table.
        with self.transaction() as session:
            self.terms.clear(session)
            session.execute(delete(ChunkRow))
            session.execute(delete(ScanLineRow))
            session.execute(delete(DocumentRow))
            session.execute(delete(MetaRow))
            self.set_meta(session, "terms_version", TERMS_VERSION)
            for key, value in (meta or {}).items():  # written in the same transaction
                self.set_meta(session, key, value)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: everything inside commits together or not at all. The terms
        of the chunks it stored go to the lexical index once, at its end (PostgreSQL's
        statistics triggers then run once per batch of rows, not once per document)."""
        with self._sessions.begin() as session:
            session.info[PENDING_TERMS] = (self.terms, [])
            yield session
            _flush_terms(session)

    # -- reads -------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._sessions() as session:
            return self.meta_in(session, key, default)

    @staticmethod
    def meta_in(session: Session, key: str, default: str | None = None) -> str | None:
        """A meta value as this transaction sees it."""
        row = session.get(MetaRow, key)
        return row.value if row else default

    def documents(self) -> list[StoredDocument]:
        with self._sessions() as session:
            rows = session.scalars(select(DocumentRow).order_by(DocumentRow.path))
            return [_to_document(r) for r in rows]

    def document_by_path(self, path: str) -> StoredDocument | None:
        with self._sessions() as session:
            row = session.scalar(select(DocumentRow).where(DocumentRow.path == path))
            return _to_document(row) if row else None

    def file_sha(self, file: str) -> str | None:
        """The hash `file` had when it was last stored, if it is."""
        with self._sessions() as session:
            return session.scalar(select(DocumentRow.sha256).where(DocumentRow.file == file)
                                  .limit(1))

    def counts(self) -> tuple[int, int]:
        with self._sessions() as session:
            docs = session.scalar(select(func.count(DocumentRow.id))) or 0
            chunks = session.scalar(select(func.count(ChunkRow.id))) or 0
            return int(docs), int(chunks)

    def lexical_search(self, terms: Sequence[str], stems: Sequence[str], limit: int,
                       document_ids: Sequence[int] | None = None,
                       counts: Mapping[str, int] | None = None) -> list[tuple[int, float]]:
        """BM25 over chunk terms: (chunk id, score), best first, score > 0. `stems`: the
        terms as the index stems them (`TermMatcher.stems`); `counts`: `term_chunk_counts`
        of them, when the caller has it."""
        if not terms or limit <= 0:
            return []
        return self.terms.search(self.engine, terms, stems, limit, document_ids, counts)

    def term_chunk_counts(self, stems: Sequence[str]) -> dict[str, int]:
        """How many chunks contain each (stemmed) term."""
        return self.terms.counts(self.engine, stems) if stems else {}

    def chunk_ids(self) -> list[int]:
        """Every stored chunk id (the backfill of a vector space compares against these)."""
        with self.engine.connect() as connection:
            return [int(i) for (i,) in connection.execute(text("SELECT id FROM chunks"))]

    def chunk_ids_of(self, document_ids: Sequence[int]) -> list[int]:
        # one bound value for any number of documents (SQLite caps bound variables)
        sql = ("SELECT id FROM chunks WHERE document_id IN (SELECT value FROM json_each(:ids))"
               if self.dialect == "sqlite" else
               "SELECT id FROM chunks WHERE document_id = ANY(:ids)")
        ids: Any = json.dumps(list(document_ids)) if self.dialect == "sqlite" \
            else list(document_ids)
        with self.engine.connect() as connection:
            return [int(i) for (i,) in connection.execute(text(sql), {"ids": ids})]

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, Chunk]:
        wanted = list(ids)
        if not wanted:
            return {}
        with self._sessions() as session:
            rows = session.execute(
                select(ChunkRow, DocumentRow.path)
                .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                .where(ChunkRow.id.in_(wanted))
            )
            return {c.id: _to_chunk(c, path) for c, path in rows}

    def iter_chunks(self, document_id: int | None = None) -> Iterator[Chunk]:
        """Every stored chunk (or one document's), in id order, streamed."""
        query = (select(ChunkRow, DocumentRow.path)
                 .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                 .order_by(ChunkRow.id))
        if document_id is not None:
            query = query.where(ChunkRow.document_id == document_id)
        with self._sessions() as session:
            for chunk, path in session.execute(query.execution_options(yield_per=1000)):
                yield _to_chunk(chunk, path)

    def scan_lines(self, chunk_id: int) -> list[OcrLine]:
        """The OCR lines of the page a chunk came from, in reading order, boxes in fractions
        of the page; empty when the page was not read by OCR."""
        with self._sessions() as session:
            chunk = session.get(ChunkRow, chunk_id)
            if chunk is None or chunk.page is None:
                return []
            rows = session.scalars(select(ScanLineRow)
                                   .where(ScanLineRow.document_id == chunk.document_id,
                                          ScanLineRow.page == chunk.page)
                                   .order_by(ScanLineRow.line))
            return [OcrLine(r.text, r.left, r.top, r.right, r.bottom) for r in rows]

    def scans_of(self, document_id: int) -> list[tuple[int, Scan]]:
        """A document's stored OCR lines per page, as scans of a 1 x 1 page (the boxes are
        fractions already): what a copy of the document stores again."""
        pages: dict[int, list[OcrLine]] = {}
        with self._sessions() as session:
            for row in session.scalars(select(ScanLineRow)
                                       .where(ScanLineRow.document_id == document_id)
                                       .order_by(ScanLineRow.page, ScanLineRow.line)):
                pages.setdefault(row.page, []).append(
                    OcrLine(row.text, row.left, row.top, row.right, row.bottom))
        return [(page, Scan(1.0, 1.0, tuple(lines))) for page, lines in pages.items()]

    # -- writes (inside `transaction()`) ------------------------------------------------
    @staticmethod
    def set_meta(session: Session, key: str, value: str) -> None:
        session.merge(MetaRow(key=key, value=value))

    @staticmethod
    def remove_file(session: Session, file: str) -> list[int]:
        """Delete every document that came from `file`; returns the chunk ids whose vectors
        must go (chunks an identical copy still needs are handed to it instead)."""
        docs = session.scalars(select(DocumentRow).where(DocumentRow.file == file)).all()
        ids: list[int] = []
        for doc in docs:
            ids.extend(Store._release(session, doc))
            session.delete(doc)
        session.flush()
        _, pending = session.info.get(PENDING_TERMS, (None, []))
        if pending and ids:  # chunks stored earlier in this transaction, deleted again
            gone = set(ids)
            pending[:] = [row for row in pending if row[0] not in gone]
        return ids

    @staticmethod
    def _release(session: Session, doc: DocumentRow) -> list[int]:
        if doc.same_as is not None:
            return []
        heirs = session.scalars(select(DocumentRow).where(DocumentRow.same_as == doc.id)
                                .order_by(DocumentRow.id)).all()
        if heirs:  # an identical copy stays: it takes over the chunks, no re-embedding
            heir = heirs[0]
            for table in (ChunkRow, ScanLineRow):
                session.execute(update(table).where(table.document_id == doc.id)
                                .values(document_id=heir.id))
            heir.same_as, heir.chunk_count, heir.pages = None, doc.chunk_count, doc.pages
            for other in heirs[1:]:
                other.same_as = heir.id
            session.flush()
            return []
        ids = list(session.scalars(select(ChunkRow.id).where(ChunkRow.document_id == doc.id)))
        session.execute(delete(ChunkRow).where(ChunkRow.document_id == doc.id))
        session.execute(delete(ScanLineRow).where(ScanLineRow.document_id == doc.id))
        return ids

    @staticmethod
    def holder_of(session: Session, content_sha: str) -> DocumentRow | None:
        """The document that holds the chunks for this content, if any."""
        return session.scalar(select(DocumentRow).where(DocumentRow.content_sha == content_sha,
                                                        DocumentRow.same_as.is_(None))
                              .order_by(DocumentRow.id).limit(1))

    def put_document(
        self,
        session: Session,
        *,
        path: str,
        file: str,
        sha256: str,
        content_sha: str,
        size: int,
        kind: str,
        pages: int | None,
        drafts: Sequence[ChunkDraft],
        same_as: int | None = None,
        scans: Sequence[tuple[int, Scan]] = (),
        ingested_at: datetime | None = None,
    ) -> list[int]:
        """Insert a document with its chunks and the OCR lines of its scanned pages (page
        number, scan); returns the new chunk ids in draft order."""
        doc = DocumentRow(path=path, file=file, sha256=sha256, content_sha=content_sha,
                          same_as=same_as, size=size, kind=kind, pages=pages,
                          chunk_count=len(drafts),
                          ingested_at=ingested_at or datetime.now(timezone.utc))
        session.add(doc)
        session.flush()
        rows = [ChunkRow(document_id=doc.id, ordinal=d.ordinal, page=d.page,
                         heading=d.heading, location=d.location, text=d.text) for d in drafts]
        session.add_all(rows)
        session.add_all(ScanLineRow(document_id=doc.id, page=page, line=number, text=ln.text,
                                    left=ln.left, top=ln.top, right=ln.right, bottom=ln.bottom)
                        for page, scan in scans
                        for number, ln in enumerate(scan.normalized()))
        session.flush()
        # their terms reach the lexical index when the transaction ends (`transaction`)
        session.info[PENDING_TERMS][1].extend((r.id, r.heading, r.text) for r in rows)
        return [r.id for r in rows]


# PostgreSQL: the transaction-scoped advisory lock every commit of rows holds
PG_COMMIT_LOCK = zlib.crc32(b"kbqa commit")
PENDING_TERMS = "kbqa_pending_terms"  # session.info: (ChunkTerms, [(id, heading, text)])


def _flush_terms(session: Session) -> None:
    terms, pending = session.info.get(PENDING_TERMS, (None, []))
    if terms is not None and pending:
        terms.insert(session, pending)
        pending.clear()


def _to_document(row: DocumentRow) -> StoredDocument:
    return StoredDocument(document_id=row.id, path=row.path, sha256=row.sha256, kind=row.kind,
                          pages=row.pages, chunk_count=row.chunk_count,
                          ingested_at=row.ingested_at, file=row.file,
                          content_sha=row.content_sha, same_as=row.same_as, size=row.size)


def _to_chunk(row: ChunkRow, path: str) -> Chunk:
    return Chunk(chunk_id=row.id, source=path, text=row.text, page=row.page,
                 heading=row.heading, ordinal=row.ordinal, document_id=row.document_id,
                 location=row.location or "")
