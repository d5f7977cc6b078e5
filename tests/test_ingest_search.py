"""Ingest and search through the real embedder, SQLite and FAISS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from kbqa.ingest.faults import KILL_AT_ENV, KILL_POINTS


def names(paths) -> set[str]:
    return {Path(p).name for p in paths}


@pytest.mark.both_databases
def test_folder_ingest_reports_each_file(make_kb, docs: Path) -> None:
    kb = make_kb()
    report = kb.ingest(docs)
    assert names(report.added) == {"zephyr-manual.pdf", "harbor.md", "team.txt", "cafe.txt"}
    assert [(Path(f.path).name, "not a readable PDF" in f.reason) for f in report.failed] == \
        [("broken.pdf", True)]
    assert report.ok and report.chunks_added >= 4
    assert kb.stats().documents == 4


@pytest.mark.both_databases
def test_search_finds_the_page_with_the_answer(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    hits = kb.search("How often must the Zephyr X200 pump be serviced?", k=3)
    top = hits[0].chunk
    assert Path(top.source).name == "zephyr-manual.pdf" and top.page == 2
    assert "450 operating hours" in top.text
    assert hits[0].score >= hits[-1].score
    legacy = kb.search("Which café serves Sachertorte?", k=1)[0].chunk
    assert Path(legacy.source).name == "cafe.txt" and "Café Rüdiger" in legacy.text


@pytest.mark.both_databases
def test_markdown_chunks_keep_their_heading(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    hit = kb.search("When does the harbor office open?", k=1)[0]
    assert hit.chunk.heading == "Lindqvist harbor > Opening hours"
    assert "7:15" in hit.chunk.text


@pytest.mark.both_databases
def test_reingest_unchanged_adds_nothing_and_changes_are_replaced(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    again = kb.ingest(docs)
    assert again.added == [] and again.updated == [] and again.chunks_added == 0
    assert len(again.unchanged) == 4
    (docs / "team.txt").write_text("Marta Okonkwo now leads the Kestrel project in Bergen.\n",
                                   encoding="utf-8")
    (docs / "cafe.txt").unlink()
    changed = kb.ingest(docs)
    assert names(changed.updated) == {"team.txt"} and names(changed.removed) == {"cafe.txt"}
    hits = kb.search("Which project does Marta Okonkwo lead?", k=10)
    texts = " ".join(h.chunk.text for h in hits)
    assert "Kestrel" in texts and "Vireo" not in texts and "Sachertorte" not in texts
    assert kb.stats().documents == 3


@pytest.mark.both_databases
def test_filters_restrict_results(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    hits = kb.search("opening hours", k=5, filters={"type": "pdf"})
    assert hits and all(h.chunk.source.endswith(".pdf") for h in hits)
    assert all(Path(h.chunk.source).name == "team.txt"
               for h in kb.search("team", k=5, filters={"path": "team*"}))


@pytest.mark.both_databases
def test_empty_knowledge_base_searches_to_nothing(make_kb) -> None:
    assert make_kb().search("anything") == []


@pytest.mark.both_databases
def test_changing_the_embedder_is_refused(make_kb, docs: Path) -> None:
    from kbqa.errors import EmbedderMismatch

    kb = make_kb()
    kb.ingest(docs / "team.txt")
    with kb.store.transaction() as session:
        kb.store.set_meta(session, "embedder", "some-other-model")
    with pytest.raises(EmbedderMismatch, match="--rebuild"):
        kb.ingest(docs)


@pytest.fixture(scope="module")
def committed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base with one committed file (team.txt), made by the real CLI."""
    folder = tmp_path_factory.mktemp("committed")
    (folder / "team.txt").write_text("Marta Okonkwo leads the Vireo research team. The team "
                                     "is based in Tromsø, Norway, and studies sea ice.\n")
    home = folder / "home"
    subprocess.run([sys.executable, "-m", "kbqa", "ingest", "-q", str(folder / "team.txt")],
                   env={**os.environ, "KBQA_HOME": str(home)}, check=True,
                   capture_output=True)
    return home


def _consistent(home: Path) -> tuple[list[str], int]:
    """Open the knowledge base as a user would: the committed rows and vectors agree and
    the first file answers. Returns the document names and the committed generation."""
    from kbqa import open_kb

    kb = open_kb(home)
    try:
        hits = kb.search("Who leads the Vireo research team?", k=1)
        assert Path(hits[0].chunk.source).name == "team.txt"
        documents = kb.documents()
        assert sum(d.chunk_count for d in documents) == kb.stats().chunks == len(kb.index())
        return (sorted(Path(d.path).name for d in documents),
                int(kb.store.get_meta("index_generation") or 0))
    finally:
        kb.close()


