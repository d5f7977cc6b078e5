"""Search filters: which documents a query may return (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timezone
from fnmatch import fnmatch
from pathlib import PurePath
from typing import Any

from kbqa.errors import SettingError
from kbqa.ingest.store import StoredDocument

# path: glob on the path or the file name; type: suffix ("pdf"); since/until: ingestion
# date (inclusive), ISO "2026-11-23" or "2026-11-23T10:00".
FILTER_KEYS = ("path", "type", "since", "until")


def validate_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """Example: validate_filters({"type": ".PDF"}) == {"type": "pdf"}"""
    if not filters:
        return {}
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise SettingError(
            f"unknown search filter(s) {sorted(unknown)}: use {', '.join(FILTER_KEYS)} "
            "(e.g. type=pdf, path='contracts/*', since=2026-01-01)"
        )
    clean: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None or value == "":
            continue
        if key == "type":
            clean[key] = str(value).lower().lstrip(".")
        elif key in ("since", "until"):
            clean[key] = _moment(key, value)
        else:
            clean[key] = str(value)
    return clean


def _moment(key: str, value: Any) -> datetime:
    """A timezone-aware instant; a bare date means its start (since) or its end (until)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            parsed = (value if isinstance(value, date) else
                      datetime.fromisoformat(str(value)) if "T" in str(value) or " " in
                      str(value).strip() else date.fromisoformat(str(value)))
        except ValueError:
            raise SettingError(
                f"filter {key}={value!r} is not a date: write it as 2026-11-23 "
                "or 2026-11-23T14:30") from None
        if isinstance(parsed, datetime):
            moment = parsed
        else:
            moment = datetime.combine(parsed, time.max if key == "until" else time.min)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # the user's local time
    return moment


def matches(document: StoredDocument, filters: Mapping[str, Any]) -> bool:
    """Example: matches(doc_at("/d/a.pdf"), {"path": "*.pdf"}) is True"""
    pattern = filters.get("path")
    if pattern and not any(_path_matches(p, pattern)
                           for p in {document.path, document.file or document.path}):
        return False
    kind = filters.get("type")
    if kind and PurePath(document.path).suffix.lower().lstrip(".") != kind \
            and document.kind != kind:
        return False
    stamp = document.ingested_at
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    if "since" in filters and stamp < filters["since"]:
        return False
    return not ("until" in filters and stamp > filters["until"])


def _path_matches(path: str, pattern: str) -> bool:
    """A glob on the whole path, the file name, or (relative patterns like "contracts/*")
    the path's last parts."""
    if fnmatch(path, pattern) or fnmatch(PurePath(path).name, pattern):
        return True
    try:
        return not PurePath(pattern).is_absolute() and PurePath(path).match(pattern)
    except ValueError:  # an empty or odd pattern
        return False


def allowed_documents(documents: Sequence[StoredDocument], filters: Mapping[str, Any]
                      ) -> list[int]:
    """Ids of the documents whose chunks a filtered search may return (a matching copy
    admits the document that holds its chunks)."""
    allowed: set[int] = set()
    for document in documents:
        if matches(document, filters):
            allowed.add(document.same_as if document.same_as is not None
                        else document.document_id)
    return sorted(allowed)
