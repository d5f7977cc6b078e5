"""What the chat shows of a source: the passage with its supporting span marked, a PDF
page as an image, and an answer as Markdown to copy. Pure except `render_pdf_page`."""

from __future__ import annotations

import html
import io
import re
import threading
from pathlib import Path

from kbqa.domain import Answer, Citation
from kbqa.llm.citations import flag_marker

PAGE_IMAGE_WIDTH = 900  # pixels: readable in the chat's column, small to send
# PDFium is not thread-safe, and each browser session runs in a thread of its own.
_PDFIUM = threading.Lock()


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


def render_pdf_page(path: Path, page: int, width: int = PAGE_IMAGE_WIDTH) -> bytes | None:
    """The PDF page (1-based) as PNG bytes, rendered locally; None when the file is gone,
    not a PDF, locked or has no such page (the passage is still shown)."""
    if path.suffix.lower() != ".pdf" or not path.is_file() or page < 1:
        return None
    try:
        with _PDFIUM:
            return _render_page(path, page, width)
    except Exception:  # an unreadable page must not break the answer view
        return None


def _render_page(path: Path, page: int, width: int) -> bytes | None:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(path))
    try:
        if page > len(document):
            return None
        sheet = document[page - 1]
        image = sheet.render(scale=width / max(sheet.get_width(), 1.0)).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()
    finally:
        document.close()
