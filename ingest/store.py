"""SQLAlchemy schema and queries: documents, chunks and metadata (the source of truth)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kbqa.domain import Chunk, ChunkDraft, OcrLine, Scan
from kbqa.retrieval.lexical import FTS5_TOKENIZER, TERMS_VERSION, index_terms, searchable
from sqlalchemy import (
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
    inspect,
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
    size: Mapped[int] = mapped_column(Integer)
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
    # WAL: readers never block the writer; a killed writer leaves the last commit intact.
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk when it returns, so the vector files it supersedes can go
    # (NORMAL may undo several commits on a power loss). One fsync per commit: noise.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Store:
    """All SQL lives here; callers get domain objects back."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.lexical = self.engine.dialect.name == "sqlite"
        if self.lexical:
            self._ensure_terms()

    def _ensure_terms(self) -> None:
        """The FTS5 table of chunk terms, kept in step with `chunks` (inserts in
        `put_document`, deletes by trigger, so cascades and prunes are covered too); rebuilt
        from the chunk text when it is missing or made by another tokenizer version."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(terms, "
                f"tokenize='{FTS5_TOKENIZER}')")
            connection.exec_driver_sql(
                "CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms_vocab "
                "USING fts5vocab(chunk_terms, 'row')")
            connection.exec_driver_sql(
                "CREATE TRIGGER IF NOT EXISTS chunk_terms_delete AFTER DELETE ON chunks "
                "BEGIN DELETE FROM chunk_terms WHERE rowid = old.id; END")
        if self.get_meta("terms_version") == TERMS_VERSION:
            return
        with self.transaction() as session:
            session.execute(text("DELETE FROM chunk_terms"))
            rows = session.execute(select(ChunkRow.id, ChunkRow.heading, ChunkRow.text)
                                   .execution_options(yield_per=2000))
            batch: list[dict[str, Any]] = []
            for chunk_id, heading, body in rows:
                batch.append(_terms_row(chunk_id, heading, body))
                if len(batch) >= 2000:
                    _insert_terms(session, batch)
                    batch = []
            _insert_terms(session, batch)
            self.set_meta(session, "terms_version", TERMS_VERSION)

    def close(self) -> None:
        self.engine.dispose()

    def clear(self, meta: dict[str, str] | None = None) -> None:
        """Forget every document, chunk and setting of the index (for a rebuild); other
        tables in the same database (conversations) stay."""
        # Rows are deleted, tables stay, in one transaction: a search in another session or
        # process sees the old rows or none, never a missing table.
        with self.transaction() as session:
            if self.lexical:
                session.execute(text("DELETE FROM chunk_terms"))
            session.execute(delete(ChunkRow))
            session.execute(delete(ScanLineRow))
            session.execute(delete(DocumentRow))
            session.execute(delete(MetaRow))
            if self.lexical:
                self.set_meta(session, "terms_version", TERMS_VERSION)
            for key, value in (meta or {}).items():  # written in the same transaction
                self.set_meta(session, key, value)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: everything inside commits together or not at all."""
        with self._sessions.begin() as session:
            yield session

    # -- reads -------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._sessions() as session:
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

    def counts(self) -> tuple[int, int]:
        with self._sessions() as session:
            docs = session.scalar(select(func.count(DocumentRow.id))) or 0
            chunks = session.scalar(select(func.count(ChunkRow.id))) or 0
            return int(docs), int(chunks)

    def lexical_search(self, match: str, limit: int,
                       document_ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """BM25 over chunk terms (FTS5): (chunk id, score), best first, score > 0."""
        if not self.lexical or not match or limit <= 0:
            return []
        sql = ("SELECT rowid, bm25(chunk_terms) AS s FROM chunk_terms "
               "WHERE chunk_terms MATCH :match")
        params: dict[str, Any] = {"match": match, "limit": limit}
        if document_ids is not None:
            sql += (" AND rowid IN (SELECT id FROM chunks WHERE document_id IN "
                    "(SELECT value FROM json_each(:ids)))")
            params["ids"] = json.dumps(list(document_ids))
        sql += " ORDER BY s, rowid LIMIT :limit"
        with self.engine.connect() as connection:
            rows = connection.execute(text(sql), params)
            return [(int(i), -float(s)) for i, s in rows]

    def term_chunk_counts(self, stems: Sequence[str]) -> dict[str, int]:
        """How many chunks contain each (stemmed) term."""
        if not self.lexical or not stems:
            return {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT term, doc FROM chunk_terms_vocab WHERE term IN "
                     "(SELECT value FROM json_each(:terms))"),
                {"terms": json.dumps(list(stems))})
            return {str(t): int(n) for t, n in rows}

    def chunk_ids(self) -> list[int]:
        """Every stored chunk id (the backfill of a vector space compares against these)."""
        with self.engine.connect() as connection:
            return [int(i) for (i,) in connection.execute(text("SELECT id FROM chunks"))]

    def chunk_ids_of(self, document_ids: Sequence[int]) -> list[int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id FROM chunks WHERE document_id IN "
                     "(SELECT value FROM json_each(:ids))"),
                {"ids": json.dumps(list(document_ids))})
            return [int(i) for (i,) in rows]

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

    @staticmethod
    def put_document(
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
    ) -> list[int]:
        """Insert a document with its chunks and the OCR lines of its scanned pages (page
        number, scan); returns the new chunk ids in draft order."""
        doc = DocumentRow(path=path, file=file, sha256=sha256, content_sha=content_sha,
                          same_as=same_as, size=size, kind=kind, pages=pages,
                          chunk_count=len(drafts), ingested_at=datetime.now(timezone.utc))
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
        if session.get_bind().dialect.name == "sqlite":
            _insert_terms(session, [_terms_row(r.id, r.heading, r.text) for r in rows])
        return [r.id for r in rows]


def _terms_row(chunk_id: int, heading: str, body: str) -> dict[str, Any]:
    return {"id": chunk_id, "terms": index_terms(searchable(heading, body))}


def _insert_terms(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(text("INSERT INTO chunk_terms(rowid, terms) VALUES (:id, :terms)"),
                        rows)


def _add_missing_columns(engine: Engine) -> None:
    """Knowledge bases made by an older kbqa gain the new columns in place."""
    inspector = inspect(engine)
    added = {
        "documents": [("file", "TEXT"), ("content_sha", "VARCHAR(64)"),
                      ("same_as", "INTEGER")],
        "chunks": [("location", "TEXT DEFAULT ''")],
    }
    with engine.begin() as connection:
        for table, columns in added.items():
            present = {c["name"] for c in inspector.get_columns(table)}
            for name, sql_type in columns:
                if name not in present:
                    connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
        connection.exec_driver_sql(
            "UPDATE documents SET file = path WHERE file IS NULL")
        connection.exec_driver_sql(
            "UPDATE documents SET content_sha = sha256 WHERE content_sha IS NULL")


def _to_document(row: DocumentRow) -> StoredDocument:
    return StoredDocument(document_id=row.id, path=row.path, sha256=row.sha256, kind=row.kind,
                          pages=row.pages, chunk_count=row.chunk_count,
                          ingested_at=row.ingested_at, file=row.file,
                          content_sha=row.content_sha, same_as=row.same_as, size=row.size)


def _to_chunk(row: ChunkRow, path: str) -> Chunk:
    return Chunk(chunk_id=row.id, source=path, text=row.text, page=row.page,
                 heading=row.heading, ordinal=row.ordinal, document_id=row.document_id,
                 location=row.location or "")
