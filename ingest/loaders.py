"""File suffix -> loader. Each loader returns a Document or raises IngestError with a reason
that says what the user can do; the pipeline reports it by file name and goes on."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from kbqa.domain import Document, Section
from kbqa.errors import IngestError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding: BOMs, then UTF-8, then a detected legacy code page.

    Example: decode_text("café".encode("cp1252")) == "café"
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    guess = _bomless_utf16(data)
    if guess:
        return data.decode(guess, errors="replace")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = _decode_legacy(data)
    if text and len(_CONTROL.findall(text[:65536])) > 0.05 * min(len(text), 65536):
        raise IngestError("binary data, not text: check the file is what its suffix says")
    return text


def _bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM shows as NUL bytes on every other position (for Latin text)."""
    sample = data[:4096]
    if len(sample) < 4 or sample.count(0) < len(sample) // 4:
        return None
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    if odd_nuls > 0.4 * (len(sample) // 2) and even_nuls < odd_nuls / 4:
        return "utf-16-le"
    if even_nuls > 0.4 * (len(sample) // 2) and odd_nuls < even_nuls / 4:
        return "utf-16-be"
    return None


def _decode_legacy(data: bytes) -> str:
    """A detected code page; for Latin-script text, Windows-1252 where it decodes cleanly,
    because short samples make the Latin code pages indistinguishable to a detector."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise IngestError(
            "not valid text in any known encoding (binary?): convert it to UTF-8 and ingest again"
        )
    text = str(best)
    accented = [c for c in text if c.isalpha() and ord(c) > 0x7F]
    other_script = [c for c in accented if ord(c) > 0x24F]  # beyond the Latin blocks
    if len(other_script) > len(accented) // 3:
        return text  # Chinese, Cyrillic, Greek, ...: trust the detector
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return text


def _require_text(text: str) -> str:
    if not text.strip():
        raise IngestError("no text (empty or whitespace only): nothing to index")
    return text


def load_text(path: Path) -> Document:
    data = path.read_bytes()
    if not data:
        raise IngestError("empty file (0 bytes): nothing to index")
    text = _require_text(decode_text(data).replace("\r\n", "\n").replace("\r", "\n"))
    return Document(source=str(path), sections=(Section(text=text),), kind="txt")


_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def markdown_sections(text: str) -> list[Section]:
    """Split Markdown at ATX headings; each section keeps its heading path ("A > B").

    Example: markdown_sections("# A\\nx\\n## B\\ny")[1].heading == "A > B"
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(text=body, heading=" > ".join(t for _, t in path)))
        lines.clear()

    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _ATX_HEADING.match(line)
        if match:
            flush()
            level, title = len(match.group(1)), match.group(2).strip()
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        lines.append(line)
    flush()
    return sections


def load_markdown(path: Path) -> Document:
    data = path.read_bytes()
    if not data:
        raise IngestError("empty file (0 bytes): nothing to index")
    text = _require_text(decode_text(data).replace("\r\n", "\n").replace("\r", "\n"))
    return Document(source=str(path), sections=tuple(markdown_sections(text)), kind="md")


def load_pdf(path: Path) -> Document:
    """Text per page through pypdf; pages keep their 1-based numbers."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if path.stat().st_size == 0:
        raise IngestError("empty file (0 bytes): nothing to index")
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(
                "encrypted PDF: save a copy without the password, then ingest that copy"
            )
        pages = list(reader.pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(
            f"not a readable PDF (corrupt or truncated: {exc}); re-export or repair it"
        ) from None
    except Exception as exc:  # pypdf raises many kinds on damaged files
        if "crypt" in str(exc).lower() or "AES" in str(exc):
            raise IngestError(
                "encrypted PDF: save a copy without the password, then ingest that copy"
            ) from None
        raise IngestError(
            f"not a readable PDF ({type(exc).__name__}: {exc}); re-export or repair it"
        ) from None
    sections = []
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception:  # one damaged page must not cost the rest of the file
            continue
        if text.strip():
            sections.append(Section(text=text, page=number))
    if not sections:
        raise IngestError(
            "no text layer (scanned?): run OCR on it (e.g. ocrmypdf) and ingest the result"
        )
    return Document(source=str(path), sections=tuple(sections), kind="pdf")


LOADERS: dict[str, Callable[[Path], Document]] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".pdf": load_pdf,
}


def supported_suffixes() -> list[str]:
    return sorted(LOADERS)


def load(path: Path) -> Document:
    """Load one file by its suffix; raises IngestError naming the reason."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(
            f"unsupported file type {path.suffix or '(no suffix)'!r}: "
            f"kbqa reads {', '.join(supported_suffixes())}"
        )
    try:
        return loader(path)
    except IngestError:
        raise
    except MemoryError:
        raise IngestError("too large to load in memory: split the file") from None
    except OSError as exc:
        raise IngestError(f"cannot read the file ({exc.strerror or exc})") from None
