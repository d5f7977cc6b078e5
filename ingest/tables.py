"""Spreadsheets and delimited text: CSV/TSV, XLSX and XLS, kept as readable row groups.

Each group of rows becomes a `table` Section that starts with its header row and says
where it is ("sheet Sales, rows 2-31"), so a cited chunk can be found in the file. Sheets
are streamed row by row (openpyxl read-only), so memory does not grow with the sheet.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from kbqa.domain import Document, Section
from kbqa.errors import IngestError

GROUP_CHARS = 700  # rows per section: about one chunk of text, so locations stay exact


def render_cell(value: Any) -> str:
    """A cell as people write it: 3.0 -> "3", dates in ISO form, no stray whitespace.

    Example: render_cell(2.50) == "2.5"; render_cell(None) == ""
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.10g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return " ".join(str(value).split())


def render_row(cells: Iterable[Any]) -> str:
    """Cells joined by " | ", trailing empty cells dropped.

    Example: render_row(["a", None, 3.0, None]) == "a |  | 3"
    """
    values = [render_cell(c) for c in cells]
    while values and not values[-1]:
        values.pop()
    return " | ".join(values)


def row_groups(rows: Iterable[tuple[int, str]], where: str) -> Iterator[Section]:
    """Numbered rows -> table sections; a blank row ends a table and the next row is read
    as the header of a new one (sheets often hold several tables).

    Example: [s.location for s in row_groups([(1, "h"), (2, "a")], "sheet S")] ==
        ["sheet S, rows 1-2"]
    """
    header: str | None = None
    body: list[tuple[int, str]] = []
    last_number = 0

    def emit() -> Iterator[Section]:
        if header is None:
            return
        if not body:
            yield _section(where, header, [], header_row)
            return
        group: list[tuple[int, str]] = []
        size = 0
        for number, line in body:
            if group and size + len(line) > GROUP_CHARS:
                yield _section(where, header, group, header_row)
                group, size = [], 0
            group.append((number, line))
            size += len(line)
        if group:
            yield _section(where, header, group, header_row)

    header_row = 0
    for number, line in rows:
        if not line.strip(" |"):
            continue
        if header is not None and number > last_number + 1:  # a gap: a new table starts
            yield from emit()
            header, body = None, []
        if header is None:
            header, header_row = line, number
        else:
            body.append((number, line))
        last_number = number
    yield from emit()


def _section(where: str, header: str, group: list[tuple[int, str]], header_row: int
             ) -> Section:
    first = group[0][0] if group else header_row
    last = group[-1][0] if group else header_row
    if group and first == header_row + 1:
        first = header_row  # the first group shows the header row itself
    span = f"row {first}" if first == last else f"rows {first}-{last}"
    location = f"{where}, {span}" if where else span
    text = "\n".join([header, *(line for _, line in group)])
    return Section(text=text, location=location, table=True)


def _delimiter(sample: str, suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: sample.count(d) for d in ",;\t|"}
        return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def load_delimited(path: Path) -> Document:
    """CSV/TSV in any encoding; the delimiter is sniffed (comma, semicolon, tab, pipe)."""
    from kbqa.ingest.loaders import read_text

    text = read_text(path, prose=False)  # rows of numbers have no spaces, and are fine
    delimiter = _delimiter(text[:65536], path.suffix.lower())
    csv.field_size_limit(1 << 30)
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        numbered = [(n, render_row(row)) for n, row in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise IngestError(f"not readable as a table ({exc}); check the delimiter and quotes"
                          ) from None
    sections = list(row_groups(numbered, ""))
    if not sections:
        raise IngestError("no rows with text: nothing to index")
    return Document(source=str(path), sections=tuple(sections), kind=path.suffix.lower()[1:])


def load_xlsx(path: Path) -> Document:
    """Every worksheet, streamed; formulas give their last computed values."""
    from kbqa.ingest.loaders import refuse_encrypted_office

    refuse_encrypted_office(path)
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise IngestError(f"not a readable XLSX workbook ({type(exc).__name__}: {exc}); "
                          "open and re-save it in a spreadsheet program") from None
    sections: list[Section] = []
    try:
        for number, sheet in enumerate(book.worksheets, start=1):
            if hasattr(sheet, "reset_dimensions"):  # a stray far-away cell must not pad
                sheet.reset_dimensions()            # every row out to column XFD
            rows = ((n, render_row(r)) for n, r in
                    enumerate(sheet.iter_rows(values_only=True), start=1))
            sections.extend(_with_page(row_groups(rows, f"sheet {sheet.title}"), number))
    except Exception as exc:  # sheets are read lazily: a damaged one fails only here
        raise IngestError(f"not a readable XLSX workbook ({type(exc).__name__}: {exc}); "
                          "open and re-save it in a spreadsheet program") from None
    finally:
        book.close()
    if not sections:
        raise IngestError("every sheet is empty: nothing to index")
    return Document(source=str(path), sections=tuple(sections), kind="xlsx")


def load_xls(path: Path) -> Document:
    """Legacy Excel 97-2003 workbooks through xlrd."""
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), on_demand=True)
    except Exception as exc:
        reason = "encrypted (password-protected)" if "encrypt" in str(exc).lower() else \
            f"not a readable XLS workbook ({type(exc).__name__}: {exc})"
        raise IngestError(f"{reason}: open it in a spreadsheet program and save a copy as "
                          ".xlsx without a password") from None
    sections: list[Section] = []
    try:
        for number in range(book.nsheets):
            sheet = book.sheet_by_index(number)
            rows = ((n + 1, render_row(sheet.row_values(n))) for n in range(sheet.nrows))
            sections.extend(_with_page(row_groups(rows, f"sheet {sheet.name}"), number + 1))
    finally:
        book.release_resources()
    if not sections:
        raise IngestError("every sheet is empty: nothing to index")
    return Document(source=str(path), sections=tuple(sections), kind="xls")


def _with_page(sections: Iterable[Section], sheet_number: int) -> Iterator[Section]:
    """The sheet's position doubles as its page number, for filters and the UI."""
    for section in sections:
        yield replace(section, page=sheet_number)
