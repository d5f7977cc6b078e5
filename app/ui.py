"""The Streamlit app's entry: access check, the knowledge base, the sidebar and the pages.

Presentation only: every action goes through the public API (`KnowledgeBase`, `ask_stream`,
`Conversations`). Run it with `make run` (or `python -m kbqa serve`).
"""

from __future__ import annotations

import logging
import math

import kbqa
import streamlit as st
from kbqa.access import DiskScope, LoginThrottle, is_loopback, password_ok
from kbqa.errors import KbqaError
from kbqa.settings import Settings, from_env, set_by_environment
from kbqa.ui_chat import chat_page, conversation_list
from kbqa.ui_library import library_page
from kbqa.ui_settings import settings_page
from kbqa.uploads import UPLOADS_DIR

PAGES = ("Chat", "Library", "Settings")
log = logging.getLogger("kbqa")


@st.cache_resource(max_entries=1, show_spinner="Loading the knowledge base and the models…")
def knowledge_base(signature: str) -> kbqa.KnowledgeBase:
    """One knowledge base per settings (`signature`): a settings change opens a new one (with
    the models that did not change) and drops the old one from the cache; sessions still
    answering on it finish there (nothing closes it under them), and it and the models
    only it used are freed when the last of them lets go. Models come from the process's
    one registry (`kbqa.shared.process_models`), so they are shared, not loaded again."""
    kb = kbqa.open_kb()
    if not kb.is_empty():
        try:
            kb.warm_up()  # the first answer then starts as fast as the next
        except KbqaError as exc:  # documents can still be added and listed without a model
            st.warning(str(exc))
    return kb


@st.cache_resource
def login_throttle() -> LoginThrottle:
    """One per server process: wrong passwords from any session slow down every login."""
    return LoginThrottle()


def served_address(settings: Settings) -> str:
    """Where this server listens. `kbqa serve` binds where it tells the page
    (KBQA_UI_ADDRESS); a bare `streamlit run` without an address listens on every
    interface, so it counts as exposed."""
    bound = st.get_option("server.address")
    explicit = "ui_address" in set_by_environment()
    return str(bound or (settings.ui_address if explicit else "0.0.0.0"))


def admitted(settings: Settings, address: str) -> bool:
    """The page opens for this machine; beyond it only with the access password."""
    if not settings.ui_password:
        if is_loopback(address):
            return True
        st.error(f"This chat is served on {address} without a password, so anyone on the "
                 "network could read your documents. Stop it and start it again with an "
                 "access password (KBQA_UI_PASSWORD=...), or serve on 127.0.0.1.")
        return False
    if st.session_state.get("admitted"):
        return True
    st.title("kbqa")
    with st.form("login"):
        given = st.text_input("Access password", type="password")
        if st.form_submit_button("Open", type="primary"):
            throttle = login_throttle()
            wait = throttle.wait_s()
            if wait > 0:
                st.error(f"Too many wrong passwords: try again in {math.ceil(wait)} s.")
                return False
            if password_ok(given, settings.ui_password):
                throttle.succeeded()
                st.session_state.admitted = True
                st.rerun()
            throttle.failed()
            st.error("Wrong password. Ask whoever started kbqa (it is KBQA_UI_PASSWORD).")
    return False


def show_failure(exc: Exception) -> None:
    """Never a traceback on the page: what happened and what to do; details go to the log."""
    if isinstance(exc, KbqaError):
        st.error(str(exc))
        return
    log.exception("the page failed")
    st.error(f"Something went wrong: {type(exc).__name__}: {exc}. Your documents and chats are "
             "unchanged. Try again; if it keeps happening, the terminal running kbqa shows "
             "the details to report.")


def main() -> None:
    st.set_page_config(page_title="kbqa", page_icon="📚", layout="centered")
    try:
        settings = from_env()
    except KbqaError as exc:
        st.error(str(exc))
        return
    address = served_address(settings)
    if not admitted(settings, address):
        return
    scope = DiskScope.of(address, settings.home / UPLOADS_DIR, settings.ingest_folders,
                         settings.models_dir)
    try:
        kb = knowledge_base(repr(settings))
    except Exception as exc:
        show_failure(exc)
        return
    with st.sidebar:
        st.header("kbqa")
        page = st.radio("Page", PAGES, key="page", horizontal=True,
                        label_visibility="collapsed")
    try:
        if page == "Library":
            library_page(kb, scope)
        elif page == "Settings":
            settings_page(kb, scope)
        else:
            chat_page(kb)
        if page == "Chat":
            with st.sidebar:
                conversation_list(kb)  # after the chat, so a new chat is listed at once
    except Exception as exc:
        show_failure(exc)
    with st.sidebar:
        st.caption("Everything runs on this machine; nothing is sent anywhere.")


main()
