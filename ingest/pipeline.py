"""ingest(paths) -> IngestReport: find files, skip unchanged, load, chunk, embed, commit.

Chunks are embedded in batches and committed every `commit_every_s` seconds, each commit one
unit (SQLite rows + a new FAISS generation), so a crash loses at most the work since the last
commit and a re-run picks up where it stopped. Identical content under a second path is
stored once; a file's attachments are documents of their own, replaced and removed with it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kbqa.domain import ChunkDraft, Document, Failure, IngestProgress, IngestReport, Scan
from kbqa.errors import EmbedderMismatch, IngestError
from kbqa.ingest.chunking import chunk_sections
from kbqa.ingest.embed import Embedder
from kbqa.ingest.loaders import LoadOptions, load
from kbqa.ingest.ocr import OcrEngine
from kbqa.ingest.spaces import CROSS_SPACE, LATIN_SPACE, Embedders, is_cjk_text
from kbqa.ingest.store import Store, file_sha256
from kbqa.ingest.vectors import IngestState
from kbqa.settings import Settings
from sqlalchemy.orm import Session

BATCH_CHUNKS = 1024  # per encode call: the model sorts a batch by length, less padding
BATCH_FILES = 256
SPACES_CHECKED = "spaces_checked"  # meta: every chunk's spaces were checked once (_backfill)


@dataclass
class StagedDocument:
    """One document of a staged file: its chunks, or the content it shares with another."""

    path: str
    content_sha: str
    kind: str
    pages: int | None
    drafts: list[ChunkDraft]
    alias: bool = False  # identical to a stored document: no chunks of its own
    # Per vector space, one row per draft; a row of zeros where the space holds no vector.
    vectors: dict[str, np.ndarray] | None = None
    scans: list[tuple[int, Scan]] = field(default_factory=list)  # (page, its OCR lines)


@dataclass
class Staged:
    """A loaded, chunked file (and its attachments) waiting for vectors and its commit."""

    file: str
    sha256: str
    size: int
    is_update: bool
    documents: list[StagedDocument]

    @property
    def drafts(self) -> list[ChunkDraft]:
        return [d for doc in self.documents for d in doc.drafts]


ProgressFn = Callable[[IngestProgress], None]


@dataclass
class _Progress:
    """tqdm bars in a terminal and/or a callback (the chat's progress bar). Counters are
    updated from the staging thread; the callback runs only in the caller's thread."""

    enabled: bool
    callback: ProgressFn | None = None
    files: object = None
    chunks: object = None
    _bars: list = field(default_factory=list)
    files_total: int = 0
    files_done: int = 0
    chunks_planned_: int = 0
    chunks_done_: int = 0
    current: str = ""
    ocr_done: int = 0
    ocr_total: int = 0
    pages: object = None

    def start(self, total_files: int) -> None:
        self.files_total = total_files
        self.tell()
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.files = tqdm(total=total_files, unit="file", desc="files ", position=0)
        self.chunks = tqdm(total=0, unit="chunk", desc="chunks", position=1)
        self._bars = [self.files, self.chunks]

    def tell(self) -> None:
        if self.callback is not None:
            self.callback(IngestProgress(self.files_done, self.files_total,
                                         self.chunks_done_, self.chunks_planned_, self.current,
                                         self.ocr_done, self.ocr_total))

    def ocr_page(self, done: int, total: int) -> None:
        """A scanned page was read (from the staging thread)."""
        self.ocr_done, self.ocr_total = done, total
        if not self.enabled:
            return
        if self.pages is None:
            from tqdm.auto import tqdm

            self.pages = tqdm(total=total, unit="page", desc="OCR   ", position=2)
            self._bars.append(self.pages)
        self.pages.total = total  # type: ignore[attr-defined]
        self.pages.n = done  # type: ignore[attr-defined]
        self.pages.refresh()  # type: ignore[attr-defined]

    def file_done(self, name: str) -> None:
        self.files_done += 1
        self.current = name
        self.ocr_done = self.ocr_total = 0
        if self.files is not None:
            self.files.set_postfix_str(name[-40:], refresh=False)  # type: ignore[attr-defined]
            self.files.update(1)  # type: ignore[attr-defined]

    def chunks_planned(self, n: int) -> None:
        self.chunks_planned_ += n
        if self.chunks is not None:
            self.chunks.total += n  # type: ignore[attr-defined]
            self.chunks.refresh()  # type: ignore[attr-defined]

    def chunks_done(self, n: int) -> None:
        self.chunks_done_ += n
        if self.chunks is not None:
            self.chunks.update(n)  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in self._bars:
            bar.close()


def discover(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[Path], list[Failure]]:
    """Expand folders (recursively, skipping hidden entries) into files, in a stable order."""
    files: list[Path] = []
    roots: list[Path] = []
    missing: list[Failure] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            root = path.resolve()
            roots.append(root)
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
        elif path.is_file():
            files.append(path.resolve())
        else:
            missing.append(Failure(str(path), "no such file or folder: check the path"))
    unique = list(dict.fromkeys(files))
    return unique, roots, missing


def check_embedder(store: Store, embedder: Embedder) -> None:
    """Vectors of two embedders cannot share an index: refuse and say how to rebuild."""
    built_with = store.get_meta("embedder")
    if built_with is not None and (built_with != embedder.name
                                   or store.get_meta("embedding_dim") != str(embedder.dim)):
        raise EmbedderMismatch(
            f"this knowledge base was built with the embedder {built_with!r}; the settings ask "
            f"for {embedder.name!r}. Rebuild it with `python -m kbqa ingest --rebuild DIR`, "
            f"or set KBQA_EMBEDDER={built_with!r}"
        )


def embedding_text(draft: ChunkDraft) -> str:
    """The chunk as embedded: its heading path gives a passage its context."""
    return heading_and_text(draft.heading, draft.text)


def heading_and_text(heading: str, text: str) -> str:
    if heading and not text.lstrip("# ").startswith(heading.split(" > ")[-1]):
        return f"{heading}\n{text}"
    return text


def ingest_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    store: Store,
    state: IngestState,
    embedders: Embedders,
    settings: Settings,
    progress: bool = False,
    prune: bool = True,
    log: Callable[[str], None] | None = None,
    on_progress: ProgressFn | None = None,
    within: Sequence[Path] | None = None,
    ocr: OcrEngine | None = None,
) -> IngestReport:
    """Ingest files and folders; the caller holds the writer lock. With `within`, a file
    whose real path (links followed) is outside those folders is reported, not read."""
    started = time.perf_counter()
    check_embedder(store, embedders.primary)
    state.auto = embedders.auto

    files, roots, failed = discover(paths)
    if within is not None:
        allowed = [Path(folder).resolve() for folder in within]
        inside = []
        for file in files:
            if any(file.resolve().is_relative_to(folder) for folder in allowed):
                inside.append(file)
            else:
                failed.append(Failure(str(file), "a link to a file outside the folders this "
                                                 "server may read: not ingested (copy the "
                                                 "file in instead)"))
        files = inside
    report = IngestReport(failed=failed)
    stored = store.documents()
    known_files = {d.file: d.sha256 for d in stored}
    holders = {d.content_sha: d.file for d in stored if d.same_as is None}
    bar = _Progress(progress, on_progress)
    options = LoadOptions(passwords=settings.pdf_passwords, ocr=ocr,
                          ocr_max_pages=settings.ocr_max_pages, on_page=bar.ocr_page)
    bar.start(len(files))
    embedded: list[Staged] = []
    pending: list[Staged] = []
    last_commit = time.monotonic()
    limit = settings.max_file_mb * 2**20
    cross = embedders.always_cross or _holds_cross_vectors(state)

    finished = threading.Event()  # once set, a staging thread left behind records nothing

    deferred: list[Path] = []  # files another ingest had claimed: looked at again at the end
    waited_out = False  # a wait for a claim ran out: the other deferred files wait no more

    def stage(path: Path, wait: bool = False, last_look: bool = False) -> Staged | None:
        """Hash, load and chunk one file; None when unchanged, failed (recorded) or claimed
        by another ingest writing at the same time (deferred; with `wait`, waited for; on
        the `last_look`, reported)."""
        nonlocal holders, waited_out
        name = str(path)
        if finished.is_set():
            return None
        claimed = counted = False
        try:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise IngestError("its file name is not valid UTF-8: rename the file") from None
            size = path.stat().st_size
            if size > limit:
                raise IngestError(
                    f"too large ({size / 2**20:.0f} MiB > {settings.max_file_mb} MiB): "
                    "split it, or raise KBQA_MAX_FILE_MB"
                )
            sha = file_sha256(path)
            if known_files.get(name) == sha:
                report.unchanged.append(name)
                return None
            if not claims.take(name, wait=wait):
                if last_look:
                    waited_out = True
                    raise IngestError("another ingest has been reading it for longer than "
                                      "KBQA_LOCK_TIMEOUT_S: run the ingest again later")
                deferred.append(path)
                counted = True  # counted when it is looked at again
                return None
            claimed = True
            is_update = name in known_files
            if claims.shared:  # another ingest may have stored it since the listing
                stored_sha = store.file_sha(name)
                if stored_sha == sha:
                    report.unchanged.append(name)
                    return None
                is_update = stored_sha is not None
            if is_update:  # its old content no longer counts as a copy to share
                holders = {c: f for c, f in holders.items() if f != name}
            staged = _stage(path, sha, size, is_update, holders, embedders, settings,
                            options, report)
            for doc in staged.documents:
                holders.setdefault(doc.content_sha, name)
            bar.chunks_planned(len(staged.drafts))
            claimed = False  # released once its batch is committed
            return staged
        except IngestError as exc:
            if not finished.is_set():
                report.failed.append(Failure(name, str(exc)))
        except Exception as exc:  # a loader bug must cost one file, not the run
            if not finished.is_set():
                report.failed.append(Failure(name, f"unexpected error ({type(exc).__name__}: "
                                                   f"{exc}); please report it"))
        finally:
            if claimed:
                claims.release([name])
            if not finished.is_set() and not counted:
                bar.file_done(path.name)
        return None

    def commit(batch: list[Staged], removals: Sequence[str] = ()) -> None:
        _commit_staged(batch, store, state, report, removals=removals)
        claims.release([s.file for s in batch])

    scope = ExitStack()
    claims = scope.enter_context(state.spaces.claims())
    try:
        # Loading and chunking run in a second thread while the model encodes the
        # previous batch (torch and the tokenizer release the GIL): both cores stay busy.
        for staged in _prefetch(files, stage, on_wait=bar.tell):
            bar.tell()
            pending.append(staged)
            due = time.monotonic() - last_commit >= settings.commit_every_s
            if (due or sum(len(s.drafts) for s in pending) >= BATCH_CHUNKS
                    or len(pending) >= BATCH_FILES):
                cross = _embed(pending, embedders, cross, bar, report)
                embedded.extend(pending)
                pending = []
                if time.monotonic() - last_commit >= settings.commit_every_s:
                    commit(embedded)
                    embedded, last_commit = [], time.monotonic()
        cross = _embed(pending, embedders, cross, bar, report)
        embedded.extend(pending)
        seen = {str(p) for p in files}
        gone = sorted(f for f in known_files if prune and f not in seen
                      and _under_any(f, roots) and not Path(f).exists())
        if embedded or gone:
            commit(embedded, removals=gone)
            report.removed.extend(gone)
        # Every claim of this ingest is released by now, so waiting cannot deadlock: each
        # deferred file was committed by its claimant (unchanged now), or its claimant died.
        for path in deferred:
            late = stage(path, wait=not waited_out, last_look=True)
            if late is not None:
                cross = _embed([late], embedders, cross, bar, report)
                commit([late])
        if embedders.auto:
            _backfill(store, state, embedders, cross, bar, settings.commit_every_s)
        bar.tell()
    finally:
        finished.set()
        bar.close()
        scope.close()  # claims still held (a failed run's) go with their connection
    if log:
        for failure in report.failed:
            log(f"failed: {failure.path}: {failure.reason}")
    return _finish(report, started)


