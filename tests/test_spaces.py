"""Vector spaces: a folder of English and Chinese files gets MiniLM for the English passages
and the multilingual model for every passage once any is Chinese, whatever the file order;
each question is scored by the space of its language (real embedders, FAISS, SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SMALL_MODEL
from kbqa.domain import Chunk, Hit
from kbqa.ingest.spaces import CROSS_SPACE, LATIN_SPACE, auto_spaces, preference
from kbqa.kb import KnowledgeBase
from kbqa.llm.answer import relevant_hits
from kbqa.llm.facts import claim_tokens
from kbqa.retrieval.fuse import convex_fusion
from kbqa.settings import CROSS_LANGUAGE_WEIGHT, from_env
from sqlalchemy import text

ENGLISH = {
    "harbor.txt": "The Lindqvist harbor office opens at 7:15 and closes at 16:40. Ferries to "
                  "Norrsund leave from pier 3 every ninety minutes.",
    "pump.txt": "The Zephyr X200 pump must be serviced every 450 operating hours with the "
                "service kit ZK-7731.",
    "library.txt": "The Hallberg city library lends up to twelve books per card for four weeks.",
}
CHINESE = {
    "changcheng.txt": "长城是中国古代修建的军事防御工程，东起山海关，西至嘉峪关，"
                      "明长城全长约八千八百五十公里。",
    "chaye.txt": "龙井茶是绿茶的一种，产于杭州西湖一带。特级西湖龙井每斤售价约三千二百元。",
    "dafen.txt": "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为主要食物，"
                 "每天要吃十二到三十八公斤竹子。",
}


def test_a_chunk_goes_to_the_spaces_its_script_needs() -> None:
    assert auto_spaces("The pump needs service.", cross=False) == (LATIN_SPACE,)
    assert auto_spaces("The pump needs service.", cross=True) == (LATIN_SPACE, CROSS_SPACE)
    assert auto_spaces("龙井茶产于杭州。", cross=False) == (CROSS_SPACE,)
    both = [CROSS_SPACE, LATIN_SPACE]
    assert preference(both, "zh") == [CROSS_SPACE, LATIN_SPACE]
    assert preference(both, "en") == [LATIN_SPACE, CROSS_SPACE]
    # Each candidate is fused with the share of the space that scored it.
    fused = convex_fusion({1: 4.0, 2: 4.0}, {1: 0.5, 2: 0.5}, {1: 0.9, 2: 0.1})
    assert fused == [(1, pytest.approx(0.95)), (2, pytest.approx(0.55))]


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, body in files.items():
        (folder / name).write_text(body + "\n", encoding="utf-8")
    return folder


def _auto_kb(home: Path, generator=None) -> KnowledgeBase:
    """No embedder setting, as a user starts: the automatic spaces."""
    return KnowledgeBase(from_env(home=home, model=str(SMALL_MODEL)), generator=generator)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory):
    """One knowledge base per order: English files ingested first, and Chinese first."""
    root = tmp_path_factory.mktemp("mixed")
    en = _write(root / "en", ENGLISH)
    zh = _write(root / "zh", CHINESE)
    bases = {}
    for order in (("en", "zh"), ("zh", "en")):
        kb = _auto_kb(root / "-".join(order))
        for part in order:
            kb.ingest(en if part == "en" else zh)
        bases[order[0] + " first"] = kb
    yield bases
    for kb in bases.values():
        kb.close()


def _names(kb: KnowledgeBase, question: str, k: int = 3) -> list[str]:
    return [Path(hit.chunk.source).name for hit in kb.search(question, k=k)]


def test_the_spaces_do_not_depend_on_the_file_order(mixed) -> None:
    held = {}
    for order, kb in mixed.items():
        indexes = kb.indexes()
        by_id = kb.passages(kb.store.chunk_ids())
        files = {name: sorted(Path(by_id[i].source).name for i in index.ids().tolist())
                 for name, index in indexes.items()}
        # MiniLM holds the English passages only; the multilingual model every passage.
        assert files[LATIN_SPACE] == sorted(ENGLISH), order
        assert files[CROSS_SPACE] == sorted(ENGLISH | CHINESE), order
        held[order] = files
    assert held["en first"] == held["zh first"]


def test_each_language_is_found_in_its_own_file_in_both_orders(mixed) -> None:
    for order, kb in mixed.items():
        assert _names(kb, "How often must the Zephyr X200 pump be serviced?")[0] == "pump.txt"
        assert _names(kb, "When does the harbor office close?")[0] == "harbor.txt"
        assert _names(kb, "明长城全长多少公里？")[0] == "changcheng.txt", order
        assert _names(kb, "大熊猫每天吃多少竹子？")[0] == "dafen.txt", order
        hit = kb.search("How often must the Zephyr X200 pump be serviced?", k=1)[0]
        assert hit.space == LATIN_SPACE  # an English question: MiniLM scores English
        assert kb.search("大熊猫每天吃多少竹子？", k=1)[0].space == CROSS_SPACE


def test_a_question_in_one_language_finds_a_passage_in_the_other(mixed) -> None:
    """Only the multilingual model can do this: no query term occurs in the passage."""
    for order, kb in mixed.items():
        hits = kb.search("How much does a jin of top-grade West Lake Longjing tea cost?", k=3)
        top = [Path(h.chunk.source).name for h in hits]
        assert top[0] == "chaye.txt", (order, top)
        assert "三千二百元" in hits[0].chunk.text and hits[0].space == CROSS_SPACE
        assert _names(kb, "渡轮从几号码头出发？")[0] == "harbor.txt", order


def test_a_mixed_folder_answers_each_language_from_the_right_file(
        tmp_path: Path, small_generator) -> None:
    folder = _write(tmp_path / "docs", ENGLISH | CHINESE)
    kb = _auto_kb(tmp_path / "kb", generator=small_generator)
    try:
        kb.ingest(folder)
        english = kb.ask("How often must the Zephyr X200 pump be serviced?")
        assert "450" in english.text and not english.refused
        assert Path(english.citations[0].source).name == "pump.txt"
        chinese = kb.ask("明长城全长多少公里？")
        assert chinese.grounded and 8850 in [t.quantity.value for t in
                                             claim_tokens(chinese.text) if t.quantity]
        assert Path(chinese.citations[0].source).name == "changcheng.txt"
    finally:
        kb.close()


@pytest.mark.models
def test_a_base_from_before_spaces_is_upgraded_by_its_next_ingest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A base built with one embedder for everything (as kbqa did before) gets its missing
    vectors on the next ingest, no rebuild asked, even when that ingest is cut short."""
    from kbqa.ingest.embed import UniversalSentenceEncoder, make_embedder

    docs = _write(tmp_path / "docs", ENGLISH | CHINESE)
    settings = from_env(home=tmp_path / "kb", model=str(SMALL_MODEL))
    minilm = make_embedder(LATIN_SPACE, backend=settings.embedder_backend,
                           models_dir=settings.models_dir)
    old = KnowledgeBase(settings, embedder=minilm)  # one space, as before
    old.ingest(docs)
    with old.store.engine.begin() as connection:  # as an old release left it
        connection.execute(text("DELETE FROM meta WHERE key = 'vector_spaces'"))
    old.close()
    def killed(self, texts):
        raise KeyboardInterrupt  # the upgrade stops after its first commit

    monkeypatch.setattr(UniversalSentenceEncoder, "encode", killed)
    interrupted = _auto_kb(tmp_path / "kb")
    with pytest.raises(KeyboardInterrupt):
        interrupted.ingest(docs)
    # Searches see what is committed, not the upgrade's uncommitted changes in memory.
    assert {name: len(index) for name, index in interrupted.indexes().items()} == \
        {LATIN_SPACE: len(ENGLISH | CHINESE)}
    interrupted.close()
    monkeypatch.undo()
    kb = _auto_kb(tmp_path / "kb")
    try:
        kb.ingest(docs)  # nothing changed on disk: only the vectors are completed
        sizes = {name: len(index) for name, index in kb.indexes().items()}
        assert sizes == {LATIN_SPACE: len(ENGLISH), CROSS_SPACE: len(ENGLISH | CHINESE)}
        assert _names(kb, "明长城全长多少公里？", k=1) == ["changcheng.txt"]
    finally:
        kb.close()


