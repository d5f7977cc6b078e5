"""make bench-load: many sessions at once on one knowledge base, while it changes.

A knowledge base of ten short fact documents (fictional, made here) is asked its ten
questions, each alone (temperature 0): the reference answers. Then, all at once:
- THREADS sessions in this process ask the ten questions (each in its own order) through
  the public API (`KnowledgeBase.ask_stream`, one shared knowledge base and model);
- BROWSERS headless Chromium sessions ask them in the served chat (`kbqa serve`, a second
  process on the same folder), each question in a new chat;
- an ingest of FILES filler documents runs through the same knowledge base object;
- half-way, a settings change is saved (max_upload_mb, which no answer depends on): the
  sessions move to a new knowledge base object as the app does (the served app on its
  next run), while the questions in flight finish on the old one.
Every answer is checked against the reference answer of its question (alone, before the
load; or alone after it, when the filler documents changed what is retrieved): a
session's answer that matches neither is "mixed up". Printed: errors, mixed-up answers,
p50/p95 of time to first token and of the wait in line for the model, per kind of session,
and peak memory of both processes.

Usage: python bench/load.py [--threads 8] [--browsers 4] [--questions 10] [--files 500]
                            [--model small|default]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from injection import FACTS_EN  # the same fictional facts, without the injections  # noqa: E402


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def matches(seen: str, references: list[str]) -> bool:
    """The session's answer is one of the references (the browser shows the same text with
    its chips and notes around it: every word of the reference must be there)."""
    return any(words(reference) <= words(seen) for reference in references)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def thread_session(kb_of: Any, questions: list[str], results: list[dict[str, Any]],
                   errors: list[str], name: str) -> None:
    from kbqa.domain import Answer

    for question in questions:
        asked = time.perf_counter()
        turn: dict[str, float] = {}
        first = None
        try:
            for piece in kb_of().ask_stream(
                    question, on_wait=lambda ahead, t=turn: t.setdefault(
                        "start", time.perf_counter()) if ahead == 0 else None):
                if isinstance(piece, Answer):
                    results.append({"session": name, "kind": "thread", "question": question,
                                    "text": piece.text, "ttft": (first or time.perf_counter())
                                    - asked, "wait": turn.get("start", asked) - asked,
                                    "total": time.perf_counter() - asked})
                elif first is None:
                    first = time.perf_counter()
        except Exception as exc:  # every error is counted and shown
            errors.append(f"{name}: {question}: {type(exc).__name__}: {exc}")


def browser_session(url: str, profile: Path, questions: list[str],
                    results: list[dict[str, Any]], errors: list[str], name: str) -> None:
    from browser import ask, button, chromium, wait_for

    try:
        with chromium(profile) as driver:
            driver.get(url)
            for question in questions:
                wait_for(lambda: button(driver, "New chat"), 120, "the new chat button").click()
                wait_for(lambda: not driver.find_elements(
                    "css selector", '[data-testid="stChatMessage"]'), 120, "an empty chat")
                waited: list[float] = []
                first, total, text = ask(driver, question, timeout=1200, waited=waited)
                results.append({"session": name, "kind": "browser", "question": question,
                                "text": text, "ttft": first, "wait": waited[0],
                                "total": total})
                alerts = [a.text for a in driver.find_elements(
                    "css selector", '[data-testid="stAlert"]') if "went wrong" in a.text]
                if alerts:
                    errors.append(f"{name}: {question}: {alerts[0]}")
    except Exception as exc:
        errors.append(f"{name}: {type(exc).__name__}: {exc}")


def server_peak_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--browsers", type=int, default=4)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--model", default="small", choices=["small", "default"])
    args = parser.parse_args()

    import kbqa
    from browser import kbqa_server
    from kbqa.llm.packaged import PACKAGED_MODELS
    from kbqa.settings import default_data_dir, save_settings
    from kbqa.shared import SharedModels

    model = default_data_dir() / "models" / PACKAGED_MODELS[args.model].file_name
    facts = FACTS_EN[:args.questions]
    questions = [question for _, question, _ in facts]
    with tempfile.TemporaryDirectory(prefix="kbqa-load-") as tmp:
        base = Path(tmp)
        home, docs, filler = base / "home", base / "docs", base / "filler"
        docs.mkdir()
        filler.mkdir()
        for number, (fact, _, _) in enumerate(facts):
            (docs / f"fact-{number:02d}.txt").write_text(fact + "\n")
        rng = random.Random(3)
        topics = ["soil", "glaciers", "bridges", "typography", "beekeeping", "orchards",
                  "telescopes", "ceramics", "ferries", "railways"]
        for number in range(args.files):
            topic = rng.choice(topics)
            (filler / f"note-{number:04d}.txt").write_text(" ".join(
                f"Note {number} on {topic}: observation {j} recorded value {rng.randint(1, 999)}."
                for j in range(40)))
        models = SharedModels()
        settings = {"model": str(model), "temperature": 0.0}
        current = [kbqa.open_kb(home, models=models, **settings)]
        current[0].ingest(docs)
        started = time.perf_counter()
        alone_before = {q: current[0].ask(q).text for q in questions}
        print(f"bench-load: {len(questions)} questions alone: "
              f"{time.perf_counter() - started:.0f} s ({args.model} model)", flush=True)

        results: list[dict[str, Any]] = []
        errors: list[str] = []
        sessions: list[threading.Thread] = []
        with kbqa_server(home, model, base / "serve.log") as url:
            server_pid = _server_pid(url)
            started = time.perf_counter()
            for number in range(args.threads):
                order = questions[number % len(questions):] + questions[:number % len(questions)]
                sessions.append(threading.Thread(target=thread_session, args=(
                    lambda: current[0], order, results, errors, f"thread-{number}")))
            for number in range(args.browsers):
                order = list(reversed(questions))
                order = order[number % len(order):] + order[:number % len(order)]
                sessions.append(threading.Thread(target=browser_session, args=(
                    url, base / f"profile-{number}", order, results, errors,
                    f"browser-{number}")))
            ingest_report: list[Any] = []

            def ingest() -> None:
                try:
                    ingest_report.append(current[0].ingest(filler))
                except Exception as exc:
                    errors.append(f"ingest: {type(exc).__name__}: {exc}")

            ingester = threading.Thread(target=ingest)
            for thread in [*sessions, ingester]:
                thread.start()
            total_answers = len(questions) * (args.threads + args.browsers)
            while len(results) < total_answers // 2 and any(t.is_alive() for t in sessions):
                time.sleep(1)
            save_settings(home, {"max_upload_mb": 300})  # the settings change, half-way
            current[0] = kbqa.open_kb(home, models=models, **settings)
            changed_at = time.perf_counter() - started
            print(f"  settings changed after {changed_at:.0f} s ({len(results)} answers)",
                  flush=True)
            for thread in [*sessions, ingester]:
                thread.join()
            elapsed = time.perf_counter() - started
            server_peak = server_peak_mib(server_pid)
        alone_after = {q: current[0].ask(q).text for q in questions}
    mixed = [r for r in results
             if not matches(r["text"], [alone_before[r["question"]], alone_after[r["question"]]])]
    report(results, errors, mixed, elapsed, ingest_report, server_peak, args)
    return 1 if errors or mixed else 0


def _server_pid(url: str) -> int:
    """The `kbqa serve` process listening on the url's port (for its peak memory)."""
    import subprocess

    port = url.rsplit(":", 1)[1]
    found = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True,
                           text=True).stdout
    pid = re.search(r"pid=(\d+)", found)
    return int(pid.group(1)) if pid else 0


