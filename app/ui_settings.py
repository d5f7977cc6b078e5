"""The settings page: the few settings people change, each checked and explained in one
line, saved in the knowledge base folder (settings.json); KBQA_* variables still win."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kbqa
import streamlit as st
from kbqa.access import DiskScope
from kbqa.domain import IngestReport
from kbqa.errors import EmbedderMismatch, KbqaError
from kbqa.settings import (
    ANSWER_LANGUAGES,
    AUTO_EMBEDDER,
    DEFAULT_EMBEDDER,
    MULTILINGUAL_EMBEDDER,
    save_settings,
    set_by_environment,
)
from kbqa.ui_library import show_report

EXPLAINED = {
    "model": "The chat model: a .gguf file on this machine; empty = the packaged default.",
    "n_gpu_layers": "Layers of the model on the GPU: 0 = CPU only, -1 = all (needs a CUDA or "
                    "Metal build of llama.cpp); more layers, faster answers.",
    "n_ctx": "The model's context in tokens: room for the instructions, the sources, the chat "
             "so far and the answer. Larger uses more memory.",
    "top_k": "How many passages are retrieved for each question; more gives the model more "
             "to read (slower first token), fewer keeps it focused.",
    "temperature": "0 always gives the same answer; higher varies the wording (0-2).",
    "answer_language": "auto answers in the question's language; or always English (en) or "
                       "Chinese (zh).",
    "embedder": "How passages are turned into vectors: auto uses MiniLM for English "
                "passages and the multilingual model for Chinese ones (and for every passage "
                "of a mixed folder, so questions cross languages). Changing it re-indexes "
                "every document.",
}
EMBEDDERS = [AUTO_EMBEDDER, DEFAULT_EMBEDDER, MULTILINGUAL_EMBEDDER]


def changed_values(kb: kbqa.KnowledgeBase, values: dict[str, Any]) -> dict[str, Any]:
    current = kb.settings
    return {k: v for k, v in values.items() if getattr(current, k) != v}


def check_model(path: str, scope: DiskScope) -> str:
    """'' when usable, else what is wrong and what to do."""
    if not path:
        return ""
    file = Path(path).expanduser()
    if problem := scope.model_problem(file):
        return problem  # before anything else: not even whether it exists is told
    if not file.is_file():
        return f"{path} does not exist on this machine: give the full path of a .gguf file."
    if file.suffix.lower() != ".gguf":
        return f"{file.name} is not a .gguf file: llama.cpp needs a GGUF model."
    return ""


def reindex(kb: kbqa.KnowledgeBase) -> IngestReport:
    """A new embedder: forget the vectors and ingest every document's file again."""
    files = sorted({d.file or d.path for d in kb.documents()})
    kb.rebuild()
    return kb.ingest([f for f in files if Path(f).exists()])


def settings_page(kb: kbqa.KnowledgeBase, scope: DiskScope) -> None:
    st.title("Settings")
    if message := st.session_state.pop("settings-message", None):
        st.success(message)
    embedder_check(kb)
    fixed = set_by_environment()
    s = kb.settings
    if fixed & set(EXPLAINED):
        st.info("Set by the environment, which wins over this page: "
                + ", ".join(f"KBQA_{n.upper()}" for n in sorted(fixed & set(EXPLAINED))))
    with st.form("settings"):
        model = st.text_input("Chat model file", value=s.model, placeholder=str(s.model_path))
        st.caption(EXPLAINED["model"])
        gpu = st.number_input("GPU layers", value=max(s.n_gpu_layers, -1), min_value=-1, step=1)
        st.caption(EXPLAINED["n_gpu_layers"])
        n_ctx = st.number_input("Context size (tokens)", value=min(max(s.n_ctx, 512), 262144),
                                min_value=512, max_value=262144, step=1024)
        st.caption(EXPLAINED["n_ctx"])
        top_k = st.number_input("Passages per question (top-k)", value=min(s.top_k, 100),
                                min_value=1, max_value=100, step=1)
        st.caption(EXPLAINED["top_k"])
        temperature = st.slider("Temperature", 0.0, 2.0, min(float(s.temperature), 2.0), 0.05)
        st.caption(EXPLAINED["temperature"])
        language = st.selectbox("Answer language", ANSWER_LANGUAGES,
                                index=ANSWER_LANGUAGES.index(s.answer_language))
        st.caption(EXPLAINED["answer_language"])
        options = EMBEDDERS if s.embedder in EMBEDDERS else [*EMBEDDERS, s.embedder]
        embedder = st.selectbox("Embedder", options, index=options.index(s.embedder))
        st.caption(EXPLAINED["embedder"])
        submitted = st.form_submit_button("Save", type="primary")
    if not submitted:
        return
    values = {"model": model.strip(), "n_gpu_layers": int(gpu), "n_ctx": int(n_ctx),
              "top_k": int(top_k), "temperature": round(float(temperature), 2),
              "answer_language": language, "embedder": embedder}
    problem = check_model(values["model"], scope) if values["model"] != s.model else ""
    if problem:
        st.error(problem)
        return
    if values["model"]:  # saved as a full path: "~" and relative paths mean nothing later
        values["model"] = str(Path(values["model"]).expanduser().resolve())
    changes = changed_values(kb, values)
    if not changes:
        st.info("Nothing changed.")
        return
    try:
        save_settings(kb.home, changes)
    except KbqaError as exc:
        st.error(str(exc))
        return
    # The rerun reads the new settings and opens a knowledge base on them (other sessions
    # on their next run); answers in flight finish on the old one, which nothing closes.
    st.session_state["settings-message"] = "Saved: " + ", ".join(
        f"{k} = {v}" for k, v in changes.items())
    st.rerun()


def embedder_check(kb: kbqa.KnowledgeBase) -> None:
    """After an embedder change the stored vectors no longer fit: offer to index again."""
    if kb.is_empty():
        return
    try:
        kb.check_embedder()
    except EmbedderMismatch as exc:
        st.warning(f"{exc}")
        if st.button("Index every document again with the new embedder", type="primary"):
            with st.spinner("Indexing every document again…"):
                show_report(reindex(kb))
    except KbqaError as exc:  # the page that fixes settings must still open
        st.warning(str(exc))