def test_each_hit_is_judged_by_the_floor_of_its_space_and_language() -> None:
    settings = from_env()
    chunk = Chunk(chunk_id=1, document_id=1, source="a.txt", text="x", ordinal=0)
    same = Hit(chunk, 1.0, similarity=0.45, coverage=0.3, space=CROSS_SPACE)
    latin = Hit(chunk, 1.0, similarity=0.45, coverage=0.3, space=LATIN_SPACE)
    across = Hit(chunk, 1.0, similarity=0.45, coverage=0.0, space=CROSS_SPACE,
                 cross_language=True)
    floor = lambda h: settings.relevance_floor(h.space, h.cross_language)  # noqa: E731
    # 0.75 passes the multilingual model's floor, not MiniLM's (its cosines run higher);
    # a passage in the other language shares no terms: its cosine alone is judged.
    assert relevant_hits([same, latin, across], floor) == [same, across]
    assert settings.relevance_floor(LATIN_SPACE) > settings.relevance_floor(CROSS_SPACE) \
        > settings.relevance_floor(CROSS_SPACE, cross_language=True)
    assert from_env(min_relevance=2.0).relevance_floor(CROSS_SPACE, True) == 2.0


def test_a_passage_across_languages_passes_the_gate_and_nonsense_does_not(mixed) -> None:
    settings = from_env()

    def floor(hit: Hit) -> float:
        return settings.relevance_floor(hit.space, hit.cross_language)

    for kb in mixed.values():
        hits = kb.search("How much does a jin of top-grade West Lake Longjing tea cost?", k=8)
        assert hits[0].cross_language and relevant_hits(hits, floor)[0] == hits[0]
        for unrelated in ("Who invented the telephone?", "谁发明了电话？"):
            assert relevant_hits(kb.search(unrelated, k=8), floor) == []