_DONE = object()
CONTAINERS = (".eml", ".msg")  # files whose attachments become documents of their own


def _prefetch(files: Sequence[Path], stage: Callable[[Path], Staged | None],
              depth: int = BATCH_FILES, on_wait: Callable[[], None] | None = None
              ) -> Iterator[Staged]:
    """Stage files in a background thread, at most `depth` ahead (bounded memory);
    `on_wait` runs in the caller's thread about twice a second while it waits (progress of
    a long file, e.g. a scan being read page by page)."""
    results: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> None:
        """Hand an item over, unless the consumer has stopped (then it is dropped: a put
        that waits for a reader who is gone would keep this thread, and all it holds)."""
        while not stop.is_set():
            try:
                results.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for path in files:
                if stop.is_set():
                    return
                staged = stage(path)
                if staged is not None:
                    offer(staged)
        except BaseException as exc:  # surfaced in the caller's thread
            offer(exc)
        finally:
            offer(_DONE)

    worker = threading.Thread(target=work, name="kbqa-stage", daemon=True)
    worker.start()
    try:
        while (item := _next(results, on_wait)) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # The worker ends at its next look at `stop` (a file mid-parse may take long: it is
        # not waited for). What it staged and nobody will read is dropped now.
        while True:
            try:
                results.get_nowait()
            except queue.Empty:
                break


