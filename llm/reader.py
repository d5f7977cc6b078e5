"""The second reader: the local model asked, yes or no, whether a passage gives an answer.

Rules decide most answer sentences (`kbqa.llm.facts`); a bare answer ("Watford.") found in
the passage next to other candidates they cannot decide. Judging a given answer is an
easier task for a small model than finding it: the reader sees the passage, the question
and the answer, and the probabilities of "yes" and "no" as its next token are read
directly (no text is generated). The prompt starts with the answer prompt's fixed
instructions, so llama.cpp's KV cache already holds them.
"""

from __future__ import annotations

from collections.abc import Callable

from kbqa.llm.model import Generator, Message
from kbqa.llm.prompts import check_request, prefix

# P(yes) below which the reader rejects an answer, per language (the model is far surer of
# itself in Chinese); stricter where the answer's sentence is not the one that speaks to
# the question best. Set for the packaged default model on the dev half of
# `make bench-faithfulness ARGS="--calibrate --half dev"` (right bare answers kept >= 92%,
# wrong ones rejected as often as that allows); reported on the other half.
REJECT_BELOW = {"en": 0.56, "zh": 0.92}
REJECT_OFF_QUESTION = {"en": 0.70, "zh": 0.96}
MAX_PASSAGE_CHARS = 1200

_CHOICES = {
    "en": (("Yes", "yes", "YES"), ("No", "no", "NO")),
    "zh": (("是", "对", "正确"), ("否", "不", "错误")),
}

# P(yes) for (question, answer, passage, language).
Reader = Callable[[str, str, str, str], float]


def accepts(p_yes: float, lang: str, on_best_place: bool) -> bool:
    """Example: accepts(0.6, "en", True) is True; accepts(0.6, "en", False) is False"""
    lang = "zh" if lang == "zh" else "en"
    return p_yes >= (REJECT_BELOW if on_best_place else REJECT_OFF_QUESTION)[lang]


def reader_messages(question: str, answer: str, passage: str, lang: str) -> list[Message]:
    """The fixed instructions, then one yes/no request about the answer and its passage."""
    ask = check_request(question, answer, passage[:MAX_PASSAGE_CHARS], lang)
    return [*prefix(), {"role": "user", "content": ask}]


def model_reader(generator: Generator) -> Reader:
    """A Reader backed by the chat model."""

    def read(question: str, answer: str, passage: str, lang: str) -> float:
        lang = "zh" if lang == "zh" else "en"
        yes, _ = generator.choice_probabilities(
            reader_messages(question, answer, passage, lang), _CHOICES[lang])
        return yes

    return read
