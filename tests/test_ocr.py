"""Scanned PDFs and images, read by the real OCR model (RapidOCR, packaged PP-OCRv6)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import SMALL_MODEL
from kbqa.domain import OcrLine, ScanView

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


def page(lines: list[str], font: Path, size: tuple[int, int] = (1400, 700)):
    """A white page image with the lines drawn as a scanner would see them."""
    from PIL import Image, ImageDraw, ImageFont

    if not font.is_file():
        pytest.fail(f"{font} is missing: `make fonts` installs it (make test does)")
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font), 30)
    y = 60
    for line in lines:
        if line:
            draw.text((80, y), line, font=face, fill="black")
        y += 45
    return image


def test_lines_come_back_in_reading_order_as_paragraphs() -> None:
    from kbqa.ingest.ocr import paragraphs, reading_rows

    def line(text: str, left: float, top: float, width: float = 300) -> OcrLine:
        return OcrLine(text=text, left=left, top=top, right=left + width, bottom=top + 30)

    lines = [line("second line.", 80, 105), line("A first line and", 80, 60),
             line("right column", 500, 62), line("New paragraph.", 80, 300),
             line("青川渡轮简介", 80, 460, 150),  # a heading: short, then the text below
             line("青川渡轮每天早上六点二十分从码头", 80, 500, 720), line("出发。", 80, 540, 60),
             line("A last paragraph right after it.", 80, 580, 700)]
    rows = reading_rows(lines)
    assert [ln.text for ln in rows[0]] == ["A first line and", "right column"]
    assert paragraphs(rows) == ["A first line and right column second line.",
                                "New paragraph.", "青川渡轮简介",
                                "青川渡轮每天早上六点二十分从码头出发。",
                                "A last paragraph right after it."]
    assert paragraphs([]) == []


def outlined_share(view: ScanView | None, top: float, bottom: float) -> float:
    """The share of the page's rows between `top` and `bottom` (fractions of its height)
    that carry the orange outline or the yellow tint of a supporting line."""
    import io

    from PIL import Image

    assert view is not None and view.outlined, "the scanned page is shown, lines outlined"
    image = Image.open(io.BytesIO(view.png)).convert("RGB")
    rows = range(int(top * image.height), int(bottom * image.height))
    marked = [y for y in rows if any(
        (lambda r, g, b: r > 200 and b < 190 and g > 100)(*image.getpixel((x, y)))
        for x in range(0, image.width, 7))]
    return len(marked) / max(len(rows), 1)


@pytest.mark.models
def test_scanned_pages_answer_with_a_page_citation(tmp_path: Path) -> None:
    """An image-only PDF (English page 2 after a text page) and a Chinese scan: the scanned
    pages are read, cited by page, and marked as OCR."""
    from pdfgen import write_pdf
    from pypdf import PdfReader, PdfWriter

    english = page(["Maintenance schedule", "The Zephyr X200 pump must be serviced every",
                    "450 operating hours with the kit ZK-7731."], LATIN_FONT)
    scan = tmp_path / "scan-part.pdf"
    english.save(scan, resolution=150)
    mixed = tmp_path / "manual.pdf"
    write_pdf(tmp_path / "text-part.pdf", [["Zephyr X200 manual", "Read the safety notes."]])
    writer = PdfWriter()
    for part in ("text-part.pdf", "scan-part.pdf"):
        for pdf_page in PdfReader(tmp_path / part).pages:
            writer.add_page(pdf_page)
    with mixed.open("wb") as out:
        writer.write(out)
    chinese = tmp_path / "ferry.pdf"
    lines = ["青川渡轮简介", "青川渡轮的船长是周海宁。", "渡轮每天早上六点二十分出发。"]
    page(lines, CJK_FONT).save(chinese, resolution=150)
    import kbqa

    kb = kbqa.open_kb(tmp_path / "home", model=str(SMALL_MODEL))
    report = kb.ingest([mixed, chinese])
    assert sorted(Path(p).name for p in report.added) == ["ferry.pdf", "manual.pdf"]
    answer = kb.ask("How often must the Zephyr X200 pump be serviced?")
    assert "450" in answer.text, answer.text
    cited = [(Path(c.source).name, c.page, c.place) for c in answer.citations]
    assert ("manual.pdf", 2, "page 2 (OCR)") in cited, cited
    # the chip shows the scan with the lines of the quote outlined (drawn at 60-185 of 700
    # px); the empty lower half of the page is left alone
    scan_cite = next(c for c in answer.citations if c.page == 2)
    view = kb.scan_view(scan_cite)
    assert outlined_share(view, 150 / 700, 185 / 700) > 0.8, scan_cite.quote
    assert outlined_share(view, 0.5, 1.0) == 0
    text_page = kb.search("safety notes", k=1)[0].chunk
    assert text_page.page == 1 and kb.scan_lines(text_page.chunk_id) == []
    hits = kb.search("青川渡轮几点出发？", k=1)
    assert Path(hits[0].chunk.source).name == "ferry.pdf"
    assert "六点二十分" in hits[0].chunk.text and hits[0].chunk.place == "page 1 (OCR)"
    answer = kb.ask("青川渡轮的船长是谁？")
    assert "周海宁" in answer.text, answer.text
    assert [(Path(c.source).name, c.place) for c in answer.citations] == [
        ("ferry.pdf", "page 1 (OCR)")]
    # the captain's line (105-140 px of 700) is outlined, the departure line (150-185) not
    view = kb.scan_view(answer.citations[0])
    assert outlined_share(view, 110 / 700, 135 / 700) > 0.8, answer.citations[0].quote
    assert outlined_share(view, 160 / 700, 180 / 700) == 0, answer.citations[0].quote


@pytest.mark.models
def test_images_and_mail_attachments_are_searchable_and_bad_ones_named(
        make_kb, tmp_path: Path) -> None:
    from PIL import Image

    docs = tmp_path / "docs"
    docs.mkdir()
    page(["Invoice 2291", "Total due: 310 EUR by 15 March."], LATIN_FONT).save(
        docs / "invoice.png")
    frames = [page(["Page one of the fax."], LATIN_FONT),
              page(["The courier arrives on Thursday at noon."], LATIN_FONT)]
    frames[0].save(docs / "fax.tiff", save_all=True, append_images=frames[1:])
    receipt = tmp_path / "receipt.jpg"
    page(["Receipt: the Osprey ferry ticket cost 18 dollars."], LATIN_FONT).save(
        receipt, quality=85)
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "a@example.org", "b@example.org", "Receipt"
    mail.set_content("The receipt is attached.")
    mail.add_attachment(receipt.read_bytes(), maintype="image", subtype="jpeg",
                        filename="receipt.jpg")
    (docs / "mail.eml").write_bytes(bytes(mail))
    Image.new("RGB", (800, 600), "white").save(docs / "blank.png")
    (docs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a real jpeg")
    kb = make_kb()
    report = kb.ingest(docs)
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == {"blank.png", "broken.jpg"}, failed
    assert "no text found" in failed["blank.png"]
    assert "not a readable image" in failed["broken.jpg"]
    top = kb.search("How much was the invoice total?", k=1)[0]
    assert Path(top.chunk.source).name == "invoice.png" and "310" in top.chunk.text
    top = kb.search("When does the courier arrive?", k=1)[0]
    assert Path(top.chunk.source).name == "fax.tiff" and top.chunk.page == 2
    top = kb.search("How much did the Osprey ferry ticket cost?", k=1)[0]
    assert "receipt.jpg" in top.chunk.source and "18" in top.chunk.text
    again = kb.ingest(docs)  # unchanged scans are not read again
    assert not again.added and not again.updated
    assert {Path(p).name for p in again.unchanged} >= {"invoice.png", "fax.tiff", "mail.eml"}
    # a cited image, a TIFF page and an e-mail's image are shown with the quote outlined
    from kbqa.domain import Citation

    for question, quote, band in [("invoice total", "Total due: 310 EUR", (105, 135)),
                                  ("courier", "courier arrives on Thursday", (60, 90)),
                                  ("Osprey ferry ticket", "Osprey ferry ticket", (60, 90))]:
        chunk = kb.search(question, k=1)[0].chunk
        cite = Citation(chunk.source, chunk.page, quote, chunk.chunk_id, 1.0)
        assert outlined_share(kb.scan_view(cite), band[0] / 700, band[1] / 700) > 0.8, question
    # a citation that no longer matches its passage, or a file changed since the ingest,
    # shows no outlines (they would land in the wrong place)
    assert kb.scan_view(Citation(str(docs / "fax.tiff"), 1, "courier", cite.chunk_id, 1)) is None
    page(["A different invoice"], LATIN_FONT).save(docs / "invoice.png")
    invoice = kb.search("invoice total", k=1)[0].chunk
    assert kb.scan_view(Citation(invoice.source, 1, "Total due", invoice.chunk_id, 1)) is None


@pytest.mark.models
def test_ocr_off_reports_scans_and_images(make_kb, tmp_path: Path) -> None:
    scan = tmp_path / "scan.pdf"
    page(["The harbor office opens at 7:15."], LATIN_FONT).save(scan, resolution=150)
    page(["Invoice 2291"], LATIN_FONT).save(tmp_path / "invoice.png")
    kb = make_kb(ocr="off")
    report = kb.ingest([scan, tmp_path / "invoice.png"])
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert not report.added
    assert "OCR is off" in reasons["scan.pdf"] and "KBQA_OCR" in reasons["scan.pdf"]
    assert "OCR is off" in reasons["invoice.png"]


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    from kbqa.errors import IngestError
    from kbqa.ingest.ocr import load_image
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("1", (20_000, 20_000), 1).save(huge)  # 1 bit per pixel: small on disk

    class NeverCalled:
        def read(self, image):
            raise AssertionError("a huge image must not reach the OCR model")

    with pytest.raises(IngestError, match="too large to read"):
        load_image(huge, NeverCalled())  # type: ignore[arg-type]


def test_a_scan_over_the_page_limit_is_reported_without_reading_it(tmp_path: Path) -> None:
    from kbqa.errors import IngestError
    from kbqa.ingest.pdf import load_pdf
    from pdfgen import write_pdf

    scan = write_pdf(tmp_path / "archive.pdf", [[] for _ in range(12)])  # 12 blank pages

    class NeverCalled:
        def read(self, image):
            raise AssertionError("pages over the limit must not be rendered or read")

    with pytest.raises(IngestError, match=r"12 pages without a text layer.*KBQA_OCR_MAX_PAGES"):
        load_pdf(scan, ocr=NeverCalled(), ocr_max_pages=10)  # type: ignore[arg-type]


def test_each_scanned_page_is_counted_as_it_is_read() -> None:
    from kbqa.ingest.ocr import ocr_sections
    from PIL import Image

    class Engine:
        def read(self, image):
            return [OcrLine(text=f"text {image.width}", left=0, top=0, right=100, bottom=20)]

    heard: list[tuple[int, int]] = []
    pages = iter([(n, Image.new("RGB", (200 + n, 400))) for n in (1, 2, 5)])
    sections = ocr_sections(Engine(), pages, 3,  # type: ignore[arg-type]
                            lambda done, total: heard.append((done, total)))
    assert heard == [(1, 3), (2, 3), (3, 3)]
    assert [(s.page, s.location) for s in sections] == [(1, "page 1 (OCR)"), (2, "page 2 (OCR)"),
                                                        (5, "page 5 (OCR)")]
    scan = sections[2].scan  # the boxes are kept with the page's size, for citations
    assert scan is not None and (scan.width, scan.height) == (205, 400)
    assert scan.normalized()[0].right == pytest.approx(100 / 205)


@pytest.mark.models
def test_a_long_scan_shows_its_pages_in_the_progress(make_kb, tmp_path: Path) -> None:
    """The chat's progress bar hears the pages of a scan while it is being read (the
    ingest's caller is told twice a second while a file takes long)."""
    from pypdf import PdfReader, PdfWriter

    one = tmp_path / "one.pdf"
    page(["The archive box 17 holds the 1998 contracts."], LATIN_FONT).save(one, resolution=150)
    writer = PdfWriter()
    for _ in range(5):
        writer.add_page(PdfReader(one).pages[0])
    scan = tmp_path / "archive.pdf"
    with scan.open("wb") as out:
        writer.write(out)
    heard = []
    report = make_kb().ingest(scan, on_progress=heard.append)
    assert [Path(p).name for p in report.added] == ["archive.pdf"]
    assert any(p.ocr_total == 5 and 0 < p.ocr_done < 5 for p in heard), heard
