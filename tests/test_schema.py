"""The schema comes from Alembic revisions on both databases: a new knowledge base is at
the newest revision and matches the models; one made before Alembic keeps its rows and
gains what it lacks; one from a newer kbqa is refused by name; PostgreSQL's BM25
statistics follow every insert and delete."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from kbqa.conversations import Conversations
from kbqa.domain import ChunkDraft
from kbqa.errors import SettingError
from kbqa.ingest import schema
from kbqa.ingest.store import Store, _flush_terms
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session


def _differences(store: Store) -> list[object]:
    """What the database lacks or has beyond the models (the lexical index and vector
    tables are kept by their own classes, outside the models)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from kbqa.conversations import _Base as ChatBase
    from kbqa.ingest.store import Base
    from sqlalchemy import MetaData

    models = MetaData()
    for metadata in (Base.metadata, ChatBase.metadata):
        for table in metadata.tables.values():
            table.to_metadata(models)

    def ours(obj: object, name: str | None, kind: str, reflected: bool, _other: object
             ) -> bool:
        return not (kind == "table" and reflected and name not in models.tables)

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": ours})
        return list(compare_metadata(context, models))


def _revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return schema.current(connection)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_new_knowledge_base_is_at_the_newest_revision_and_matches_the_models(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'kb.sqlite'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = Store(url)
    assert _revision(store) == schema.head()
    assert _differences(store) == []
    store.close()


def test_a_knowledge_base_from_before_alembic_keeps_its_rows_and_gains_the_new_columns(
        tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    with sqlite3.connect(path) as db:  # the tables of the first kbqa release
        db.executescript("""
            CREATE TABLE documents (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,
                sha256 VARCHAR(64) NOT NULL, size INTEGER NOT NULL, kind VARCHAR(16) NOT NULL,
                pages INTEGER, chunk_count INTEGER NOT NULL, ingested_at DATETIME NOT NULL);
            CREATE TABLE chunks (id INTEGER PRIMARY KEY AUTOINCREMENT,
                document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
                ordinal INTEGER NOT NULL, page INTEGER, heading TEXT NOT NULL,
                text TEXT NOT NULL);
            CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO documents VALUES (1, '/docs/pump.txt', 'abc', 10, 'txt', NULL, 1,
                '2025-01-01 00:00:00');
            INSERT INTO chunks VALUES (1, 1, 0, NULL, '', 'The pump needs service kit ZK-7.');
        """)
    store = Store(f"sqlite:///{path}")
    assert _revision(store) == schema.head()
    [document] = store.documents()
    assert (document.path, document.file, document.content_sha) == \
        ("/docs/pump.txt", "/docs/pump.txt", "abc")
    [chunk] = store.iter_chunks()
    assert chunk.location == "" and "ZK-7" in chunk.text
    from sqlalchemy import inspect
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("documents")}
    assert {"ix_documents_file", "ix_documents_content_sha"} <= indexes  # as new ones have
    from kbqa.retrieval.lexical import TermMatcher
    assert [i for i, _ in store.lexical_search(["pump"], TermMatcher().stems(["pump"]), 5)] \
        == [1]  # the lexical index was made for the old rows
    chats = Conversations(store.engine)  # its tables were added too
    assert chats.start("Pumps").title == "Pumps"
    store.close()


def test_a_knowledge_base_from_a_newer_kbqa_is_refused_with_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.sqlite'}"
    Store(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE kbqa_alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SettingError, match=r"revision 9999.*newer kbqa.*Update kbqa"):
        Store(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_new_knowledge_base_at_once_all_get_it(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'kb.sqlite'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        try:
            start.wait()
            Store(url).close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = Store(url)
    assert _revision(store) == schema.head()
    store.close()


def _statistics(store: Store) -> tuple[tuple[int, int], dict[str, int], tuple[int, int],
                                       dict[str, int]]:
    """The kept totals and term counts, and the same counted from chunk_terms now."""
    with store.engine.connect() as connection:
        kept_totals = tuple(connection.execute(text(
            "SELECT chunks, length FROM chunk_terms_totals")).one())
        kept = {t: n for t, n in connection.execute(text(
            "SELECT term, chunks FROM chunk_terms_stats WHERE chunks > 0"))}
        totals = tuple(connection.execute(text(
            "SELECT count(*), coalesce(sum(length), 0) FROM chunk_terms")).one())
        counted = {t: n for t, n in connection.execute(text(
            "SELECT u.lexeme, count(*) FROM chunk_terms c, unnest(c.terms) u "
            "GROUP BY u.lexeme"))}
    return kept_totals, kept, totals, counted  # type: ignore[return-value]


def _put(store: Store, path: str, texts: list[str], session: Session | None = None) -> None:
    if session is None:
        with store.transaction() as own:
            return _put(store, path, texts, own)
    store.put_document(session, path=path, file=path, sha256=path, content_sha=path,
                       size=1, kind="txt", pages=None,
                       drafts=[ChunkDraft(text=t, ordinal=i) for i, t in enumerate(texts)])
    return None


def test_postgres_bm25_statistics_follow_inserts_deletes_and_cascades(postgres_url: str
                                                                      ) -> None:
    store = Store(postgres_url)
    _put(store, "/a.txt", ["pumps need kits", "the harbor opens at seven", "青川渡轮的船长"])
    _put(store, "/b.txt", ["pump kits and pump engines"])
    kept_totals, kept, totals, counted = _statistics(store)
    assert kept_totals == totals and totals[0] == 4 and kept == counted
    assert kept["pump"] == 2 and kept["青川"] == 1
    with store.transaction() as session:  # chunks go, their terms follow by cascade
        store.remove_file(session, "/a.txt")
    kept_totals, kept, totals, counted = _statistics(store)
    assert kept_totals == totals and totals[0] == 1 and kept == counted
    assert kept["pump"] == 1 and "harbor" not in kept and "青川" not in kept
    with pytest.raises(RuntimeError), store.transaction() as session:  # rolled back
        _put(store, "/c.txt", ["more pumps and harbors"], session)
        _flush_terms(session)  # the terms reach chunk_terms (and its triggers) first
        assert _statistics(store)[0] == kept_totals  # other sessions do not see them
        raise RuntimeError
    assert _statistics(store)[:2] == (kept_totals, kept)
    store.clear()
    assert _statistics(store)[:2] == ((0, 0), {})
    store.close()


def test_postgres_statistics_revision_counts_the_rows_already_there(postgres_url: str) -> None:
    from alembic import command

    store = Store(postgres_url)
    with store.engine.begin() as connection:
        command.downgrade(schema.config_for(connection), "0001")
    _put(store, "/a.txt", ["pumps need kits", "pump engines"])
    schema.upgrade(store.engine)
    kept_totals, kept, totals, counted = _statistics(store)
    assert kept_totals == totals and totals[0] == 2 and kept == counted and kept["pump"] == 2
    store.close()
