"""Copy a knowledge base to another database (`python -m kbqa migrate SRC DST`): SQLite +
FAISS to PostgreSQL + pgvector and back, without re-embedding.

Documents go over in batches, each batch one commit of the destination (rows, OCR lines and
vectors together); the destination records the last source document copied, so a copy cut
short resumes where it stopped when run again. Chats go over at the end, their citations
pointed at the passages' new ids. The source is only read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from kbqa.conversations import ConversationRow, TurnRow
from kbqa.domain import ChunkDraft
from kbqa.errors import SettingError
from kbqa.ingest.store import DocumentRow, MetaRow, Store, StoredDocument
from kbqa.ingest.vectors import FIRST_DIM, FIRST_SPACE, GENERATION, SPACES, IngestState
from kbqa.kb import KnowledgeBase
from sqlalchemy import select
from sqlalchemy.orm import Session

PROGRESS = "migrated_up_to"  # meta of the destination: the last source document copied
SOURCE = "migrated_from"  # meta: which knowledge base it is a copy of
CHATS = "migrated_chats"  # meta: the chats were copied (in their own transaction)
DONE = "done"
BATCH_DOCUMENTS = 200
# Meta the destination writes itself (its commits, its term index).
OWN_META = {GENERATION, SPACES, FIRST_SPACE, FIRST_DIM, "terms_version", PROGRESS, SOURCE,
            CHATS}
# Each commit to FAISS files rewrites them: a destination on SQLite takes larger batches.
BATCH_DOCUMENTS_FILES = 5000

ProgressFn = Callable[[int, int], None]  # (documents copied, documents in all)


@dataclass
class MigrationReport:
    documents: int = 0
    chunks: int = 0
    conversations: int = 0
    resumed_after: int = 0


def migrate(source: KnowledgeBase, destination: KnowledgeBase, *, identity: str,
            on_progress: ProgressFn | None = None,
            batch_documents: int = BATCH_DOCUMENTS) -> MigrationReport:
    """Copy `source` into `destination` (an empty knowledge base, or one this copy was cut
    short in). `identity` names the source, so a resume cannot mix two."""
    src, dst = source.store, destination.store
    report = MigrationReport()
    recorded_from = dst.get_meta(SOURCE)
    done_up_to = dst.get_meta(PROGRESS)
    if recorded_from is None and not destination.is_empty():
        raise SettingError("the destination already holds documents: copy into an empty "
                           "knowledge base (a new folder, or a new PostgreSQL database)")
    if recorded_from is not None and recorded_from != identity:
        raise SettingError(f"the destination is a copy of {recorded_from}, not of {identity}: "
                           "copy into an empty knowledge base")
    if done_up_to == DONE:
        return report
    report.resumed_after = int(done_up_to or 0)
    if destination.store.dialect == "sqlite":
        batch_documents = max(batch_documents, BATCH_DOCUMENTS_FILES)
    spaces = source.indexes()
    first_name, first_index = next(iter(spaces.items()))
    documents = [d for d in src.documents() if d.document_id > report.resumed_after]
    documents.sort(key=lambda d: d.document_id)
    total = len(documents)
    with destination.vectors.writer_lock(sole=True):
        state = destination.vectors.draft(lambda: (first_name, first_index.dim))
        holders = _holders(dst, src)  # source holder id -> destination id, for copies
        for start in range(0, total, batch_documents):
            batch = documents[start:start + batch_documents]
            opening = start == 0 and report.resumed_after == 0

            def rows(session: Session, state: IngestState,
                     batch: list[StoredDocument] = batch, opening: bool = opening) -> None:
                if opening:
                    _copy_meta(src, dst, session, identity)
                for doc in batch:
                    chunks = sorted(src.iter_chunks(doc.document_id), key=lambda c: c.ordinal)
                    drafts = [ChunkDraft(text=c.text, page=c.page, heading=c.heading,
                                         ordinal=c.ordinal, location=c.location)
                              for c in chunks]
                    new_ids = dst.put_document(
                        session, path=doc.path, file=doc.file or doc.path, sha256=doc.sha256,
                        content_sha=doc.content_sha or doc.sha256, size=doc.size,
                        kind=doc.kind, pages=doc.pages, drafts=drafts,
                        same_as=holders.get(doc.same_as) if doc.same_as else None,
                        scans=src.scans_of(doc.document_id), ingested_at=doc.ingested_at)
                    new_doc = session.scalar(select(DocumentRow.id)
                                             .where(DocumentRow.path == doc.path))
                    holders[doc.document_id] = int(new_doc or 0)
                    old_ids = [c.chunk_id for c in chunks]
                    for name, index in spaces.items():
                        vectors = index.vectors(old_ids)
                        held = vectors.any(axis=1)
                        if held.any():
                            state.add(name, [i for i, h in zip(new_ids, held, strict=True) if h],
                                      vectors[held])
                    report.chunks += len(chunks)
                dst.set_meta(session, PROGRESS, str(batch[-1].document_id))

            destination.vectors.commit(state, rows)
            report.documents += len(batch)
            if on_progress is not None:
                on_progress(report.documents, total)
        if total == 0 and report.resumed_after == 0:
            destination.vectors.commit(state, lambda session, _state: _copy_meta(
                src, dst, session, identity))
        report.conversations = _copy_chats(source, destination)
        destination.vectors.settle(state, ok=True)
        with dst.transaction() as session:
            dst.set_meta(session, PROGRESS, DONE)
    return report


def _holders(dst: Store, src: Store) -> dict[int, int]:
    """For a resumed copy: source document id -> destination id, by path."""
    copied = {d.path: d.document_id for d in dst.documents()}
    return {d.document_id: copied[d.path] for d in src.documents() if d.path in copied}


def _copy_meta(src: Store, dst: Store, session: Session, identity: str) -> None:
    with src.transaction() as reading:
        for row in reading.scalars(select(MetaRow)):
            if row.key not in OWN_META:
                dst.set_meta(session, row.key, row.value)
    dst.set_meta(session, SOURCE, identity)


def _chunk_ids_by_place(store: Store) -> dict[tuple[str, int], int]:
    """(path of the document holding the chunk, ordinal) -> chunk id."""
    return {(chunk.source, chunk.ordinal): chunk.chunk_id for chunk in store.iter_chunks()}


def _copy_chats(source: KnowledgeBase, destination: KnowledgeBase) -> int:
    """The kept chats, once, their citations pointed at the same passages in the copy (a
    passage the source no longer holds gets no id: the viewer shows the quote alone)."""
    if destination.store.get_meta(CHATS) == "1":
        return 0
    source.conversations  # noqa: B018  (creates the tables of an older knowledge base)
    destination.conversations  # noqa: B018
    old = {chunk_id: place for place, chunk_id in _chunk_ids_by_place(source.store).items()}
    new = _chunk_ids_by_place(destination.store)
    count = 0
    with source.store.transaction() as reading, destination.store.transaction() as writing:
        for chat in reading.scalars(select(ConversationRow).order_by(ConversationRow.id)):
            copy = ConversationRow(title=chat.title, created_at=chat.created_at,
                                   updated_at=chat.updated_at)
            writing.add(copy)
            writing.flush()
            for turn in reading.scalars(select(TurnRow).where(TurnRow.conversation_id == chat.id)
                                        .order_by(TurnRow.id)):
                answer = json.loads(turn.answer)
                for cite in answer.get("citations", []):
                    place = old.get(cite.get("chunk_id"))
                    cite["chunk_id"] = new.get(place, 0) if place else 0
                writing.add(TurnRow(conversation_id=copy.id, question=turn.question,
                                    answer=json.dumps(answer, ensure_ascii=False),
                                    asked_at=turn.asked_at))
            count += 1
        destination.store.set_meta(writing, CHATS, "1")
    return count
