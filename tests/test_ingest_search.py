"""Ingest and search through the real embedder, SQLite and FAISS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA


def names(paths) -> set[str]:
    return {Path(p).name for p in paths}


def test_folder_ingest_reports_each_file(make_kb, docs: Path) -> None:
    kb = make_kb()
    report = kb.ingest(docs)
    assert names(report.added) == {"zephyr-manual.pdf", "harbor.md", "team.txt", "cafe.txt"}
    assert [(Path(f.path).name, "not a readable PDF" in f.reason) for f in report.failed] == \
        [("broken.pdf", True)]
    assert report.ok and report.chunks_added >= 4
    assert kb.stats().documents == 4


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


def test_markdown_chunks_keep_their_heading(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    hit = kb.search("When does the harbor office open?", k=1)[0]
    assert hit.chunk.heading == "Lindqvist harbor > Opening hours"
    assert "7:15" in hit.chunk.text


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


def test_filters_restrict_results(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    hits = kb.search("opening hours", k=5, filters={"type": "pdf"})
    assert hits and all(h.chunk.source.endswith(".pdf") for h in hits)
    assert all(Path(h.chunk.source).name == "team.txt"
               for h in kb.search("team", k=5, filters={"path": "team*"}))


def test_empty_knowledge_base_searches_to_nothing(make_kb) -> None:
    assert make_kb().search("anything") == []


def test_changing_the_embedder_is_refused(make_kb, docs: Path) -> None:
    from kbqa.errors import EmbedderMismatch

    kb = make_kb()
    kb.ingest(docs / "team.txt")
    with kb.store.transaction() as session:
        kb.store.set_meta(session, "embedder", "some-other-model")
    with pytest.raises(EmbedderMismatch, match="--rebuild"):
        kb.ingest(docs)


def test_kill_9_mid_ingest_leaves_last_commit_usable(tmp_path: Path, docs: Path) -> None:
    """A crash at any instant keeps the previous generation readable; a re-run completes."""
    home = tmp_path / "crash-home"
    env = {**os.environ, "KBQA_HOME": str(home)}
    python = [sys.executable, "-m", "kbqa"]
    subprocess.run([*python, "ingest", "-q", str(docs / "team.txt")], env=env, check=True,
                   capture_output=True)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(400):
        (many / f"note-{i:03d}.txt").write_text(
            " ".join(f"Note {i} sentence {j} about subject {i * j}." for j in range(60)))
    # Commit every second, so the kill lands after some commits and likely inside one.
    proc = subprocess.Popen([*python, "ingest", "-q", str(many)],
                            env={**env, "KBQA_COMMIT_EVERY_S": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(15)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from kbqa import open_kb

    kb = open_kb(home)
    hits = kb.search("Who leads the Vireo research team?", k=1)
    assert Path(hits[0].chunk.source).name == "team.txt"
    kept = kb.documents()
    assert sum(d.chunk_count for d in kept) == kb.stats().chunks == len(kb.index())
    kb.close()
    done = subprocess.run([*python, "ingest", "-q", str(many)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "failed 0" in done.stdout, done.stdout[-3000:] + \
        done.stderr[-3000:]
    kb = open_kb(home)
    documents = kb.documents()
    assert len(documents) == 401
    assert sum(d.chunk_count for d in documents) == kb.stats().chunks == len(kb.index())
    kb.close()


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
