"""Files handed to the chat: saved under the knowledge base's uploads/ folder, zip archives
unpacked there safely (no path escapes, no zip bombs), for the ingest that follows."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kbqa.domain import Failure

UPLOADS_DIR = "uploads"
# An archive may unpack to at most this many times the upload limit, and this many files.
MAX_UNPACK_RATIO = 4
MAX_ARCHIVE_FILES = 5000


@dataclass
class Saved:
    """What was written (to ingest next) and what was refused, by name and reason."""

    paths: list[Path] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


def safe_name(name: str) -> str:
    """The last path part of an uploaded name, so it cannot leave the uploads folder.

    Example: safe_name("../../etc/passwd") == "passwd"; safe_name("C:\\\\a\\\\b.txt") == "b.txt"
    """
    base = PurePosixPath(name.replace("\\", "/")).name.strip()
    return base if base not in ("", ".", "..") else "upload"


def save_uploads(files: list[tuple[str, bytes]], folder: Path, limit_bytes: int) -> Saved:
    """Write each upload into `folder`; a .zip becomes a sub-folder with its contents."""
    saved = Saved()
    folder.mkdir(parents=True, exist_ok=True)
    for raw_name, data in files:
        name = safe_name(raw_name)
        if len(data) > limit_bytes:
            saved.failed.append(Failure(name, f"larger than the upload limit of "
                                              f"{limit_bytes // 2**20} MiB: raise "
                                              "KBQA_MAX_UPLOAD_MB or add it with make ingest"))
            continue
        target = folder / name
        if name.lower().endswith(".zip"):
            target.write_bytes(data)
            unpacked = folder / Path(name).stem
            existed = unpacked.exists()
            try:
                saved.paths.extend(unpack_zip(target, unpacked, limit_bytes * MAX_UNPACK_RATIO))
            except (zipfile.BadZipFile, ValueError, OSError) as exc:
                if not existed:  # nothing half-unpacked stays behind
                    shutil.rmtree(unpacked, ignore_errors=True)
                saved.failed.append(Failure(name, f"could not unpack the archive ({exc}): "
                                                  "check it opens on your computer"))
            finally:
                target.unlink(missing_ok=True)
            continue
        target.write_bytes(data)
        saved.paths.append(target)
    return saved


def unpack_zip(archive: Path, destination: Path, max_bytes: int) -> list[Path]:
    """The archive's files under `destination`, folders kept; entries that would land
    outside it, hidden files and macOS metadata are skipped. Raises ValueError when the
    archive would unpack to more than `max_bytes` or MAX_ARCHIVE_FILES files."""
    with zipfile.ZipFile(archive) as bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        if len(members) > MAX_ARCHIVE_FILES:
            raise ValueError(f"{len(members)} files, more than {MAX_ARCHIVE_FILES}")
        if sum(m.file_size for m in members) > max_bytes:
            raise ValueError(f"it unpacks to more than {max_bytes // 2**20} MiB")
        root = destination.resolve()
        written: list[Path] = []
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if (not parts or parts[0] in ("/", "__MACOSX") or ".." in parts
                    or any(p.startswith(".") for p in parts)):
                continue
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(root):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(member) as source, target.open("wb") as sink:
                copied = 0
                while block := source.read(1 << 20):
                    copied += len(block)
                    if copied > member.file_size:  # the header lied about the size
                        raise ValueError(f"{member.filename} is larger than its header says")
                    sink.write(block)
            written.append(target)
        return written