def _next(results: queue.Queue[object], on_wait: Callable[[], None] | None) -> object:
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            if on_wait is not None:
                on_wait()


def _stage(path: Path, sha: str, size: int, is_update: bool, holders: dict[str, str],
           embedders: Embedders, settings: Settings, options: LoadOptions,
           report: IngestReport) -> Staged:
    """Load and chunk a file, unless identical content is stored already (then it only
    records the new path); attachments become documents of their own."""
    name = str(path)
    kind = path.suffix.lower().lstrip(".")
    copy_of = holders.get(sha) if holders.get(sha) != name else None
    if copy_of is not None and path.suffix.lower() not in CONTAINERS:
        report.duplicates.append((name, copy_of))
        return Staged(name, sha, size, is_update,
                      [StagedDocument(name, sha, kind, None, [], alias=True)])
    document = load(path, options)
    if copy_of is not None:  # a copied message: its attachments need documents of their own
        report.duplicates.append((name, copy_of))
        documents = [StagedDocument(name, sha, document.kind, None, [], alias=True)]
    else:
        documents = [StagedDocument(name, sha, document.kind, document.pages,
                                    _chunk(document, embedders, settings), scans=_scans(document))]
    for attachment in document.attachments:
        if attachment.document is None:
            report.failed.append(Failure(attachment.name, attachment.error))
        elif attachment.sha256 in holders:
            report.duplicates.append((attachment.name, holders[attachment.sha256]))
            documents.append(StagedDocument(attachment.name, attachment.sha256,
                                            attachment.document.kind, None, [], alias=True))
        else:
            drafts = _chunk(attachment.document, embedders, settings)
            if drafts:
                documents.append(StagedDocument(attachment.name, attachment.sha256,
                                                attachment.document.kind,
                                                attachment.document.pages, drafts,
                                                scans=_scans(attachment.document)))
    if not documents[0].drafts and not documents[0].alias:
        raise IngestError("no text to index after chunking")
    return Staged(name, sha, size, is_update, documents)


