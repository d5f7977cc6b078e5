"""Local OCR for scanned PDF pages and images: RapidOCR (PP-OCRv6 detection and
recognition, Chinese and English, ONNX models shipped inside the `rapidocr` wheel) on
onnxruntime. Nothing is downloaded; the engine loads on the first page that needs it.

Recognised lines keep their boxes (a citation outlines them on the page); `reading_rows`
puts them back in reading order (rows top to bottom, left to right within a row) and
`paragraphs` joins the rows into paragraphs by their spacing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from kbqa.domain import Document, OcrLine, Scan, Section
from kbqa.errors import IngestError, ModelMissing
from kbqa.text import is_cjk

# Pages are rendered at this resolution for OCR (`make bench-ocr`: CER on 11 pt pages was
# within 0.2 points from 130 to 240 dpi once the line classifier was off; 170 leaves room
# for smaller print), and text is detected on the page scaled to DETECT_SIDE pixels.
RENDER_DPI = 170
DETECT_SIDE = 1280
# A page whose text layer holds fewer characters than this is treated as scanned (a stray
# page number or a watermark over a picture of text).
MIN_TEXT_CHARS = 24
# Larger images are refused rather than decoded (a 20,000 x 20,000 picture is 1.2 GB).
MAX_PIXELS = 60_000_000
# A row ending before this share of the text's width closes its paragraph: a heading or a
# paragraph's last line (pages without blank lines between paragraphs).
SHORT_ROW = 0.65
# Lines the recogniser itself doubts are dropped.
MIN_LINE_SCORE = 0.5
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# PDFium is not thread-safe: an ingest renders scanned pages while a chat session (a thread
# of its own) renders a cited page; every PDFium call takes this lock. Re-entrant: a paused
# page generator may be finalised (and close its document) by the garbage collector in a
# thread that holds it.
PDFIUM = threading.RLock()


class OcrEngine:
    """One RapidOCR engine, loaded once, used by one caller at a time."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError:
                raise ModelMissing("the OCR package rapidocr is not installed: run "
                                   "`make setup` (or set KBQA_OCR=off)") from None
            params: dict[str, Any] = {
                "Global.log_level": "error",
                # The 180-degree line classifier turned whole lines of upright text into
                # garbage ("Islamic revival in India ..." -> "Islat n an") on some pages:
                # scans of documents are upright; off, worst-page CER fell from 9-29% to 1%.
                "Global.use_cls": False,
                # Text is found on the page scaled to DETECT_SIDE on its longer side (the
                # recogniser still reads each line from the full page): 2x faster, same CER.
                "Det.limit_type": "max",
                "Det.limit_side_len": DETECT_SIDE,
            }
            if self._threads:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self._threads
            self._engine = RapidOCR(params=params)
        return self._engine

    def read(self, image: Any) -> list[OcrLine]:
        """The text lines of an image (PIL image or array), with their boxes."""
        import numpy as np

        array = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else image
        with self._lock:
            result = self._load()(array)
        if result is None or result.txts is None:
            return []
        lines = []
        for text, box, score in zip(result.txts, result.boxes, result.scores, strict=False):
            if text.strip() and float(score) >= MIN_LINE_SCORE:
                xs, ys = [float(p[0]) for p in box], [float(p[1]) for p in box]
                lines.append(OcrLine(text=text.strip(), left=min(xs), top=min(ys),
                                     right=max(xs), bottom=max(ys), score=float(score)))
        return lines


