"""Word 97-2003 (.doc) and PowerPoint 97-2003 (.ppt) without LibreOffice.

unstructured converts these through `soffice`, which most machines lack. Their text is
reachable with olefile alone: a .doc keeps it in a piece table ([MS-DOC] 2.8.35), a .ppt in
text atoms grouped per slide ([MS-PPT] 2.4.14). Formatting is lost; the words are not.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

from kbqa.domain import Document, Section
from kbqa.errors import IngestError

_RESAVE = "open it in Word or PowerPoint (or LibreOffice) and save it as .docx/.pptx"
_FIELD_CODE = re.compile(r"\x13[^\x13\x14\x15]*\x14?|\x15")


def _open(path: Path) -> Any:
    import olefile

    if not olefile.isOleFile(str(path)):
        raise IngestError(f"not an Office 97-2003 file (corrupt, or another format under a "
                          f"{path.suffix} name): {_RESAVE}")
    return olefile.OleFileIO(str(path))


def doc_text(word: bytes, table: bytes) -> str:
    """The main text of a .doc from its WordDocument and table streams (the piece table)."""
    ccp_text = struct.unpack_from("<i", word, 0x4C)[0]
    fc_clx, lcb_clx = struct.unpack_from("<II", word, 0x1A2)
    clx = table[fc_clx:fc_clx + lcb_clx]
    pos = 0
    while pos < len(clx) and clx[pos] == 0x01:  # Prc entries come before the piece table
        pos += 3 + struct.unpack_from("<H", clx, pos + 1)[0]
    if pos >= len(clx) or clx[pos] != 0x02:
        raise IngestError(f"the .doc piece table is missing (damaged file): {_RESAVE}")
    lcb = struct.unpack_from("<I", clx, pos + 1)[0]
    plc = clx[pos + 5:pos + 5 + lcb]
    pieces = (lcb - 4) // 12
    cps = struct.unpack_from(f"<{pieces + 1}I", plc, 0)
    out: list[str] = []
    remaining = ccp_text
    for i in range(pieces):
        if remaining <= 0:
            break
        fc = struct.unpack_from("<I", plc, 4 * (pieces + 1) + 8 * i + 2)[0]
        count = min(cps[i + 1] - cps[i], remaining)
        if fc & 0x40000000:  # compressed: one cp1252 byte per character
            start = (fc & ~0x40000000) // 2
            out.append(word[start:start + count].decode("cp1252", errors="replace"))
        else:
            out.append(word[fc:fc + 2 * count].decode("utf-16-le", errors="replace"))
        remaining -= count
    return clean_doc_text("".join(out))


def clean_doc_text(raw: str) -> str:
    """Word's control characters -> plain text: field codes dropped, cells and paragraphs
    to separators.

    Example: clean_doc_text("a\\x13 HYPERLINK x \\x14b\\x15\\rc") == "ab\\nc"
    """
    text = _FIELD_CODE.sub("", raw)
    text = text.replace("\x07\x07", "\n").replace("\x07", " | ").replace("\x0c", "\n\n")
    text = text.replace("\r", "\n").replace("\x0b", "\n")
    return re.sub(r"[\x00-\x08\x0e-\x1f]", "", text)


def load_doc(path: Path) -> Document:
    with _open(path) as ole:
        if not ole.exists("WordDocument"):
            raise IngestError(f"no WordDocument stream: not a Word file. {_RESAVE}")
        word = ole.openstream("WordDocument").read()
        flags = struct.unpack_from("<H", word, 0x0A)[0]
        if flags & 0x0100:
            raise IngestError("encrypted (password-protected): save a copy without the "
                              "password, then ingest that copy")
        table_name = "1Table" if flags & 0x0200 else "0Table"
        if not ole.exists(table_name):
            raise IngestError(f"the {table_name} stream is missing (damaged file): {_RESAVE}")
        table = ole.openstream(table_name).read()
    try:
        text = doc_text(word, table)
    except struct.error:
        raise IngestError(f"the .doc structure is damaged: {_RESAVE}") from None
    paragraphs = [p.strip() for p in text.split("\n")]
    body = "\n\n".join(p for p in paragraphs if p)
    if not body:
        raise IngestError("no text in the document: nothing to index")
    return Document(source=str(path), sections=(Section(text=body),), kind="doc")


_SLIDE_LIST, _SLIDE_PERSIST = 0x0FF0, 0x03F3
_TEXT_CHARS, _TEXT_BYTES = 0x0FA0, 0x0FA8
_SLIDE, _NOTES, _MAIN_MASTER = 0x03EE, 0x03F0, 0x03F8


def ppt_slides(stream: bytes) -> list[list[str]]:
    """Text per slide: the outline text kept in SlideListWithText, then text boxes found
    inside each Slide container, in the order the slides were written."""
    outline: list[list[str]] = []
    boxes: list[list[str]] = []

    def text_of(kind: int, body: bytes) -> str:
        return body.decode("utf-16-le" if kind == _TEXT_CHARS else "cp1252", errors="replace")

    def walk(start: int, end: int, context: int, bucket: list[str] | None) -> None:
        pos = start
        while pos + 8 <= end:
            ver_inst, kind, length = struct.unpack_from("<HHI", stream, pos)
            body_start, body_end = pos + 8, min(pos + 8 + length, end)
            if kind in (_NOTES, _MAIN_MASTER):
                pass  # masters repeat placeholder text; notes are not slide content
            elif kind == _SLIDE_LIST and ver_inst >> 4 == 0:
                walk(body_start, body_end, _SLIDE_LIST, None)
            elif kind == _SLIDE:
                boxes.append([])
                walk(body_start, body_end, _SLIDE, boxes[-1])
            elif kind == _SLIDE_PERSIST and context == _SLIDE_LIST:
                outline.append([])
            elif kind in (_TEXT_CHARS, _TEXT_BYTES):
                target = bucket if bucket is not None else (outline[-1] if outline else None)
                if target is not None:
                    target.append(text_of(kind, stream[body_start:body_end]))
            elif ver_inst & 0x0F == 0x0F:  # any other container: look inside
                walk(body_start, body_end, context, bucket)
            pos = body_start + length
    walk(0, len(stream), 0, None)
    slides = []
    for number in range(max(len(outline), len(boxes))):
        texts = (outline[number] if number < len(outline) else []) + \
                (boxes[number] if number < len(boxes) else [])
        seen: dict[str, None] = {}
        for text in texts:
            line = " ".join(text.replace("\r", "\n").split(" ")).strip()
            if line and line not in seen:
                seen[line] = None
        slides.append(list(seen))
    return slides


def load_ppt(path: Path) -> Document:
    with _open(path) as ole:
        if not ole.exists("PowerPoint Document"):
            raise IngestError(f"no PowerPoint Document stream: not a .ppt file. {_RESAVE}")
        if ole.exists("EncryptedSummary"):
            raise IngestError("encrypted (password-protected): save a copy without the "
                              "password, then ingest that copy")
        stream = ole.openstream("PowerPoint Document").read()
    try:
        slides = ppt_slides(stream)
    except struct.error:
        raise IngestError(f"the .ppt structure is damaged: {_RESAVE}") from None
    sections = tuple(
        Section(text="\n".join(lines), page=number, heading=lines[0].split("\n")[0][:120],
                location=f"slide {number}")
        for number, lines in enumerate(slides, start=1) if lines
    )
    if not sections:
        raise IngestError("no text on any slide: nothing to index")
    return Document(source=str(path), sections=sections, kind="ppt")


def load_legacy(path: Path) -> Document:
    return load_doc(path) if path.suffix.lower() == ".doc" else load_ppt(path)
