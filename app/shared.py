"""The models one process shares between knowledge bases and sessions, each with one owner.

A server opens a `KnowledgeBase` per settings and serves many sessions from it; when the
settings change, a new one is opened while answers in flight finish on the old one. Both
must use the same loaded models (a chat model is a gigabyte) and never load one twice, and
the one llama.cpp context must be used by one question at a time, first come first served,
with each waiting question told its place in line.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kbqa.errors import ModelBusy

T = TypeVar("T")
WaitFn = Callable[[int], None]  # called with the questions ahead (0: this one's turn began)


class SharedModels:
    """Loaded models by what loads them (kind, file, threads ...): the same key gives the
    same object while anyone holds it, built once even when threads ask together. Held
    weakly, so a model no knowledge base uses any more is freed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
        self._building: dict[Hashable, threading.Lock] = {}
        self._lines: weakref.WeakKeyDictionary[Any, Line] = weakref.WeakKeyDictionary()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            if (found := self._loaded.get(key)) is not None:
                return found
            building = self._building.setdefault(key, threading.Lock())
        with building:  # others asking for the same model wait for this one load
            with self._lock:
                if (found := self._loaded.get(key)) is not None:
                    return found
            value = build()
            with self._lock:
                self._loaded[key] = value
                self._building.pop(key, None)
            return value

    def line(self, model: Any) -> Line:
        """The line of questions waiting for `model` (one per model object)."""
        with self._lock:
            line = self._lines.get(model)
            if line is None:
                line = self._lines[model] = Line()
            return line


@functools.cache
def process_models() -> SharedModels:
    """The process's one registry: knowledge bases opened without `models=` share it, so
    two `open_kb()` calls in one program load each model once, and one generator has one
    line whoever asks."""
    return SharedModels()


class Line:
    """Turns on one model, first come first served; a waiting turn hears its place."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()

    def __len__(self) -> int:
        """Turns taken or waiting."""
        with self._changed:
            return len(self._queue)

    @contextmanager
    def turn(self, on_wait: WaitFn | None = None, timeout_s: float = 600.0) -> Iterator[None]:
        """Hold the model for the body. `on_wait` hears the number of turns ahead each time
        it changes, and 0 when this turn begins; after `timeout_s` in line, ModelBusy."""
        ticket = object()
        started = time.monotonic()
        with self._changed:
            self._queue.append(ticket)
        try:
            reported = -1
            while True:
                with self._changed:
                    ahead = self._queue.index(ticket)
                    if ahead == reported:  # nothing moved: wait for a turn to end
                        left = started + timeout_s - time.monotonic()
                        if left <= 0:
                            raise ModelBusy(
                                f"the chat model is busy: {ahead} question(s) were still ahead "
                                f"of this one after {timeout_s:g} s. Ask again in a minute, "
                                "or raise KBQA_QUEUE_TIMEOUT_S")
                        self._changed.wait(min(left, 1.0))
                        continue
                reported = ahead
                if on_wait is not None:
                    on_wait(ahead)  # outside the lock: a slow listener holds up nobody
                if ahead == 0:
                    break
            yield
        finally:
            with self._changed:
                self._queue.remove(ticket)
                self._changed.notify_all()
