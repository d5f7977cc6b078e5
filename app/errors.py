"""One error hierarchy; every message names the file or setting and says what to do next."""

from __future__ import annotations


class KbqaError(Exception):
    """Base of every error kbqa raises on purpose."""


class IngestError(KbqaError):
    """A single file could not be ingested; the run goes on and reports it."""


class IndexMissing(KbqaError):
    """The knowledge base has no documents yet."""


class ModelMissing(KbqaError):
    """A model file or package is not where the settings say."""


class EmbedderMismatch(KbqaError):
    """The index was built with another embedder; mixing vectors would give nonsense."""


class IngestLocked(KbqaError):
    """Another ingest holds the knowledge base's write lock."""


class SettingError(KbqaError):
    """A setting (or KBQA_* variable) has a value kbqa cannot use."""


class PromptTooLong(KbqaError):
    """A question that, with the instructions alone, does not fit the model's context."""


class ModelBusy(KbqaError):
    """Questions ahead held the chat model longer than the wait allowed."""