def reading_rows(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    """Lines in reading order: lines whose vertical middles fall in one band form a row,
    rows top to bottom, each read left to right."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.middle, ln.left)):
        if rows and abs(line.middle - rows[-1][0].middle) <= 0.5 * line.height:
            rows[-1].append(line)
        else:
            rows.append([line])
    for row in rows:
        row.sort(key=lambda ln: ln.left)
    return rows


def paragraphs(rows: Sequence[Sequence[OcrLine]]) -> list[str]:
    """Rows (`reading_rows`) joined into paragraphs: a gap between rows larger than the
    line height starts a new paragraph, and so does a row after one that stops well short
    of the text's right edge (a heading, or a paragraph's last line). CJK lines join
    without a space.

    Example: two full lines 40 px apart and 30 px high, then one 200 px lower -> 2 paragraphs
    """
    if not rows:
        return []
    left = min(ln.left for row in rows for ln in row)
    short = left + SHORT_ROW * (max(ln.right for row in rows for ln in row) - left)
    out: list[str] = []
    previous: Sequence[OcrLine] | None = None
    for row in rows:
        text = _join([ln.text for ln in row], " ")
        height = max(ln.height for ln in row)
        top = min(ln.top for ln in row)
        if previous is not None and top - max(ln.bottom for ln in previous) <= 0.9 * height \
                and max(ln.right for ln in previous) >= short:
            out[-1] = _join([out[-1], text], " ")
        else:
            out.append(text)
        previous = row
    return out


def _join(parts: Sequence[str], space: str) -> str:
    joined = parts[0]
    for part in parts[1:]:
        gap = "" if (joined and part and is_cjk(joined[-1]) and is_cjk(part[0])) else space
        joined += gap + part
    return joined


def pdf_page_images(path: Path, numbers: Sequence[int], dpi: int = RENDER_DPI,
                    password: str | None = None) -> Generator[tuple[int, Any], None, None]:
    """(1-based page number, PIL image) for the pages asked, rendered one at a time (a
    500-page scan never holds more than one page in memory)."""
    import pypdfium2

    with PDFIUM:
        document = pypdfium2.PdfDocument(str(path), password=password)
    try:
        for number in numbers:
            with PDFIUM:
                page = document[number - 1]
                try:
                    image = page.render(scale=dpi / 72).to_pil()
                finally:
                    page.close()
            yield number, image
    finally:
        with PDFIUM:
            document.close()


def open_image(path: Path) -> Any:
    """The image, checked: readable, and small enough to decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard, past twice its limit
        raise IngestError(f"too large to read ({exc}): scale it down and add it "
                          "again") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise IngestError(f"not a readable image ({type(exc).__name__}: {exc}); re-save it "
                          "as PNG or JPEG") from None
    if width * height > MAX_PIXELS:
        raise IngestError(f"too large to read ({width} x {height} pixels, over "
                          f"{MAX_PIXELS // 1_000_000} megapixels): scale it down and add it "
                          "again")
    return image


def image_frames(image: Any) -> Iterator[tuple[int, Any]]:
    """(1-based frame number, frame) of a (multi-page TIFF) image, each decoded in turn."""
    from PIL import ImageSequence

    try:
        for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
            width, height = frame.size
            if width * height > MAX_PIXELS:
                raise IngestError(f"page {number} is too large to read ({width} x {height} "
                                  "pixels): scale it down and add it again")
            yield number, frame.copy()
    except (OSError, ValueError, SyntaxError) as exc:
        raise IngestError(f"not a readable image ({type(exc).__name__}: {exc}); re-save it "
                          "as PNG or JPEG") from None


PageFn = Callable[[int, int], None]  # (pages read so far, pages to read)


def ocr_sections(engine: OcrEngine, pages: Iterator[tuple[int, Any]], total: int,
                 on_page: PageFn | None = None) -> list[Section]:
    """A section per page that has text, marked as read by OCR in its place label and
    keeping the lines' boxes (`Scan`); `on_page` hears each page done (a long scan shows
    its progress)."""
    sections = []
    for done, (number, image) in enumerate(pages, start=1):
        rows = reading_rows(engine.read(image))
        text = "\n\n".join(paragraphs(rows))
        if text.strip():
            width, height = image.size
            scan = Scan(float(width), float(height), tuple(ln for row in rows for ln in row))
            sections.append(Section(text=text, page=number, location=f"page {number} (OCR)",
                                    scan=scan))
        if on_page is not None:
            on_page(done, total)
    return sections


def load_image(path: Path, engine: OcrEngine, on_page: PageFn | None = None) -> Document:
    """An image file read by OCR: one section per frame (pages of a multi-page TIFF)."""
    if path.stat().st_size == 0:
        raise IngestError("empty file (0 bytes): nothing to index")
    image = open_image(path)
    sections = ocr_sections(engine, image_frames(image), int(getattr(image, "n_frames", 1)),
                            on_page)
    if not sections:
        raise IngestError("no text found in the image (OCR read nothing): a photo or a "
                          "drawing has nothing to search; add a version with text")
    return Document(source=str(path), sections=tuple(sections), kind="image")