def _scans(document: Document) -> list[tuple[int, Scan]]:
    return [(s.page, s.scan) for s in document.sections
            if s.scan is not None and s.page is not None]


def _chunk(document: Document, embedders: Embedders, settings: Settings) -> list[ChunkDraft]:
    """Sized in the tokens of the embedder that reads the document (by its script)."""
    embedder = embedders.for_document(" ".join(s.text[:2000] for s in document.sections[:20]))
    return chunk_sections(document.sections, embedder.count_tokens, settings.chunk_tokens,
                          settings.chunk_overlap,
                          count_many=getattr(embedder, "count_tokens_batch", None))


def remove_paths(paths: Sequence[str], *, store: Store, state: IngestState) -> list[str]:
    """Forget files (or folders of files) without touching the disk; no re-embedding."""
    stored = {d.file for d in store.documents()}
    wanted: list[str] = []
    for raw in paths:
        resolved = str(Path(raw).expanduser().resolve())
        wanted.extend(f for f in stored if f == resolved or f.startswith(resolved + os.sep))
    wanted = sorted(set(wanted))
    if wanted:
        _commit(store, state, [], wanted)
    return wanted


def _finish(report: IngestReport, started: float) -> IngestReport:
    report.seconds = time.perf_counter() - started
    return report


def _under_any(path: str, roots: Sequence[Path]) -> bool:
    return any(path.startswith(str(root) + os.sep) for root in roots)


