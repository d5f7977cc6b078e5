"""KnowledgeBase: the one place that builds the store, index, embedder and model."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kbqa.conversations import Conversations
from kbqa.domain import (
    Answer,
    Chunk,
    Citation,
    Hit,
    IngestReport,
    KbStats,
    OcrLine,
    ScanView,
)
from kbqa.errors import IndexMissing, ModelBusy
from kbqa.ingest.embed import Embedder, choose_embedder, make_embedder
from kbqa.ingest.index import VectorIndex
from kbqa.ingest.loaders import LoadOptions, load
from kbqa.ingest.ocr import OcrEngine
from kbqa.ingest.pg_vectors import PgSpaces
from kbqa.ingest.pipeline import (
    ProgressFn,
    check_embedder,
    discover,
    ingest_paths,
    remove_paths,
)
from kbqa.ingest.spaces import CROSS_SPACE, LATIN_SPACE, Embedders, Space, is_cjk_text
from kbqa.ingest.store import Store, StoredDocument
from kbqa.ingest.vectors import FaissSpaces, IngestState, VectorSpaces, recorded_spaces
from kbqa.llm.answer import answer_stream, condense_question, final_answer
from kbqa.llm.citations import embedding_similarity
from kbqa.llm.facts import WordSimilarity
from kbqa.llm.model import Generator, LlamaCppGenerator, Message
from kbqa.llm.prompts import prefix
from kbqa.llm.reader import Reader, model_reader
from kbqa.llm.remote import RemoteGenerator
from kbqa.preview import PAGE_IMAGE_WIDTH, outlined_png, page_picture, supporting_lines
from kbqa.retrieval.filters import validate_filters
from kbqa.retrieval.lexical import TermMatcher
from kbqa.retrieval.rerank import CrossEncoderReranker
from kbqa.retrieval.retriever import Reranker, RetrievalOptions, Retriever
from kbqa.settings import AUTO_EMBEDDER, DEFAULT_EMBEDDER, Settings, from_env
from kbqa.shared import SharedModels, WaitFn, process_models

# Files read to name the first vector space at the first ingest (see `choose_embedder`);
# with the automatic embedder every chunk still goes to the spaces its script needs.
SCRIPT_SAMPLE_FILES = 24
WARM_UP_WAIT_S = 2.0  # the longest warm_up waits for the chat model

log = logging.getLogger("kbqa")


class KnowledgeBase:
    """A knowledge base folder (KBQA_HOME) with its models; heavy parts load on first use,
    once, even when sessions ask together. Models come from `models`, which a server shares
    between the knowledge bases it opens (one per settings)."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None,
                 generator: Generator | None = None,
                 models: SharedModels | None = None) -> None:
        self.settings = settings
        self.models = models or process_models()
        self._parts = threading.RLock()  # guards the lazily built parts below
        self.home = settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        self.vectors_dir = self.home / "vectors"
        self.store = Store(settings.db_url)
        self.vectors: VectorSpaces = (
            PgSpaces(self.store, lock_timeout_s=settings.lock_timeout_s)
            if self.store.dialect == "postgresql" else
            FaissSpaces(self.vectors_dir, self.store, ann_threshold=settings.ann_threshold,
                        lock_timeout_s=settings.lock_timeout_s))
        self._embedder = embedder
        self._embedder_given = embedder is not None
        self._generator = generator
        self._others: dict[str, Embedder] = {}  # the other spaces' embedders, by name
        self._matcher = TermMatcher()
        self._reranker: Reranker | None = None
        self._conversations: Conversations | None = None
        self._similarity: WordSimilarity | None = None
        self._ocr: OcrEngine | None = None

    # -- parts, built once ---------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        with self._parts:
            if self._embedder is None:
                spec = self.settings.embedder
                recorded = [name for name, _ in recorded_spaces(self.store)]
                if spec == AUTO_EMBEDDER or (len(recorded) > 1 and spec in recorded):
                    spec = self.store.get_meta("embedder") or DEFAULT_EMBEDDER
                self._embedder = self._make_embedder(spec)
            return self._embedder

    def _make_embedder(self, spec: str) -> Embedder:
        s = self.settings
        return self.models.get(
            ("embedder", spec, s.threads, s.embedder_backend, str(s.models_dir)),
            lambda: make_embedder(spec, threads=s.threads, backend=s.embedder_backend,
                                  models_dir=s.models_dir))

    def embedder_named(self, name: str) -> Embedder:
        """The embedder of a vector space (the automatic embedder's spaces load lazily)."""
        with self._parts:
            if name == self.embedder.name:
                return self.embedder
            if name not in self._others:
                self._others[name] = self._make_embedder(name)
            return self._others[name]

    @property
    def auto_spaces(self) -> bool:
        """Chunks spread over a MiniLM and a multilingual space: with the automatic embedder,
        or a base that already has both (an explicit setting naming one of them must not
        leave the other stale). A base built with another embedder keeps its one space."""
        if self._embedder_given:
            return False
        recorded = {name for name, _ in recorded_spaces(self.store)}
        if not recorded <= {LATIN_SPACE, CROSS_SPACE}:
            return False
        return self.settings.embedder == AUTO_EMBEDDER or len(recorded) > 1

    def embedders(self) -> Embedders:
        return Embedders(self.embedder, self.embedder_named if self.auto_spaces else None,
                         always_cross=self.settings.cross_language == "always")

    def _pick_embedder(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """With embedder "auto", the ingests before the first stored chunk read a few of the
        files and pick by their script; once vectors exist, the recorded choice stays."""
        if self._embedder_given or self.settings.embedder != AUTO_EMBEDDER:
            return
        recorded = self.store.get_meta("embedder")
        if recorded is not None:  # another writer chose first: follow the record
            with self._parts:
                stale = self._embedder is not None and self._embedder.name != recorded
                if stale:
                    self._embedder = None
            if stale:  # outside the parts' lock: a reader holds the spaces' lock, then ours
                self.vectors.forget()
            return
        files, _, _ = discover(paths)
        sample: list[str] = []
        options = LoadOptions(passwords=self.settings.pdf_passwords)
        limit = self.settings.max_file_mb * 1024 * 1024
        for path in files[:SCRIPT_SAMPLE_FILES]:
            try:
                if path.stat().st_size > limit:
                    continue
                document = load(path, options)
            except Exception:
                continue
            sample.extend(section.text[:4000] for section in document.sections[:20])
        choice = choose_embedder(sample)
        with self._parts:
            if self._embedder is not None and self._embedder.name == choice:
                return
            log.info("embedder for this knowledge base: %s (chosen by the documents' script; "
                     "set KBQA_EMBEDDER to choose yourself)", choice)
            self._embedder = self._make_embedder(choice)
        self.vectors.forget()  # an empty base's first space is named after the choice

    @property
    def ocr(self) -> OcrEngine | None:
        """The OCR engine for scanned pages and images (its model loads on first use), or
        None with KBQA_OCR=off."""
        if self.settings.ocr == "off":
            return None
        with self._parts:
            if self._ocr is None:
                threads = self.settings.threads
                self._ocr = self.models.get(("ocr", threads), lambda: OcrEngine(threads))
            return self._ocr

    @property
    def conversations(self) -> Conversations:
        """The chats kept with this knowledge base (same database)."""
        with self._parts:
            if self._conversations is None:
                self._conversations = Conversations(self.store.engine)
            return self._conversations

    @property
    def reranker(self) -> Reranker | None:
        with self._parts:
            s = self.settings
            if self._reranker is None and s.reranker:
                self._reranker = self.models.get(
                    ("reranker", s.reranker, s.threads),
                    lambda: CrossEncoderReranker(s.reranker, threads=s.threads))
            return self._reranker

    @property
    def generator(self) -> Generator:
        with self._parts:
            if self._generator is None:
                s = self.settings
                if s.llm_url:  # a model server: the packaged model's vocabulary counts
                    self._generator = self.models.get(
                        ("remote generator", s.llm_url, s.llm_model, s.llm_api_key, s.n_ctx),
                        lambda: RemoteGenerator(s.llm_url, model=s.llm_model,
                                                api_key=s.llm_api_key, n_ctx=s.n_ctx,
                                                tokenizer_model=s.model_path))
                    return self._generator
                self._generator = self.models.get(
                    ("generator", str(s.model_path), s.n_ctx, s.threads, s.n_gpu_layers, s.seed),
                    lambda: LlamaCppGenerator(s.model_path, n_ctx=s.n_ctx, threads=s.threads,
                                              n_gpu_layers=s.n_gpu_layers, seed=s.seed))
            return self._generator

    def generator_name(self) -> str:
        """Which chat model answers, without loading it."""
        s = self.settings
        if s.llm_url:
            return f"{s.llm_model or 'the first model'} at {s.llm_url}"
        return s.model_path.name

    @property
    def similarity(self) -> WordSimilarity:
        """Word similarity by the embedder, for telling a synonym from a swapped fact; with
        the automatic spaces, by the one that reads the words' script."""
        with self._parts:
            if self._similarity is None:
                self._similarity = self._make_similarity()
            return self._similarity

    def _make_similarity(self) -> WordSimilarity:
        if not self.auto_spaces:
            return embedding_similarity(self.embedder.encode)
        embedders = self.embedders()
        by_script = {name: embedding_similarity(  # models load on first need
            lambda texts, name=name: embedders.get(name).encode(texts))
            for name in (LATIN_SPACE, CROSS_SPACE)}

        def similarity(first: str, second: str) -> float:
            cjk = is_cjk_text(first) or is_cjk_text(second)
            return by_script[CROSS_SPACE if cjk else LATIN_SPACE](first, second)

        return similarity

    @property
    def reader(self) -> Reader | None:
        """The second reader (the chat model, asked yes or no), unless switched off."""
        return model_reader(self.generator) if self.settings.reads_twice else None

    def indexes(self) -> dict[str, VectorIndex]:
        """The committed vector spaces by embedder name; reloaded when another process
        committed a newer generation."""
        return self.vectors.committed(self._first_space)

    def _first_space(self) -> tuple[str, int]:
        """An empty knowledge base's one space: the embedder's."""
        return self.embedder.name, self.embedder.dim

    def index(self) -> VectorIndex:
        """The first vector space (the only one unless the embedder is automatic)."""
        return next(iter(self.indexes().values()))

    def spaces(self) -> list[Space]:
        """The vector spaces that hold vectors, with their embedders, for search."""
        indexes = self.indexes()
        spaces = [Space(name, self.embedder_named(name), index)
                  for name, index in indexes.items() if len(index)]
        if spaces:
            return spaces
        name, index = next(iter(indexes.items()))
        return [Space(name, self.embedder_named(name), index)]

    # -- the public operations -----------------------------------------------------------
    @contextmanager
    def _writing(self, paths: Sequence[str | os.PathLike[str]] = ()) -> Iterator[IngestState]:
        """The writer lock and the index state a write advances; kept even if it fails. An
        empty base's automatic embedder is picked here, under the lock, from `paths`."""
        with self.vectors.writer_lock(on_wait=log.warning):
            self._pick_embedder(paths)
            # The writer changes copies: searches in other threads keep reading the
            # committed spaces, never ones being modified under them.
            state = self.vectors.draft(self._first_space)
            try:
                yield state
            except BaseException:
                # Commits made before the failure stand; what it changed in memory and did
                # not commit (a backfill cut short) must not be searched: read the files.
                self.vectors.settle(state, ok=False)
                raise
            self.vectors.settle(state, ok=True)

    def ingest(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
               progress: bool = False, prune: bool = True,
               on_progress: ProgressFn | None = None,
               within: Sequence[Path] | None = None) -> IngestReport:
        """Add, update (and, for whole folders, prune) documents; unchanged files cost a hash.
        `progress` draws terminal bars; `on_progress` is called as files and chunks are done;
        with `within`, files whose real path (links followed) is elsewhere are reported."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        with self._writing(paths) as state:
            return ingest_paths(paths, store=self.store, state=state, embedders=self.embedders(),
                                settings=self.settings, progress=progress, prune=prune,
                                on_progress=on_progress, within=within, ocr=self.ocr)

    def remove(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
               ) -> list[str]:
        """Forget files or folders (not on disk, only here): rows and vectors go at once,
        nothing is re-embedded. Returns the files removed."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        with self._writing() as state:
            return remove_paths([str(p) for p in paths], store=self.store, state=state)

    def rebuild(self) -> None:
        """Forget every document and vector (for a new embedder); files on disk are untouched."""
        with self.vectors.writer_lock(on_wait=log.warning, sole=True):
            self.vectors.clear()  # conversations, in their own tables, stay

    def search(self, query: str, k: int = 10, *, filters: Mapping[str, Any] | None = None,
               mode: str = "hybrid") -> list[Hit]:
        """Hybrid BM25 + dense search; `mode` "dense" or "lexical" for one side alone."""
        validate_filters(filters)
        if self.is_empty():
            return []
        self.check_embedder()
        return self.retriever().search(query, k, filters, mode=mode)

    def check_embedder(self) -> None:
        """Raise EmbedderMismatch (saying how to rebuild) when the stored vectors were made by
        another embedder than the one the settings now name."""
        check_embedder(self.store, self.embedder)

    def retriever(self) -> Retriever:
        return Retriever(self.store, self.spaces,
                         RetrievalOptions.from_settings(self.settings), self._matcher,
                         self.reranker)

    def ask_stream(self, question: str, *, history: Sequence[Message] | None = None,
                   on_wait: WaitFn | None = None) -> Iterator[str | Answer]:
        """Text pieces as the model writes them, then the final checked Answer. With a
        history, the question is first rewritten to stand alone for the search.

        The chat model answers one question at a time (in every session and knowledge base
        of this process that shares it): while others are ahead, `on_wait` hears how many,
        then 0 when this question's turn begins."""
        if self.is_empty():
            raise IndexMissing(
                f"the knowledge base at {self.home} has no documents yet: add some with "
                "`make ingest DIR=path/to/docs` (or the upload box in the chat)"
            )
        generator = self.generator
        line, wait_s = self.models.line(generator), self.settings.queue_timeout_s
        query = question
        if history:  # the rewrite is a model call of its own, in its own turn
            with line.turn(on_wait, wait_s):
                query = condense_question(question, history, generator,
                                          self.settings.reads_twice)
        # The search runs outside the turn: while it waits for an embedder busy with an
        # ingest batch, the model answers the next question in line.
        hits = self.search(query, k=max(self.settings.top_k * 2, 8))
        with line.turn(on_wait, wait_s):
            yield from answer_stream(question, hits, generator, self.settings, history or (),
                                     self.similarity, search_query=query, reader=self.reader)

    def warm_up(self) -> None:
        """Load the embedder, the vectors and the chat model, and evaluate the prompt's fixed
        instructions, so that the first question is as fast as the next (the chat calls this
        while it shows its loading spinner)."""
        for space in self.spaces():
            space.embedder.encode_queries(["warm-up"])
        generator = self.generator
        try:  # a model busy answering is warm already: do not hold the page up behind it
            with self.models.line(generator).turn(timeout_s=WARM_UP_WAIT_S):
                generator.warm(prefix(self.settings.reads_twice))
        except ModelBusy:
            log.info("the chat model is answering: warm-up skipped")

    def ask(self, question: str, *, history: Sequence[Message] | None = None,
            on_wait: WaitFn | None = None) -> Answer:
        return final_answer(self.ask_stream(question, history=history, on_wait=on_wait))

    # -- inspection ----------------------------------------------------------------------
    def is_empty(self) -> bool:
        return self.store.counts()[1] == 0

    def documents(self) -> list[StoredDocument]:
        return self.store.documents()

    def passages(self, chunk_ids: Sequence[int]) -> dict[int, Chunk]:
        """Stored chunks by id (a citation's whole passage, for the source viewer)."""
        return self.store.chunks_by_id(chunk_ids)

    def scan_lines(self, chunk_id: int) -> list[OcrLine]:
        """The OCR lines of a cited chunk's page (boxes in fractions of the page); empty
        unless the page was read by OCR."""
        return self.store.scan_lines(chunk_id)

    def file_of(self, source: str) -> Path:
        """The file on disk a cited source came from (an attachment's message)."""
        stored = self.store.document_by_path(source)
        return Path(stored.file if stored is not None and stored.file else source)

    def scan_view(self, citation: Citation, width: int = PAGE_IMAGE_WIDTH) -> ScanView | None:
        """The scanned page a citation points at, with the recognised lines that hold its
        quote outlined; None when the page was not read by OCR, or its file is gone or has
        changed since the ingest (the boxes would land on another page)."""
        chunk = self.store.chunks_by_id([citation.chunk_id]).get(citation.chunk_id)
        stored = self.store.document_by_path(citation.source)
        if chunk is None or stored is None or citation.page is None \
                or (chunk.source, chunk.page) != (citation.source, citation.page):
            return None  # a kept chat's citation of a passage since re-ingested
        lines = self.store.scan_lines(citation.chunk_id)
        file = Path(stored.file or citation.source)
        try:
            if not lines or file.stat().st_size != stored.size:
                return None
            picture = page_picture(citation.source, file, citation.page, width,
                                   self.settings.pdf_passwords)
            if picture is None:
                return None
            chosen = supporting_lines(lines, citation.quote)
            return ScanView(outlined_png(picture, [lines[i] for i in chosen], width),
                            len(chosen))
        except (OSError, MemoryError, ValueError):  # the passage is still shown
            return None

    def stats(self) -> KbStats:
        documents, chunks = self.store.counts()
        db = Path(self.settings.db_url.removeprefix("sqlite:///"))
        on_disk = [db.with_name(db.name + suffix) for suffix in ("", "-wal")]
        if self.vectors_dir.is_dir():
            on_disk.extend(self.vectors_dir.iterdir())
        size = sum(p.stat().st_size for p in on_disk if p.is_file())
        # From the metadata: no model loaded, no vector file read.
        held = [name for name, _, count in recorded_spaces(self.store, counts=True) if count]
        return KbStats(documents=documents, chunks=chunks,
                       embedder=" + ".join(held) or self.store.get_meta("embedder")
                       or self.settings.embedder,
                       size_bytes=size)

    def close(self) -> None:
        self.store.close()


def open_kb(home: str | os.PathLike[str] | None = None, **settings: Any) -> KnowledgeBase:
    """A knowledge base at `home` (default KBQA_HOME or data/); keyword settings override.
    `models=` shares loaded models with other knowledge bases of the process."""
    embedder = settings.pop("embedder_impl", None)
    generator = settings.pop("generator", None)
    models = settings.pop("models", None)
    resolved = from_env(home=Path(home) if home is not None else None, **settings)
    return KnowledgeBase(resolved, embedder=embedder, generator=generator, models=models)