def report(results: list[dict[str, Any]], errors: list[str], mixed: list[dict[str, Any]],
           elapsed: float, ingest_report: list[Any], server_peak: float,
           args: argparse.Namespace) -> None:
    print(f"\nLoad: {args.threads} API sessions + {args.browsers} browser sessions x "
          f"{args.questions} questions, an ingest of {args.files} files and a settings change, "
          f"{args.model} model, {elapsed:.0f} s")
    print("| sessions | answers | errors | mixed up | first token p50 / p95 (s) | "
          "wait in line p50 / p95 (s) | whole answer p50 / p95 (s) |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("thread", "browser"):
        mine = [r for r in results if r["kind"] == kind]
        if not mine:
            continue
        cells = []
        for key in ("ttft", "wait", "total"):
            values = [r[key] for r in mine]
            cells.append(f"{statistics.median(values):.1f} / {percentile(values, 0.95):.1f}")
        label = "API (threads)" if kind == "thread" else "browser (Chromium)"
        print(f"| {label} | {len(mine)} | "
              f"{sum(1 for e in errors if e.startswith(kind))} | "
              f"{sum(1 for r in mixed if r['kind'] == kind)} | " + " | ".join(cells) + " |")
    print("\n| session | answers | first token p50 / p95 (s) | wait in line p50 / p95 (s) |")
    print("|---|---|---|---|")
    for session in sorted({r["session"] for r in results}):
        mine = [r for r in results if r["session"] == session]
        ttft, wait = [r["ttft"] for r in mine], [r["wait"] for r in mine]
        print(f"| {session} | {len(mine)} | {statistics.median(ttft):.1f} / "
              f"{percentile(ttft, 0.95):.1f} | {statistics.median(wait):.1f} / "
              f"{percentile(wait, 0.95):.1f} |")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nerrors: {len(errors)}; mixed-up answers: {len(mixed)}; ingest: "
          f"{ingest_report[0].summary() if ingest_report else 'did not finish'}")
    print(f"peak memory: API process {own:.0f} MiB, served app {server_peak:.0f} MiB")
    for error in errors[:20]:
        print(f"  error: {error}")
    for r in mixed[:20]:
        print(f"  mixed up ({r['session']}): {r['question']} -> {r['text'][:100]!r}")


if __name__ == "__main__":
    sys.exit(main())
