"""Generator protocol and the llama.cpp implementation (chat template, prefix cache, offload)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from kbqa.errors import ModelMissing

log = logging.getLogger("kbqa")
Message = dict[str, str]


class Generator(Protocol):
    """A chat model: counts tokens with its own tokenizer, including the chat template, and
    streams text."""

    name: str
    n_ctx: int

    def count_tokens(self, text: str) -> int: ...

    def count_prompt(self, messages: Sequence[Message]) -> int: ...

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int,
                    temperature: float, reply_start: str = "") -> Iterator[str]:
        """`reply_start` is the start of the assistant's reply, written for the model (a
        label like "Rewritten question:" that keeps a small model on task)."""
        ...

    def warm(self, messages: Sequence[Message]) -> None: ...

    def choice_probabilities(self, messages: Sequence[Message],
                             choices: Sequence[Sequence[str]]) -> list[float]:
        """How likely the reply starts with each choice (each a few spellings, e.g.
        ["Yes", "yes"]), normalised over the choices: read from the next-token
        distribution, no text generated."""
        ...


# Templates used only when a GGUF carries no chat template of its own: ChatML when the
# vocabulary has its markers (Qwen, Yi, many fine-tunes), else plain labelled turns.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PLAIN_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}### {{ m['role'] | capitalize }}:\n"
    "{{ m['content'] }}\n\n{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)
PLAIN_STOPS = ["\n### User:", "\n### System:"]


def merge_system(messages: Sequence[Message]) -> list[Message]:
    """For templates that reject a system turn (Gemma, Mistral v1): the instructions go at
    the top of the first user turn instead.

    Example: merge_system([{"role": "system", "content": "S"},
                           {"role": "user", "content": "Q"}]) == [{"role": "user",
                                                                 "content": "S\\n\\nQ"}]
    """
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        first_user = next((m for m in rest if m["role"] == "user"), None)
        if first_user is None:
            rest.insert(0, {"role": "user", "content": system})
        else:
            first_user["content"] = f"{system}\n\n{first_user['content']}"
    return rest


class ChatTemplate:
    """A GGUF's Jinja chat template rendered to a prompt string, as llama.cpp's server does."""

    def __init__(self, template: str, *, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._format = Jinja2ChatFormatter(template=template, bos_token=bos_token,
                                           eos_token=eos_token)
        self.merges_system = False

    def render(self, messages: Sequence[Message]) -> str:
        if self.merges_system:
            messages = merge_system(messages)
        try:
            return str(self._format(messages=list(messages)).prompt)  # type: ignore[arg-type]
        except Exception as exc:  # jinja raise_exception, e.g. "System role not supported"
            problem = exc
        if not self.merges_system and any(m["role"] == "system" for m in messages):
            try:
                prompt = str(self._format(messages=merge_system(messages)).prompt)  # type: ignore[arg-type]
            except Exception:
                pass
            else:
                self.merges_system = True
                return prompt
        raise ModelMissing(
            f"the model's chat template cannot format this conversation ({problem}): set "
            "KBQA_MODEL to a chat (instruct) GGUF whose template accepts system, user and "
            "assistant turns"
        ) from None


class LlamaCppGenerator:
    """A local GGUF through llama-cpp-python; loaded once per process by the KnowledgeBase.

    Prompts are rendered and tokenized here, so their exact length is known before llama.cpp
    sees them, and each call goes through `create_completion` with tokens: llama.cpp keeps
    the KV cache of the longest common prefix with the previous prompt, so the fixed system
    instructions (and, in a conversation, the earlier turns) are not evaluated again.
    """

    def __init__(self, model_path: Path, *, n_ctx: int, threads: int, n_gpu_layers: int = 0,
                 seed: int = 42) -> None:
        if not model_path.is_file():
            raise ModelMissing(
                f"chat model not found at {model_path}: run `make setup` to assemble the "
                "packaged model, or set KBQA_MODEL to the path of a .gguf file"
            )
        import llama_cpp

        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                n_threads_batch=threads, n_gpu_layers=n_gpu_layers, seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelMissing(
                f"llama.cpp could not load {model_path} ({exc}): check it is a GGUF chat "
                "model and that KBQA_N_CTX fits in memory"
            ) from None
        self.name = model_path.name
        self.path = model_path
        self._busy = threading.Lock()
        self.n_ctx = int(self._llm.n_ctx())
        self.template, self.stops, template_note = self._chat_template()
        self._control_tokens = control_tokens(self._llm)
        self.placement = placement(n_gpu_layers, int(llama_cpp.llama_model_n_layer(
            self._llm.model)), bool(llama_cpp.llama_supports_gpu_offload()))
        log.info("chat model %s: n_ctx=%d, threads=%d, %s; %s", self.name, self.n_ctx,
                 threads, self.placement, template_note)

    def _chat_template(self) -> tuple[ChatTemplate, list[str], str]:
        llm = self._llm
        vocab = llm._model.vocab
        import llama_cpp

        def piece(token: int) -> str:
            if token < 0:
                return ""
            return llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

        bos = piece(int(llama_cpp.llama_vocab_bos(vocab)))
        eos = piece(int(llama_cpp.llama_vocab_eos(vocab)))
        template = llm.metadata.get("tokenizer.chat_template", "")
        if template:
            return (ChatTemplate(template, bos_token=bos, eos_token=eos), [],
                    "chat template from the GGUF")
        if len(llm.tokenize(b"<|im_start|>", add_bos=False, special=True)) == 1:
            return (ChatTemplate(CHATML_TEMPLATE, bos_token=bos, eos_token=eos),
                    ["<|im_end|>"], "no chat template in the GGUF: using ChatML")
        return (ChatTemplate(PLAIN_TEMPLATE, bos_token=bos, eos_token=eos), list(PLAIN_STOPS),
                "no chat template in the GGUF: using plain '### User:' turns; answers "
                "may be poor, prefer an instruct GGUF")

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _defuse(self, text: str) -> str:
        for token in self._control_tokens:
            if token in text:
                text = text.replace(token, token[0] + "\u2060" + token[1:])
        return text

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The exact tokens llama.cpp will evaluate for this conversation. Control tokens
        written inside the contents (a document holding "<|im_start|>system") are broken
        up first, so only the template itself can open or close a turn."""
        defused = [{"role": m["role"], "content": self._defuse(m["content"])} for m in messages]
        prompt = self.template.render(defused)
        return list(self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def count_prompt(self, messages: Sequence[Message]) -> int:
        return len(self.prompt_tokens(messages))

    def warm(self, messages: Sequence[Message]) -> None:
        """Evaluate the start of a prompt now (the fixed prefix), so that the first question
        finds it in the KV cache."""
        tokens = self.prompt_tokens(messages)
        with self._busy:
            cached = list(self._llm._input_ids[:len(tokens)])  # the KV cache holds these
            if len(tokens) < self.n_ctx and cached != tokens:
                self._llm.reset()
                self._llm.eval(tokens)

    def choice_probabilities(self, messages: Sequence[Message],
                             choices: Sequence[Sequence[str]]) -> list[float]:
        tokens = self.prompt_tokens(messages)
        ids = [sorted({self._llm.tokenize(spelling.encode("utf-8"), add_bos=False,
                                          special=False)[0] for spelling in spellings})
               for spellings in choices]
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit n_ctx {self.n_ctx}")
        with self._busy:
            logits = self._next_logits(tokens)
        picked = [logits[group] for group in ids]
        top = max(float(values.max()) for values in picked)
        mass = [float(np.exp(values - top).sum()) for values in picked]
        total = sum(mass)
        return [m / total for m in mass]

    def _next_logits(self, tokens: list[int]) -> Any:
        """Logits for the token after `tokens`, evaluating only what the KV cache does not
        already hold (the fixed instructions, usually): llama.cpp keeps the cache of the
        previous prompt, so a prompt that starts the same way costs only its new tail."""
        import llama_cpp

        llm = self._llm
        shared = 0
        for cached, token in zip(llm._input_ids, tokens, strict=False):
            if cached != token:
                break
            shared += 1
        shared = min(shared, len(tokens) - 1)  # the last token is evaluated for its logits
        llm.n_tokens = shared
        llm.eval(tokens[shared:])
        vocab = int(llama_cpp.llama_vocab_n_tokens(llm._model.vocab))
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                     shape=(vocab,)).copy()

    def stream_tokens(self, tokens: Sequence[int], *, max_tokens: int,
                      temperature: float) -> Iterator[str]:
        room = self.n_ctx - len(tokens)
        if room <= 0:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit n_ctx {self.n_ctx}")
        with self._busy:  # one llama.cpp context: browser sessions take turns
            stream = self._llm.create_completion(
                prompt=list(tokens), max_tokens=min(max_tokens, room), temperature=temperature,
                top_p=0.9, repeat_penalty=1.05, stop=self.stops or None, stream=True,
            )
            for part in stream:
                piece = part["choices"][0].get("text")
                if piece:
                    yield piece

    def stream_chat(self, messages: Sequence[Message], *, max_tokens: int,
                    temperature: float, reply_start: str = "") -> Iterator[str]:
        tokens = self.prompt_tokens(messages)
        if reply_start:
            tokens += self._llm.tokenize(reply_start.encode("utf-8"), add_bos=False,
                                         special=False)
        return self.stream_tokens(tokens, max_tokens=max_tokens, temperature=temperature)


