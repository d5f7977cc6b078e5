"""Answers checked fact by fact through the real parts: documents ingested into SQLite and
FAISS with the packaged embedder, retrieved, and the model's answer checked with the real
llama.cpp model as the second reader. The model's written answer is scripted here (the
chat model itself answers in test_ask.py and test_default_model.py), so that each kind of
wrong answer is tried exactly."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import kbqa
import pytest

pytestmark = pytest.mark.slow

DOCS = {
    "roberts.txt": "Iwan Roberts was born in Bangor in 1968 and played as a forward. He "
                   "moved to Huddersfield Town in 1990 and to Leicester City in 1993.",
    "pump.txt": "The pump cannot find water when the filter is clogged, and the motor then "
                "overheats. Replace the filter every 450 operating hours.",
    "privacy.txt": "No information is kept after 30 days. Logs are deleted every night.",
    "libai.txt": "李白于701年出生于碎叶城，后迁居长安。他一生写了一千多首诗。他没有参加科举考试。",
}


class Scripted:
    """The real model for counting, prefix and the second reader; the answer is given."""

    def __init__(self, inner, answer: str) -> None:
        self.inner = inner
        self.answer = answer
        self.name = inner.name
        self.n_ctx = inner.n_ctx

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_prompt(self, messages: Sequence[dict[str, str]]) -> int:
        return self.inner.count_prompt(messages)

    def warm(self, messages: Sequence[dict[str, str]]) -> None:
        self.inner.warm(messages)

    def choice_probabilities(self, messages, choices) -> list[float]:
        return self.inner.choice_probabilities(messages, choices)

    def stream_chat(self, messages, *, max_tokens: int, temperature: float,
                    reply_start: str = "") -> Iterator[str]:
        yield self.answer


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    for name, text in DOCS.items():
        (root / name).write_text(text + "\n", encoding="utf-8")
    return root


def ask(make_kb, small_generator, folder: Path, question: str, answer: str,
        **settings) -> kbqa.Answer:
    kb = make_kb(generator=Scripted(small_generator, answer), **settings)
    kb.ingest(folder)
    return kbqa.ask(question, kb=kb)


@pytest.mark.parametrize(("question", "answer", "reason"), [
    ("When was Iwan Roberts born?", "Iwan Roberts was born in Bangor in 1986 [1].",
     "the source says 1968, not 1986"),
    ("Which club did Iwan Roberts move to in 1990?",
     "He moved to Leicester City in 1990 [1].", "the source says Huddersfield Town, not "
     "Leicester City"),
])
def test_a_wrong_number_or_name_becomes_a_refusal_with_the_reason(
        make_kb, small_generator, folder: Path, question: str, answer: str, reason: str
        ) -> None:
    result = ask(make_kb, small_generator, folder, question, answer)
    assert result.refused and not result.grounded
    assert result.text.startswith("The documents don't say.")
    assert [f.reason for f in result.unsupported] == [reason]


def test_an_inserted_negation_is_flagged(make_kb, small_generator, folder: Path) -> None:
    result = ask(make_kb, small_generator, folder, "Where was Iwan Roberts born?",
                 "Iwan Roberts was not born in Bangor [1].")
    assert result.refused
    assert result.unsupported[0].reason.startswith("the source says the opposite")


def test_a_flagged_side_remark_keeps_the_answer_but_not_the_green_light(
        make_kb, small_generator, folder: Path) -> None:
    result = ask(make_kb, small_generator, folder, "Where was Iwan Roberts born?",
                 "Iwan Roberts was born in Bangor [1]. He moved to Huddersfield Town in "
                 "1991 [1].")
    assert not result.refused and not result.grounded
    assert "(not supported by the documents: the source says 1990, not 1991)" in result.text
    assert Path(result.citations[0].source).name == "roberts.txt"


def test_a_correct_paraphrase_is_grounded(make_kb, small_generator, folder: Path) -> None:
    result = ask(make_kb, small_generator, folder, "Where was Iwan Roberts born?",
                 "According to the source, Iwan Roberts was born in 1968 in Bangor [1].")
    assert result.grounded, result.text
    assert "1968" in result.citations[0].quote


@pytest.mark.parametrize(("question", "answer", "file"), [
    ("What happens when the filter is clogged?",
     "The pump cannot find water when the filter is clogged [1].", "pump.txt"),
    ("How long is information kept?", "No information is kept after 30 days [1].",
     "privacy.txt"),
])
def test_cannot_or_no_information_in_an_answer_is_content(
        make_kb, small_generator, folder: Path, question: str, answer: str, file: str
        ) -> None:
    result = ask(make_kb, small_generator, folder, question, answer)
    assert result.grounded and not result.refused, result.text
    assert Path(result.citations[0].source).name == file


@pytest.mark.parametrize(("question", "answer", "grounded", "reason"), [
    ("李白在哪里出生？", "李白于701年出生于碎叶城[1]。", True, ""),
    ("李白在哪里出生？", "根据资料，李白出生于碎叶城[1]。", True, ""),
    ("李白哪年出生？", "李白于702年出生于碎叶城[1]。", False, "来源写的是701年，不是702年"),
    ("李白在哪里出生？", "李白于701年出生于长安[1]。", False, "来源写的是碎叶城，不是长安"),
    ("李白参加科举考试了吗？", "李白参加了科举考试[1]。", False, "来源的说法相反"),
])
def test_chinese_answers_are_checked_the_same_way(
        make_kb, small_generator, folder: Path, question: str, answer: str, grounded: bool,
        reason: str) -> None:
    result = ask(make_kb, small_generator, folder, question, answer, second_reader="off")
    assert result.grounded is grounded, result.text
    if reason:
        assert result.refused and result.unsupported[0].reason.startswith(reason)
