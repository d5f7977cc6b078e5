"""python -m kbqa ingest|ask|search|status|serve."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from kbqa.domain import Answer
from kbqa.errors import KbqaError
from kbqa.settings import SEARCH_MODES

if TYPE_CHECKING:
    from kbqa.kb import KnowledgeBase

EPILOG = """examples:
  python -m kbqa ingest docs/               add a folder (again: only changes are embedded)
  python -m kbqa ingest --password s3cret report.pdf    an encrypted PDF
  python -m kbqa remove docs/old/           forget files or folders (instant, no re-embedding)
  python -m kbqa ask "Where was Iwan Roberts born?"
  python -m kbqa chat                       a conversation: follow-ups know the earlier turns
  python -m kbqa search "warranty period" -k 5
  python -m kbqa serve --port 8501          the browser chat on http://127.0.0.1:8501
  python -m kbqa api --port 8000            the HTTP API on http://127.0.0.1:8000/v1

settings come from KBQA_* variables: KBQA_HOME (knowledge base folder), KBQA_MODEL (a .gguf
file), KBQA_LLM_URL (a model server), KBQA_EMBEDDER, KBQA_N_GPU_LAYERS, KBQA_N_CTX,
KBQA_THREADS, KBQA_TOP_K, KBQA_API_KEY (see README)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kbqa",
        description="Private question answering over your own documents, with citations.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", help="knowledge base folder (default: KBQA_HOME or data/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ing = sub.add_parser("ingest", help="add or update files and folders")
    ing.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    ing.add_argument("--no-prune", action="store_true",
                     help="keep documents whose files were deleted from an ingested folder")
    ing.add_argument("--rebuild", action="store_true",
                     help="forget everything first (needed after changing KBQA_EMBEDDER)")
    ing.add_argument("--password", action="append", default=[], metavar="PASSWORD",
                     help="a password to try on encrypted PDFs; repeatable "
                          "(or KBQA_PDF_PASSWORDS)")
    ing.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    rem = sub.add_parser("remove", help="forget files or folders (the files stay on disk)")
    rem.add_argument("paths", nargs="+", metavar="PATH", help="files or folders as ingested")

    ask = sub.add_parser("ask", help="answer a question from the documents, with sources")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the Answer as JSON")

    sub.add_parser("chat", help="a conversation in the terminal (follow-up questions work); "
                               "an empty line or Ctrl-D ends it")

    search = sub.add_parser("search", help="show the passages most relevant to a query")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    search.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="path=GLOB, type=pdf, since=2026-01-01 or until=2026-06-30 "
                             "(ingestion date); repeatable")
    search.add_argument("--mode", choices=SEARCH_MODES, default="hybrid",
                        help="hybrid (default): BM25 and embeddings fused; or one of them")
    search.add_argument("--json", action="store_true", help="print hits as JSON")

    sub.add_parser("status", help="documents, chunks and models in use")

    serve = sub.add_parser("serve", help="start the browser chat (Streamlit)")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--host", default=None,
                       help="address to bind (default KBQA_UI_ADDRESS or 127.0.0.1: this "
                            "machine only; any other address needs KBQA_UI_PASSWORD)")
    mig = sub.add_parser("migrate", help="copy a knowledge base to another database (SQLite "
                                         "<-> PostgreSQL) without re-embedding; resumable")
    mig.add_argument("source", metavar="SRC",
                     help="a knowledge base folder (SQLite) or a postgresql+psycopg:// URL")
    mig.add_argument("destination", metavar="DST", help="an empty one, of either kind")
    mig.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    api = sub.add_parser("api", help="start the HTTP API (OpenAI-compatible chat completions "
                                     "with citations, search, documents, ingest jobs)")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--host", default=None,
                     help="address to bind (default KBQA_API_ADDRESS or 127.0.0.1: this "
                          "machine only; any other address needs KBQA_API_KEY)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="kbqa: %(message)s")
    if not args.verbose:
        _quiet_libraries()
    try:
        if args.command == "serve":
            return serve(args.host, args.port, args.home)
        if args.command == "migrate":
            return _migrate(args)
        from kbqa import open_kb

        passwords = getattr(args, "password", None)
        kb = open_kb(args.home, **({"pdf_passwords": tuple(passwords)} if passwords else {}))
        if args.command == "ingest":
            return _ingest(kb, args)
        if args.command == "remove":
            return _remove(kb, args)
        if args.command == "ask":
            return _ask(kb, args)
        if args.command == "chat":
            return _chat(kb)
        if args.command == "search":
            return _search(kb, args)
        if args.command == "api":
            from kbqa.api import serve_api

            return serve_api(kb, args.host or kb.settings.api_address, args.port,
                             kb.settings.api_key)
        return _status(kb)
    except KbqaError as exc:
        print(f"kbqa: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kbqa: interrupted; the last committed state is kept", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("sentence_transformers", "transformers", "faiss", "faiss.loader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _ingest(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    if args.rebuild:
        kb.rebuild()
        print(f"kbqa: cleared the knowledge base at {kb.home}")
    report = kb.ingest(args.paths, progress=not args.quiet, prune=not args.no_prune)
    for failure in report.failed:
        print(f"  failed  {failure.path}: {failure.reason}")
    for path in report.removed:
        print(f"  removed {path} (no longer on disk)")
    for path, original in report.duplicates:
        print(f"  same as {original}: {path} (stored once)")
    print(f"kbqa: {report.summary()}")
    docs, chunks = kb.store.counts()
    print(f"kbqa: the knowledge base at {kb.home} holds {docs} documents, {chunks} chunks")
    return 0 if report.ok else 1


def _remove(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    removed = kb.remove(args.paths)
    for path in removed:
        print(f"  removed {path}")
    if not removed:
        print("kbqa: nothing to remove: no ingested file matches (see `python -m kbqa status`)")
        return 1
    print(f"kbqa: removed {len(removed)} files; the files on disk are untouched")
    return 0


def _ask(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(asdict(kb.ask(args.question)), ensure_ascii=False, indent=2))
        return 0
    return 0 if _answer(kb, args.question, []) is not None else 1


def _chat(kb: KnowledgeBase) -> int:
    history: list[dict[str, str]] = []
    print("Ask about your documents; follow-up questions know the earlier turns. "
          "An empty line ends the chat.")
    while True:
        try:
            question = input("\n? ").strip()
        except EOFError:
            return 0
        if not question:
            return 0
        final = _answer(kb, question, history)
        if final is not None:
            history += [{"role": "user", "content": question},
                        {"role": "assistant", "content": final.text}]


def _answer(kb: KnowledgeBase, question: str, history: list[dict[str, str]]) -> Answer | None:
    """Stream one answer to the terminal, then its checked text and sources."""
    final = None
    streamed = ""
    for item in kb.ask_stream(question, history=history):
        if isinstance(item, Answer):
            final = item
        else:
            streamed += item
            print(item, end="", flush=True)
    if final is None:
        return None
    shown = streamed.strip()
    if final.text.startswith(shown):
        print(final.text[len(shown):])  # e.g. the closest sources after a refusal
    else:
        print(f"\n\n{final.text}")  # citation numbers were checked and renumbered
    if final.citations:
        print("\nSources:")
        for number, cite in enumerate(final.citations, start=1):
            where = f", {cite.place}" if cite.place else ""
            print(f"[{number}] {cite.source}{where}\n    “{cite.quote}”")
    return final


def _search(kb: KnowledgeBase, args: argparse.Namespace) -> int:
    filters = {}
    for item in args.filter:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--filter wants KEY=VALUE, got {item!r}")
        filters[key.strip()] = value.strip()
    hits = kb.search(args.query, args.k, filters=filters or None, mode=args.mode)
    if args.json:
        print(json.dumps([asdict(h) for h in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no passages found (is the knowledge base empty? `python -m kbqa status`)")
    for rank, hit in enumerate(hits, start=1):
        where = f", {hit.chunk.place}" if hit.chunk.place else ""
        text = " ".join(hit.chunk.text.split())
        print(f"{rank}. {hit.chunk.source}{where}  (similarity {hit.similarity:.2f}, "
              f"terms {hit.coverage:.0%})\n   {text[:240]}")
    return 0


def _open_any(where: str, home: str | None) -> tuple[KnowledgeBase, str]:
    """A knowledge base named by its folder or its PostgreSQL URL, and what it is called
    (the URL without its password)."""
    from kbqa import open_kb
    from sqlalchemy.engine import make_url

    if where.startswith("postgresql"):
        url = make_url(where)
        return open_kb(home, database_url=where), url.render_as_string(hide_password=True)
    folder = Path(where).expanduser().resolve()
    return open_kb(folder, database_url=""), str(folder)


def _migrate(args: argparse.Namespace) -> int:
    import time

    from kbqa.ingest.migrate import migrate
    from tqdm import tqdm

    source, name = _open_any(args.source, args.home)
    destination, target = _open_any(args.destination, args.home)
    if source.is_empty():
        print(f"kbqa: {name} holds no documents: nothing to copy", file=sys.stderr)
        return 2
    started = time.perf_counter()
    bar = tqdm(unit="doc", desc="copying", disable=args.quiet)

    def advance(done: int, total: int) -> None:  # the documents left to copy, this run
        bar.total, bar.n = total, done
        bar.refresh()

    report = migrate(source, destination, identity=name, on_progress=advance)
    bar.close()
    resumed = f" (resumed after document {report.resumed_after})" if report.resumed_after \
        else ""
    chats = f"{report.conversations} chat{'' if report.conversations == 1 else 's'}"
    print(f"kbqa: copied {report.documents} documents, {report.chunks} passages and "
          f"{chats} from {name} to {target}{resumed} in "
          f"{time.perf_counter() - started:.0f} s, without re-embedding")
    return 0


def _status(kb: KnowledgeBase) -> int:
    stats = kb.stats()
    s = kb.settings
    print(f"knowledge base: {kb.home}")
    print(f"documents:      {stats.documents}")
    print(f"chunks:         {stats.chunks}")
    print(f"embedder:       {stats.embedder}")
    model = s.model_path
    print(f"chat model:     {model}{'' if model.is_file() else '  (missing: run make setup)'}")
    print(f"gpu layers:     {s.n_gpu_layers}   context: {s.n_ctx}   threads: {s.threads}")
    return 0


def serve(host: str | None, port: int, home: str | None) -> int:
    """Run the Streamlit page: usage statistics off, bound to this machine unless a password
    guards it, uploads capped at KBQA_MAX_UPLOAD_MB."""
    from kbqa.access import check_exposure
    from kbqa.settings import from_env

    settings = from_env(home=Path(home) if home else None)
    host = host or settings.ui_address
    check_exposure(host, settings.ui_password)
    ui = Path(__file__).with_name("ui.py")
    env = dict(os.environ)
    env["KBQA_UI_ADDRESS"] = host  # the page checks it too
    if home:
        env["KBQA_HOME"] = home
    cmd = [sys.executable, "-m", "streamlit", "run", str(ui),
           "--server.address", host, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--global.developmentMode", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal", "--server.enableXsrfProtection", "true",
           "--client.showErrorDetails", "none",
           "--server.maxUploadSize", str(settings.max_upload_mb)]
    print(f"kbqa: chat at http://{host}:{port}  (Ctrl+C stops it)", flush=True)
    os.execve(sys.executable, cmd, env)  # the server is this process: stopping it stops all
