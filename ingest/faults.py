"""A test-only hook: kill this process at a named point of the commit protocol.

The crash tests set KBQA_TEST_KILL_AT to one of KILL_POINTS and check that what a `kill -9`
at exactly that point leaves behind is a readable knowledge base. Unset (always, outside
those tests), a point costs one dictionary look-up per commit.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "KBQA_TEST_KILL_AT"
KILL_POINTS = (
    "before-vectors",  # rows written in the open transaction, no vector file yet
    "after-vectors",   # the new generation's files on disk, the transaction not committed
    "after-commit",    # committed; the superseded generation's files not yet cleaned up
)


def kill_point(name: str) -> None:
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
