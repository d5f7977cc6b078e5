"""The Streamlit chat: presentation only; every action goes through the public API."""

from __future__ import annotations

from pathlib import Path

import kbqa
import streamlit as st
from kbqa.domain import Answer, Citation
from kbqa.errors import KbqaError
from kbqa.ingest.loaders import supported_suffixes

ACCEPTED = [suffix.lstrip(".") for suffix in supported_suffixes()]


@st.cache_resource(show_spinner="Loading the knowledge base and the models…")
def knowledge_base() -> kbqa.KnowledgeBase:
    kb = kbqa.open_kb()
    if not kb.is_empty():
        try:
            kb.warm_up()  # the first answer then starts as fast as the next
        except KbqaError as exc:  # documents can still be added and listed without a model
            st.warning(str(exc))
    return kb


def source_line(number: int, cite: Citation) -> str:
    place = cite.location or (f"page {cite.page}" if cite.page else "")
    where = f", {place}" if place else ""
    return f"[{number}] {Path(cite.source).name}{where}"


def show_sources(answer: Answer) -> None:
    if not answer.grounded and not answer.citations:
        return
    st.caption("Sources")
    for number, cite in enumerate(answer.citations, start=1):
        with st.expander(source_line(number, cite)):
            st.markdown(f"> {cite.quote}")
            st.caption(cite.source)


def show_answer(answer: Answer) -> None:
    if answer.grounded:
        st.markdown(answer.text)
        if answer.unsupported:
            st.caption(f"{len(answer.unsupported)} sentence(s) marked \"not supported by the "
                       "documents\": no passage backs them, treat them with caution.")
    else:
        st.warning(answer.text, icon="🔎")
        if answer.unsupported:
            with st.expander("What the model wrote (no passage in the documents supports it)"):
                for sentence in answer.unsupported:
                    st.markdown(f"- {sentence}")
    if answer.search_query and answer.search_query != answer.question:
        st.caption(f"Searched for: {answer.search_query}")
    show_sources(answer)


def upload_box(kb: kbqa.KnowledgeBase, key: str) -> None:
    files = st.file_uploader("Add documents (PDF, Word, PowerPoint, Excel, e-mail, web, text)",
                             type=ACCEPTED,
                             accept_multiple_files=True, key=key)
    if files and st.button("Ingest", key=f"{key}-go", type="primary"):
        folder = kb.home / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for upload in files:
            target = folder / Path(upload.name).name
            target.write_bytes(upload.getbuffer())
            saved.append(target)
        with st.spinner(f"Reading and indexing {len(saved)} file(s)…"):
            report = kb.ingest(saved)
        st.success(report.summary())
        for failure in report.failed:
            st.error(f"{Path(failure.path).name}: {failure.reason}")


def sidebar(kb: kbqa.KnowledgeBase) -> None:
    with st.sidebar:
        st.header("kbqa")
        stats = kb.stats()
        st.caption(f"{stats.documents} documents · {stats.chunks} passages")
        st.caption(f"Chat model: {kb.settings.model_path.name}")
        st.caption(f"Embedder: {stats.embedder}")
        st.caption("Everything runs on this machine; nothing is sent anywhere.")
        if st.button("New chat"):
            st.session_state.messages = []
            st.rerun()
        if not kb.is_empty():
            upload_box(kb, "sidebar-upload")


def chat(kb: kbqa.KnowledgeBase) -> None:
    messages: list[dict] = st.session_state.setdefault("messages", [])
    for message in messages:
        with st.chat_message(message["role"]):
            if message["role"] == "assistant":
                show_answer(message["answer"])
            else:
                st.markdown(message["content"])
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(question)
    history = [{"role": m["role"], "content": m["content"]} for m in messages]
    with st.chat_message("assistant"):
        placeholder = st.empty()
        final: Answer | None = None
        text = ""
        try:
            for item in kbqa.ask_stream(question, history=history, kb=kb):
                if isinstance(item, Answer):
                    final = item
                else:
                    text += item
                    placeholder.markdown(text + " ▌")
        except KbqaError as exc:
            placeholder.empty()
            st.error(str(exc))
            return
        placeholder.empty()
        if final is not None:
            show_answer(final)
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": final.text, "answer": final})


def main() -> None:
    st.set_page_config(page_title="kbqa", page_icon="📚", layout="centered")
    try:
        kb = knowledge_base()
    except KbqaError as exc:
        st.error(str(exc))
        return
    sidebar(kb)
    st.title("Ask your documents")
    if kb.is_empty():
        st.info(
            "Your knowledge base is empty. Add documents here, or from a terminal: "
            "`make ingest DIR=path/to/your/docs`."
        )
        upload_box(kb, "first-upload")
        return
    chat(kb)


main()
