"""The chat page: streamed answers, source chips with the passage and page, kept chats."""

from __future__ import annotations

from pathlib import Path

import kbqa
import streamlit as st
from kbqa.conversations import history_of
from kbqa.domain import Answer, Chunk, Citation, ScanView
from kbqa.errors import KbqaError
from kbqa.preview import (
    answer_markdown,
    chip_label,
    highlight,
    highlight_found,
    marked_unsupported,
    render_pdf_page,
    safe_markdown,
)
from kbqa.ui_library import upload_box

CURRENT = "conversation"  # session key: the open chat's id, None for a new one


@st.cache_data(max_entries=64, show_spinner=False)
def page_image(path: str, page: int, modified: float, passwords: tuple[str, ...]
               ) -> bytes | None:
    """A rendered PDF page, cached per file version (`modified`)."""
    return render_pdf_page(Path(path), page, passwords=passwords)


@st.cache_data(max_entries=64, show_spinner=False)
def scan_image(_kb: kbqa.KnowledgeBase, database: str, source: str, page: int, chunk_id: int,
               quote: str, modified: float) -> ScanView | None:
    """A scanned page with the lines that hold the quote outlined, cached per knowledge
    base (`database`), citation and file version (`modified`)."""
    return _kb.scan_view(Citation(source=source, page=page, quote=quote, chunk_id=chunk_id,
                                  score=0.0))


def show_source(kb: kbqa.KnowledgeBase, cite: Citation, chunk: Chunk | None) -> None:
    """File, place, the whole passage with the supporting span marked, and the page: a
    scan with the recognised lines that support the answer outlined, or the PDF page.
    `chunk` is the stored chunk the citation names, if it is still there."""
    path = Path(cite.source)
    st.markdown(f"**{path.name}**" + (f" · {cite.place}" if cite.place else ""))
    st.caption(cite.source)
    # a kept chat may cite a chunk since re-ingested (ids are not reused, but a rebuild
    # starts again): the stored passage counts only if it is still the quoted one
    passage = (chunk.text if chunk is not None and chunk.source == cite.source
               and highlight_found(chunk.text, cite.quote) else cite.quote)
    st.markdown(f'<div style="font-size:0.92em;line-height:1.5">{highlight(passage, cite.quote)}'
                "</div>", unsafe_allow_html=True)
    if not cite.page:
        return
    origin = kb.file_of(cite.source)
    scan = scan_image(kb, kb.settings.db_url, cite.source, cite.page, cite.chunk_id, cite.quote,
                      origin.stat().st_mtime if origin.is_file() else 0.0)
    if scan is not None:
        what = ("the lines that hold the quote are outlined" if scan.outlined else
                "the quote could not be placed on the page")
        with st.container(border=True):
            st.image(scan.png, caption=f"{path.name}, page {cite.page}, read by OCR: {what}")
    elif path.suffix.lower() == ".pdf" and path.is_file():
        image = page_image(str(path), cite.page, path.stat().st_mtime,
                           kb.settings.pdf_passwords)
        if image:
            with st.container(border=True):
                st.image(image, caption=f"{path.name}, page {cite.page}")


def show_answer(kb: kbqa.KnowledgeBase, answer: Answer) -> None:
    if not answer.refused:
        st.markdown(marked_unsupported(answer))
        if answer.unsupported:
            st.caption(f"{len(answer.unsupported)} sentence(s) marked: the cited passage does "
                       "not back them (the badge says why); treat them with caution.")
    else:
        st.warning(answer.text, icon="🔎")
        if answer.unsupported:
            with st.expander("What the model wrote, and why it was not shown as an answer"):
                for flag in answer.unsupported:
                    why = f" — *{flag.reason}*" if flag.reason else ""
                    st.markdown(f"- {safe_markdown(flag.sentence)}{why}")
    if answer.search_query and answer.search_query != answer.question:
        st.caption(f"Searched for: {answer.search_query}")
    stored = kb.passages([cite.chunk_id for cite in answer.citations])  # one query per answer
    with st.container(horizontal=True):
        for number, cite in enumerate(answer.citations, start=1):
            with st.popover(chip_label(number, cite)):
                show_source(kb, cite, stored.get(cite.chunk_id))
        with st.popover("Copy", icon=":material/content_copy:"):
            st.caption("The answer and its sources as Markdown (copy button on the right)")
            st.code(answer_markdown(answer), language="markdown")