def _generations_on_disk(home: Path) -> set[int]:
    return {int(p.name.split("-")[1].split(".")[0]) for p in (home / "vectors").glob("*.faiss")}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_at_each_point_of_a_commit_leaves_the_last_commit_usable(
        point: str, tmp_path: Path, committed_home: Path) -> None:
    """`kill -9` at a chosen point of the commit protocol (a test-only hook): the knowledge
    base opens with the last commit (or, killed after it, the new one), and a re-run
    completes the ingest and leaves no stray vector files."""
    home = tmp_path / "home"
    shutil.copytree(committed_home, home)
    names, generation = _consistent(home)
    assert names == ["team.txt"]
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(20):
        (notes / f"note-{i:02d}.txt").write_text(
            " ".join(f"Note {i} sentence {j} about subject {i * j}." for j in range(40)))
    command = [sys.executable, "-m", "kbqa", "ingest", "-q", str(notes)]
    env = {**os.environ, "KBQA_HOME": str(home)}
    killed = subprocess.run(command, env={**env, KILL_AT_ENV: point}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    after_names, after_generation = _consistent(home)
    if point == "after-commit":
        assert (len(after_names), after_generation) == (21, generation + 1)
    else:
        assert (after_names, after_generation) == (names, generation)
    if point == "after-vectors":  # the kill came after the new file was written
        assert generation + 1 in _generations_on_disk(home)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "failed 0" in done.stdout, done.stdout + done.stderr
    final_names, final_generation = _consistent(home)
    assert len(final_names) == 21
    assert _generations_on_disk(home) <= {final_generation, final_generation - 1}


def test_a_power_loss_that_undoes_the_last_commit_needs_no_rebuild(make_kb, docs: Path,
                                                                   tmp_path: Path) -> None:
    """A power cut can undo a commit SQLite had not yet made durable while the vector files
    of the generation it replaced are already gone. The generation before the current one
    is kept, so the knowledge base the database falls back to still opens and answers."""
    kb = make_kb()
    kb.ingest(docs / "team.txt")
    kb.close()
    database = kb.home / "kb.sqlite"
    saved = tmp_path / "saved"
    saved.mkdir()
    for file in database.parent.glob("kb.sqlite*"):
        shutil.copy2(file, saved / file.name)
    kb = make_kb()
    kb.ingest(docs / "harbor.md")  # a newer commit, then the power goes
    kb.close()
    for file in database.parent.glob("kb.sqlite*"):
        file.unlink()
    for file in saved.iterdir():
        shutil.copy2(file, database.parent / file.name)
    kb = make_kb()
    assert [Path(d.path).name for d in kb.documents()] == ["team.txt"]
    hits = kb.search("Who leads the Vireo research team?", k=1)
    assert Path(hits[0].chunk.source).name == "team.txt"
    assert len(kb.index()) == kb.stats().chunks
    report = kb.ingest(docs / "harbor.md")  # and the lost work is simply done again
    assert [Path(p).name for p in report.added] == ["harbor.md"]


def test_shared_text_folder_ingests(make_kb) -> None:
    folder = SHARED_DATA / "docs" / "text"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (benchmark data lives in ../shared/data)")
    kb = make_kb()
    report = kb.ingest([folder / "norwich-city.txt", folder / "fake-text-utf-16-be.txt",
                        folder / "empty.txt", folder / "umlauts-non-utf8.md"])
    assert names(report.added) == {"norwich-city.txt", "fake-text-utf-16-be.txt",
                                   "umlauts-non-utf8.md"}
    assert [(Path(f.path).name, f.reason.split(" (")[0]) for f in report.failed] == \
        [("empty.txt", "empty file")]
    top = kb.search("Where was Iwan Roberts born?", k=3)
    assert any("Bangor" in h.chunk.text for h in top)


def test_counting_tokens_while_encoding_is_thread_safe(embedder) -> None:
    """Ingest chunks (counts tokens) in one thread while the model encodes in another."""
    import threading

    errors: list[BaseException] = []
    stop = threading.Event()

    def count() -> None:
        try:
            while not stop.is_set():
                embedder.count_tokens("A sentence about ice cores and sea levels. " * 20)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=count)
    worker.start()
    try:
        for _ in range(15):
            embedder.encode(["Tromsø is a city in northern Norway. " * 10] * 16)
    finally:
        stop.set()
        worker.join()
    assert errors == []


@pytest.mark.both_databases
def test_ingest_reports_its_progress_as_it_goes(make_kb, docs: Path) -> None:
    from kbqa.domain import IngestProgress

    seen: list[IngestProgress] = []
    kb = make_kb()
    kb.ingest(docs, on_progress=seen.append)
    assert len(seen) >= 2
    last = seen[-1]
    assert last.files_done == last.files_total == 5  # the broken PDF counts as read
    assert last.chunks_done == last.chunks_planned > 0
    assert last.fraction == 1.0
    assert seen[0].fraction < 1.0


def test_an_ingest_within_folders_does_not_follow_links_out_of_them(make_kb, docs: Path,
                                                                    tmp_path: Path) -> None:
    """What an exposed server's Library page does: a file link inside an allowed folder
    that points elsewhere on the disk is reported, and its text never enters the base."""
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "passwords.txt").write_text("The vault code is 7731-4410.\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "team.txt").write_text("Marta Okonkwo leads the Vireo research team.\n")
    (shared / "notes.txt").symlink_to(secret / "passwords.txt")
    kb = make_kb()
    report = kb.ingest(shared, within=[shared])
    assert [Path(p).name for p in report.added] == ["team.txt"]
    assert [Path(f.path).name for f in report.failed] == ["notes.txt"]
    assert "outside the folders" in report.failed[0].reason
    assert not kb.search("vault code", k=3, mode="lexical")
