"""What the chat shows of a source: the passage with its supporting span marked, the page
as an image (a scan with the recognised lines that support the answer outlined), and an
answer as Markdown to copy. Pure except the page readers (`page_picture`)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbqa.domain import Answer, Citation, OcrLine
from kbqa.ingest.mail import ATTACHMENT_SEPARATOR, attachment_bytes
from kbqa.ingest.ocr import IMAGE_SUFFIXES, PDFIUM, image_frames, open_image
from kbqa.llm.citations import flag_marker
from kbqa.text import is_cjk

PAGE_IMAGE_WIDTH = 900  # pixels: readable in the chat's column, small to send
# Letters or digits (Chinese characters) a piece of a quote needs to be placed: a shorter
# one would match anywhere.
MIN_QUOTE_KEY = 4
MIN_CJK_KEY = 2
OUTLINE = (230, 120, 0)  # the box around a supporting line (orange), and its fill
FILL = (255, 210, 0, 90)


# Markdown that would make the browser fetch or open an address. An answer is the model's
# text, and a document can tell the model to write `![](http://host/?q=<secret>)`: shown
# as Markdown, the browser would fetch it the moment it is drawn.
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REF_IMAGE = re.compile(r"!\[([^\]]*)\]\[([^\]]*)\]")
_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REF_DEFINITION = re.compile(r"^[ ]{0,3}\[([^\]]+)\]:[ \t]*<?(\S+?)>?(?:[ \t]+.*)?$", re.M)
_AUTOLINK = re.compile(r"<((?:[a-zA-Z][a-zA-Z0-9+.-]{1,31}):[^\s<>]*)>")
_BARE_ADDRESS = re.compile(r"(?<![`\w/])((?:https?|ftp|file)://[^\s<>`]+|www\.[^\s<>`]+)",
                           re.IGNORECASE)


def _as_code(address: str) -> str:
    return f"`{address.replace('`', '')}`"


def safe_markdown(text: str) -> str:
    """Markdown with nothing that loads or links: images become a note and their address
    plain code, links their text and address as code, bare addresses code, raw HTML
    escaped. Example: safe_markdown("![](http://h/?q=s)") == "[image not shown] `http://h/?q=s`"
    """
    text = _IMAGE.sub(lambda m: f"[image not shown{': ' + m[1] if m[1] else ''}] "
                                f"{_as_code(m[2])}", text)
    text = _REF_IMAGE.sub(lambda m: f"[image not shown{': ' + m[1] if m[1] else ''}]", text)
    text = _LINK.sub(lambda m: f"{m[1]} ({_as_code(m[2])})" if m[2] else m[1], text)
    text = _REF_DEFINITION.sub(lambda m: f"{m[1]}: {_as_code(m[2])}", text)
    text = _AUTOLINK.sub(lambda m: _as_code(m[1]), text)
    text = _BARE_ADDRESS.sub(lambda m: _as_code(m[1]), text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def chip_label(number: int, cite: Citation) -> str:
    """Example: chip_label(1, <a.pdf, page 2>) == "[1] a.pdf · page 2" """
    place = cite.place
    return f"[{number}] {Path(cite.source).name}" + (f" · {place}" if place else "")


def _loose(quote: str) -> re.Pattern[str]:
    """The quote as a pattern that tolerates the whitespace the chunker may have changed."""
    words = [re.escape(w) for w in quote.strip(" …").split()]
    return re.compile(r"\s+".join(words)) if words else re.compile(r"(?!)")


def _matches(passage: str, quote: str) -> list[re.Match[str] | None]:
    """Where each part of the quote ("a … b" has two) is in the passage, or None."""
    pieces = [p for p in re.split(r"\s*…\s*", quote) if p.strip()]
    return [_loose(piece).search(passage) for piece in pieces]


def highlight_found(passage: str, quote: str) -> bool:
    """Whether the passage still holds the quote (whitespace aside)."""
    found = _matches(passage, quote)
    return bool(found) and all(found)


def highlight(passage: str, quote: str) -> str:
    """The passage as HTML with the supporting span in <mark>; everything else escaped.

    Example: highlight("a <b> c", "<b>") == "a <mark>&lt;b&gt;</mark> c"
    """
    spans = [found.span() for found in _matches(passage, quote) if found]
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            continue
        out.append(html.escape(passage[last:start]))
        out.append(f"<mark>{html.escape(passage[start:end])}</mark>")
        last = end
    out.append(html.escape(passage[last:]))
    return "".join(out).replace("\n", "<br>")


def marked_unsupported(answer: Answer) -> str:
    """The answer's Markdown with each "not supported" flag as an orange badge that says
    why ("⚠ not supported by the documents: the source says 1968"); nothing in it loads
    or links (`safe_markdown`)."""
    text = safe_markdown(answer.text)
    for flag in answer.unsupported:
        for lang in ("en", "zh"):
            marker = flag_marker(flag.reason, lang)
            if marker in text:
                shown = re.sub(r"[\[\]]", "", marker.strip("()（）"))
                text = text.replace(marker, f" :orange-badge[⚠ {shown}]", 1)
                break
    return text


def answer_markdown(answer: Answer) -> str:
    """The answer and its sources as Markdown, for pasting elsewhere (where it is rendered
    again: nothing in it loads or links, `safe_markdown`)."""
    lines = [f"**Q:** {safe_markdown(answer.question)}", "", safe_markdown(answer.text)]
    if answer.citations:
        lines += ["", "Sources:"]
        for number, cite in enumerate(answer.citations, start=1):
            place = cite.place
            where = f", {place}" if place else ""
            quote = safe_markdown(" ".join(cite.quote.split()))
            lines.append(f"{number}. {Path(cite.source).name}{where}: \"{quote}\"")
    return "\n".join(lines)


def supporting_lines(lines: list[OcrLine], quote: str) -> list[int]:
    """The indexes of the OCR lines (reading order) that hold the quote: each piece of it
    ("a … b" has two) is found in the page's letters and digits, so the spaces and
    punctuation OCR and the chunker put in or left out do not matter. A piece that runs
    over the page's end (or in from its start: a passage merged with the next page's) is
    placed by the part on this page.

    Example: supporting_lines([OcrLine("The pump is", ...), OcrLine("serviced yearly.", ...),
             OcrLine("Other text", ...)], "pump is serviced yearly") == [0, 1]
    """
    letters: list[str] = []
    owner: list[int] = []
    for number, line in enumerate(lines):
        for char in line.text.lower():
            if char.isalnum():
                letters.append(char)
                owner.append(number)
    page = "".join(letters)
    found: set[int] = set()
    for piece in quote.split("…"):
        key = "".join(c for c in piece.lower() if c.isalnum())
        shortest = MIN_CJK_KEY if any(is_cjk(c) for c in key) else MIN_QUOTE_KEY
        if len(key) < shortest:
            continue
        at = page.find(key)
        if at >= 0:
            found.update(owner[at:at + len(key)])
            continue
        for size in range(min(len(key), len(page)) - 1, shortest - 1, -1):
            if page.endswith(key[:size]):
                found.update(owner[len(page) - size:])
                break
            if page.startswith(key[-size:]):
                found.update(owner[:size])
                break
    return sorted(found)


def outlined_png(picture: Any, boxes: list[OcrLine], width: int = PAGE_IMAGE_WIDTH) -> bytes:
    """The page image scaled to `width` (never up) with each box (fractions of the page)
    filled light yellow and outlined in orange, as PNG bytes."""
    from PIL import Image, ImageDraw

    page = picture.convert("RGB")
    if page.width > width:
        page = page.resize((width, max(1, round(page.height * width / page.width))))
    if boxes:
        layer = Image.new("RGBA", page.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        pad = max(2, page.width // 300)
        for box in boxes:
            shape = (box.left * page.width - pad, box.top * page.height - pad,
                     box.right * page.width + pad, box.bottom * page.height + pad)
            draw.rectangle(shape, fill=FILL, outline=(*OUTLINE, 255), width=pad)
        page = Image.alpha_composite(page.convert("RGBA"), layer).convert("RGB")
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def page_picture(source: str, file: Path, page: int, width: int = PAGE_IMAGE_WIDTH,
                 passwords: Sequence[str] = ()) -> Any | None:
    """The cited page as a PIL image at most `width` wide, read locally: a PDF page rendered
    (with a password the ingest was given), a frame of an image file, or either inside an
    e-mail (`source` "mail.eml › scan.png", `file` the message). None when the file is
    gone, is locked or is not a page at all (the passage is still shown)."""
    if page < 1 or not file.is_file():
        return None
    name = source.rsplit(ATTACHMENT_SEPARATOR, 1)[-1] if source != str(file) else file.name
    suffix = Path(name).suffix.lower()
    if suffix != ".pdf" and suffix not in IMAGE_SUFFIXES:
        return None
    try:
        data: Path | bytes = file
        if source != str(file):
            inside = attachment_bytes(file, source)
            if inside is None:
                return None
            data = inside
        if suffix == ".pdf":
            return _pdf_page(data, page, width, passwords)
        image = open_image(io.BytesIO(data) if isinstance(data, bytes) else data)
        frame = next((frame for number, frame in image_frames(image) if number == page), None)
        if frame is not None:
            frame.thumbnail((width, frame.height))  # a 60-megapixel scan: shrunk first
        return frame
    except Exception:  # an unreadable page must not break the answer view
        return None


def _pdf_page(data: Path | bytes, page: int, width: int, passwords: Sequence[str]
              ) -> Any | None:
    import pypdfium2

    with PDFIUM:
        for password in (None, *passwords):
            try:
                document = pypdfium2.PdfDocument(data if isinstance(data, bytes) else str(data),
                                                 password=password)
                break
            except pypdfium2.PdfiumError:  # locked: the next password, else no picture
                continue
        else:
            return None
        try:
            if page > len(document):
                return None
            sheet = document[page - 1]
            return sheet.render(scale=width / max(sheet.get_width(), 1.0)).to_pil()
        finally:
            document.close()


def render_pdf_page(path: Path, page: int, width: int = PAGE_IMAGE_WIDTH,
                    passwords: Sequence[str] = ()) -> bytes | None:
    """The PDF page (1-based) as PNG bytes; None when it cannot be shown."""
    if path.suffix.lower() != ".pdf":
        return None
    picture = page_picture(str(path), path, page, width, passwords)
    try:
        return outlined_png(picture, [], width) if picture is not None else None
    except Exception:  # e.g. out of memory: the passage is still shown
        return None