def _embed(pending: list[Staged], embedders: Embedders, cross: bool, bar: _Progress,
           report: IngestReport) -> bool:
    """Vectors for every new chunk in each space it belongs to, one encode call per space
    so the model batches by length. Returns `cross`, turned on by the first CJK chunk."""
    documents = [d for s in pending for d in s.documents if d.drafts]
    texts = [embedding_text(d) for doc in documents for d in doc.drafts]
    if not texts:
        return cross
    cross = cross or (embedders.auto and any(is_cjk_text(t) for t in texts))
    wanted = [embedders.spaces_of(t, cross) for t in texts]
    per_space: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(n for spaces in wanted for n in spaces):
        rows = [i for i, spaces in enumerate(wanted) if name in spaces]
        embedder = embedders.get(name)
        vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
        vectors[rows] = embedder.encode([texts[i] for i in rows])
        per_space[name] = vectors
    bar.chunks_done(len(texts))
    bar.tell()
    offset = 0
    for doc in documents:
        doc.vectors = {name: v[offset:offset + len(doc.drafts)] for name, v in per_space.items()}
        offset += len(doc.drafts)
    report.chunks_added += len(texts)
    return cross


def _holds_cross_vectors(state: IngestState) -> bool:
    """A cross-language base: its multilingual space holds vectors."""
    return CROSS_SPACE in state.indexes and len(state.indexes[CROSS_SPACE]) > 0


