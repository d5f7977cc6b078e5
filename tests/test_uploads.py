"""Uploaded files and zips land inside the uploads folder, or are refused with a reason."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from kbqa.uploads import safe_name, save_uploads


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(("raw", "name"), [
    ("notes.txt", "notes.txt"), ("../../etc/passwd", "passwd"), ("C:\\docs\\a b.pdf", "a b.pdf"),
    ("/abs/path.md", "path.md"), ("", "upload"), ("..", "upload"), ("a/.", "a")])
def test_upload_names_cannot_leave_the_folder(raw: str, name: str) -> None:
    assert safe_name(raw) == name


def test_a_zip_unpacks_into_its_own_folder_without_escapes(tmp_path: Path) -> None:
    archive = zipped({"manuals/pump.txt": b"The pump", "readme.md": b"# Hi",
                      "../escape.txt": b"no", "__MACOSX/._pump.txt": b"meta",
                      ".hidden/secret.txt": b"no", "a/../../b.txt": b"no"})
    uploads = tmp_path / "uploads"
    saved = save_uploads([("bundle.zip", archive), ("../note.txt", b"note")], uploads, 2**20)
    names = sorted(p.relative_to(uploads).as_posix() for p in saved.paths)
    assert names == ["bundle/manuals/pump.txt", "bundle/readme.md", "note.txt"]
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "b.txt").exists()
    assert not (uploads / "bundle.zip").exists()  # only its contents are kept
    assert saved.failed == []


def test_oversized_uploads_bombs_and_broken_zips_are_refused_by_name(tmp_path: Path) -> None:
    bomb = zipped({"zeros.txt": b"0" * (5 * 2**20)})  # compresses to a few KiB
    saved = save_uploads([("bomb.zip", bomb), ("broken.zip", b"PK\x03\x04 not really"),
                          ("ok.txt", b"fine")], tmp_path / "uploads", 1024 * 1024)
    reasons = {f.path: f.reason for f in saved.failed}
    assert [p.name for p in saved.paths] == ["ok.txt"]
    assert set(reasons) == {"bomb.zip", "broken.zip"}
    assert "unpacks to more than" in reasons["bomb.zip"]
    assert "check it opens" in reasons["broken.zip"]
    small_limit = save_uploads([("big.pdf", b"x" * 2048)], tmp_path / "u2", 1024)
    assert small_limit.paths == []
    assert "KBQA_MAX_UPLOAD_MB" in small_limit.failed[0].reason
