"""All settings in one dataclass; `from_env` is the only reader of KBQA_* variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_origin, get_type_hints

from kbqa.errors import SettingError

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHAT_MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SMALL_CHAT_MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
MULTILINGUAL_EMBEDDER = "use-multilingual-v3"
AUTO_EMBEDDER = "auto"
# How a sentence-transformers embedder runs: "auto" = int8 ONNX for the packaged MiniLM
# (bench-ingest: nDCG@10 within 0.005, 2.6x the chunks/s), torch for other models.
EMBEDDER_BACKENDS = ("auto", "onnx-int8", "torch")
CROSS_LANGUAGE = ("auto", "always")
# OCR of scanned PDF pages and images (RapidOCR, packaged models): on, or off.
OCR_MODES = ("on", "off")
# Relevance floors of the packaged embedders (similarity + coverage of the best hit): the
# lowest that refuses 90% of questions about documents that are not indexed, fitted on
# questions outside bench/answer.py's samples (`make bench-answer ARGS=--calibrate`: SQuAD
# v1.1 dev for MiniLM, CMRC 2018 trial for USE; there 4% / 11% of the answerable ones are
# refused too). Other embedders get MiniLM's, or KBQA_MIN_RELEVANCE.
RELEVANCE_FLOORS = {DEFAULT_EMBEDDER: 0.94, MULTILINGUAL_EMBEDDER: 0.64}
# A passage in another language than the question shares no terms with it: its cosine alone
# (multilingual model) against this floor, the highest that lets half of the answerable dev
# questions of `make bench-cross` through in both directions (such cosines separate poorly;
# what passes is still checked fact by fact).
CROSS_LANGUAGE_FLOOR = 0.34
# Score fusion: the share of a hit's score that comes from BM25 (over the query's best
# BM25), the rest from its cosine, per embedder and query language. Set by `make
# bench-retrieval ARGS=--calibrate` on dev data (SciFact's train queries, half of the
# articles of SQuAD v1.1 dev and of CMRC 2018 trial), reported there on the rest. A weak
# embedder gets a small vote: MiniLM, which knows no Chinese, on a Chinese query.
LEXICAL_SHARES = {(DEFAULT_EMBEDDER, "en"): 0.30, (DEFAULT_EMBEDDER, "zh"): 0.95,
                  (MULTILINGUAL_EMBEDDER, "en"): 0.55, (MULTILINGUAL_EMBEDDER, "zh"): 0.50}
# A passage in the other language than the query (a mixed knowledge base) can have no BM25
# score; in score fusion its cosine (multilingual model) times this weight is its whole
# score, rather than its (1 - share) part. Fitted on the dev halves of `make bench-cross`
# keeping the mixed table's monolingual figures (dev) where they are.
CROSS_LANGUAGE_WEIGHT = 1.25
# Fusion of the two recalls: "score" (calibrated shares above) or "rrf" (reciprocal ranks,
# weighted by dense_weight and lexical_weight).
FUSIONS = ("score", "rrf")
# What `search(..., mode=)` and `kbqa search --mode` accept; hybrid is the default.
SEARCH_MODES = ("hybrid", "dense", "lexical")
# "auto" answers in the question's language.
ANSWER_LANGUAGES = ("auto", "en", "zh")
# The second reader: the chat model asked yes or no where the fact rules cannot decide.
# "auto": on for the packaged default model, whose P(yes) thresholds llm/reader.py holds
# (set on bench-faithfulness's dev half); another model answers yes or no on its own scale,
# so it reads second only when asked to ("on").
SECOND_READER = ("auto", "on", "off")
# Settings the chat's settings page saves, in this file of the knowledge base folder; the
# environment and explicit arguments still win over it.
SAVED_SETTINGS_FILE = "settings.json"


def calibrated_lexical_share(embedder_name: str, language: str) -> float:
    """BM25's share in score fusion for this embedder and query language; an embedder not
    calibrated here gets MiniLM's."""
    name = embedder_name.removesuffix(" (with prompts)")
    return LEXICAL_SHARES.get((name, language), LEXICAL_SHARES[(DEFAULT_EMBEDDER, language)])


