"""make bench-api: many HTTP clients at once against `python -m kbqa api`.

The API runs as its own process (`python -m kbqa api` on loopback, as deployed) over a
knowledge base of the ten fictional fact documents of bench-injection (without the
injections) and SQuAD v1.1 dev paragraphs (../shared/data/squad-v1.1-dev.json, CC BY-SA
4.0) as text files, ingested through `POST /v1/ingest`. Then CLIENTS threads, each with its
own HTTP connection, send requests for SECONDS: mostly `POST /v1/search` (a SQuAD question
or a fact question), and every CHAT_EVERY-th request a streamed `POST /v1/chat/completions`
with one of the fact questions. The chat model answers one question at a time, so chats
wait in line: their time to first token includes that wait.

Printed: requests and errors per endpoint (an error is a non-2xx status, a broken
connection, an error event in a stream, or a stream without its final citations), p50/p95
latency of search, p50/p95 time to first token and full answer of chat, how many chat
answers contained the fact's answer, and the API process's peak memory.

Usage: python bench/api.py [--clients 16] [--seconds 60] [--chat-every 8] [--paragraphs 400]
                           [--model small|default]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
SQUAD = ROOT.parent / "shared" / "data" / "squad-v1.1-dev.json"

from browser import free_port  # noqa: E402
from injection import FACTS_EN  # noqa: E402
from load import percentile  # noqa: E402
from speed import table  # noqa: E402


def corpus(folder: Path, paragraphs: int, rng: random.Random) -> list[str]:
    """The fact documents and SQuAD paragraphs as .txt files; the SQuAD questions."""
    folder.mkdir(parents=True)
    for number, (fact, _, _) in enumerate(FACTS_EN):
        (folder / f"fact-{number:02d}.txt").write_text(fact + "\n", encoding="utf-8")
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    found = [(p["context"], p["qas"][0]["question"]) for article in data
             for p in article["paragraphs"] if p["qas"]]
    chosen = rng.sample(found, min(paragraphs, len(found)))
    for number, (context, _) in enumerate(chosen):
        (folder / f"squad-{number:04d}.txt").write_text(context, encoding="utf-8")
    return [question for _, question in chosen]


def client(base: str, searches: list[str], stop: float, chat_every: int, seed: int,
           results: dict[str, list[Any]], errors: list[str]) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=900) as http:
        sent = 0
        while time.monotonic() < stop:
            sent += 1
            try:
                if sent % chat_every == 0:
                    _, question, expected = rng.choice(FACTS_EN)
                    results["chat"].append(chat(http, question, expected))
                else:
                    query = rng.choice(searches)
                    started = time.perf_counter()
                    response = http.post("/v1/search", json={"query": query, "k": 5})
                    response.raise_for_status()
                    assert response.json()["data"], f"no hits for {query!r}"
                    results["search"].append(time.perf_counter() - started)
            except Exception as exc:  # counted and shown: the bench wants 0
                errors.append(f"{type(exc).__name__}: {exc}"[:300])


def chat(http: Any, question: str, expected: str) -> tuple[float, float, bool]:
    """(time to first token, time to the full answer, the answer holds the fact)."""
    started = time.perf_counter()
    first = 0.0
    text = ""
    final: dict[str, Any] | None = None
    with http.stream("POST", "/v1/chat/completions", json={
            "model": "kbqa", "stream": True,
            "messages": [{"role": "user", "content": question}]}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"error event: {event['error']}")
            piece = event["choices"][0]["delta"].get("content")
            if piece and not first:
                first = time.perf_counter() - started
            text += piece or ""
            if event["choices"][0]["finish_reason"] == "stop":
                final = event
    if final is None or "citations" not in final:
        raise RuntimeError("the stream ended without its final chunk and citations")
    return first or time.perf_counter() - started, time.perf_counter() - started, \
        expected in final["kbqa"]["text"]


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m kbqa api` on a free loopback port, its output in `log`; and its address."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "kbqa", "api", "--port", str(port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path,
                  timeout_s: float = 120) -> None:
    """Until the API answers /healthz; RuntimeError with its log when it died or timed out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--chat-every", type=int, default=8,
                        help="every Nth request of a client is a streamed chat")
    parser.add_argument("--paragraphs", type=int, default=400)
    parser.add_argument("--model", choices=("small", "default"), default="default")
    args = parser.parse_args()
    if not SQUAD.is_file():
        print(f"bench-api: {SQUAD} is missing (shared data)", file=sys.stderr)
        return 2
    import httpx
    from kbqa.settings import DEFAULT_CHAT_MODEL_FILE, SMALL_CHAT_MODEL_FILE

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="kbqa-bench-api-") as tmp:
        folder = Path(tmp)
        searches = corpus(folder / "docs", args.paragraphs, rng)
        searches += [question for _, question, _ in FACTS_EN]
        model = ROOT / "data" / "models" / (
            SMALL_CHAT_MODEL_FILE if args.model == "small" else DEFAULT_CHAT_MODEL_FILE)
        env = {**os.environ, "KBQA_HOME": str(folder / "home"), "KBQA_MODEL": str(model)}
        log = folder / "api.log"
        api, base = start_api(env, log)
        try:
            try:
                wait_until_up(base, api, log)
            except RuntimeError as exc:
                raise SystemExit(f"bench-api: {exc}") from None
            started = time.perf_counter()
            job = httpx.post(f"{base}/v1/ingest", json={"paths": [str(folder / "docs")]}).json()
            while job["status"] == "running":
                time.sleep(0.5)
                job = httpx.get(f"{base}/v1/ingest/{job['id']}").json()
            if job["status"] != "done":
                raise SystemExit(f"bench-api: the ingest failed: {job['error']}")
            ingest_s = time.perf_counter() - started
            with httpx.Client(base_url=base, timeout=600) as warm:  # the model loads here
                chat(warm, FACTS_EN[0][1], FACTS_EN[0][2])
            results: dict[str, list[Any]] = {"search": [], "chat": []}
            errors: list[str] = []
            stop = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(
                base, searches, stop, args.chat_every, n, results, errors))
                for n in range(args.clients)]
            began = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            memory = peak_mib(api.pid)
        finally:
            api.terminate()
            api.wait(timeout=30)
    searches_s = results["search"]
    chats = results["chat"]
    first = [c[0] for c in chats]
    whole = [c[1] for c in chats]
    rows = [
        ["POST /v1/search", str(len(searches_s)), f"{percentile(searches_s, 0.5) * 1000:.0f} ms",
         f"{percentile(searches_s, 0.95) * 1000:.0f} ms", "-", "-", "-"],
        ["POST /v1/chat/completions (stream)", str(len(chats)), "-", "-",
         f"{percentile(first, 0.5):.1f} s", f"{percentile(first, 0.95):.1f} s",
         f"{percentile(whole, 0.5):.1f} s"],
    ]
    table(f"{args.clients} clients for {args.seconds:.0f} s against `python -m kbqa api` "
          f"({os.cpu_count()} cores, {args.model} model; {args.paragraphs} SQuAD paragraphs "
          f"+ 10 fact documents, ingested through the API in {ingest_s:.0f} s); the run "
          f"took {elapsed:.0f} s with the requests in flight at the end",
          ["endpoint", "requests", "p50", "p95", "first token p50", "first token p95",
           "full answer p50"], rows)
    held = sum(c[2] for c in chats)
    print(f"\nerrors: {len(errors)}; chat answers holding the fact: {held} of {len(chats)}; "
          f"search throughput {len(searches_s) / elapsed:.1f}/s; API peak memory "
          f"{memory:.0f} MiB")
    if chats:
        print(f"chat answers per minute: {len(chats) / elapsed * 60:.1f} (the model answers "
              f"one at a time; mean full answer {statistics.mean(whole):.1f} s in line)")
    for error in sorted(set(errors))[:10]:
        print(f"  error: {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
