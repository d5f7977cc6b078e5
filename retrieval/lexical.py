"""Lexical recall: one tokenizer for ingest and query, BM25 through SQLite FTS5.

Latin-script words are case-folded (FTS5's porter stage stems them on both sides);
CJK runs become overlapping character bigrams, so Chinese and Japanese match without a
segmenter. The same `kbqa.text.tokens()` feeds the FTS5 rows at ingest and the MATCH at
query time.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Mapping, Sequence

from kbqa.text import is_cjk, tokens

# FTS5's tokenizer over our terms: porter stems Latin words (on both sides), unicode61 only
# splits at the spaces `index_terms` put there.
FTS5_TOKENIZER = "porter unicode61 remove_diacritics 2"
# Bumped when `kbqa.text.tokens()` changes: stored term rows are rebuilt from chunk text on open.
TERMS_VERSION = "1"

# Words that carry no topic (and the verbs questions are phrased with); dropped from
# queries only (they stay in the index, where BM25's idf already weighs them near zero).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
mean means meaning tell explain describe please know give list show find say says said
""".split())  # noqa: SIM905 (the last line: how questions are asked, not what about)
# Terms found in more chunks than this are left out of BM25 recall (they still count in
# coverage): FTS5 scores every posting of every query term, so on big collections these
# few terms are most of the query's time (bench-retrieval, 200k chunks: p50 194 ms with
# all terms, 20 ms with this cap), while their idf ranks almost nothing. Collections
# under ~100k chunks rarely have such terms once stopwords are gone.
COMMON_TERM_CHUNKS = 5000
# Chinese function characters; a query bigram made only of these finds nothing specific.
_CJK_STOP_CHARS = frozenset("的了是在和有也与及或就都而之其这那个为以于被把吗呢吧啊么什哪谁")
_QUESTION_BIGRAMS = frozenset({"什么", "哪个", "哪些", "哪里", "多少", "怎么", "如何", "为什",
                               "是什", "么时", "时候", "哪一", "是哪", "是谁", "为何"})


def searchable(heading: str, body: str) -> str:
    """The text of a chunk that lexical search sees: its heading path, then its body."""
    return f"{heading}\n{body}" if heading else body


def index_terms(text: str) -> str:
    """The space-joined terms stored in the FTS5 row for a chunk."""
    return " ".join(tokens(text))


def query_terms(query: str) -> list[str]:
    """Distinct query terms in order, without stopwords (unless nothing else is left)."""
    every = list(dict.fromkeys(tokens(query)))
    kept = [t for t in every if not _is_stop(t)]
    return kept or every


def _is_stop(term: str) -> bool:
    if term in STOPWORDS or term in _QUESTION_BIGRAMS:
        return True
    return is_cjk(term[0]) and all(ch in _CJK_STOP_CHARS for ch in term)


def selective_terms(query_terms_: Sequence[str], counts: Sequence[int],
                    limit: int = COMMON_TERM_CHUNKS) -> list[str]:
    """Example: selective_terms(["cell", "zk7731"], [9000, 3]) == ["zk7731"]. The terms BM25
    recall runs on: those in at most `limit` chunks; the two rarest if all are commoner."""
    kept = [t for t, n in zip(query_terms_, counts, strict=True) if n <= limit]
    if kept:
        return kept
    rarest = sorted(zip(counts, range(len(counts)), query_terms_, strict=True))[:2]
    return [t for _, _, t in sorted(rarest, key=lambda item: item[1])]


def match_expression(query_terms_: Sequence[str]) -> str:
    """An FTS5 MATCH string that ORs the terms, each quoted so no term is read as syntax."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in query_terms_)


def coverage(query_terms_: Sequence[str], present: set[str], weights: Mapping[str, float]
             ) -> float:
    """Share of the query's idf weight whose terms occur in the chunk (0..1); 0 for a
    query of stopwords only ("what is this about?" matches everything, so nothing)."""
    query_terms_ = [t for t in query_terms_ if not _is_stop(t)]
    total = sum(weights.get(t, 1.0) for t in query_terms_)
    found = sum(weights.get(t, 1.0) for t in query_terms_ if t in present)
    return found / total if total else 0.0


class TermMatcher:
    """FTS5's own stemmer in a private in-memory table: which query terms a few texts
    contain, and the stemmed forms the vocabulary is keyed by (thread-safe)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{FTS5_TOKENIZER}')")
        self._db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        self._lock = threading.Lock()

    def stems(self, query_terms_: Sequence[str]) -> list[str]:
        """Example: stems(["engines", "北京", "・"]) == ["engin", "北京", ""]; one per term,
        "" where FTS5 finds no token in it (so it cannot be matched)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM t")
            self._db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)",
                                 [(i + 1, term) for i, term in enumerate(query_terms_)])
            rows = self._db.execute("SELECT doc, term FROM v ORDER BY doc, offset").fetchall()
            self._db.execute("DELETE FROM t")
        stems: dict[int, str] = {}
        for doc, term in rows:
            stems.setdefault(int(doc), term)
        return [stems.get(i + 1, "") for i in range(len(query_terms_))]

    def token_streams(self, texts: Mapping[int, str]) -> dict[int, list[str]]:
        """Each text's tokens as FTS5 indexes them (stemmed, in order): what a database
        without FTS5 stores so that it ranks the same.

        Example: token_streams({1: "engines run"}) == {1: ["engin", "run"]}"""
        if not texts:
            return {}
        with self._lock, self._db:
            self._db.execute("DELETE FROM t")
            self._db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", list(texts.items()))
            rows = self._db.execute("SELECT doc, term FROM v ORDER BY doc, offset").fetchall()
            self._db.execute("DELETE FROM t")
        streams: dict[int, list[str]] = {i: [] for i in texts}
        for doc, term in rows:
            streams[int(doc)].append(term)
        return streams

    def present(self, query_terms_: Sequence[str], texts: Mapping[int, str]
                ) -> dict[int, set[str]]:
        """For each text id, the query terms it contains after stemming."""
        found: dict[int, set[str]] = {i: set() for i in texts}
        if not query_terms_ or not texts:
            return found
        with self._lock, self._db:
            self._db.execute("DELETE FROM t")
            self._db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)",
                                 [(i, index_terms(text)) for i, text in texts.items()])
            for term in query_terms_:
                for (rowid,) in self._db.execute("SELECT rowid FROM t WHERE t MATCH ?",
                                                 (match_expression([term]),)):
                    found[int(rowid)].add(term)
            self._db.execute("DELETE FROM t")
        return found


def idf(document_count: int, containing: int) -> float:
    """BM25's idf (never negative): rare terms weigh most."""
    return math.log(1.0 + (document_count - containing + 0.5) / (containing + 0.5))
