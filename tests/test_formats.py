"""Every format in ../shared/data/docs, dedup, attachments, passwords and concurrent ingests."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

DOCS = SHARED_DATA / "docs"
needs_docs = pytest.mark.skipif(not DOCS.is_dir(),
                                reason=f"{DOCS} is absent (benchmark data lives in ../shared)")


class HashEmbedder:
    """Deterministic bag-of-words vectors: the whole folder in seconds, no model.
    Real-model ingest is covered by the tests below and by test_ingest_search."""

    name = "hash-test"
    dim = 64

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def encode_queries(self, texts):
        return self.encode(texts)

    def count_tokens_batch(self, texts):
        return [self.count_tokens(t) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + sum(1 for c in text if ord(c) > 0x2E80)


@pytest.fixture(scope="module")
def whole_folder(tmp_path_factory: pytest.TempPathFactory):
    """Ingest every file under ../shared/data/docs once for the checks below."""
    if not DOCS.is_dir():
        pytest.skip(f"{DOCS} is absent (benchmark data lives in ../shared)")
    from kbqa.kb import KnowledgeBase
    from kbqa.settings import from_env

    home = tmp_path_factory.mktemp("all-docs")
    kb = KnowledgeBase(from_env(home=home), embedder=HashEmbedder())
    report = kb.ingest(DOCS)
    yield kb, report
    kb.close()


def chunks_of(kb, name: str):
    docs = [d for d in kb.documents() if d.path.endswith(name)]
    assert docs, f"{name} was not stored"
    return list(kb.store.iter_chunks(docs[0].document_id))


@needs_docs
def test_every_file_is_ingested_or_reported_with_a_reason(whole_folder) -> None:
    kb, report = whole_folder
    on_disk = {str(p.resolve()) for p in DOCS.rglob("*") if p.is_file()
               and not p.name.startswith(".")}
    accounted = set(report.added) | {f.path for f in report.failed}
    assert on_disk <= accounted, f"silently skipped: {sorted(on_disk - accounted)}"
    assert all(f.reason.strip() and ":" in f.reason for f in report.failed)
    stored = {d.path: d for d in kb.documents()}
    for path in report.added:
        doc = stored[path]
        assert doc.chunk_count > 0 or doc.same_as is not None, f"{path} stored no text"
    ratio = len(report.added) / len(on_disk)
    assert ratio > 0.8, report.summary()


@needs_docs
@pytest.mark.parametrize(("name", "reason"), [
    ("bad/encrypted.pdf", "encrypted: give the password with"),
    ("bad/zero-bytes.pdf", "empty file"),
    ("bad/random-bytes.pdf", "not a readable PDF"),
    ("bad/truncated.pdf", "not a readable PDF"),
    ("bad/not-really.docx", "not a readable DOCX"),
    ("bad/password_protected.xlsx", "encrypted (password-protected)"),
    ("bad/one-enormous-line.txt", "no readable words"),
    ("bad/invalid-utf8.txt", "invalid text"),
    ("pdf/imagemagick-lzw.pdf", "no text on any page, even by OCR"),  # a 10-pt picture
    ("text/empty.txt", "empty file"),
    ("text/fake-text-all-whitespace.txt", "no text"),
    ("mail/fake-encrypted.eml", "encrypted e-mail"),
    ("mail/signed-doc.p7s", "unsupported file type '.p7s'"),
])
def test_bad_files_get_one_line_with_the_reason(whole_folder, name: str, reason: str) -> None:
    _, report = whole_folder
    reasons = {f.path: f.reason for f in report.failed}
    path = str((DOCS / name).resolve())
    assert path in reasons, f"{name} was not reported"
    assert reasons[path].startswith(reason), reasons[path]


@needs_docs
def test_locations_are_kept_per_format(whole_folder) -> None:
    kb, _ = whole_folder
    slides = chunks_of(kb, "office/sample-presentation.pptx")
    assert any(c.location == "slide 2" and "first content slide" in c.text for c in slides)
    sheets = chunks_of(kb, "office/stanley-cups.xlsx")
    assert {c.location for c in sheets} == {"sheet Stanley Cups, rows 1-5",
                                             "sheet Stanley Cups Since 67, rows 1-5"}
    assert all(c.text.splitlines()[1] == "Team | Location | Stanley Cups" for c in sheets)
    pages = chunks_of(kb, "pdf/pdflatex-4-pages.pdf")
    assert sorted({c.page for c in pages}) == [1, 2, 3, 4]
    outline = chunks_of(kb, "pdf/pdflatex-outline.pdf")
    assert {c.heading for c in outline if c.page == 2} >= {"Foo"}
    docx = chunks_of(kb, "office/page-breaks.docx")
    assert {c.page for c in docx} >= {1, 2, 3}
    wide = chunks_of(kb, "text/csv-with-long-lines.csv")  # numbers without spaces are data
    assert wide and all(c.location.startswith("row") for c in wide)
    legacy = chunks_of(kb, "office/fake-power-point.ppt")
    assert legacy[0].location == "slide 1" and "Adding a Bullet Slide" in legacy[0].text
    words = " ".join(c.text for c in chunks_of(kb, "office/simple.doc"))
    assert "Parrots" in words and "my first thought" in words
    scanned = chunks_of(kb, "pdf/single_table.pdf")  # a table printed as an image: OCR
    assert scanned and {c.location for c in scanned} == {"page 1 (OCR)"}
    assert "chunks per document" in " ".join(c.text for c in scanned)


@needs_docs
def test_email_attachments_are_documents_of_their_own(whole_folder) -> None:
    kb, _ = whole_folder
    stored = {d.path for d in kb.documents()}
    message = str((DOCS / "mail/fake-email-attachment.eml").resolve())
    assert f"{message} › fake-attachment.txt" in stored
    body = " ".join(c.text for c in chunks_of(kb, "mail/fake-email-attachment.eml"))
    assert "From: Mallori Harrell" in body and "fake-attachment.txt" in body


def test_same_file_under_two_paths_is_stored_once(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    copy = docs / "copies"
    copy.mkdir()
    shutil.copy(docs / "team.txt", copy / "team-copy.txt")
    report = kb.ingest(docs)
    assert [Path(p).name for p, _ in report.duplicates] == ["team-copy.txt"]
    assert report.chunks_added == 0
    (docs / "team.txt").unlink()
    report = kb.ingest(docs)
    assert [Path(p).name for p in report.removed] == ["team.txt"]
    hit = kb.search("Who leads the Vireo research team?", k=1)[0]
    assert Path(hit.chunk.source).name == "team-copy.txt"
    assert kb.stats().chunks == len(kb.index())


def test_removing_a_file_is_immediate_and_keeps_the_rest(make_kb, docs: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    before = kb.stats().chunks
    removed = kb.remove(docs / "manuals")
    assert [Path(p).name for p in removed] == ["zephyr-manual.pdf"]
    assert kb.stats().chunks < before and kb.stats().chunks == len(kb.index())
    assert all("zephyr" not in h.chunk.source for h in kb.search("pump service", k=10))
    assert (docs / "manuals" / "zephyr-manual.pdf").exists()


def test_mail_attachment_is_searchable_and_goes_with_its_message(make_kb, tmp_path: Path
                                                                  ) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ana@example.org", "li@example.org", \
        "Boiler report"
    message.set_content("Please find the inspection notes attached.")
    message.add_attachment(b"The boiler in hall C was inspected by Teodora Vance on 3 May.",
                           maintype="text", subtype="plain", filename="inspection.txt")
    message.add_attachment(b"Hall D has no boiler; it is heated by the district network.",
                           maintype="text", subtype="plain", filename="inspection.txt")
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "report.eml").write_bytes(bytes(message))
    kb = make_kb()
    report = kb.ingest(folder)
    assert report.failed == []
    hit = kb.search("Who inspected the boiler in hall C?", k=1)[0]
    assert hit.chunk.source.endswith("report.eml › inspection.txt")
    assert {d.path.rsplit("/", 1)[-1] for d in kb.documents()} == {
        "report.eml", "report.eml › inspection.txt", "report.eml › inspection (2).txt"}
    # a copy of the message keeps its attachments when the original goes
    (folder / "copy.eml").write_bytes(bytes(message))
    (folder / "report.eml").unlink()
    report = kb.ingest(folder)
    assert [Path(p).name for p in report.removed] == ["report.eml"]
    hit = kb.search("Who inspected the boiler in hall C?", k=1)[0]
    assert hit.chunk.source.endswith("copy.eml › inspection.txt")
    assert kb.stats().chunks == len(kb.index())
    (folder / "copy.eml").unlink()
    kb.ingest(folder)
    assert kb.documents() == [] and len(kb.index()) == 0


@needs_docs
def test_encrypted_pdf_opens_with_the_password_given(make_kb) -> None:
    pdf = DOCS / "pdf" / "libreoffice-writer-password.pdf"
    kb = make_kb()
    assert kb.ingest(pdf).failed[0].reason.startswith("encrypted")
    kb = make_kb("with-password", pdf_passwords=("wrong", "openpassword"))
    report = kb.ingest(pdf)
    assert report.failed == [] and kb.search("Lorem ipsum", k=1)[0].chunk.page == 1


@needs_docs
def test_spreadsheet_rows_are_found_with_their_sheet(make_kb) -> None:
    kb = make_kb()
    kb.ingest([DOCS / "office" / "stanley-cups.xlsx",
               DOCS / "office" / "sample-presentation.pptx"])
    hits = kb.search("How many Stanley Cups have the Maple Leafs won?", k=2)
    assert {h.chunk.location for h in hits} == {"sheet Stanley Cups, rows 1-5",
                                                 "sheet Stanley Cups Since 67, rows 1-5"}
    assert any("Maple Leafs | TOR | 13" in h.chunk.text for h in hits)


def test_chinese_text_is_cut_at_sentence_ends(make_kb, tmp_path: Path) -> None:
    source = SHARED_DATA / "cmrc2018-trial.json"
    if not source.is_file():
        pytest.skip(f"{source} is absent (benchmark data lives in ../shared)")
    data = json.loads(source.read_text(encoding="utf-8"))
    paragraphs = [p["context"] for article in data["data"][:6] for p in article["paragraphs"]]
    (tmp_path / "zh.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    kb = make_kb()
    kb.ingest(tmp_path / "zh.txt")
    chunks = list(kb.store.iter_chunks())
    assert len(chunks) > 5
    ends = [c.text.rstrip()[-1] for c in chunks]
    at_sentence_end = sum(e in "。！？；”」）)." for e in ends)
    assert at_sentence_end >= 0.9 * len(chunks), ends


def test_a_second_ingest_waits_then_refuses_clearly(make_kb, docs: Path) -> None:
    from kbqa.errors import IngestLocked
    from kbqa.ingest.lock import writer_lock

    kb = make_kb(lock_timeout_s=0.5)
    with writer_lock(kb.home, 1.0), pytest.raises(IngestLocked, match="another ingest"):
        kb.ingest(docs)
    assert kb.ingest(docs).ok  # once the other writer is gone, it goes ahead
