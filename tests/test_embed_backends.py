"""The packaged MiniLM as int8 ONNX (the default) beside the torch path: same ranking,
and an existing knowledge base accepts or refuses the other backend's vectors as measured."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS
from kbqa.errors import EmbedderMismatch
from kbqa.ingest.embed import make_embedder, resolve_embedder_path
from kbqa.ingest.onnx_embed import OnnxInt8Embedder
from kbqa.settings import DEFAULT_EMBEDDER

PASSAGES = [
    "The pump stops when the intake filter is clogged; clean it every 200 hours.",
    "Invoices are paid within 30 days of receipt by bank transfer.",
    "The north wing of the library closes at 6 pm on Saturdays.",
    "Employees may carry over up to five days of unused leave into the next year.",
    "北京是中华人民共和国的首都。",
]
QUERIES = ["How often should the filter be cleaned?", "When do we pay invoices?",
           "What time does the library close on Saturday?", "How much leave carries over?"]


@pytest.fixture(scope="module")
def int8() -> OnnxInt8Embedder:
    embedder = make_embedder(DEFAULT_EMBEDDER, threads=os.cpu_count(), backend="auto",
                             models_dir=MODELS)
    assert isinstance(embedder, OnnxInt8Embedder)  # the default for the packaged model
    return embedder


def test_int8_vectors_rank_like_torch(int8: OnnxInt8Embedder, embedder) -> None:
    assert int8.name == embedder.name == DEFAULT_EMBEDDER and int8.dim == embedder.dim
    ours, theirs = int8.encode(PASSAGES), embedder.encode(PASSAGES)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    assert (ours * theirs).sum(axis=1).min() > 0.95  # cosine of each pair (any CPU flavour)
    for n, query in enumerate(QUERIES):
        assert int(np.argmax(ours @ int8.encode_queries([query])[0])) == n
        assert int(np.argmax(theirs @ int8.encode_queries([query])[0])) == n  # mixed
    assert int8.count_tokens_batch(PASSAGES) == embedder.count_tokens_batch(PASSAGES)
    # Batches pad: a short text among long ones keeps its vector.
    alone = int8.encode([PASSAGES[2]])[0]
    assert float(alone @ int8.encode([PASSAGES[2], "word " * 300])[0]) > 0.95


@pytest.mark.models
def test_torch_built_knowledge_base_serves_int8_queries(tmp_path: Path, docs: Path) -> None:
    """bench-ingest measured torch and int8 vectors of MiniLM as interchangeable (SciFact
    nDCG@10 within 0.002 either way), so an old knowledge base needs no rebuild."""
    import kbqa

    old = kbqa.open_kb(tmp_path / "kb", embedder_backend="torch")
    try:
        old.ingest(docs)
        assert type(old.embedder).__name__ == "SentenceTransformerEmbedder"
    finally:
        old.close()
    new = kbqa.open_kb(tmp_path / "kb")
    try:
        assert isinstance(new.embedder, OnnxInt8Embedder)
        hits = new.search("Who leads the Vireo research team?", k=1, mode="dense")
        assert Path(hits[0].chunk.source).name == "team.txt"
    finally:
        new.close()


@pytest.mark.models
def test_another_models_int8_vectors_ask_for_a_rebuild(tmp_path: Path, docs: Path) -> None:
    """A model of the user's own: its int8 vectors are not measured against its torch ones,
    so they count as another embedder (the knowledge base says how to rebuild)."""
    import kbqa

    own = tmp_path / "my-embedder"
    own.mkdir()
    packaged = resolve_embedder_path(DEFAULT_EMBEDDER)
    for item in packaged.iterdir():
        (own / item.name).symlink_to(item)
    settings = {"embedder": str(own), "models_dir": str(tmp_path / "models")}
    first = kbqa.open_kb(tmp_path / "kb", **settings)
    try:
        assert type(first.embedder).__name__ == "SentenceTransformerEmbedder"  # auto: torch
        first.ingest(docs / "team.txt")
    finally:
        first.close()
    other = kbqa.open_kb(tmp_path / "kb", embedder_backend="onnx-int8", **settings)
    try:
        assert other.embedder.name.endswith("(int8)")
        with pytest.raises(EmbedderMismatch, match="rebuild"):
            other.search("Who leads the Vireo research team?")
    finally:
        other.close()
