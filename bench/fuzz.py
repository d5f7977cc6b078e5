"""make bench-fuzz: mutated documents through the real ingest, each within a time limit.

Seeds: the sample documents of ../shared/data/docs (PDF, Word, Excel, PowerPoint, e-mail,
web pages; public, read in place) under 1 MiB, plus a few made here (a PDF, a DOCX, an
XLSX, an e-mail with an attachment, an HTML page, PNG and JPEG images). Each fuzz file is
a seed changed by one seeded mutation: bytes overwritten, cut short, random bytes
inserted, a range duplicated, or (for the zip-based Office formats) one XML member of the
archive damaged and the archive rebuilt, so the mutation reaches the XML parsers rather
than the zip checksum.

Every file goes through `KnowledgeBase.ingest` (hash, load, chunk, embed with the default
embedders, commit) in worker processes, one file at a time and each into a fresh knowledge
base (so a file's time is its own, not a backfill of earlier files), with a time limit per
file.
Counted per format: ingested, reported with a reason, "unexpected error" reports (a
loader raised something kbqa did not expect: caught, but a bug), crashes (the worker
died) and hangs (the limit passed; the worker is killed and replaced).

Usage: python bench/fuzz.py [--files 2000] [--limit-s 60] [--seed 7] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT.parent / "shared" / "data" / "docs"
SEED_KINDS = {".pdf": "PDF", ".docx": "DOCX", ".xlsx": "XLSX", ".pptx": "PPTX",
              ".eml": "EML", ".html": "HTML", ".htm": "HTML", ".png": "image",
              ".jpg": "image", ".jpeg": "image"}
ZIPPED = {".docx", ".xlsx", ".pptx"}
MAX_SEED_BYTES = 1 << 20
FINDINGS = Path(tempfile.gettempdir()) / "kbqa-fuzz-findings"


def made_seeds(folder: Path) -> list[Path]:
    """Seeds written here, so every format is covered even without the shared samples."""
    sys.path.insert(0, str(ROOT / "tests"))
    import docx
    import openpyxl
    from pdfgen import write_pdf
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    write_pdf(folder / "made.pdf", [["Pump manual", "Service every 450 hours."],
                                    ["Part ZK-7731", "Keep the seal dry."]])
    document = docx.Document()
    document.add_heading("Harbor guide", 1)
    document.add_paragraph("The harbor office opens at 7:15.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(1, 1).text = "Berth", "12"
    document.save(str(folder / "made.docx"))
    book = openpyxl.Workbook()
    book.active.append(["city", "population"])
    book.active.append(["Tromsø", 77000])
    book.save(str(folder / "made.xlsx"))
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "a@example.org", "b@example.org", "Report"
    mail.set_content("The report is attached.")
    mail.add_attachment(b"Quarterly numbers: 42 units.", maintype="text", subtype="plain",
                        filename="numbers.txt")
    (folder / "made.eml").write_bytes(bytes(mail))
    (folder / "made.html").write_text(
        "<html><head><title>Ferry</title></head><body><h1>Ferry</h1><p>The ferry leaves at "
        "nine.</p><table><tr><td>Pier</td><td>9</td></tr></table></body></html>")
    image = Image.new("RGB", (320, 80), "white")
    ImageDraw.Draw(image).text((10, 30), "Invoice 2291: 310 EUR", fill="black")
    image.save(folder / "made.png")
    image.save(folder / "made.jpg", quality=85)
    return sorted(folder.iterdir())


def shared_seeds() -> list[Path]:
    if not DOCS.is_dir():
        return []
    return sorted(p for p in DOCS.rglob("*") if p.is_file() and p.suffix.lower() in SEED_KINDS
                  and 0 < p.stat().st_size <= MAX_SEED_BYTES)


def mutate(data: bytes, suffix: str, rng: random.Random) -> tuple[bytes, str]:
    """One seeded change; returns the bytes and the mutation's name."""
    if suffix in ZIPPED and rng.random() < 0.5:
        damaged = _damage_zip_member(data, rng)
        if damaged is not None:
            return damaged, "zip-member"
    kind = rng.choice(("overwrite", "truncate", "insert", "duplicate"))
    if not data:
        return bytes(rng.randrange(256) for _ in range(64)), "random"
    at = rng.randrange(len(data))
    if kind == "overwrite":
        out = bytearray(data)
        for _ in range(rng.randint(1, 64)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out), kind
    if kind == "truncate":
        return data[:at], kind
    if kind == "insert":
        noise = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))
        return data[:at] + noise + data[at:], kind
    end = min(len(data), at + rng.randint(1, 65536))
    return data[:end] + data[at:end] * rng.randint(1, 8) + data[end:], kind


def _damage_zip_member(data: bytes, rng: random.Random) -> bytes | None:
    try:
        source = zipfile.ZipFile(io.BytesIO(data))
        names = [n for n in source.namelist() if n.endswith(".xml")]
    except (zipfile.BadZipFile, OSError):
        return None
    if not names:
        return None
    victim = rng.choice(names)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            body = source.read(name)
            if name == victim:
                body, _ = mutate(body, ".xml", rng)
            target.writestr(name, body)
    return out.getvalue()