def test_a_passage_in_the_other_language_is_scored_by_its_cosine_alone() -> None:
    """It can have no BM25 score, so its weighted cosine is its whole score, not half."""
    from kbqa.retrieval.retriever import Candidates, RetrievalOptions, Retriever

    retriever = Retriever(None, list, RetrievalOptions.from_settings(from_env()))  # type: ignore[arg-type]
    found = {"language": "en", "lexical": [(1, 6.0)], "lexical_scores": {1: 6.0},
             "cosines": {1: 0.3, 2: 0.6}, "spaces": {1: LATIN_SPACE, 2: CROSS_SPACE}}
    same = retriever.fuse(Candidates(**found))
    across = retriever.fuse(Candidates(**found, cross=frozenset({2})))
    assert [i for i, _ in same] == [1, 2] and [i for i, _ in across] == [2, 1]
    assert dict(across)[2] == pytest.approx(0.6 * CROSS_LANGUAGE_WEIGHT)


@pytest.mark.models
def test_an_english_folder_gets_multilingual_vectors_only_when_asked(tmp_path: Path) -> None:
    docs = _write(tmp_path / "docs", ENGLISH)
    for setting, spaces in (("auto", {LATIN_SPACE}), ("always", {LATIN_SPACE, CROSS_SPACE})):
        kb = KnowledgeBase(from_env(home=tmp_path / setting, model=str(SMALL_MODEL),
                                    cross_language=setting))
        try:
            kb.ingest(docs)
            held = {name for name, index in kb.indexes().items() if len(index)}
            assert held == spaces, setting
            if setting == "always":  # a Chinese question reaches the English passage
                assert _names(kb, "图书馆每张卡可以借几本书？")[0] == "library.txt"
        finally:
            kb.close()


@pytest.mark.models
def test_a_look_at_an_empty_base_does_not_fix_its_first_space(tmp_path: Path) -> None:
    """The Library page shows the stats before the first upload; a Chinese first upload
    must still name the multilingual space first, and the next upload must work."""
    kb = _auto_kb(tmp_path / "kb")
    try:
        assert kb.stats().chunks == 0
        kb.ingest(_write(tmp_path / "zh", CHINESE))
        kb.ingest(_write(tmp_path / "more", {"huangshan.txt": "黄山位于安徽省南部，以奇松、"
                                             "怪石、云海、温泉闻名。"}))
        assert kb.store.get_meta("embedder") == CROSS_SPACE
        assert _names(kb, "黄山以什么闻名？")[0] == "huangshan.txt"
    finally:
        kb.close()


def test_one_embedder_for_everything_keeps_its_own_floors(make_kb, tmp_path: Path) -> None:
    """With one MiniLM space a Chinese question's hits are not judged as cross-language
    passages (that floor is the multilingual model's)."""
    kb = make_kb()
    kb.ingest(_write(tmp_path / "en", ENGLISH))
    hits = kb.search("图书馆每张卡可以借几本书？", k=3)
    assert hits and not any(h.cross_language for h in hits)
    assert {h.space for h in hits} == {LATIN_SPACE}
