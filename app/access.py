"""Who may reach the chat: this machine only, unless a password guards it."""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kbqa.errors import SettingError


def is_loopback(address: str) -> bool:
    """Example: is_loopback("127.0.0.1") and not is_loopback("0.0.0.0")"""
    if address.strip().lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(address: str, password: str) -> None:
    """Refuse to serve documents beyond this machine without a password."""
    if not is_loopback(address) and not password:
        raise SettingError(
            f"serving on {address} would let anyone on the network read your documents: set "
            "an access password (KBQA_UI_PASSWORD=...) or serve on 127.0.0.1 (the default)")


class LoginThrottle:
    """Wrong passwords slow the login down, for every session of the server (a guesser opens
    as many as it likes): after `free_tries` failures in a row, a try is accepted only
    2, 4, 8 ... seconds (at most `max_wait_s`) after the last failure; a success resets."""

    def __init__(self, free_tries: int = 3, max_wait_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_tries = free_tries
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._failures = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """Seconds before the next try is accepted (0: now)."""
        with self._lock:
            extra = self._failures - self.free_tries
            if extra < 0:
                return 0.0
            delay = min(2.0 ** (extra + 1), self.max_wait_s)
            return max(0.0, self._last + delay - self._clock())

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._last = self._clock()

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0


def password_ok(given: str, expected: str) -> bool:
    """Constant-time comparison, so the check does not leak the password's prefix."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"),
                                                   expected.encode("utf-8"))


@dataclass(frozen=True)
class DiskScope:
    """What the browser may name on the server's disk. On this machine's own chat, any
    folder and model file; once served beyond loopback (with the password), only the
    uploads folder and the folders the server's owner listed (KBQA_INGEST_FOLDERS) to
    ingest, and .gguf files in the models folder: whoever has the password must not turn
    answers into a reader of the server's whole file system."""

    exposed: bool
    ingest_roots: tuple[Path, ...] = ()
    models_dir: Path = Path()

    @classmethod
    def of(cls, address: str, uploads: Path, ingest_folders: Sequence[str],
           models_dir: Path) -> DiskScope:
        roots = (uploads, *(Path(f).expanduser() for f in ingest_folders))
        return cls(not is_loopback(address), tuple(r.resolve() for r in roots),
                   models_dir.expanduser().resolve())

    @property
    def within(self) -> tuple[Path, ...] | None:
        """What an ingest started from the browser is limited to (None: no limit)."""
        return self.ingest_roots if self.exposed else None

    def folder_problem(self, folder: Path) -> str:
        """'' when the folder may be ingested, else why not and what to do."""
        if not self.exposed or _inside(folder, self.ingest_roots):
            return ""
        listed = ", ".join(str(r) for r in self.ingest_roots)
        return (f"{folder} is not open to ingest: this chat is served to the network, so it "
                f"reads only from {listed}. Upload the files instead, or ask whoever runs "
                "kbqa to add the folder to KBQA_INGEST_FOLDERS.")

    def model_problem(self, model: Path) -> str:
        """'' when the model file may be chosen here, else why not and what to do."""
        if not self.exposed or _inside(model, (self.models_dir,)):
            return ""
        return (f"{model} is outside the models folder: this chat is served to the network, "
                f"so it loads chat models only from {self.models_dir}. Copy the .gguf file "
                "there on the server, or set KBQA_MODEL where kbqa is started.")


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    """Is `path`, with links and '..' resolved, one of `roots` or below one?"""
    resolved = path.expanduser().resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)
