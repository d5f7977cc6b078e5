"""Pure result filters for `search(..., filters=...)`."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from kbqa.domain import Chunk
from kbqa.errors import SettingError

FILTER_KEYS = ("path", "type")


def validate_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Example: validate_filters({"type": "pdf"}) == {"type": "pdf"}"""
    if not filters:
        return {}
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise SettingError(
            f"unknown search filter(s) {sorted(unknown)}: use {', '.join(FILTER_KEYS)}"
        )
    return dict(filters)


def matches(chunk: Chunk, filters: Mapping[str, Any]) -> bool:
    """Example: matches(Chunk(1, "/d/a.pdf", "t"), {"path": "*.pdf"}) is True"""
    pattern = filters.get("path")
    if pattern and not (fnmatch(chunk.source, pattern) or fnmatch(Path(chunk.source).name,
                                                                  pattern)):
        return False
    kind = filters.get("type")
    return not (kind and Path(chunk.source).suffix.lower().lstrip(".") != str(kind).lower()
                .lstrip("."))
