"""The library page: add files (or a zip) with a progress bar and a per-file report, list,
search and delete documents, re-ingest a folder, and see what the knowledge base holds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import kbqa
import streamlit as st
from kbqa.access import DiskScope
from kbqa.domain import IngestProgress, IngestReport
from kbqa.errors import KbqaError
from kbqa.ingest.loaders import supported_suffixes
from kbqa.uploads import UPLOADS_DIR, save_uploads

ACCEPTED = sorted({suffix.lstrip(".") for suffix in supported_suffixes()} | {"zip"})


def size_label(size: int) -> str:
    """Example: size_label(1536) == "1.5 KiB" """
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def ingest_with_progress(kb: kbqa.KnowledgeBase, paths: list[Path],
                         within: Sequence[Path] | None = None) -> IngestReport:
    bar = st.progress(0.0, text="Reading the files…")
    shown = [0.0]  # the bar never goes back when more chunks are planned

    def moved(progress: IngestProgress) -> None:
        name = Path(progress.current).name
        shown[0] = max(shown[0], progress.fraction)
        reading = (f" · reading scanned page {progress.ocr_done + 1} of {progress.ocr_total}"
                   if progress.ocr_total and progress.ocr_done < progress.ocr_total else "")
        bar.progress(shown[0],
                     text=f"{progress.files_done}/{progress.files_total} files read, "
                          f"{progress.chunks_done}/{progress.chunks_planned} passages "
                          f"embedded{f' · {name}' if name else ''}{reading}")

    report = kb.ingest(paths, on_progress=moved, within=within)
    bar.progress(1.0, text="Done")
    return report


def show_report(report: IngestReport, refused: Sequence[tuple[str, str]] = ()) -> None:
    """The summary, then every file that failed with its reason (which says what to do)."""
    failed = [(Path(f.path).name, f.reason) for f in report.failed] + list(refused)
    if report.added or report.updated or not failed:
        st.success(report.summary())
    else:
        st.error(f"Nothing was added. {report.summary()}")
    for name, reason in failed:
        st.error(f"{name}: {reason}")


def upload_box(kb: kbqa.KnowledgeBase, key: str) -> None:
    limit = kb.settings.max_upload_mb
    files = st.file_uploader(
        f"Add documents: PDF, Word, PowerPoint, Excel, e-mail, web pages, text, or a zip of "
        f"them (up to {limit} MB each)", type=ACCEPTED, accept_multiple_files=True, key=key)
    if files and st.button("Add to the knowledge base", key=f"{key}-go", type="primary"):
        saved = save_uploads([(f.name, bytes(f.getbuffer())) for f in files],
                             kb.home / UPLOADS_DIR, limit * 2**20)
        refused = [(f.path, f.reason) for f in saved.failed]
        report = ingest_with_progress(kb, saved.paths) if saved.paths else IngestReport()
        show_report(report, refused)
        get_ready(kb)


def get_ready(kb: kbqa.KnowledgeBase) -> None:
    """After the first documents arrive, load the chat model and its fixed instructions
    now, while the user reads the report, not on the first question."""
    if kb.is_empty():
        return
    with st.spinner("Loading the chat model…"):
        try:
            kb.warm_up()
        except KbqaError as exc:
            st.warning(str(exc))


def delete_documents(kb: kbqa.KnowledgeBase, paths: list[str]) -> list[str]:
    """Forget documents; the copies kbqa keeps of uploaded files go too (files elsewhere on
    disk are the user's and stay)."""
    removed = kb.remove(paths)
    uploads = (kb.home / UPLOADS_DIR).resolve()
    for path in removed:
        copy = Path(path)
        if copy.is_file() and copy.resolve().is_relative_to(uploads):
            copy.unlink()
    return removed


def _delete_chosen(kb: kbqa.KnowledgeBase) -> None:
    removed = delete_documents(kb, list(st.session_state.get("library-delete", [])))
    st.session_state["library-delete"] = []
    st.session_state["library-message"] = (
        f"Deleted {len(removed)} document(s); their passages are no longer searched. Files "
        "outside kbqa's uploads folder stay on your disk.")


def library_page(kb: kbqa.KnowledgeBase, scope: DiskScope) -> None:
    st.title("Library")
    stats = kb.stats()
    left, middle, right = st.columns(3)
    left.metric("Documents", stats.documents)
    middle.metric("Passages", stats.chunks)
    right.metric("Size on disk", size_label(stats.size_bytes))
    st.caption(f"Chat model: {kb.settings.model_path.name} · embedder: {stats.embedder} · "
               f"folder: {kb.home}")

    st.subheader("Add documents")
    upload_box(kb, "library-upload")
    with st.expander("Re-ingest a folder on this machine"):
        if scope.exposed:
            st.caption("Served to the network: only these folders can be ingested here: "
                       + ", ".join(f"`{root}`" for root in scope.ingest_roots))
        folder = st.text_input("Folder", key="reingest-folder",
                               placeholder="/path/to/your/documents")
        if st.button("Ingest the folder", disabled=not folder):
            path = Path(folder).expanduser()
            if problem := scope.folder_problem(path):
                st.error(problem)
            elif not path.is_dir():
                st.error(f"{folder} is not a folder on this machine: check the path.")
            else:
                show_report(ingest_with_progress(kb, [path], scope.within))

    st.subheader("Documents")
    if message := st.session_state.pop("library-message", None):
        st.success(message)
    documents = kb.documents()
    query = st.text_input("Search the list", key="library-search",
                          placeholder="part of a file name or a type, e.g. pdf")
    shown = [d for d in documents
             if not query or query.lower() in d.path.lower() or query.lower() == d.kind]
    if not documents:
        st.info("No documents yet: add some above, or run `make ingest DIR=path/to/docs`.")
        return
    st.dataframe(
        [{"document": Path(d.path).name, "type": d.kind, "pages": d.pages,
          "passages": d.chunk_count, "ingested": d.ingested_at.strftime("%Y-%m-%d %H:%M"),
          "path": d.path} for d in shown],
        hide_index=True, width="stretch")
    st.caption(f"{len(shown)} of {len(documents)} documents")
    chosen = st.multiselect("Delete documents from the knowledge base",
                            [d.path for d in shown], key="library-delete",
                            format_func=lambda p: Path(p).name)
    if chosen:
        st.button(f"Delete {len(chosen)} document(s)", type="primary", key="library-delete-go",
                  on_click=_delete_chosen, args=(kb,))