def waiting_message(ahead: int) -> str:
    """What a question waiting for the chat model shows (it answers one at a time)."""
    others = "another question" if ahead == 1 else f"{ahead} other questions"
    return (f"Waiting for {others} to finish (place {ahead + 1} in line); this answer starts "
            "as soon as the model is free.")


def stream_answer(kb: kbqa.KnowledgeBase, question: str, history: list[dict[str, str]]
                  ) -> Answer | None:
    placeholder = st.empty()
    text = ""

    def waiting(ahead: int) -> None:
        if ahead:
            placeholder.info(waiting_message(ahead), icon=":material/hourglass_top:")
        else:
            placeholder.empty()

    try:
        for item in kbqa.ask_stream(question, history=history, kb=kb, on_wait=waiting):
            if isinstance(item, Answer):
                placeholder.empty()
                return item
            text += item
            placeholder.markdown(safe_markdown(text) + " ▌")
    except KbqaError as exc:
        placeholder.empty()
        st.error(str(exc))
    return None


def chat_page(kb: kbqa.KnowledgeBase) -> None:
    st.title("Ask your documents")
    if kb.is_empty():
        st.info("Your knowledge base is empty. Add documents here (or on the Library page), "
                "or from a terminal: `make ingest DIR=path/to/your/docs`.")
        upload_box(kb, "first-upload")
        if kb.is_empty():
            return
    chats = kb.conversations
    current: int | None = st.session_state.get(CURRENT)
    if current is not None and chats.get(current) is None:
        current = st.session_state[CURRENT] = None  # deleted meanwhile
    turns = chats.turns(current) if current is not None else []
    for turn in turns:
        with st.chat_message("user"):
            st.markdown(safe_markdown(turn.question))
        with st.chat_message("assistant"):
            show_answer(kb, turn.answer)
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    with st.chat_message("assistant"):
        final = stream_answer(kb, question, history_of(turns))
        if final is None:
            return
        if current is None:
            current = st.session_state[CURRENT] = chats.start(question).conversation_id
        chats.add_turn(current, question, final)
        show_answer(kb, final)


def _open(conversation_id: int | None) -> None:
    st.session_state[CURRENT] = conversation_id


def _rename(kb: kbqa.KnowledgeBase, conversation_id: int) -> None:
    kb.conversations.rename(conversation_id,
                            st.session_state.get(f"rename-{conversation_id}", ""))


def _delete(kb: kbqa.KnowledgeBase, conversation_id: int) -> None:
    kb.conversations.delete(conversation_id)
    st.session_state[CURRENT] = None


def conversation_list(kb: kbqa.KnowledgeBase) -> None:
    """The sidebar: a new chat, the kept chats (newest first) and, for the open one,
    rename and delete."""
    st.button("New chat", icon=":material/add:", on_click=_open, args=(None,),
              width="stretch")
    current = st.session_state.get(CURRENT)
    chats = kb.conversations.recent()
    if chats:
        st.caption("Chats")
    for chat in chats[:50]:
        st.button(chat.title, key=f"chat-{chat.conversation_id}", on_click=_open,
                  args=(chat.conversation_id,), width="stretch",
                  type="primary" if chat.conversation_id == current else "secondary")
    opened = next((c for c in chats if c.conversation_id == current), None)
    if opened is not None:
        with st.expander("Rename or delete this chat"):
            st.text_input("Title", value=opened.title, key=f"rename-{opened.conversation_id}")
            st.button("Rename", on_click=_rename, args=(kb, opened.conversation_id))
            st.button("Delete chat", on_click=_delete, args=(kb, opened.conversation_id),
                      type="primary")
