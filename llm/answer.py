"""answer(question, hits, generator) -> Answer: gate, pack, prompt, stream, check citations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from kbqa.domain import Answer, Hit
from kbqa.llm.citations import check_citations, is_refusal, strip_markers
from kbqa.llm.context import pack_hits, source_budget
from kbqa.llm.model import Generator, Message
from kbqa.llm.prompts import (
    CLOSEST,
    REFUSAL,
    SYSTEM,
    UNVERIFIED,
    build_messages,
    detect_language,
    source_label,
)
from kbqa.settings import Settings

MAX_HISTORY_TURNS = 6


def refusal_text(lang: str, near: Sequence[Hit]) -> str:
    """The honest answer, naming where the closest material is.

    Example: refusal_text("en", []) == "The documents don't say."
    """
    labels = list(dict.fromkeys(source_label(h) for h in near))[:3]
    if not labels:
        return REFUSAL[lang]
    sep = "、" if lang == "zh" else ", "
    colon = "：" if lang == "zh" else ": "
    return f"{REFUSAL[lang]} {CLOSEST[lang]}{colon}{sep.join(labels)}."


def recent_history(history: Sequence[Message], budget: int,
                   count_tokens: Callable[[str], int]) -> list[Message]:
    """The latest turns that fit in `budget` tokens, oldest first."""
    kept: list[Message] = []
    used = 0
    for message in reversed(list(history)[-2 * MAX_HISTORY_TURNS:]):
        if message.get("role") not in ("user", "assistant") or not message.get("content"):
            continue
        cost = count_tokens(message["content"]) + 8
        if used + cost > budget:
            break
        kept.insert(0, {"role": message["role"], "content": message["content"]})
        used += cost
    return kept


def answer_stream(question: str, hits: Sequence[Hit], generator: Generator,
                  settings: Settings, history: Sequence[Message] = ()
                  ) -> Iterator[str | Answer]:
    """Yield text pieces as the model writes them, then the checked Answer."""
    lang = detect_language(question)
    relevant = [h for h in hits if h.similarity >= settings.min_score
                or h.coverage >= settings.min_coverage]
    if not relevant:  # nothing relevant: no model call, no invented answer
        text = refusal_text(lang, hits)
        yield text
        yield Answer(text=text, citations=[], grounded=False, question=question)
        return
    count = generator.count_tokens
    room = generator.n_ctx - settings.max_answer_tokens
    turns = recent_history(history, room // 4, count)
    fixed = count(SYSTEM[lang]) + count(question) + sum(count(m["content"]) + 8 for m in turns)
    budget = source_budget(generator.n_ctx, settings.max_answer_tokens, fixed,
                           settings.context_tokens)
    packed = pack_hits(relevant, count, budget, settings.top_k)
    if not packed:
        text = refusal_text(lang, relevant)
        yield text
        yield Answer(text=text, citations=[], grounded=False, question=question)
        return
    messages = build_messages(question, packed, lang, turns)
    pieces: list[str] = []
    for piece in generator.stream_chat(messages, max_tokens=settings.max_answer_tokens,
                                       temperature=settings.temperature):
        pieces.append(piece)
        yield piece
    raw = "".join(pieces).strip()
    if not strip_markers(raw) or is_refusal(raw):
        yield Answer(text=refusal_text(lang, packed), citations=[], grounded=False,
                     question=question)
        return
    checked = check_citations(raw, question, packed)
    if checked.supported:
        yield Answer(text=checked.text, citations=checked.citations, grounded=True,
                     question=question)
    else:
        yield Answer(text=f"{checked.text}\n\n{UNVERIFIED[lang]}", citations=checked.citations,
                     grounded=False, question=question)


def final_answer(stream: Iterable[str | Answer]) -> Answer:
    """Drain a stream of text pieces and return the Answer that ends it."""
    final: Answer | None = None
    for item in stream:
        if isinstance(item, Answer):
            final = item
    if final is None:  # answer_stream always ends with an Answer
        raise RuntimeError("the answer stream ended without an Answer")
    return final


def answer(question: str, hits: Sequence[Hit], generator: Generator, settings: Settings,
           history: Sequence[Message] = ()) -> Answer:
    return final_answer(answer_stream(question, hits, generator, settings, history))
