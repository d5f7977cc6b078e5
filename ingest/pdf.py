"""PDF through pypdf: text per page with its page number, the outline as heading paths,
encrypted files opened with the empty password or one the user gave."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from kbqa.domain import Document, Section
from kbqa.errors import IngestError
from kbqa.ingest.ocr import (
    MIN_TEXT_CHARS,
    OcrEngine,
    PageFn,
    ocr_sections,
    pdf_page_images,
)

ENCRYPTED = ("encrypted: give the password with `python -m kbqa ingest --password ...` "
             "(or KBQA_PDF_PASSWORDS), or save a copy without one")


def outline_entries(reader: Any) -> list[tuple[int, list[str]]]:
    """(0-based page, heading path) for every outline entry, in outline order."""
    entries: list[tuple[int, list[str]]] = []

    def walk(items: Sequence[Any], parents: list[str]) -> None:
        last: list[str] = parents
        for item in items:
            if isinstance(item, list):
                walk(item, last)
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # a dangling destination: skip the entry, keep the rest
                continue
            last = [*parents, title] if title else parents
            if page is not None and page >= 0 and title:
                entries.append((page, last))

    try:
        walk(reader.outline, [])
    except Exception:
        return []
    return entries


def page_headings(entries: Sequence[tuple[int, list[str]]], pages: int) -> list[str]:
    """The heading path for each page: the first entry that starts on it, else the last
    entry before it (the section the page continues).

    Example: page_headings([(0, ["A"]), (2, ["A", "B"])], 4) == ["A", "A", "A > B", "A > B"]
    """
    first_on: dict[int, list[str]] = {}
    last_on: dict[int, list[str]] = {}
    for page, path in entries:
        first_on.setdefault(page, path)
        last_on[page] = path
    headings: list[str] = []
    carried: list[str] = []
    for page in range(pages):
        path = first_on.get(page, carried)
        headings.append(" > ".join(path))
        carried = last_on.get(page, carried)
    return headings


def open_pdf(path: Path, passwords: Sequence[str] = ()) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(path)
    if reader.is_encrypted:
        for password in ("", *passwords):
            try:
                if reader.decrypt(password):
                    return reader
            except DependencyError:
                raise IngestError("encrypted with AES, which needs the cryptography package: "
                                  "run `make setup`") from None
            except NotImplementedError as exc:
                raise IngestError(f"encrypted with an unsupported method ({exc}): save a copy "
                                  "without the password") from None
        raise IngestError(ENCRYPTED)
    return reader


def load_pdf(path: Path, passwords: Sequence[str] = (), ocr: OcrEngine | None = None,
             ocr_max_pages: int = 500, on_page: PageFn | None = None) -> Document:
    """Text per page; pages keep their 1-based numbers and the outline's heading path. Pages
    without a usable text layer (scanned) are rendered and read by `ocr`, when given."""
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # per-font chatter, not user news
    if path.stat().st_size == 0:
        raise IngestError("empty file (0 bytes): nothing to index")
    try:
        reader = open_pdf(path, passwords)
        pages = list(reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(
            f"not a readable PDF (corrupt or truncated: {exc}); re-export or repair it"
        ) from None
    except Exception as exc:  # pypdf raises many kinds on damaged files
        if "crypt" in str(exc).lower() or "AES" in str(exc):
            raise IngestError(ENCRYPTED) from None
        raise IngestError(
            f"not a readable PDF ({type(exc).__name__}: {exc}); re-export or repair it"
        ) from None
    headings = page_headings(outline_entries(reader), len(pages))
    sections: dict[int, Section] = {}
    scanned: list[int] = []
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception:  # one damaged page must not cost the rest of the file
            text = ""
        if len("".join(text.split())) >= MIN_TEXT_CHARS:
            sections[number] = Section(text=text, page=number, heading=headings[number - 1])
        else:
            scanned.append(number)  # no text layer, or a few stray characters on the page
            if text.strip():
                sections[number] = Section(text=text, page=number,
                                           heading=headings[number - 1])
    if ocr is not None and len(scanned) > ocr_max_pages:
        raise IngestError(f"{len(scanned)} pages without a text layer, more than the "
                          f"{ocr_max_pages} kbqa reads by OCR in one file (about a second "
                          "each): split the PDF, or raise KBQA_OCR_MAX_PAGES")
    if scanned and ocr is not None:
        for section in _read_scanned(path, scanned, passwords, ocr, on_page):
            assert section.page is not None
            sections[section.page] = replace(section, heading=headings[section.page - 1])
    if not sections:
        raise IngestError(
            "no text layer (scanned?) and OCR is off: turn it on (KBQA_OCR=on), or run OCR "
            "on it (e.g. ocrmypdf) and ingest the result" if ocr is None else
            "no text on any page, even by OCR (photos or drawings, or a scan too faint): "
            "nothing to search; re-scan it if it does hold text"
        )
    return Document(source=str(path), sections=tuple(sections[n] for n in sorted(sections)),
                    kind="pdf")


def _read_scanned(path: Path, numbers: list[int], passwords: Sequence[str],
                  ocr: OcrEngine, on_page: PageFn | None) -> list[Section]:
    """The scanned pages read by OCR; a password that opened the file opens it here too."""
    last_error: Exception | None = None
    for password in (None, *passwords):
        try:
            with closing(pdf_page_images(path, numbers, password=password)) as pages:
                return ocr_sections(ocr, pages, len(numbers), on_page)
        except IngestError:
            raise
        except Exception as exc:  # pdfium refuses a wrong password or a damaged page tree
            last_error = exc
    raise IngestError(f"its scanned pages could not be rendered for OCR ({last_error}); "
                      "re-export the PDF")
