"""One writer at a time: an advisory lock file that a killed process releases by itself."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kbqa.errors import IngestLocked


@contextmanager
def writer_lock(
    folder: Path, timeout_s: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the knowledge base's write lock; wait up to `timeout_s` for another writer."""
    import fcntl  # POSIX; the kernel drops the lock when its holder dies, even by kill -9

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ingest.lock"
    handle = path.open("a+")
    deadline = time.monotonic() + timeout_s
    told = False
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                if time.monotonic() >= deadline:
                    raise IngestLocked(
                        f"another ingest ({holder}) is writing to {folder}; wait for it to "
                        "finish and run this again (KBQA_LOCK_TIMEOUT_S sets how long to wait)"
                    ) from None
                if on_wait and not told:
                    on_wait(f"waiting for another ingest ({holder}) to finish…")
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
