"""E-mail: .eml (the standard library's parser) and Outlook .msg (python-oxmsg).

A message becomes one document (a header section, then the body); each attachment in a
format kbqa reads becomes a document of its own, named "mail.eml › report.pdf", so it can be
cited, found by its own name and replaced with its message.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.message import Message
from pathlib import Path, PurePath

from kbqa.domain import Attachment, Document, Section
from kbqa.errors import IngestError

ATTACHMENT_SEPARATOR = " › "
_ENCRYPTED_TYPES = {"multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime",
                    "application/pgp-encrypted"}
_ENCRYPTED = ("encrypted e-mail (S/MIME or PGP): decrypt it in your mail program, save the "
              "decrypted copy and ingest that")

Loader = Callable[[Path], Document]


@dataclass(frozen=True)
class Mail:
    """What kbqa reads from a message, whatever its container format."""

    headers: list[tuple[str, str]]
    subject: str
    body: str
    html: str
    files: list[tuple[str, bytes]]


def header_section(mail: Mail) -> Section:
    """From/To/Date/Subject lines and the attachment names: what people search mail by.

    Example: header_section(Mail([("From", "a@b")], "Hi", "", "", [])).text ==
        "From: a@b\\nSubject: Hi"
    """
    lines = [f"{name}: {value}" for name, value in mail.headers if value.strip()]
    if mail.subject and not any(name == "Subject" for name, _ in mail.headers):
        lines.append(f"Subject: {mail.subject}")
    if mail.files:
        lines.append("Attachments: " + ", ".join(name for name, _ in mail.files))
    return Section(text="\n".join(lines), heading=mail.subject, table=False)


def mail_document(path: Path, mail: Mail, load_by_suffix: Loader, kind: str) -> Document:
    """The message as sections, its attachments loaded as documents of their own."""
    sections = [header_section(mail)]
    body = mail.body.strip()
    if body:
        sections.append(Section(text=body, heading=mail.subject))
    elif mail.html.strip():
        sections.extend(_html_sections(mail.html, mail.subject))
    attachments = tuple(_attachments(path, mail.files, load_by_suffix))
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise IngestError("an empty message (no headers, no text): nothing to index")
    return Document(source=str(path), sections=tuple(sections), kind=kind,
                    attachments=attachments)


def _html_sections(html: str, subject: str) -> list[Section]:
    from kbqa.ingest.structured import _unstructured_ready, blocks_to_sections, to_blocks

    _unstructured_ready()
    from unstructured.partition.html import partition_html

    try:
        elements = partition_html(text=html)
    except Exception:
        return []
    sections = blocks_to_sections(to_blocks(elements))
    return [replace(s, heading=" > ".join(p for p in (subject, s.heading) if p))
            for s in sections]


def attachment_files(path: Path, files: Sequence[tuple[str, bytes]]
                     ) -> list[tuple[str, bytes]]:
    """(source name, bytes) of the attachments in a format kbqa reads; the name is what
    citations show ("mail.eml › report.pdf"; a second "report.pdf" is "report (2).pdf")."""
    from kbqa.ingest.loaders import LOADERS

    named: list[tuple[str, bytes]] = []
    for number, (name, data) in enumerate(files, start=1):
        safe = PurePath(name.replace("\\", "/")).name or f"attachment-{number}"
        if Path(safe).suffix.lower() not in LOADERS or not data:
            continue  # pictures, audio, signatures: named in the header section only
        source = f"{path}{ATTACHMENT_SEPARATOR}{safe}"
        if any(known == source for known, _ in named):  # two attachments, one name
            source = f"{path}{ATTACHMENT_SEPARATOR}{Path(safe).stem} ({number})" \
                     f"{Path(safe).suffix}"
        named.append((source, data))
    return named


def _attachments(path: Path, files: Sequence[tuple[str, bytes]], load_by_suffix: Loader
                 ) -> list[Attachment]:
    found: list[Attachment] = []
    with tempfile.TemporaryDirectory(prefix="kbqa-attachment-") as tmp:
        for number, (source, data) in enumerate(attachment_files(path, files), start=1):
            digest = hashlib.sha256(data).hexdigest()
            # the attachment's own name: the message's may already fill a file name
            target = Path(tmp) / f"{number}-{source.rsplit(ATTACHMENT_SEPARATOR, 1)[-1]}"
            target.write_bytes(data)
            try:
                loaded = load_by_suffix(target)
            except IngestError as exc:
                found.append(Attachment(name=source, sha256=digest, error=str(exc)))
                continue
            found.append(Attachment(name=source, sha256=digest,
                                    document=replace(loaded, source=source)))
    return found


def attachment_bytes(path: Path, source: str) -> bytes | None:
    """The bytes of the attachment a citation names (to show a scanned attachment's page),
    read again from its message; None when the message is gone or no longer holds it."""
    try:
        mail = read_msg(path) if path.suffix.lower() == ".msg" else \
            read_eml(_eml_bytes(path.read_bytes()))
    except Exception:  # a message moved, changed or no longer readable: no page to show
        return None
    return next((data for name, data in attachment_files(path, mail.files) if name == source),
                None)


# -- .eml ------------------------------------------------------------------------------------
def read_eml(data: bytes) -> Mail:
    message = email.message_from_bytes(data, policy=email.policy.default)
    if message.get_content_type() in _ENCRYPTED_TYPES:
        raise IngestError(_ENCRYPTED)
    headers = [(name, _header(message, name)) for name in ("From", "To", "Cc", "Date",
                                                            "Subject")]
    plain, html, files = "", "", []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        content_type = part.get_content_type()
        if content_type in _ENCRYPTED_TYPES:
            raise IngestError(_ENCRYPTED)
        if filename or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                files.append((filename or "attachment", payload))
        elif content_type == "text/plain" and not plain:
            plain = _text_of(part)
        elif content_type == "text/html" and not html:
            html = _text_of(part)
    return Mail(headers=headers, subject=_header(message, "Subject"), body=plain, html=html,
                files=files)


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header must not cost the message: its raw text then
        value = next((raw for key, raw in message.raw_items() if key.lower() == name.lower()),
                     None)
    return " ".join(str(value).split()) if value is not None else ""


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    try:  # valid UTF-8 is almost never an accident, whatever the header claims
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    charset = part.get_content_charset()
    if charset:
        try:
            return payload.decode(charset.replace("_", "-"))
        except (LookupError, UnicodeDecodeError):
            pass
    return _decoded(payload)


def _decoded(data: bytes) -> str:
    """Bytes of unknown encoding as text, or "" when they are not text at all."""
    from kbqa.ingest.loaders import decode_text

    try:
        return decode_text(data)
    except IngestError:
        return ""


def _eml_bytes(data: bytes) -> bytes:
    """The message as UTF-8 bytes when it was saved as UTF-16/32 or with a BOM."""
    if b"\x00" in data[:4096] or data[:3] == b"\xef\xbb\xbf":
        from kbqa.ingest.loaders import decode_text

        return decode_text(data).encode("utf-8")
    return data


def load_eml(path: Path, load_by_suffix: Loader) -> Document:
    data = path.read_bytes()
    if not data.strip():
        raise IngestError("empty file: nothing to index")
    return mail_document(path, read_eml(_eml_bytes(data)), load_by_suffix, "eml")


# -- .msg ------------------------------------------------------------------------------------
def read_msg(path: Path) -> Mail:
    try:
        from oxmsg import Message as OutlookMessage
    except ImportError:
        raise IngestError("python-oxmsg is missing: run `make setup`") from None
    try:
        message = OutlookMessage.load(str(path))
    except Exception as exc:
        raise IngestError(f"not a readable Outlook .msg file ({type(exc).__name__}: {exc}); "
                          "save the message again from Outlook") from None
    files = [(a.file_name or "attachment", a.file_bytes or b"") for a in message.attachments]
    if any((a.mime_type or "").lower() in _ENCRYPTED_TYPES or
           (a.file_name or "").lower().endswith((".p7m", ".pgp-encrypted"))
           for a in message.attachments) and not (message.body or "").strip():
        raise IngestError(_ENCRYPTED)
    raw = message.message_headers or {}
    headers = [("From", str(raw.get("From") or message.sender or "")),
               ("To", str(raw.get("To") or "")), ("Cc", str(raw.get("Cc") or "")),
               ("Date", str(raw.get("Date") or message.sent_date or "")),
               ("Subject", message.subject or "")]
    return Mail(headers=[(n, " ".join(v.split())) for n, v in headers],
                subject=message.subject or "", body=message.body or "",
                html=_html_text(message.html_body), files=files)


def load_msg(path: Path, load_by_suffix: Loader) -> Document:
    return mail_document(path, read_msg(path), load_by_suffix, "msg")


def _html_text(html: str | bytes | None) -> str:
    if html is None:
        return ""
    return _decoded(html) if isinstance(html, bytes) else html
