"""A sentence-transformers model run as an int8 ONNX graph on onnxruntime's CPU provider.

The transformer is exported here, once, from the model on disk (torch.onnx's TorchScript
exporter, opset 14) and quantized with onnxruntime's dynamic quantizer; nothing is
downloaded. sentence-transformers' own ONNX backend needs `optimum-onnx`, whose releases
require a transformers older than sentence-transformers accepts, so kbqa exports itself.
At run time only `tokenizers`, `onnxruntime` and numpy are used: no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kbqa.errors import ModelMissing

log = logging.getLogger("kbqa")

ONNX_OPSET = 14
# Passages per onnxruntime call; sorted by length first so a batch pads little.
ONNX_BATCH = 32
EXPORT_FOLDER = "onnx"


def int8_config() -> str:
    """The dynamic-quantization flavour that suits this CPU: signed per-channel weights
    where the CPU has VNNI int8 dot products (fastest there), unsigned elsewhere (the
    flavour onnxruntime's avx2 kernels are built for)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        flags = ""
    return "vnni" if ("avx512_vnni" in flags or "avx_vnni" in flags) else "avx2"


def model_fingerprint(model_dir: Path) -> str:
    """Short hash of the weights file's name, size and mtime: a changed model re-exports."""
    weights = sorted(p for p in model_dir.iterdir()
                     if p.suffix in (".safetensors", ".bin") and p.is_file())
    digest = hashlib.sha256(str(model_dir.resolve()).encode())
    for path in weights:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:12]


def exported_path(models_dir: Path, model_dir: Path, config: str) -> Path:
    return models_dir / EXPORT_FOLDER / \
        f"{model_dir.name}-{model_fingerprint(model_dir)}-int8-{config}.onnx"


def export_int8(model_dir: Path, target: Path, config: str | None = None) -> Path:
    """Export `model_dir`'s transformer to ONNX and quantize it to int8 at `target`
    (written whole or not at all). Needs torch and onnx; takes ~20 s for MiniLM."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    config = config or int8_config()
    model: Any = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    transformer = model[0].auto_model.eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in model.tokenizer.model_input_names:
        names.append("token_type_ids")

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs, strict=True)))[0]

    sample = model.tokenizer(["an example sentence"], return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    fp32 = target.with_name(target.stem + ".fp32.tmp")
    tmp = target.with_name(target.name + ".tmp")
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["hidden"] = {0: "batch", 1: "tokens"}
    root = logging.getLogger()
    level = root.level
    try:
        # The tracer's and quantizer's advice is for model authors, not for kbqa's users.
        root.setLevel(logging.ERROR)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(LastHidden(), tuple(sample[n] for n in names), str(fp32),
                              input_names=names, output_names=["hidden"],
                              dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
        signed = config == "vnni"
        quantize_dynamic(str(fp32), str(tmp), per_channel=signed,
                         weight_type=QuantType.QInt8 if signed else QuantType.QUInt8)
        os.replace(tmp, target)
    finally:
        root.setLevel(level)
        for leftover in (fp32, tmp):
            leftover.unlink(missing_ok=True)
    return target


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class OnnxInt8Embedder:
    """Mean- or CLS-pooled, L2-normalised sentence vectors from the int8 graph; the same
    model and pooling as the torch path (vectors differ by quantization only)."""

    def __init__(self, model_dir: Path, name: str, models_dir: Path,
                 threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelMissing(f"the int8 embedder needs onnxruntime ({exc}): run "
                               "`make setup`, or set KBQA_EMBEDDER_BACKEND=torch") from None
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8")) \
            if (model_dir / "modules.json").is_file() else []
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(
                k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
            raise ModelMissing(f"{model_dir} is not a plain transformer + pooling model; "
                               "set KBQA_EMBEDDER_BACKEND=torch for it")
        pooling = _read_json(model_dir / modules[1]["path"] / "config.json")
        self._cls = bool(pooling.get("pooling_mode_cls_token"))
        if not (self._cls or pooling.get("pooling_mode_mean_tokens")):
            raise ModelMissing(f"{model_dir} pools neither by mean nor by CLS; "
                               "set KBQA_EMBEDDER_BACKEND=torch for it")
        self.dim = int(pooling.get("word_embedding_dimension") or 0)
        bert = _read_json(model_dir / "sentence_bert_config.json")
        self.max_tokens = int(bert.get("max_seq_length") or 512)
        prompts = _read_json(model_dir / "config_sentence_transformers.json").get("prompts") or {}
        self._query_prompt = prompts.get("query") or ""
        self._passage_prompt = next((prompts[p] for p in ("document", "passage")
                                     if prompts.get(p)), "")
        self.config = int8_config()
        path = exported_path(models_dir, model_dir, self.config)
        if not path.is_file():
            log.info("exporting %s to int8 ONNX once (%s)", model_dir.name, path)
            export_int8(model_dir, path, self.config)
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # onnxruntime lists other providers first in some builds; kbqa runs on the CPU only.
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._counter = tokenizer
        encoder = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        encoder.enable_truncation(self.max_tokens)
        pad = _read_json(model_dir / "tokenizer_config.json").get("pad_token") or "[PAD]"
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else str(pad)
        encoder.enable_padding(pad_id=encoder.token_to_id(pad) or 0, pad_token=pad)
        self._encoder = encoder
        # Rust tokenizers fail when one instance is used from two threads ("Already
        # borrowed"): ingest counts tokens in its staging thread while it encodes here.
        self._count_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        if not self.dim:
            self.dim = int(self._embed(["dimension probe"]).shape[1])
        self.name = name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self._passage_prompt + t for t in texts])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self._query_prompt + t for t in texts])

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[np.ndarray] = []
        for start in range(0, len(order), ONNX_BATCH):
            batch = [texts[i] for i in order[start:start + ONNX_BATCH]]
            # A turn per small batch, not per call: a query's embedding waits for one batch
            # of an ingest's thousand passages, not for all of them.
            with self._encode_lock:
                encodings = self._encoder.encode_batch(batch)
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                feed = {"input_ids": ids, "attention_mask": mask,
                        "token_type_ids": np.zeros_like(ids)}
                hidden = self._session.run(None, {n: feed[n] for n in self._inputs})[0]
            rows.append(_pool(hidden, mask, self._cls))
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        # Rows came in length order; put them back in the order of `texts`.
        return np.ascontiguousarray(np.concatenate(rows)[np.argsort(order)])

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._count_lock:
            encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def count_tokens(self, text: str) -> int:
        return self.count_tokens_batch([text])[0]


def _pool(hidden: np.ndarray, mask: np.ndarray, cls: bool) -> np.ndarray:
    if cls:
        pooled = hidden[:, 0, :]
    else:
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def main() -> None:
    """`python -m kbqa.ingest.onnx_embed`: export the packaged MiniLM to int8 ONNX for this
    CPU, once (`make setup` runs it, so the first ingest does not wait for it)."""
    import kbqa  # noqa: F401  (switches every library offline first)
    from kbqa.ingest.embed import resolve_embedder_path
    from kbqa.settings import DEFAULT_EMBEDDER, from_env

    model_dir = resolve_embedder_path(DEFAULT_EMBEDDER)
    path = exported_path(from_env().models_dir, model_dir, int8_config())
    if path.is_file():
        print(f"kbqa: int8 embedder ready ({path})")
        return
    print(f"kbqa: exporting the packaged embedder to int8 ONNX once ({path})", flush=True)
    export_int8(model_dir, path)


if __name__ == "__main__":
    main()
