"""make bench-ocr: how well and how fast scanned pages are read, against Debian's tesseract.

Pages: paragraphs of SQuAD v1.1 dev (English, ../shared/data/squad-v1.1-dev.json, CC BY-SA
4.0) and CMRC 2018 trial (Chinese, ../shared/data/cmrc2018-trial.json, CC BY-SA 4.0), drawn
at 11 pt on A4 pages at 200 dpi (DejaVu Sans; WenQuanYi Zen Hei from Debian's
fonts-wqy-zenhei for Chinese). Conditions: clean at 200 dpi; clean at 150 dpi; noisy at 200
dpi (Gaussian noise, a 0.8 degree rotation, JPEG quality 60). Each page is saved as an
image-only PDF and read through kbqa's ingest path (`load_pdf` with the OCR engine: the
page rendered by pdfium at kbqa's OCR resolution, RapidOCR, lines to paragraphs); the same
page images go to `tesseract` (eng / chi_sim) when it is installed (`make tesseract`).

Printed per language and condition: character error rate (Levenshtein distance over the
reference length; whitespace removed for Chinese, collapsed for English), pages per second,
and kbqa's peak memory.

Then questions about those pages (--qa N pages per language, one question each, from the
same data sets; the page holds the answer): the pages go into a fresh knowledge base three
times, as a PDF with a text layer (the same lines in a standard font; STSong-Light for
Chinese), as a clean 200-dpi scan and as a noisy scan, and every question is asked through
`kbqa.ask` with the default models. Printed per language and version: the share answered
(not refused) and cited to the right page, and the share whose answer holds the gold answer.

With --scan-pages N (say 500) it instead reads one N-page image-only PDF (one scanned page
repeated) through `load_pdf` and prints the time and this process's peak memory: pages are
rendered and read one at a time, so memory must not grow with the page count.

Usage: python bench/ocr.py [--pages 6] [--qa 40] [--seed 5] [--scan-pages 500]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SQUAD = SHARED / "squad-v1.1-dev.json"
CMRC = SHARED / "cmrc2018-trial.json"
FONTS = {"en": Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
         "zh": Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")}
TESSERACT_LANG = {"en": "eng", "zh": "chi_sim"}
A4_INCHES = (8.27, 11.69)
CONDITIONS = (("clean 200 dpi", 200, False), ("clean 150 dpi", 150, False),
              ("noisy 200 dpi", 200, True))


def paragraphs(language: str, count: int, rng: random.Random) -> list[str]:
    data = json.loads((SQUAD if language == "en" else CMRC).read_text(encoding="utf-8"))
    texts = [p["context"] for article in data["data"] for p in article["paragraphs"]]
    texts = [t for t in texts if 400 <= len(t) <= 900] if language == "en" else \
        [t for t in texts if 250 <= len(t) <= 500]
    return rng.sample(texts, count)


def wrap(text: str, font: Any, width: int, language: str) -> list[str]:
    """Lines that fit `width` pixels: at spaces for English, anywhere for Chinese."""
    units = text.split() if language == "en" else list(text.replace("\n", ""))
    glue = " " if language == "en" else ""
    lines, current = [], ""
    for unit in units:
        trial = f"{current}{glue}{unit}" if current else unit
        if font.getlength(trial) <= width:
            current = trial
        else:
            lines.append(current)
            current = unit
    if current:
        lines.append(current)
    return lines


def draw_page(text: str, language: str, dpi: int, noisy: bool, rng: random.Random) -> Any:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    width, height = (round(side * dpi) for side in A4_INCHES)
    size = round(11 / 72 * dpi)  # 11 pt
    font = ImageFont.truetype(str(FONTS[language]), size)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    margin = dpi  # one inch
    y = margin
    for line in wrap(text, font, width - 2 * margin, language):
        draw.text((margin, y), line, font=font, fill=0)
        y += round(size * 1.5)
    if noisy:
        page = page.rotate(0.8, resample=Image.BICUBIC, fillcolor=255)
        pixels = np.asarray(page, dtype=np.float32)
        pixels += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 18, pixels.shape)
        page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        from io import BytesIO

        buffer = BytesIO()
        page.save(buffer, "JPEG", quality=60)
        page = Image.open(BytesIO(buffer.getvalue())).convert("L")
    return page


def normalise(text: str, language: str) -> str:
    if language == "zh":
        return re.sub(r"\s+", "", text)
    return " ".join(text.split())


def cer(found: str, truth: str, language: str) -> float:
    from rapidfuzz.distance import Levenshtein

    reference = normalise(truth, language)
    return Levenshtein.distance(normalise(found, language), reference) / max(len(reference), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=6, help="pages per language and condition")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--qa", type=int, default=40,
                        help="pages with a question each, per language (0: no questions)")
    parser.add_argument("--scan-pages", type=int, default=0,
                        help="read one scan of this many pages, for time and memory")
    args = parser.parse_args()
    for needed in (SQUAD, CMRC, *FONTS.values()):
        if not needed.is_file():
            print(f"bench-ocr: {needed} is missing (shared data, or `make fonts`)",
                  file=sys.stderr)
            return 2
    from kbqa.ingest.ocr import OcrEngine

    engine = OcrEngine()
    if args.scan_pages:
        return long_scan(args.scan_pages, engine, random.Random(args.seed))
    if args.pages:
        character_errors(args, engine)
    if args.qa:
        questions_on_scans(args.qa, random.Random(args.seed))
    return 0


def character_errors(args: argparse.Namespace, engine: Any) -> None:
    """The CER table: kbqa's OCR through load_pdf against tesseract on the same pages."""
    from kbqa.ingest.ocr import RENDER_DPI
    from kbqa.ingest.pdf import load_pdf

    tesseract = shutil.which("tesseract")
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kbqa-ocr-") as tmp:
        folder = Path(tmp)
        engine.read(draw_page("warm up", "en", 100, False, rng))  # the model loads here
        for language in ("en", "zh"):
            texts = paragraphs(language, args.pages, rng)
            for name, dpi, noisy in CONDITIONS:
                pages = []
                for number, text in enumerate(texts):
                    image = draw_page(text, language, dpi, noisy, rng)
                    pdf = folder / f"{language}-{dpi}-{noisy}-{number}.pdf"
                    png = pdf.with_suffix(".png")
                    image.save(pdf, resolution=dpi)
                    image.save(png, dpi=(dpi, dpi))
                    pages.append((pdf, png, text))
                started = time.perf_counter()
                ours = [cer("\n".join(s.text for s in load_pdf(pdf, ocr=engine).sections),
                            text, language) for pdf, _, text in pages]
                our_rate = len(pages) / (time.perf_counter() - started)
                theirs: list[float] = []
                their_rate = 0.0
                if tesseract:
                    started = time.perf_counter()
                    for _, png, text in pages:
                        result = subprocess.run(
                            [tesseract, str(png), "-", "-l", TESSERACT_LANG[language]],
                            capture_output=True, text=True)
                        theirs.append(cer(result.stdout, text, language))
                    their_rate = len(pages) / (time.perf_counter() - started)
                rows.append((language, name, len(pages), sum(ours) / len(ours), max(ours),
                             our_rate, sum(theirs) / len(theirs) if theirs else None,
                             their_rate))
                print(f"  {language} {name}: CER {rows[-1][3]:.2%}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nOCR of image-only PDF pages through load_pdf (kbqa renders at {RENDER_DPI} dpi; "
          f"RapidOCR PP-OCRv6), {args.pages} A4 pages of 11 pt text per row")
    print("| language | condition | pages | kbqa CER (mean / worst page) | kbqa pages/s | "
          "tesseract CER | tesseract pages/s |")
    print("|---|---|---|---|---|---|---|")
    for language, name, count, mean, worst, rate, their_cer, their_rate in rows:
        theirs_text = (f"{their_cer:.2%} | {their_rate:.2f}" if their_cer is not None
                       else "not installed (`make tesseract`) | -")
        print(f"| {language} | {name} | {count} | {mean:.2%} / {worst:.2%} | {rate:.2f} | "
              f"{theirs_text} |")
    print(f"\npeak memory of this process (kbqa's OCR): {peak:.0f} MiB")