def control_tokens(llm: Any) -> list[str]:
    """The text of the vocabulary's control tokens (turn markers, BOS/EOS), longest first."""
    import llama_cpp

    vocab = llm._model.vocab
    found = set()
    for token in range(int(llama_cpp.llama_vocab_n_tokens(vocab))):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            text = llm.detokenize([token], special=True).decode("utf-8", errors="ignore")
            if len(text) > 1:
                found.add(text)
    return sorted(found, key=len, reverse=True)


def placement(requested: int, layers: int, gpu_usable: bool) -> str:
    """Where the model's layers run, for the startup log. llama.cpp counts the output layer
    too, so a model of 24 blocks has 25 layers to place.

    Example: placement(-1, 24, True) == "all 25 layers on the GPU"
    """
    total = layers + 1
    if requested == 0:
        return f"all {total} layers on the CPU"
    if not gpu_usable:
        return (f"all {total} layers on the CPU: n_gpu_layers={requested} was asked, but no "
                "GPU is usable (this llama-cpp-python build has no GPU support, or no GPU "
                "device is visible); for NVIDIA, reinstall it with CMAKE_ARGS=-DGGML_CUDA=on")
    if requested < 0 or requested >= total:
        return f"all {total} layers on the GPU"
    return f"{requested} of {total} layers on the GPU, {total - requested} on the CPU"