def worker(home: str) -> int:
    """Read file paths from stdin; ingest each into a knowledge base of its own (the models
    shared), so its time is its own work; print one JSON line per file."""
    import kbqa
    from kbqa.shared import SharedModels

    models = SharedModels()
    warm = kbqa.open_kb(Path(home) / "warm", models=models)  # load the models once
    warm.embedder.encode(["warm-up"])
    print(json.dumps({"ready": True}), flush=True)
    for number, line in enumerate(sys.stdin):
        path = line.strip()
        started = time.perf_counter()
        kb = kbqa.open_kb(Path(home) / f"kb-{number}", models=models)
        report = kb.ingest([path], prune=False)
        kb.close()
        shutil.rmtree(Path(home) / f"kb-{number}", ignore_errors=True)
        reason = report.failed[0].reason if report.failed else ""
        status = ("ingested" if report.added or report.updated or report.unchanged
                  else "unexpected" if "unexpected error" in reason
                  else "reported" if reason else "other")
        print(json.dumps({"path": path, "status": status, "reason": reason[:160],
                          "seconds": time.perf_counter() - started}), flush=True)
    return 0


class Worker:
    """A worker process and a reader thread feeding its lines into a queue."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(home)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.lines.get(timeout=300)
        if first is None or "ready" not in first:
            raise RuntimeError("a fuzz worker did not start")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, path: Path, limit_s: float) -> dict[str, object]:
        assert self.process.stdin is not None
        started = time.perf_counter()
        try:
            self.process.stdin.write(f"{path}\n")
            self.process.stdin.flush()
            line = self.lines.get(timeout=limit_s)
        except (queue.Empty, BrokenPipeError):
            self.stop()
            return {"status": "hang", "seconds": time.perf_counter() - started}
        if line is None:
            self.process.wait()
            return {"status": "crash", "reason": f"exit {self.process.returncode}",
                    "seconds": time.perf_counter() - started}
        return dict(json.loads(line))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--limit-s", type=float, default=60.0, help="time limit per file "
                        "(the largest sample, a 460 KB web page, takes ~20 s alone)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kbqa-fuzz-") as tmp:
        base = Path(tmp)
        seeds = shared_seeds() + made_seeds(base / "seeds")
        fuzzed = base / "fuzzed"
        fuzzed.mkdir()
        files: list[tuple[Path, str, str]] = []
        for number in range(args.files):
            seed = seeds[number % len(seeds)]
            data, how = mutate(seed.read_bytes(), seed.suffix.lower(), rng)
            target = fuzzed / f"{number:05d}-{seed.stem[:40]}{seed.suffix.lower()}"
            target.write_bytes(data)
            files.append((target, SEED_KINDS[seed.suffix.lower()], how))
        print(f"bench-fuzz: {len(files)} files from {len(seeds)} seeds "
              f"({len(shared_seeds())} from {DOCS}), limit {args.limit_s:.0f} s per file, "
              f"{args.workers} workers", flush=True)
        todo: queue.Queue[tuple[Path, str, str]] = queue.Queue()
        for item in files:
            todo.put(item)
        results: list[tuple[str, str, dict[str, object]]] = []
        lock = threading.Lock()
        started = time.perf_counter()

        def drive(slot: int) -> None:
            homes = 0
            current = Worker(base / f"home-{slot}-{homes}")
            while True:
                try:
                    path, kind, how = todo.get_nowait()
                except queue.Empty:
                    break
                outcome = current.run(path, args.limit_s)
                if outcome["status"] in ("unexpected", "crash", "hang", "other"):
                    FINDINGS.mkdir(parents=True, exist_ok=True)  # kept to reproduce
                    shutil.copy2(path, FINDINGS / path.name)
                with lock:
                    results.append((kind, how, {**outcome, "path": str(path)}))
                    done = len(results)
                if done % 100 == 0:
                    print(f"  {done}/{len(files)} files, "
                          f"{time.perf_counter() - started:.0f} s", flush=True)
                if not current.alive() or outcome["status"] in ("hang", "crash"):
                    homes += 1  # a killed worker may hold a half-written commit: fresh base
                    current = Worker(base / f"home-{slot}-{homes}")
            current.stop()

        threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    report(results, elapsed, args.limit_s)
    bad = sum(1 for _, _, o in results if o["status"] in ("hang", "crash", "other"))
    return 1 if bad else 0


def report(results: list[tuple[str, str, dict[str, object]]], elapsed: float,
           limit_s: float) -> None:
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    reasons: Counter[str] = Counter()
    for kind, _, outcome in results:
        by_kind[kind][str(outcome["status"])] += 1
        slowest[kind] = max(slowest[kind], float(outcome.get("seconds", 0.0)))  # type: ignore[arg-type]
        if outcome["status"] in ("reported", "unexpected"):
            reasons[str(outcome.get("reason", "")).split(" (")[0].split(":")[0][:70]] += 1
    columns = ("ingested", "reported", "unexpected", "crash", "hang", "other")
    print(f"\nLoader fuzz: {len(results)} mutated files through KnowledgeBase.ingest, "
          f"{elapsed:.0f} s, limit {limit_s:.0f} s per file")
    print(f"| format | files | {' | '.join(columns)} | slowest file (s) |")
    print("|---|" + "---|" * (len(columns) + 2))
    total: Counter[str] = Counter()
    for kind in sorted(by_kind):
        counts = by_kind[kind]
        total.update(counts)
        print(f"| {kind} | {sum(counts.values())} | "
              + " | ".join(str(counts[c]) for c in columns) + f" | {slowest[kind]:.1f} |")
    print(f"| all | {sum(total.values())} | " + " | ".join(str(total[c]) for c in columns)
          + f" | {max(slowest.values(), default=0):.1f} |")
    print("\nMost common reasons given:")
    for reason, count in reasons.most_common(12):
        print(f"  {count:5d}  {reason}")
    for kind, how, outcome in results:
        if outcome["status"] in ("unexpected", "crash", "hang", "other"):
            print(f"  {outcome['status']}: {kind} ({how}) "
                  f"{FINDINGS / Path(str(outcome['path'])).name}: {outcome.get('reason', '')}")


if __name__ == "__main__":
    sys.exit(main())
