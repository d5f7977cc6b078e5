"""Optional cross-encoder re-ranking (KBQA_RERANKER=folder of a sentence-transformers
CrossEncoder); no cross-encoder ships in a package, so it is off by default."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbqa.errors import ModelMissing


class CrossEncoderReranker:
    """Scores (query, passage) pairs with a local cross-encoder, on the CPU."""

    def __init__(self, folder: str, threads: int | None = None) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ModelMissing(
                f"KBQA_RERANKER={folder!r} is not a folder: give the path of a "
                "sentence-transformers cross-encoder saved on disk, or leave it empty")
        if threads:
            torch.set_num_threads(threads)
        try:
            self._model: Any = CrossEncoder(str(path), device="cpu", local_files_only=True,
                                            num_labels=1)
        except Exception as exc:
            raise ModelMissing(f"cannot load the re-ranker from {path} ({exc}); check "
                               "KBQA_RERANKER") from None
        self._lock = threading.Lock()  # one model, many sessions: a fast tokenizer per call


    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        with self._lock:
            scores = self._model.predict([(query, p) for p in passages], show_progress_bar=False,
                                         convert_to_numpy=True)
        return [float(s) for s in scores]
