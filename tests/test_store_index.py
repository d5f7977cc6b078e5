"""Real SQLite (through SQLAlchemy) and FAISS: ids, deletes, generations, rollback; the
parts that hold for any backend, on PostgreSQL + pgvector too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kbqa.domain import ChunkDraft, OcrLine, Scan
from kbqa.ingest.index import (
    VectorIndex,
    generation_path,
    kept_generations,
    stale_generation_files,
)
from kbqa.ingest.pipeline import Staged, StagedDocument, _commit
from kbqa.ingest.store import ScanLineRow, Store
from kbqa.ingest.vectors import FaissSpaces
from sqlalchemy import func, select


class FixedEmbedder:
    """Deterministic vectors; enough for storage tests, no model needed."""

    name = "fixed"
    dim = 8

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, hash(text) % self.dim] = 1.0
        return out

    def encode_queries(self, texts):
        return self.encode(texts)

    def count_tokens_batch(self, texts):
        return [self.count_tokens(t) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def staged(path: str, texts: list[str], content: str | None = None) -> Staged:
    drafts = [ChunkDraft(text=t, ordinal=i) for i, t in enumerate(texts)]
    vectors = {"fixed": FixedEmbedder().encode(texts)}
    sha = content or f"sha-{path}-{len(texts)}"
    return Staged(path, sha, 10, False,
                  [StagedDocument(path, sha, "txt", None, drafts, vectors=vectors)])


def copy_of(path: str, content: str) -> Staged:
    """A second path with content already stored: no chunks, no vectors."""
    return Staged(path, content, 10, False,
                  [StagedDocument(path, content, "txt", None, [], alias=True)])


@pytest.fixture
def setup(tmp_path: Path, database_url: str):
    """Rows and vectors in SQLite + FAISS files, or (marked both_databases) PostgreSQL."""
    from kbqa.ingest.pg_vectors import PgSpaces

    store = Store(database_url or f"sqlite:///{tmp_path / 'kb.sqlite'}")
    spaces = PgSpaces(store) if database_url else FaissSpaces(tmp_path / "vectors", store)
    state = spaces.draft(lambda: ("fixed", 8))
    yield store, state, tmp_path
    store.close()


@pytest.mark.both_databases
def test_ids_are_shared_by_rows_and_vectors(setup) -> None:
    store, state, _ = setup
    _commit(store, state, [staged("/a.txt", ["one", "two"])], [])
    chunks = store.chunks_by_id(range(1, 10))
    assert sorted(chunks) == [1, 2] and len(state.index) == 2
    assert {c.text for c in chunks.values()} == {"one", "two"}
    assert store.get_meta("index_generation") == "1"
    assert store.dialect != "sqlite" or generation_path(state.spaces.folder, 1).is_file()


def test_replace_and_remove_leave_no_stale_vectors(setup) -> None:
    store, state, _ = setup
    _commit(store, state, [staged("/a.txt", ["one", "two"]), staged("/b.txt", ["three"])], [])
    _commit(store, state, [staged("/a.txt", ["uno"])], [])  # a.txt changed
    assert len(state.index) == 2
    _commit(store, state, [], ["/b.txt"])
    assert len(state.index) == 1 and store.counts() == (1, 1)
    # ids are never reused, so an old vector can never point at a new chunk
    assert list(store.chunks_by_id(range(1, 10))) == [4]
    # only the current generation file and the one before it (for a power loss) remain
    assert sorted(p.name for p in state.spaces.folder.iterdir()) == ["vectors-00000002.faiss",
                                                              "vectors-00000003.faiss"]


def test_failed_commit_changes_nothing(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    store, state, _ = setup
    _commit(store, state, [staged("/a.txt", ["one"])], [])

    def crash(self, path):  # the disk fills up while the new vectors are written
        raise OSError("disk full")

    monkeypatch.setattr(VectorIndex, "save", crash)
    with pytest.raises(OSError):
        _commit(store, state, [staged("/b.txt", ["two", "three"])], [])
    assert store.counts() == (1, 1)
    assert store.get_meta("index_generation") == "1"
    assert len(state.index) == 1 and state.generation == 1
    assert VectorIndex.load(generation_path(state.spaces.folder, 1)).search(
        FixedEmbedder().encode(["one"])[0], 1)[0][0] == 1


def test_a_second_space_commits_with_the_first_and_rolls_back_with_it(
        setup, monkeypatch: pytest.MonkeyPatch) -> None:
    store, state, _ = setup
    _commit(store, state, [staged("/a.txt", ["one"])], [])
    two = staged("/b.txt", ["two"])
    vectors = two.documents[0].vectors or {}
    vectors["other"] = np.ones((1, 4), dtype=np.float32) / 2  # a new space, 4 dims
    original = VectorIndex.save
    saved: list[Path] = []

    def crash_on_the_second_file(self, path):
        saved.append(path)
        if len(saved) == 2:
            raise OSError("disk full")
        original(self, path)

    monkeypatch.setattr(VectorIndex, "save", crash_on_the_second_file)
    with pytest.raises(OSError):
        _commit(store, state, [two], [])
    # Nothing of the failed commit stays: not its rows, its first file, or the new space.
    assert store.counts() == (1, 1) and list(state.indexes) == ["fixed"]
    assert not saved[0].exists() and len(state.index) == 1
    monkeypatch.setattr(VectorIndex, "save", original)
    _commit(store, state, [two], [])
    assert {name: len(index) for name, index in state.indexes.items()} == \
        {"fixed": 2, "other": 1}
    assert generation_path(state.spaces.folder, 2, 1).is_file()
    assert store.get_meta("vector_spaces") == '[["fixed", 8, 2], ["other", 4, 1]]'


def test_stale_generations_are_found(tmp_path: Path) -> None:
    for gen in (1, 2, 3, 4):
        generation_path(tmp_path, gen).write_bytes(b"x")
    (tmp_path / "vectors-00000005.faiss.tmp").write_bytes(b"x")
    names = sorted(p.name for p in stale_generation_files(tmp_path, kept_generations(3)))
    assert names == ["vectors-00000001.faiss", "vectors-00000004.faiss",
                     "vectors-00000005.faiss.tmp"]  # the current one and the one before stay


def test_index_save_load_roundtrip(tmp_path: Path) -> None:
    index = VectorIndex(4)
    vectors = np.eye(4, dtype=np.float32)
    index.add([10, 20, 30, 40], vectors)
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.search(vectors[2], 1) == [(30, pytest.approx(1.0))]
    assert loaded.remove([10, 99]) == 1 and len(loaded) == 3


@pytest.mark.both_databases
def test_identical_copies_share_chunks_and_survive_either_deletion(setup) -> None:
    store, state, _ = setup
    _commit(store, state, [staged("/a.txt", ["one", "two"], "same")], [])
    _commit(store, state, [copy_of("/copy/a.txt", "same")], [])
    assert store.counts() == (2, 2) and len(state.index) == 2  # stored once
    _commit(store, state, [], ["/a.txt"])  # the original goes: the copy inherits
    assert store.counts() == (1, 2) and len(state.index) == 2
    chunks = store.chunks_by_id(range(1, 10))
    assert {c.source for c in chunks.values()} == {"/copy/a.txt"}
    _commit(store, state, [], ["/copy/a.txt"])
    assert store.counts() == (0, 0) and len(state.index) == 0


@pytest.mark.both_databases
def test_a_scans_lines_are_kept_per_page_and_follow_its_chunks(setup) -> None:
    """The OCR boxes a citation outlines: stored per page as fractions of the page, moved to
    an identical copy with the chunks, gone with the last of them."""
    store, state, _ = setup
    scan = Scan(width=1000, height=500, lines=(
        OcrLine("Total due:", 100, 50, 400, 80), OcrLine("310 EUR", 450, 52, 600, 80)))
    item = staged("/scan.png", ["Total due: 310 EUR", "page two"], "same")
    item.documents[0].drafts = [ChunkDraft(text="Total due: 310 EUR", page=1),
                                ChunkDraft(text="page two", page=2, ordinal=1)]
    item.documents[0].scans = [(1, scan)]
    _commit(store, state, [item], [])
    _commit(store, state, [copy_of("/copy/scan.png", "same")], [])
    first, second = sorted(store.chunks_by_id(range(1, 10)))
    assert store.scan_lines(first) == [OcrLine("Total due:", 0.1, 0.1, 0.4, 0.16),
                                       OcrLine("310 EUR", 0.45, 0.104, 0.6, 0.16)]
    assert store.scan_lines(second) == []  # page 2 was not read by OCR
    _commit(store, state, [], ["/scan.png"])  # the copy inherits the chunks and the lines
    assert [ln.text for ln in store.scan_lines(first)] == ["Total due:", "310 EUR"]
    _commit(store, state, [], ["/copy/scan.png"])
    with store.transaction() as session:
        assert session.scalar(select(func.count(ScanLineRow.id))) == 0


@pytest.mark.both_databases
def test_changing_the_original_keeps_the_copy_on_the_old_text(setup) -> None:
    store, state, _ = setup
    _commit(store, state, [staged("/a.txt", ["old text"], "v1"),
                                     copy_of("/b.txt", "v1")], [])
    _commit(store, state, [staged("/a.txt", ["new text"], "v2")], [])
    by_source = {c.source: c.text for c in store.chunks_by_id(range(1, 10)).values()}
    assert by_source == {"/a.txt": "new text", "/b.txt": "old text"}
    assert len(state.index) == 2


def test_a_stopped_ingest_does_not_leave_its_staging_thread_behind() -> None:
    """When the ingest stops reading (an error, a kill of the run's generator), the staging
    thread must end and drop what it loaded, even if it is in the middle of a slow file."""
    import threading
    import time

    from kbqa.ingest.pipeline import _prefetch

    slow_file = threading.Event()
    staged_names: list[str] = []

    def stage(path: Path):
        staged_names.append(path.name)
        if path.name == "3":
            slow_file.wait(10)  # a file that takes long to parse
        return [path.name] * 1000  # "loaded" content

    files = [Path(str(i)) for i in range(50)]
    staged = _prefetch(files, stage, depth=2)
    assert next(staged) == ["0"] * 1000
    deadline = time.monotonic() + 10
    while "3" not in staged_names and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker reaches the slow file (two staged files wait in line)
    started = time.monotonic()
    staged.close()  # the consumer goes away while the worker is in file 3
    assert time.monotonic() - started < 2  # not held up by the slow file
    worker = next(t for t in threading.enumerate() if t.name == "kbqa-stage")
    slow_file.set()
    worker.join(5)
    assert not worker.is_alive()
    assert staged_names == ["0", "1", "2", "3"]  # it noticed: none of the other 46 files


@pytest.mark.both_databases
def test_a_file_stored_and_replaced_in_one_transaction_is_searched_as_replaced(setup
                                                                               ) -> None:
    """Terms reach the lexical index at the end of a transaction: those of chunks deleted
    again before it (a file updated twice in one batch) never do."""
    from kbqa.retrieval.lexical import TermMatcher

    store, _, _ = setup
    matcher = TermMatcher()

    def put(session, text: str) -> None:
        store.put_document(session, path="/a.txt", file="/a.txt", sha256=text,
                           content_sha=text, size=1, kind="txt", pages=None,
                           drafts=[ChunkDraft(text=text, ordinal=0)])

    with store.transaction() as session:
        put(session, "pumps need service kits")
        assert store.remove_file(session, "/a.txt") == [1]
        put(session, "the harbor opens at seven")
    assert store.lexical_search(["pump"], matcher.stems(["pump"]), 5) == []
    assert [i for i, _ in store.lexical_search(["harbor"], matcher.stems(["harbor"]), 5)] == [2]
    assert store.term_chunk_counts(matcher.stems(["harbor", "pump"])) == {"harbor": 1}
