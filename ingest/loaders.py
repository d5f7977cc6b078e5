"""File suffix -> loader. Each loader returns a Document or raises IngestError with a reason
that says what the user can do; the pipeline reports it by file name and goes on."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kbqa.domain import Document, Section
from kbqa.errors import IngestError
from kbqa.ingest.ocr import IMAGE_SUFFIXES, OcrEngine, PageFn
from kbqa.text import CJK

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
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                raise IngestError(
                    f"invalid text: it starts with a {encoding.upper()} byte-order mark but is "
                    "not valid in that encoding (damaged or mislabelled); re-save it as UTF-8"
                ) from None
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


_RUN_OF_NON_WORDS = re.compile(r"[^\s" + CJK + r"]{2000,}")


def _require_text(text: str, *, prose: bool = True) -> str:
    """Text worth indexing: not blank, and (for prose) not mostly one endless run without
    spaces (a base64 blob or a data dump: thousands of useless chunks)."""
    if not text.strip():
        raise IngestError("no text (empty or whitespace only): nothing to index")
    if not prose:
        return text
    runs = sum(len(m.group()) for m in _RUN_OF_NON_WORDS.finditer(text))
    if runs > len(text) // 2:
        raise IngestError(
            f"no readable words: {runs:,} of its {len(text):,} characters are runs without any "
            "space (encoded data?); decode or convert it to text first"
        )
    return text


def read_text(path: Path, *, prose: bool = True) -> str:
    """A text file's content with normalised line ends; refuses empty and binary files,
    and (for prose, not tables of numbers) text without any words."""
    data = path.read_bytes()
    if not data:
        raise IngestError("empty file (0 bytes): nothing to index")
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    return _require_text(text, prose=prose)


def load_text(path: Path) -> Document:
    return Document(source=str(path), sections=(Section(text=read_text(path)),), kind="txt")


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
    return Document(source=str(path), sections=tuple(markdown_sections(read_text(path))),
                    kind="md")


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def refuse_encrypted_office(path: Path) -> None:
    """A password-protected .docx/.xlsx/.pptx is an OLE container, not a zip: say so."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if head != _OLE_MAGIC:
        return
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            encrypted = ole.exists("EncryptedPackage")
    except Exception:
        encrypted = False
    if encrypted:
        raise IngestError("encrypted (password-protected): open it in its program and save a "
                          "copy without the password, then ingest that copy")
    raise IngestError(f"an old binary Office file under a {path.suffix} name: save it again "
                      f"as {path.suffix} in its program")


@dataclass(frozen=True)
class LoadOptions:
    """What loaders need beyond the path: passwords to try on encrypted PDFs, and the OCR
    engine for scanned pages and images (None: OCR off)."""

    passwords: tuple[str, ...] = ()
    ocr: OcrEngine | None = None
    ocr_max_pages: int = 500
    on_page: PageFn | None = None  # OCR progress of the file being read


Loader = Callable[[Path, LoadOptions], Document]


def _pdf(path: Path, options: LoadOptions) -> Document:
    from kbqa.ingest.pdf import load_pdf

    return load_pdf(path, options.passwords, options.ocr, options.ocr_max_pages,
                    options.on_page)


def _image(path: Path, options: LoadOptions) -> Document:
    from kbqa.ingest.ocr import load_image

    if options.ocr is None:
        raise IngestError("an image, and OCR is off (KBQA_OCR=off): turn it on to read the "
                          "text in images")
    return load_image(path, options.ocr, options.on_page)


def _office(path: Path, options: LoadOptions) -> Document:
    from kbqa.ingest.structured import load_structured

    if path.suffix.lower() in (".docx", ".pptx"):
        refuse_encrypted_office(path)
    return load_structured(path)


def _legacy_office(path: Path, options: LoadOptions) -> Document:
    from kbqa.ingest.legacy import load_legacy
    from kbqa.ingest.structured import has_libreoffice, load_structured

    return load_structured(path) if has_libreoffice() else load_legacy(path)


def _sheet(path: Path, options: LoadOptions) -> Document:
    from kbqa.ingest.tables import load_delimited, load_xls, load_xlsx

    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return load_xlsx(path)
    if suffix == ".xls":
        return load_xls(path)
    return load_delimited(path)


def _mail(path: Path, options: LoadOptions) -> Document:
    from kbqa.ingest.mail import load_eml, load_msg

    def nested(inner: Path) -> Document:
        return load(inner, options)

    return load_msg(path, nested) if path.suffix.lower() == ".msg" else load_eml(path, nested)


def _plain(loader: Callable[[Path], Document]) -> Loader:
    return lambda path, _options: loader(path)


LOADERS: dict[str, Loader] = {
    ".txt": _plain(load_text),
    ".text": _plain(load_text),
    ".log": _plain(load_text),
    ".md": _plain(load_markdown),
    ".markdown": _plain(load_markdown),
    ".pdf": _pdf,
    **{suffix: _office for suffix in (".docx", ".pptx", ".odt", ".epub", ".rtf", ".html",
                                      ".htm", ".xhtml", ".xml")},
    ".doc": _legacy_office,
    ".ppt": _legacy_office,
    **{suffix: _sheet for suffix in (".csv", ".tsv", ".tab", ".xlsx", ".xlsm", ".xls")},
    ".eml": _mail,
    ".msg": _mail,
    **{suffix: _image for suffix in IMAGE_SUFFIXES},
}


def supported_suffixes() -> list[str]:
    return sorted(LOADERS)


def load(path: Path, options: LoadOptions | None = None) -> Document:
    """Load one file by its suffix; raises IngestError naming the reason."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(
            f"unsupported file type {path.suffix or '(no suffix)'!r}: "
            f"kbqa reads {', '.join(supported_suffixes())}"
        )
    try:
        return loader(path, options or LoadOptions())
    except IngestError:
        raise
    except MemoryError:
        raise IngestError("too large to load in memory: split the file") from None
    except RecursionError:
        raise IngestError("nested too deeply to parse: re-save it in its program") from None
    except OSError as exc:
        raise IngestError(f"cannot read the file ({exc.strerror or exc})") from None