def _backfill(store: Store, state: IngestState, embedders: Embedders, cross: bool,
              bar: _Progress, commit_every_s: float) -> None:
    """Vectors a space lacks: the multilingual ones of chunks stored before the first CJK
    text arrived, and (once per base: a base from before spaces, or a first ingest) the
    MiniLM ones of Latin-script chunks. Committed as it goes, so a crash keeps what was done;
    the once-per-base check is marked done only by the last commit, so a re-run resumes."""
    total = store.counts()[1]
    if total == 0:
        return
    # Another ingest writing at the same time may have made the base cross-language.
    cross = cross or _holds_cross_vectors(state)
    checked = store.get_meta(SPACES_CHECKED) == "1"
    changed = False  # since the last commit
    cjk: set[int] = set()
    if not checked:
        # A base from before spaces had one embedder for all: MiniLM's vectors of CJK
        # chunks (which it cannot read) go, and its CJK text makes it a cross-language base.
        cjk = {c.chunk_id for c in store.iter_chunks()
               if is_cjk_text(heading_and_text(c.heading, c.text))}
        cross = cross or bool(cjk)
        if LATIN_SPACE in state.indexes and cjk:
            changed = state.indexes[LATIN_SPACE].remove(sorted(cjk)) > 0
    last_commit = time.monotonic()
    for name in (LATIN_SPACE, CROSS_SPACE):
        index = state.indexes.get(name)
        if name == LATIN_SPACE and checked:
            continue  # every Latin-script chunk got its vector when it was ingested
        if name == CROSS_SPACE and (not cross or (index is not None and len(index) >= total)):
            continue
        held = set(index.ids().tolist()) if index is not None else set()
        skip = cjk if name == LATIN_SPACE else set()  # the scan above read their script
        missing = [i for i in store.chunk_ids() if i not in held and i not in skip]
        bar.chunks_planned(len(missing))
        for start in range(0, len(missing), BATCH_CHUNKS):
            chunks = store.chunks_by_id(missing[start:start + BATCH_CHUNKS])
            texts = {i: heading_and_text(c.heading, c.text) for i, c in chunks.items()}
            ids = [i for i, t in texts.items() if name in embedders.spaces_of(t, cross)]
            if ids:
                embedder = embedders.get(name)  # loaded only when it has work
                state.add(name, ids, embedder.encode([texts[i] for i in ids]))
                changed = True
            bar.chunks_done(len(chunks))
            bar.tell()
            if changed and time.monotonic() - last_commit >= commit_every_s:
                _commit(store, state, [], [])
                changed, last_commit = False, time.monotonic()
    if changed or not checked:  # the check is marked done by the last commit only
        _commit(store, state, [], [], meta=None if checked else {SPACES_CHECKED: "1"})


def _commit_staged(staged: list[Staged], store: Store, state: IngestState,
                   report: IngestReport, removals: Sequence[str] = ()) -> None:
    vanished = _commit(store, state, staged, removals)
    for item in staged:
        if any(item is left for left in vanished):
            report.failed.append(Failure(item.file, "the file it is a copy of was changed by "
                                                    "another ingest meanwhile: run the ingest "
                                                    "again"))
        else:
            (report.updated if item.is_update else report.added).append(item.file)


def _commit(store: Store, state: IngestState, staged: Sequence[Staged],
            removals: Sequence[str], meta: dict[str, str] | None = None) -> list[Staged]:
    """The staged files' rows and vectors, and the removals, as one unit (`FaissSpaces`);
    on failure nothing changes. Returns the files left out: copies whose original another
    ingest changed meanwhile."""
    vanished: list[Staged] = []

    def rows(session: Session, state: IngestState) -> None:
        for item in staged:
            own = {doc.content_sha for doc in item.documents if not doc.alias}
            if not all(store.holder_of(session, doc.content_sha) for doc in item.documents
                       if doc.alias and doc.content_sha not in own):
                # another ingest changed the file this one was to share its passages
                # with (several ingests at once): the old version of this file stays
                vanished.append(item)
                continue
            state.remove(store.remove_file(session, item.file))
            for doc in item.documents:
                _put(store, session, state, item, doc)
        for file in removals:
            state.remove(store.remove_file(session, file))

    state.spaces.commit(state, rows, meta)
    return vanished


def _put(store: Store, session: Session, state: IngestState, item: Staged,
         doc: StagedDocument) -> None:
    holder = store.holder_of(session, doc.content_sha) if doc.alias else None
    if doc.alias and holder is None:
        raise RuntimeError(f"{doc.path}: its identical copy vanished during the ingest; "
                           "run the ingest again")
    ids = store.put_document(session, path=doc.path, file=item.file, sha256=item.sha256,
                             content_sha=doc.content_sha, size=item.size, kind=doc.kind,
                             pages=holder.pages if holder else doc.pages, drafts=doc.drafts,
                             same_as=holder.id if holder else None, scans=doc.scans)
    if doc.drafts:
        if doc.vectors is None:
            raise RuntimeError(f"{doc.path} reached commit without vectors")
        for name, vectors in doc.vectors.items():
            held = vectors.any(axis=1)
            state.add(name, np.asarray(ids)[held], vectors[held])
