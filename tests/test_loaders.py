from __future__ import annotations

from pathlib import Path

import pytest
from kbqa.errors import IngestError
from kbqa.ingest.loaders import decode_text, load, markdown_sections
from pdfgen import write_pdf

TEXT = "Grüße aus Köln, café Zürich. 你好"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be",
                                      "utf-32"])
def test_unicode_encodings(encoding: str) -> None:
    assert decode_text(TEXT.encode(encoding)) == TEXT


def test_legacy_code_pages() -> None:
    assert decode_text("Grüße aus Köln, café Zürich und Straße".encode("cp1252")) == \
        "Grüße aus Köln, café Zürich und Straße"
    chinese = "这是一个用国标编码保存的中文文件，内容是关于知识库的说明。" * 3
    assert decode_text(chinese.encode("gb18030")) == chinese


def test_binary_is_refused() -> None:
    with pytest.raises(IngestError, match="binary"):
        decode_text(bytes(range(256)) * 40)


def test_markdown_heading_paths() -> None:
    sections = markdown_sections("# Guide\nintro\n## Install\nsteps\n```\n# not a heading\n```\n"
                                 "# Other\nend")
    assert [s.heading for s in sections] == ["Guide", "Guide > Install", "Other"]
    assert "# not a heading" in sections[1].text


def test_pdf_pages_are_numbered(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "a.pdf", [["first page"], ["second page"]])
    doc = load(pdf)
    assert [(s.page, s.text.strip()) for s in doc.sections] == [(1, "first page"),
                                                                 (2, "second page")]
    assert doc.pages == 2


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\t\n", "whitespace only"),
        ("zero.pdf", b"", "empty file"),
        ("truncated.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type", "not a readable PDF"),
        ("random.pdf", bytes(range(256)) * 10, "not a readable PDF"),
        ("photo.jpg", b"\xff\xd8\xff", "OCR is off"),  # load() without an OCR engine
        ("song.mp3", b"ID3\x03", "unsupported file type '.mp3'"),
    ],
)
def test_bad_files_give_reasons(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=reason):
        load(path)


def test_pdf_without_text_layer_is_reported(tmp_path: Path) -> None:
    pdf = write_pdf(tmp_path / "scan.pdf", [[], []])
    with pytest.raises(IngestError, match="no text layer"):
        load(pdf)


def test_a_malformed_address_header_does_not_cost_the_message(tmp_path: Path) -> None:
    """Found by `make bench-fuzz`: a carriage return inside an address made the e-mail
    header parser raise IndexError; the header is kept as its raw text instead."""
    mail = tmp_path / "odd.eml"
    mail.write_bytes(b"From: alice@example.com\nTo: bob@example.com\nCc: carol@\rxample.com\n"
                     b"Subject: Quarterly numbers\n\nThe warehouse holds 42 pallets.\n")
    document = load(mail)
    text = "\n".join(section.text for section in document.sections)
    assert "42 pallets" in text and "Quarterly numbers" in text


def test_attachments_keep_their_names_and_a_long_message_name_costs_nothing(
        tmp_path: Path) -> None:
    """Outlook saves a message under its subject: the message's long name and an
    attachment's together pass a file name's 255 bytes, which must not cost the message."""
    from email.message import EmailMessage

    from kbqa.ingest.mail import attachment_bytes

    mail = EmailMessage()
    mail["From"], mail["Subject"] = "a@example.org", "Minutes"
    mail.set_content("Two copies of the minutes are attached.")
    for body in (b"The board met on Monday.", b"The board met on Tuesday."):
        mail.add_attachment(body, maintype="text", subtype="plain",
                            filename="minutes of the quarterly board meeting " * 2 + ".txt")
    path = tmp_path / ("Re: minutes of the quarterly board meeting and the budget " * 4
                       ).replace(":", "").strip().replace(" ", "_")[:220]
    path = path.with_suffix(".eml")
    path.write_bytes(bytes(mail))
    document = load(path)
    first, second = (a.name for a in document.attachments)
    assert [a.error for a in document.attachments] == ["", ""]
    assert second.endswith(" › minutes of the quarterly board meeting minutes of the "
                           "quarterly board meeting  (2).txt")
    assert attachment_bytes(path, first) == b"The board met on Monday."
    assert attachment_bytes(path, second) == b"The board met on Tuesday."
    assert attachment_bytes(path, f"{path} › other.txt") is None
    assert attachment_bytes(tmp_path / "gone.eml", first) is None


def test_a_damaged_sheet_inside_an_xlsx_is_reported(tmp_path: Path) -> None:
    """Found by `make bench-fuzz`: openpyxl opens a workbook whose sheet XML is broken and
    fails only when the rows are read; that is a clear report, not an unexpected error."""
    import zipfile

    import openpyxl

    good = tmp_path / "good.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["city", "population"])
    book.save(good)
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            body = source.read(name)
            if name == "xl/worksheets/sheet1.xml":
                body = body[: len(body) // 2] + b"<<&" + body[len(body) // 2:]
            target.writestr(name, body)
    with pytest.raises(IngestError, match="not a readable XLSX workbook"):
        load(broken)