def default_data_dir() -> Path:
    """`data/` of the source checkout (the README's setup); a user folder for wheel installs."""
    if (_SOURCE_ROOT / "pyproject.toml").is_file():
        return _SOURCE_ROOT / "data"
    return Path.home() / ".local" / "share" / "kbqa"


@dataclass(frozen=True)
class Settings:
    """Every tunable of kbqa. Environment: KBQA_<FIELD NAME IN CAPITALS>."""

    home: Path = field(default_factory=default_data_dir)
    models_dir: Path = field(default_factory=lambda: default_data_dir() / "models")
    # Chat model: a GGUF file; empty means the packaged default under models_dir.
    model: str = ""
    # Or an OpenAI-compatible model server (llama-server, llama-cpp-python's server, vLLM,
    # Ollama): its address ("http://127.0.0.1:8080/v1"), the model's name there (empty: the
    # first it lists) and its API key. The packaged model's tokenizer still counts tokens.
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    # Embedder: "auto" = an embedder per script (kbqa.ingest.spaces: the packaged MiniLM
    # for Latin-script passages, the packaged multilingual USE for CJK ones and, once the
    # knowledge base holds any, for every passage; "always": for every passage from the
    # start, so Chinese questions reach an English-only folder, at about half its ingest
    # speed); or one of those names, or the folder of a sentence-transformers model.
    embedder: str = AUTO_EMBEDDER
    cross_language: str = "auto"
    embedder_backend: str = "auto"
    n_gpu_layers: int = 0
    n_ctx: int = 4096
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    top_k: int = 4
    # A hit counts as relevant when its dense similarity plus its coverage (the share of
    # the question's idf-weighted terms it holds) reaches min_relevance; with none, the
    # model is not called and the answer says the documents don't cover it. 0 means the
    # embedder's calibrated floor (RELEVANCE_FLOORS).
    min_relevance: float = 0.0
    # Retrieval: candidates taken from each of BM25 and dense recall before fusion; how
    # they are fused ("score" or "rrf", see FUSIONS) and BM25's share of a score (0: the
    # calibrated share of the embedder and query language); RRF
    # weights of the two lists; most chunks per document in a result (0 = no cap); MMR
    # diversity (0 = off, else the relevance weight, e.g. 0.7); a cross-encoder folder to
    # re-rank the first rerank_depth fused hits (off when empty); vector count above which
    # FAISS switches from exact search to inverted lists (0 = always exact).
    fusion_depth: int = 100
    fusion: str = "score"
    lexical_share: float = 0.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    per_document: int = 0
    mmr_lambda: float = 0.0
    reranker: str = ""
    rerank_depth: int = 20
    ann_threshold: int = 50_000
    # Tokens of source text per prompt. Every prompt token is evaluated before the first
    # answer token: the default model reads 60-150 tokens/s on 2 CPU cores, so 320 keeps the
    # first token at 2.3-5 s there; raise it with a GPU (n_gpu_layers) or a fast CPU.
    context_tokens: int = 320
    max_answer_tokens: int = 384
    temperature: float = 0.1
    answer_language: str = "auto"
    # Claims the fact rules cannot decide (a bare answer next to other candidates in its
    # passage) are put to the chat model as a yes/no question (bench-faithfulness).
    # Off by default: on bench-answer it caught 7 wrong answers in 128 but refused 5 right
    # ones, and its worked checks in the prompt's prefix made the model refuse 7 more.
    second_reader: str = "off"
    seed: int = 42
    max_file_mb: int = 200
    ocr: str = "on"
    # A PDF with more scanned pages than this is reported rather than read (at ~1 page/s on
    # 2 cores, 500 pages take about 8 minutes).
    ocr_max_pages: int = 500
    database_url: str = ""
    lock_timeout_s: float = 600.0
    # The chat model answers one question at a time; the others wait in line this long at
    # most (the chat shows their place), then are told to ask again.
    queue_timeout_s: float = 600.0
    # Ingest commits at most this often (each commit rewrites the vector file); a crash
    # loses at most this much work, and a re-run redoes it.
    commit_every_s: float = 20.0
    # Passwords to try on encrypted PDFs, separated by newlines or commas in the variable.
    pdf_passwords: tuple[str, ...] = ()
    # The chat's server: the address it listens on (loopback unless you choose otherwise;
    # any other address needs ui_password), the password, and the largest upload.
    ui_address: str = "127.0.0.1"
    ui_password: str = ""
    # The HTTP API (`python -m kbqa api`): its address (loopback unless you choose
    # otherwise; any other address needs api_key) and the key clients send as a bearer.
    api_address: str = "127.0.0.1"
    api_key: str = ""
    max_upload_mb: int = 200
    # Served beyond loopback, the chat ingests only its uploads folder and these folders
    # (comma- or newline-separated in the variable), and loads models only from models_dir.
    ingest_folders: tuple[str, ...] = ()

    def relevance_floor(self, embedder_name: str, cross_language: bool = False) -> float:
        """min_relevance if set, else the floor calibrated for this embedder (for a hit in
        another language than the question's, the cosine-only floor)."""
        if self.min_relevance > 0:
            return self.min_relevance
        if cross_language:
            return CROSS_LANGUAGE_FLOOR
        name = embedder_name.removesuffix(" (with prompts)")
        return RELEVANCE_FLOORS.get(name, RELEVANCE_FLOORS[DEFAULT_EMBEDDER])

    @property
    def model_path(self) -> Path:
        return Path(self.model) if self.model else self.models_dir / DEFAULT_CHAT_MODEL_FILE

    @property
    def reads_twice(self) -> bool:
        """Is the second reader on: asked for, or "auto" with the model it was calibrated on."""
        if self.second_reader == "auto":  # its thresholds are the in-process model's
            return not self.llm_url and self.model_path.name == DEFAULT_CHAT_MODEL_FILE
        return self.second_reader == "on"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'kb.sqlite'}"

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed, type-checked like environment values."""
        return replace(self, **{k: _coerce(k, v) for k, v in changes.items()})


# Each setting's type, read from the dataclass's annotations (tuple[str, ...] -> tuple).
_TYPES: dict[str, type] = {name: get_origin(hint) or hint
                           for name, hint in get_type_hints(Settings).items()}
_POSITIVE = {"n_ctx", "threads", "chunk_tokens", "top_k", "context_tokens", "max_answer_tokens",
             "fusion_depth", "rerank_depth", "max_upload_mb", "queue_timeout_s",
             "ocr_max_pages"}
_NON_NEGATIVE = {"dense_weight", "lexical_weight", "per_document", "ann_threshold",
                 "min_relevance"}


def _coerce(name: str, value: Any) -> Any:
    if name not in _TYPES:
        known = ", ".join(sorted(_TYPES))
        raise SettingError(f"unknown setting {name!r}; known settings: {known}")
    kind = _TYPES[name]
    try:
        if kind is Path:
            result: Any = Path(str(value)).expanduser()
        elif kind is str:
            result = str(value)
        elif kind is tuple:
            items = value.replace("\n", ",").split(",") if isinstance(value, str) else value
            result = tuple(str(item) for item in items if str(item))
        else:
            result = kind(value)
    except (TypeError, ValueError):
        raise SettingError(
            f"setting {name} (KBQA_{name.upper()}) must be {kind.__name__}, got {value!r}"
        ) from None
    if name == "ingest_folders":
        result = tuple(item.strip() for item in result if item.strip())
        relative = [item for item in result if not Path(item).expanduser().is_absolute()]
        if relative:
            raise SettingError(f"KBQA_INGEST_FOLDERS must list absolute folders, got "
                               f"{', '.join(relative)}")
    if name in _POSITIVE and result <= 0:
        raise SettingError(f"setting {name} (KBQA_{name.upper()}) must be > 0, got {value!r}")
    if name == "n_gpu_layers" and result < -1:
        raise SettingError("KBQA_N_GPU_LAYERS must be -1 (all layers), 0 (CPU) or a layer count")
    if name in _NON_NEGATIVE and result < 0:
        raise SettingError(f"setting {name} (KBQA_{name.upper()}) must be >= 0, got {value!r}")
    if name == "fusion" and result not in FUSIONS:
        raise SettingError(f"KBQA_FUSION must be score or rrf, got {value!r}")
    if name == "lexical_share" and not 0 <= result <= 1:
        raise SettingError("KBQA_LEXICAL_SHARE must be between 0 (calibrated) and 1")
    if name == "mmr_lambda" and not 0 <= result <= 1:
        raise SettingError("KBQA_MMR_LAMBDA must be between 0 (off) and 1")
    if name == "chunk_overlap" and result < 0:
        raise SettingError("KBQA_CHUNK_OVERLAP must be >= 0")
    if name == "answer_language" and result not in ANSWER_LANGUAGES:
        raise SettingError("KBQA_ANSWER_LANGUAGE must be auto (the question's language), "
                           f"en or zh, got {value!r}")
    if name == "second_reader" and result not in SECOND_READER:
        raise SettingError(f"KBQA_SECOND_READER must be auto, on or off, got {value!r}")
    if name == "cross_language" and result not in CROSS_LANGUAGE:
        raise SettingError("KBQA_CROSS_LANGUAGE must be auto (multilingual vectors for every "
                           "passage once a folder holds CJK text) or always, got "
                           f"{value!r}")
    if name == "embedder_backend" and result not in EMBEDDER_BACKENDS:
        raise SettingError("KBQA_EMBEDDER_BACKEND must be auto (int8 ONNX for the packaged "
                           f"MiniLM, torch otherwise), onnx-int8 or torch, got {value!r}")
    if name == "ocr" and result not in OCR_MODES:
        raise SettingError(f"KBQA_OCR must be on or off, got {value!r}")
    if name == "llm_url" and value and not str(value).startswith(("http://", "https://")):
        raise SettingError(f"KBQA_LLM_URL must be an http:// or https:// address, got {value!r}")
    if name == "temperature" and not 0 <= result <= 2:
        raise SettingError(f"KBQA_TEMPERATURE must be between 0 and 2, got {value!r}")
    return result


def saved_settings(home: Path) -> dict[str, Any]:
    """The settings saved from the chat in this knowledge base folder (none: {})."""
    path = home / SAVED_SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise SettingError(f"{path} is not readable settings ({exc}): fix or delete it") from None
    try:
        return {name: _coerce(name, value) for name, value in raw.items()}
    except SettingError as exc:
        raise SettingError(f"{path}: {exc} (fix or delete the file)") from None


def save_settings(home: Path, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check `changes` like environment values, merge them into the saved settings and
    write the file atomically (a crash leaves the old or the new file). Returns all saved."""
    merged = saved_settings(home)
    merged.update({name: _coerce(name, value) for name, value in changes.items()})
    from_env({}, home=home, **merged)  # the combination must be valid too
    home.mkdir(parents=True, exist_ok=True)
    path = home / SAVED_SETTINGS_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                     for k, v in merged.items()}, indent=2), encoding="utf-8")
    os.replace(temporary, path)
    return merged


def set_by_environment(env: Mapping[str, str] | None = None) -> set[str]:
    """Settings a KBQA_* variable fixes (the chat's settings page says so: they win)."""
    env = os.environ if env is None else env
    return {f.name for f in fields(Settings) if env.get(f"KBQA_{f.name.upper()}")}


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then the settings saved from the chat (SAVED_SETTINGS_FILE in the
    knowledge base folder), then KBQA_* variables, then explicit keyword overrides."""
    env = os.environ if env is None else env
    home = overrides.get("home") or env.get("KBQA_HOME") or default_data_dir()
    values: dict[str, Any] = {k: v for k, v in saved_settings(Path(home).expanduser()).items()
                              if k != "home"}
    for f in fields(Settings):
        raw = env.get(f"KBQA_{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _coerce(f.name, raw)
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value)
    if "home" in values and "models_dir" not in values and "KBQA_MODELS_DIR" not in env:
        # Models stay in the checkout's data/models when only the knowledge base moves.
        values["models_dir"] = default_data_dir() / "models"
    settings = Settings(**values)
    if settings.chunk_overlap >= settings.chunk_tokens:
        raise SettingError("KBQA_CHUNK_OVERLAP must be smaller than KBQA_CHUNK_TOKENS")
    return settings
