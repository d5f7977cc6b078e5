"""Any OpenAI-compatible model server as the chat model (KBQA_LLM_URL), tested against a
real one: llama-cpp-python's server with the small packaged model, on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import SMALL_MODEL, free_port
from kbqa.errors import KbqaError
from kbqa.llm.remote import RemoteGenerator, _choice_of, is_loopback

YES_NO = [("Yes", "yes", "YES"), ("No", "no", "NO")]


def test_loopback_addresses_and_choice_tokens() -> None:
    assert is_loopback("http://127.0.0.1:8080/v1") and is_loopback("http://localhost:1/v1")
    assert not is_loopback("http://10.0.0.5:8080/v1")
    assert not is_loopback("https://models.example.org/v1")
    assert _choice_of(" No", YES_NO) == 1 and _choice_of("Y", YES_NO) == 0
    assert _choice_of("Maybe", YES_NO) is None and _choice_of(" ", YES_NO) is None
    assert _choice_of("否", [("是",), ("否", "不")]) == 1


def test_a_server_that_is_not_there_is_named_with_what_to_do() -> None:
    port = free_port()  # nobody listens there yet
    with pytest.raises(KbqaError, match=rf"127\.0\.0\.1:{port} is not reachable.*"
                                        "unset KBQA_LLM_URL"):
        RemoteGenerator(f"http://127.0.0.1:{port}/v1")


@pytest.mark.models
def test_questions_are_answered_by_the_server_with_citations_and_refusals(
        model_server: str, make_kb, docs: Path, caplog: pytest.LogCaptureFixture) -> None:
    import kbqa

    caplog.set_level(logging.INFO, logger="kbqa")
    kb = make_kb(llm_url=model_server)
    kb.ingest(docs)
    pieces = list(kbqa.ask_stream("How often must the Zephyr X200 pump be serviced?", kb=kb))
    answer = pieces[-1]
    assert len(pieces) > 3, "the answer streams in pieces"
    assert "450" in answer.text, answer.text
    assert [(Path(c.source).name, c.page) for c in answer.citations] == [
        ("zephyr-manual.pdf", 2)]
    started = [r.getMessage() for r in caplog.records if "OpenAI-compatible" in r.getMessage()]
    assert started and SMALL_MODEL.name in started[0] and model_server.removesuffix("/v1") \
        in started[0], "the startup log names the server and its model"
    refused = kb.ask("What is the boiling point of liquid nitrogen?")
    assert refused.refused and not refused.citations
    follow = kbqa.ask("And which kit is used for it?", kb=kb, history=[
        {"role": "user", "content": "How often must the Zephyr X200 pump be serviced?"},
        {"role": "assistant", "content": answer.text}])
    assert "ZK-7731" in follow.text, follow.text


@pytest.mark.models
def test_the_server_counts_and_judges_like_the_model_in_process(
        model_server: str, small_generator) -> None:
    """Token counts sized to the server's tokenizer; yes/no probabilities (the second
    reader) read from its log-probabilities, close to the same model's in process."""
    remote = RemoteGenerator(model_server, tokenizer_model=SMALL_MODEL)
    text = "The harbour office opens at 7:15. 渡轮每天早上六点二十分出发。" * 20
    exact = small_generator.count_tokens(text)
    assert exact <= remote.count_tokens(text) <= exact * 1.15
    for question, answer in [("Is Paris in France?", "yes"), ("Is 7 larger than 9?", "no")]:
        messages = [{"role": "user", "content": f"{question} Answer yes or no."}]
        there = remote.choice_probabilities(messages, YES_NO)
        here = small_generator.choice_probabilities(messages, YES_NO)
        assert sum(there) == pytest.approx(1.0)
        assert there[0] == pytest.approx(here[0], abs=0.1), (question, there, here)
        assert (there[0] > 0.5) == (answer == "yes"), (question, there)
