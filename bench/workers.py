"""Several ingest workers and API processes on one PostgreSQL (bench-backends, part 3).

Two `python -m kbqa api` processes serve one knowledge base in PostgreSQL while two
`python -m kbqa ingest DIR` workers ingest the same folder at once; one worker is killed
with SIGKILL inside its first commit (rows written, the transaction open: the test-only
kill point `before-vectors`). Meanwhile clients poll both APIs: the documents listed, and
for a listed document a dense and a lexical search limited to it (its rows, terms and
vectors are committed together, so each must find it). Measured and checked: every file
stored exactly once (the survivor reads the dead worker's claimed files), every chunk with
its vector, the document count never going back, both APIs answering alike at the end,
and the wall time against one worker alone.

Used by `make bench-backends` (part 3) and, on a small folder, by tests/test_postgres.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from api import start_api, wait_until_up


@dataclass
class WorkersRun:
    files: int
    workers: int
    killed: bool
    seconds: float = 0.0  # from the workers' start to the last one's end
    documents: int = 0  # rows in `documents`
    distinct_paths: int = 0
    chunks: int = 0
    chunks_without_vector: int = 0
    polls: int = 0  # document listings read from the APIs during the ingest
    searches: int = 0  # searches for a listed document during the ingest
    inconsistent: list[str] = field(default_factory=list)
    apis_agree: bool = False
    exit_codes: list[int] = field(default_factory=list)


def _poll(base: str, words: dict[str, str], stop: threading.Event, run: WorkersRun,
          lock: threading.Lock) -> None:
    """List the documents; search one listed document densely and lexically, limited to
    it: a document that is listed must be found both ways."""
    import httpx

    client = httpx.Client(base_url=base, timeout=120)
    seen = 0
    pick = random.Random(base)
    while not stop.is_set():
        listed = client.get("/v1/documents").json()["data"]
        problems = []
        if len(listed) < seen:
            problems.append(f"{base}: {len(listed)} documents listed after {seen}")
        seen = max(seen, len(listed))
        searched = 0
        if listed:
            path = pick.choice(listed)["path"]
            for mode, query in (("dense", words[path]), ("lexical", words[path])):
                hits = client.post("/v1/search", json={
                    "query": query, "k": 3, "mode": mode, "filters": {"path": path}}).json()
                searched += 1
                if not hits.get("data"):
                    problems.append(f"{base}: {path} listed, but a {mode} search limited to "
                                    f"it found nothing ({hits})")
        with lock:
            run.polls += 1
            run.searches += searched
            run.inconsistent.extend(problems)
        time.sleep(0.1)


def _wait_for_a_claim(database_url: str, process: subprocess.Popen[bytes]) -> None:
    from kbqa.ingest.pg_vectors import CLAIM_CLASS
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    deadline = time.monotonic() + 180
    try:
        while process.poll() is None and time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                        "classid = CAST(:kind AS oid) AND objsubid = 2 AND granted AND "
                        "database = (SELECT oid FROM pg_database WHERE datname = "
                        "current_database())"), {"kind": CLAIM_CLASS}).scalar():
                    return
            time.sleep(0.05)
    finally:
        engine.dispose()


def run_workers(database_url: str, folder: Path, words: dict[str, str], work: Path, *,
                workers: int = 2, apis: int = 2, kill_one: bool = True,
                commit_every_s: float = 2.0) -> WorkersRun:
    """`folder`: the files to ingest; `words`: for each file's path, a query its text
    answers (its title, a code word); `work`: a scratch folder for homes and logs."""
    import httpx
    from sqlalchemy import create_engine, text

    files = sorted(str(p) for p in folder.iterdir() if p.is_file())
    run = WorkersRun(files=len(files), workers=workers, killed=kill_one and workers > 1)
    base_env = {**os.environ, "KBQA_DATABASE_URL": database_url,
                "KBQA_COMMIT_EVERY_S": str(commit_every_s)}
    servers: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for number in range(apis):
            log = work / f"api-{number}.log"
            env = {**base_env, "KBQA_HOME": str(work / f"api-{number}")}
            servers.append(start_api(env, log))
        for number, (process, base) in enumerate(servers):
            wait_until_up(base, process, work / f"api-{number}.log", timeout_s=180)
        stop, lock = threading.Event(), threading.Lock()
        pollers = [threading.Thread(target=_poll, args=(base, words, stop, run, lock),
                                    daemon=True) for _, base in servers]
        for poller in pollers:
            poller.start()
        started = time.perf_counter()
        ingests = []
        for number in range(workers):
            env = {**base_env, "KBQA_HOME": str(work / f"worker-{number}")}
            if number == 0 and run.killed:
                env["KBQA_TEST_KILL_AT"] = "before-vectors"
            ingests.append(subprocess.Popen(
                [sys.executable, "-m", "kbqa", "ingest", "-q", str(folder)], env=env,
                stdout=(work / f"worker-{number}.log").open("wb"), stderr=subprocess.STDOUT))
            if number == 0 and run.killed:  # it must hold files when it dies
                _wait_for_a_claim(database_url, ingests[0])
        run.exit_codes = [process.wait() for process in ingests]
        run.seconds = time.perf_counter() - started
        stop.set()
        for poller in pollers:
            poller.join(timeout=300)
        engine = create_engine(database_url)
        with engine.connect() as connection:
            run.documents = int(connection.execute(text(
                "SELECT count(*) FROM documents")).scalar() or 0)
            run.distinct_paths = int(connection.execute(text(
                "SELECT count(DISTINCT file) FROM documents")).scalar() or 0)
            run.chunks = int(connection.execute(text("SELECT count(*) FROM chunks")).scalar()
                             or 0)
            run.chunks_without_vector = int(connection.execute(text(
                "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM "
                "kbqa_vectors_0 v WHERE v.chunk_id = c.id)")).scalar() or 0)
        engine.dispose()
        answers = []
        for _, base in servers:
            hits = httpx.post(f"{base}/v1/search", json={"query": next(iter(words.values())),
                                                         "k": 10}, timeout=120).json()["data"]
            answers.append([(h["source"], round(h["score"], 4)) for h in hits])
        run.apis_agree = all(a == answers[0] for a in answers) and bool(answers[0])
    finally:
        for process, _ in servers:
            process.send_signal(signal.SIGINT)
        for process, _ in servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return run
