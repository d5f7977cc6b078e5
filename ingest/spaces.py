"""Vector spaces: which embedder embeds a chunk, and which one scores it for a query.

With the automatic embedder one knowledge base may hold English and Chinese. The packaged
MiniLM (strong on English, blind to Chinese) embeds Latin-script chunks; the multilingual
USE embeds CJK chunks and, once the knowledge base holds any, every chunk, so that a
question in one language can reach a passage in the other. A query is scored per chunk
by the space that suits the query's language and holds the chunk (`preference`). What a
chunk gets depends on its own text and on whether the base holds CJK text, never on the
order files arrive in: a base that turns mixed has its earlier chunks embedded by USE too
(the pipeline's backfill). One explicit embedder (a setting) means one space, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kbqa.ingest.embed import CJK_SHARE_FOR_MULTILINGUAL, MULTILINGUAL_NAMES, Embedder, cjk_share
from kbqa.ingest.index import VectorIndex
from kbqa.settings import DEFAULT_EMBEDDER, MULTILINGUAL_EMBEDDER

LATIN_SPACE = DEFAULT_EMBEDDER
CROSS_SPACE = MULTILINGUAL_EMBEDDER


@dataclass(frozen=True)
class Space:
    """One vector space as search sees it: its embedder and its committed vectors."""

    name: str
    embedder: Embedder
    index: VectorIndex


def is_cjk_text(text: str) -> bool:
    """Text that MiniLM cannot read: a real part of its letters are CJK."""
    return cjk_share([text]) >= CJK_SHARE_FOR_MULTILINGUAL


def auto_spaces(text: str, cross: bool) -> tuple[str, ...]:
    """Example: auto_spaces("The pump", cross=True) == (LATIN_SPACE, CROSS_SPACE). The
    spaces a chunk gets a vector in when the embedder is automatic; `cross`: the knowledge
    base holds CJK text, so every chunk also gets a multilingual vector."""
    if is_cjk_text(text):
        return (CROSS_SPACE,)
    return (LATIN_SPACE, CROSS_SPACE) if cross else (LATIN_SPACE,)


def preference(names: Sequence[str], language: str) -> list[str]:
    """Example: preference(["use-multilingual-v3", "all-MiniLM-L6-v2"], "en")[0] ==
    "all-MiniLM-L6-v2". The order in which spaces score a chunk for a query in `language`:
    the multilingual one first for Chinese, last for anything else (weaker on English)."""
    multilingual = [n for n in names if n in MULTILINGUAL_NAMES]
    others = [n for n in names if n not in MULTILINGUAL_NAMES]
    return multilingual + others if language == "zh" else others + multilingual


class Embedders:
    """The embedders an ingest uses. Automatic (`load` given): chunks are spread over
    spaces by `auto_spaces`, each embedder loaded on first use; else `primary` embeds all."""

    def __init__(self, primary: Embedder, load: Callable[[str], Embedder] | None = None,
                 always_cross: bool = False) -> None:
        self.primary = primary
        self._load = load
        self.always_cross = always_cross and load is not None  # multilingual for all
        self._loaded = {primary.name: primary}
        self._lock = threading.Lock()  # the staging thread and the main one both load

    @property
    def auto(self) -> bool:
        return self._load is not None

    def get(self, name: str) -> Embedder:
        with self._lock:
            if name not in self._loaded:
                if self._load is None:
                    raise KeyError(f"no embedder {name!r} in a single-embedder knowledge base")
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def spaces_of(self, text: str, cross: bool) -> tuple[str, ...]:
        return auto_spaces(text, cross) if self.auto else (self.primary.name,)

    def for_document(self, text: str) -> Embedder:
        """The embedder whose tokens size a document's chunks: the one that embeds it."""
        if not self.auto:
            return self.primary
        return self.get(CROSS_SPACE if is_cjk_text(text) else LATIN_SPACE)
