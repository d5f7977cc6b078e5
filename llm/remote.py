"""A chat model behind an OpenAI-compatible server (llama.cpp's `llama-server`,
llama-cpp-python's server, vLLM, Ollama): the same prompts, checks and refusals as the
in-process model, over HTTP (`KBQA_LLM_URL`).

What the HTTP API does not give, kbqa measures once at start:
- tokens: counted locally with the packaged model's tokenizer, scaled by the server's own
  count of a sample text where the server has a tokenize endpoint (else by a margin), so a
  prompt is sized to fit the server's context before it is sent;
- the context size: from the server where it says (`/props`, `max_model_len`), else
  KBQA_N_CTX;
- yes/no probabilities (the second reader): from `top_logprobs` of one generated token.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kbqa.access import is_loopback as address_is_loopback
from kbqa.errors import KbqaError, ModelMissing
from kbqa.llm.model import Message

log = logging.getLogger("kbqa")

# A sample in both scripts for comparing the server's token counts with the local ones.
CALIBRATION_TEXT = (
    "The pump must be serviced every 450 operating hours with the kit ZK-7731; the "
    "harbour office opens at 7:15. 青川渡轮的船长是周海宁，渡轮每天早上六点二十分出发。"
)
UNKNOWN_TOKENIZER_MARGIN = 1.3  # no tokenize endpoint: count high rather than overflow
MESSAGE_OVERHEAD = 6  # role markers and separators per message, in tokens
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # a long answer from a busy server


class ServerError(KbqaError):
    """The model server could not be reached or refused a request."""


def is_loopback(url: str) -> bool:
    """Example: is_loopback("http://127.0.0.1:8080/v1") and not is_loopback("http://127.x.org")"""
    return address_is_loopback(urlsplit(url).hostname or "")


class RemoteGenerator:
    """The chat model at an OpenAI-compatible `/v1` address."""

    def __init__(self, url: str, *, model: str = "", api_key: str = "", n_ctx: int = 4096,
                 tokenizer_model: Path | None = None) -> None:
        self.base = url.rstrip("/").removesuffix("/v1")
        self._api_key = api_key
        self._local = _local_tokenizer(tokenizer_model)
        self._busy = threading.Lock()
        listed = self._models()
        self.model = model or (listed[0]["id"] if listed else "")
        if not self.model:
            raise ModelMissing(f"the model server at {self.base} lists no model: give one "
                               "with KBQA_LLM_MODEL")
        self.name = f"{self.model} at {self.base}"
        self.n_ctx = self._context_size(listed) or n_ctx
        self._scale = self._token_scale()
        log.info("chat model %s (OpenAI-compatible server): n_ctx=%d, token counts x%.2f",
                 self.name, self.n_ctx, self._scale)
        if not is_loopback(self.base):
            log.warning("questions and the passages they retrieve are sent to %s: it is not "
                        "this machine", self.base)

    # -- HTTP ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 timeout: float = CONNECT_TIMEOUT_S) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise ServerError(f"the model server at {self.base} answered {path} with "
                              f"{exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(f"the model server at {self.base} is not reachable ({exc}): "
                              "start it, or unset KBQA_LLM_URL to use the built-in model"
                              ) from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float = CONNECT_TIMEOUT_S) -> Any:
        with self._request(method, path, body, timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def _optional(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A request only some servers answer: None from the others."""
        try:
            return self._json(method, path, body)
        except (ServerError, ValueError):
            return None

    def _models(self) -> list[dict[str, Any]]:
        listed = self._json("GET", "/v1/models")
        return list(listed.get("data") or [])

    def _context_size(self, listed: list[dict[str, Any]]) -> int:
        props = self._optional("GET", "/props") or {}
        settings = props.get("default_generation_settings") or {}
        for value in (settings.get("n_ctx"), props.get("n_ctx"),
                      next((m.get("max_model_len") for m in listed if m.get("id") == self.model),
                           None)):
            if isinstance(value, int) and value > 0:
                return value
        return 0

    def _server_count(self, text: str) -> int | None:
        """The server's own token count, from whichever tokenize endpoint it has."""
        for path, body, read in (
            ("/extras/tokenize/count", {"input": text}, lambda r: r.get("count")),
            ("/tokenize", {"content": text}, lambda r: len(r.get("tokens") or []) or None),
            ("/tokenize", {"model": self.model, "prompt": text}, lambda r: r.get("count")),
        ):
            answer = self._optional("POST", path, body)
            count = read(answer) if isinstance(answer, dict) else None
            if isinstance(count, int):
                return count
        return None

    def _token_scale(self) -> float:
        counted = self._server_count(CALIBRATION_TEXT)
        local = self._local_count(CALIBRATION_TEXT)
        if counted is None or local == 0:
            return UNKNOWN_TOKENIZER_MARGIN
        return max(counted / local, 0.5) * 1.05  # a little room for what the sample lacks

    # -- Generator ----------------------------------------------------------------------
    def _local_count(self, text: str) -> int:
        if self._local is None:
            return math.ceil(len(text.encode("utf-8")) / 3)
        return len(self._local.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_tokens(self, text: str) -> int:
        return math.ceil(self._local_count(text) * self._scale)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        return sum(self.count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages) + 3

    def warm(self, messages: Sequence[Message]) -> None:
        """Nothing to do: the server keeps its own cache."""

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int,
                    temperature: float, reply_start: str = "") -> Iterator[str]:
        """`reply_start` is not sent: the API has no portable way to start the reply, and
        the callers read the reply with or without it."""
        room = self.n_ctx - self.count_prompt(messages)
        if room <= 0:
            raise ValueError(f"prompt of about {self.n_ctx - room} tokens does not fit the "
                             f"server's n_ctx {self.n_ctx}")
        body = {"model": self.model, "messages": list(messages), "stream": True,
                "max_tokens": min(max_tokens, room), "temperature": temperature,
                "top_p": 0.9}
        with self._busy, self._request("POST", "/v1/chat/completions", body,
                                       READ_TIMEOUT_S) as response:
            yield from self._pieces(response)

    def _pieces(self, response: Any) -> Iterator[str]:
        """The text of an OpenAI server-sent stream; a broken stream is a ServerError."""
        try:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise ServerError(f"the model server at {self.base} stopped: "
                                      f"{event['error']}")
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise ServerError(f"the model server at {self.base} broke off its answer "
                              f"({type(exc).__name__}: {exc}); ask again") from None

    def choice_probabilities(self, messages: Sequence[Message],
                             choices: Sequence[Sequence[str]]) -> list[float]:
        """From the top log-probabilities of one generated token; a server that gives none
        counts the token it generated as certain."""
        body = {"model": self.model, "messages": list(messages), "max_tokens": 1,
                "temperature": 0, "logprobs": True, "top_logprobs": 20}
        with self._busy:
            reply = self._json("POST", "/v1/chat/completions", body, READ_TIMEOUT_S)
        choice = (reply.get("choices") or [{}])[0]
        content = ((choice.get("logprobs") or {}).get("content") or [{}])[0]
        candidates = [(t.get("token") or "", float(t["logprob"]))
                      for t in content.get("top_logprobs") or []
                      if isinstance(t.get("logprob"), (int, float))]
        if not candidates:
            candidates = [((choice.get("message") or {}).get("content") or "", 0.0)]
        mass = [0.0 for _ in choices]
        for token, logprob in candidates:
            index = _choice_of(token, choices)
            if index is not None:
                mass[index] += math.exp(logprob)
        total = sum(mass)
        return [m / total for m in mass] if total > 0 else [1 / len(choices)] * len(choices)


def _choice_of(token: str, choices: Sequence[Sequence[str]]) -> int | None:
    """Which choice a generated token starts (" Yes" and "Y" start "Yes").

    Example: _choice_of(" No", [["Yes"], ["No"]]) == 1
    """
    token = token.strip()
    if not token:
        return None
    for index, spellings in enumerate(choices):
        if any(spelling.startswith(token) or token.startswith(spelling)
               for spelling in spellings):
            return index
    return None


def _local_tokenizer(model: Path | None) -> Any:
    """The packaged model's vocabulary alone (no weights): a tokenizer to count with."""
    if model is None or not model.is_file():
        return None
    import llama_cpp

    try:
        return llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError):
        return None
