"""Score fusion: calibrated shares per embedder and query language; hybrid never below its
best part on real questions (CMRC 2018 and SQuAD passages, real embedders and FTS5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from kbqa.errors import SettingError
from kbqa.retrieval.fuse import convex_fusion, reciprocal_rank_fusion
from kbqa.settings import (
    DEFAULT_EMBEDDER,
    MULTILINGUAL_EMBEDDER,
    calibrated_lexical_share,
    from_env,
)


def test_a_decisive_bm25_match_is_not_outvoted_by_a_weak_embedders_first_place() -> None:
    lexical = {1: 12.0, 2: 3.0}  # chunk 1 holds the rare name; 2 shares a common word
    # The embedder puts unrelated chunks first, and the right one only fifth.
    dense = {3: 0.52, 2: 0.47, 4: 0.46, 5: 0.45, 1: 0.41}
    fused = convex_fusion(lexical, dense, lexical_share=0.35)
    assert [i for i, _ in fused] == [1, 2, 3, 4, 5]
    # Reciprocal ranks forget how far apart the scores were: 2, second in both, wins.
    ranks = reciprocal_rank_fusion([[3, 2, 4, 5, 1], [1, 2]])
    assert ranks[0][0] == 2
    # Without a BM25 match the cosine alone orders; a share of 1 is BM25 alone.
    assert [i for i, _ in convex_fusion({}, dense, 0.35)] == [3, 2, 4, 5, 1]
    assert [i for i, _ in convex_fusion(lexical, dense, 1.0)][:2] == [1, 2]


def test_fusion_settings_and_calibrated_shares() -> None:
    assert from_env().fusion == "score"
    assert from_env(fusion="rrf").fusion == "rrf"
    for bad in ({"fusion": "max"}, {"lexical_share": 1.5}, {"embedder_backend": "gpu"}):
        with pytest.raises(SettingError):
            from_env(**bad)
    # USE is the weaker ranker on Chinese, MiniLM knows no Chinese: BM25 gets more say.
    assert calibrated_lexical_share(DEFAULT_EMBEDDER, "zh") > \
        calibrated_lexical_share(DEFAULT_EMBEDDER, "en")
    assert 0 < calibrated_lexical_share(MULTILINGUAL_EMBEDDER, "zh") < 1
    assert calibrated_lexical_share("/my/model", "en") == \
        calibrated_lexical_share(DEFAULT_EMBEDDER, "en")


def _recall_at_1(kb, questions: list[tuple[str, str]], **options) -> dict[str, float]:
    from dataclasses import replace

    out = {}
    for label, mode, extra in (("bm25", "lexical", {}), ("dense", "dense", {}),
                               ("rrf", "hybrid", {"fusion": "rrf"}),
                               ("hybrid", "hybrid", {})):
        retriever = kb.retriever()
        retriever.options = replace(retriever.options, **extra, **options)
        hits = [retriever.search(q, 1, mode=mode) for q, _ in questions]
        out[label] = sum(bool(h) and Path(h[0].chunk.source).stem == gold
                         for h, (_, gold) in zip(hits, questions, strict=True)) / len(questions)
    return out


def _paragraph_search(tmp_path: Path, dataset: str, paragraphs_of: int | None,
                      first: int | None, questions_per: int | None
                      ) -> tuple[str, dict[str, float]]:
    """One file per paragraph of a SQuAD-format dataset, ingested with no settings; the
    embedder picked, and Recall@1 of the paragraphs' questions by each retriever."""
    import kbqa

    data = json.loads((SHARED_DATA / dataset).read_text(encoding="utf-8"))
    folder = tmp_path / "files"
    folder.mkdir()
    questions = []
    paragraphs = [p for article in data["data"][:paragraphs_of]
                  for p in article["paragraphs"]][:first]
    for n, paragraph in enumerate(paragraphs):
        (folder / f"p{n:03d}.txt").write_text(paragraph["context"] + "\n", encoding="utf-8")
        questions += [(qa["question"], f"p{n:03d}") for qa in paragraph["qas"][:questions_per]]
    kb = kbqa.open_kb(tmp_path / "kb")
    try:
        kb.ingest(folder)
        return kb.embedder.name, _recall_at_1(kb, questions)
    finally:
        kb.close()


@pytest.mark.models
def test_chinese_hybrid_is_not_below_bm25_alone(tmp_path: Path) -> None:
    """The first 60 CMRC 2018 trial passages and all their questions: multilingual USE."""
    embedder, found = _paragraph_search(tmp_path, "cmrc2018-trial.json", None, 60, None)
    assert embedder == MULTILINGUAL_EMBEDDER
    assert found["hybrid"] >= found["bm25"] > found["dense"], found
    assert found["hybrid"] > found["rrf"], found


@pytest.mark.models
def test_english_hybrid_beats_each_part(tmp_path: Path) -> None:
    """Three SQuAD v1.1 dev articles, two questions per paragraph: MiniLM."""
    embedder, found = _paragraph_search(tmp_path, "squad-v1.1-dev.json", 3, None, 2)
    assert embedder == DEFAULT_EMBEDDER
    assert found["hybrid"] > max(found["bm25"], found["dense"]), found
