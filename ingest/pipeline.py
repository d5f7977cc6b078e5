"""ingest(paths) -> IngestReport: find files, skip unchanged, load, chunk, embed, commit.

Work is committed in batches, each as one unit (SQLite rows + a new FAISS generation), so a
crash loses at most the batch in flight and a re-run picks up where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kbqa.domain import ChunkDraft, Failure, IngestReport
from kbqa.errors import EmbedderMismatch, IngestError
from kbqa.ingest.chunking import chunk_sections
from kbqa.ingest.embed import Embedder
from kbqa.ingest.index import VectorIndex, generation_path, stale_generation_files
from kbqa.ingest.loaders import load
from kbqa.ingest.store import Store, file_sha256
from kbqa.settings import Settings

BATCH_CHUNKS = 512
BATCH_FILES = 256
ENCODE_STEP = 64


@dataclass
class Staged:
    """A loaded, chunked file waiting for its vectors and its commit."""

    path: str
    sha256: str
    size: int
    kind: str
    pages: int | None
    drafts: list[ChunkDraft]
    is_update: bool
    vectors: np.ndarray | None = None


@dataclass
class IngestState:
    """The index generation the run starts from and advances; the caller keeps it after."""

    index: VectorIndex
    generation: int
    folder: Path


@dataclass
class _Progress:
    enabled: bool
    files: object = None
    chunks: object = None
    _bars: list = field(default_factory=list)

    def start(self, total_files: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.files = tqdm(total=total_files, unit="file", desc="files ", position=0)
        self.chunks = tqdm(total=0, unit="chunk", desc="chunks", position=1)
        self._bars = [self.files, self.chunks]

    def file_done(self, name: str) -> None:
        if self.files is not None:
            self.files.set_postfix_str(name[-40:], refresh=False)  # type: ignore[attr-defined]
            self.files.update(1)  # type: ignore[attr-defined]

    def chunks_planned(self, n: int) -> None:
        if self.chunks is not None:
            self.chunks.total += n  # type: ignore[attr-defined]
            self.chunks.refresh()  # type: ignore[attr-defined]

    def chunks_done(self, n: int) -> None:
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
    if draft.heading and not draft.text.lstrip("# ").startswith(draft.heading.split(" > ")[-1]):
        return f"{draft.heading}\n{draft.text}"
    return draft.text


def ingest_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    store: Store,
    state: IngestState,
    embedder: Embedder,
    settings: Settings,
    progress: bool = False,
    prune: bool = True,
    log: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest files and folders; the caller holds the writer lock."""
    started = time.perf_counter()
    check_embedder(store, embedder)
    for stale in stale_generation_files(state.folder, keep=state.generation):
        stale.unlink(missing_ok=True)  # left by a crash between write and commit

    files, roots, failed = discover(paths)
    report = IngestReport(failed=failed)
    known = {d.path: d for d in store.documents()}
    bar = _Progress(progress)
    bar.start(len(files))
    pending: list[Staged] = []
    limit = settings.max_file_mb * 2**20
    try:
        for path in files:
            name = str(path)
            try:
                size = path.stat().st_size
                if size > limit:
                    raise IngestError(
                        f"too large ({size / 2**20:.0f} MiB > {settings.max_file_mb} MiB): "
                        "split it, or raise KBQA_MAX_FILE_MB"
                    )
                sha = file_sha256(path)
                previous = known.get(name)
                if previous is not None and previous.sha256 == sha:
                    report.unchanged.append(name)
                    continue
                document = load(path)
                drafts = chunk_sections(document.sections, embedder.count_tokens,
                                        settings.chunk_tokens, settings.chunk_overlap)
                if not drafts:
                    raise IngestError("no text to index after chunking")
                pending.append(Staged(name, sha, size, document.kind, document.pages, drafts,
                                      is_update=previous is not None))
                bar.chunks_planned(len(drafts))
            except IngestError as exc:
                report.failed.append(Failure(name, str(exc)))
            except Exception as exc:  # a loader bug must cost one file, not the run
                report.failed.append(Failure(name, f"unexpected error ({type(exc).__name__}: "
                                                   f"{exc}); please report it"))
            finally:
                bar.file_done(path.name)
            if (sum(len(s.drafts) for s in pending) >= BATCH_CHUNKS
                    or len(pending) >= BATCH_FILES):
                _embed_and_commit(pending, store, state, embedder, bar, report)
                pending = []
        if pending:
            _embed_and_commit(pending, store, state, embedder, bar, report)
        seen = {str(p) for p in files}
        gone = [d for d in known if prune and d not in seen and _under_any(d, roots)
                and not Path(d).exists()]
        if gone:
            _commit(store, state, embedder, [], gone)
            report.removed.extend(gone)
    finally:
        bar.close()
    if log:
        for failure in report.failed:
            log(f"failed: {failure.path}: {failure.reason}")
    return _finish(report, started)


def _finish(report: IngestReport, started: float) -> IngestReport:
    object.__setattr__(report, "seconds", time.perf_counter() - started)
    return report


def _under_any(path: str, roots: Sequence[Path]) -> bool:
    return any(path.startswith(str(root) + os.sep) for root in roots)


def _embed_and_commit(pending: list[Staged], store: Store, state: IngestState,
                      embedder: Embedder, bar: _Progress, report: IngestReport) -> None:
    texts = [embedding_text(d) for s in pending for d in s.drafts]
    parts = []
    for start in range(0, len(texts), ENCODE_STEP):
        parts.append(embedder.encode(texts[start:start + ENCODE_STEP]))
        bar.chunks_done(min(ENCODE_STEP, len(texts) - start))
    vectors = np.vstack(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
    offset = 0
    for staged in pending:
        staged.vectors = vectors[offset:offset + len(staged.drafts)]
        offset += len(staged.drafts)
    _commit(store, state, embedder, pending, [])
    for staged in pending:
        (report.updated if staged.is_update else report.added).append(staged.path)
    object.__setattr__(report, "chunks_added", report.chunks_added + len(texts))


def _commit(store: Store, state: IngestState, embedder: Embedder,
            staged: Sequence[Staged], removals: Sequence[str]) -> None:
    """SQLite rows and a new FAISS generation, as one unit; on failure nothing changes."""
    new_generation = state.generation + 1
    new_path = generation_path(state.folder, new_generation)
    old_path = generation_path(state.folder, state.generation)
    try:
        with store.transaction() as session:
            for item in staged:
                state.index.remove(store.remove_document(session, item.path))
                ids = store.put_document(session, path=item.path, sha256=item.sha256,
                                         size=item.size, kind=item.kind, pages=item.pages,
                                         drafts=item.drafts)
                if item.vectors is None:
                    raise RuntimeError(f"{item.path} reached commit without vectors")
                state.index.add(ids, item.vectors)
            for path in removals:
                state.index.remove(store.remove_document(session, path))
            store.set_meta(session, "index_generation", str(new_generation))
            store.set_meta(session, "embedder", embedder.name)
            store.set_meta(session, "embedding_dim", str(embedder.dim))
            state.index.save(new_path)
    except BaseException:
        new_path.unlink(missing_ok=True)
        # The in-memory index took changes that were rolled back: go back to the file.
        state.index = (VectorIndex.load(old_path) if old_path.exists()
                       else VectorIndex(embedder.dim))
        raise
    state.generation = new_generation
    old_path.unlink(missing_ok=True)