def qa_pages(language: str, count: int, rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """(paragraph, question, gold answers): one paragraph of a page's length from each of
    `count` articles, with its first question whose answer is in it."""
    data = json.loads((SQUAD if language == "en" else CMRC).read_text(encoding="utf-8"))
    low, high = (400, 900) if language == "en" else (250, 500)
    items = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            text = paragraph["context"]
            qas = [q for q in paragraph["qas"]
                   if any(a["text"] and a["text"] in text for a in q["answers"])]
            if low <= len(text) <= high and qas:
                items.append((text, qas[0]["question"], [a["text"] for a in qas[0]["answers"]]))
                break  # one per article: no two pages answer the same question
    return rng.sample(items, count)


def questions_on_scans(count: int, rng: random.Random) -> None:
    """The same pages with a text layer and scanned: answered and cited to the right page
    through `kbqa.ask` as often?"""
    sys.path.insert(0, str(ROOT / "tests"))
    import kbqa
    from answer import holds, shown_answer
    from pdfgen import write_pdf
    from PIL import ImageFont

    rows = []
    with tempfile.TemporaryDirectory(prefix="kbqa-ocr-qa-") as tmp:
        folder = Path(tmp)
        for language in ("en", "zh"):
            items = qa_pages(language, count, rng)
            font = ImageFont.truetype(str(FONTS[language]), round(11 / 72 * 200))
            lines = [wrap(text, font, round((A4_INCHES[0] - 2) * 200), language)
                     for text, _, _ in items]
            versions = {"text layer": write_pdf(folder / f"{language}-text.pdf", lines,
                                                unicode=True)}
            for name, noisy in (("scan, clean 200 dpi", False), ("scan, noisy 200 dpi", True)):
                pages = [draw_page(text, language, 200, noisy, rng) for text, _, _ in items]
                pdf = folder / f"{language}-{'noisy' if noisy else 'clean'}.pdf"
                pages[0].save(pdf, resolution=200, save_all=True, append_images=pages[1:])
                versions[name] = pdf
            kind = "squad" if language == "en" else "cmrc"
            for name, pdf in versions.items():
                kb = kbqa.open_kb(folder / f"home-{pdf.stem}")
                report = kb.ingest([pdf])
                if report.failed:
                    print(f"  {pdf.name}: {report.failed[0].reason}", file=sys.stderr)
                cited = held = 0
                started = time.perf_counter()
                for number, (_, question, golds) in enumerate(items, start=1):
                    answer = kbqa.ask(question, kb=kb)
                    right_page = any(c.page == number and Path(c.source) == pdf
                                     for c in answer.citations)
                    cited += not answer.refused and right_page
                    held += not answer.refused and holds(kind, shown_answer(answer), golds)
                seconds = (time.perf_counter() - started) / len(items)
                kb.close()
                rows.append([language, name, str(len(items)), f"{cited / len(items):.0%}",
                             f"{held / len(items):.0%}", f"{seconds:.1f}"])
                print(f"  {language} {name}: cited to the right page {rows[-1][3]}", flush=True)
    from speed import table

    table(f"Questions about the pages through kbqa.ask (default models, one knowledge base per "
          f"version; {count} pages of one paragraph each per language, a question per page)",
          ["language", "version", "questions", "answered, cited to the right page",
           "answer holds the gold answer", "s/question"], rows)


def long_scan(pages: int, engine: Any, rng: random.Random) -> int:
    from kbqa.ingest.pdf import load_pdf
    from pypdf import PdfReader, PdfWriter

    with tempfile.TemporaryDirectory(prefix="kbqa-ocr-scan-") as tmp:
        one = Path(tmp) / "one.pdf"
        draw_page(paragraphs("en", 1, rng)[0], "en", 200, True, rng).save(one, resolution=200)
        writer = PdfWriter()
        page = PdfReader(one).pages[0]
        for _ in range(pages):
            writer.add_page(page)  # the image is stored once, the page repeated
        scan = Path(tmp) / "scan.pdf"
        with scan.open("wb") as out:
            writer.write(out)
        engine.read(draw_page("warm up", "en", 100, False, rng))  # the model loads here
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        document = load_pdf(scan, ocr=engine, ocr_max_pages=pages)
        elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nA {pages}-page image-only PDF through load_pdf: {len(document.sections)} pages "
          f"read in {elapsed:.0f} s ({pages / elapsed:.2f} pages/s); peak memory "
          f"{peak:.0f} MiB (before the scan, with the model loaded: {before:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
