"""answer(question, hits, generator) -> Answer: gate, pack, prompt, stream, check citations."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from kbqa.domain import Answer, Chunk, Flag, Hit, Source
from kbqa.errors import PromptTooLong
from kbqa.llm.citations import check_citations, parse_markers, refuses, strip_markers
from kbqa.llm.context import focus_sources, source_budget
from kbqa.llm.facts import WordSimilarity
from kbqa.llm.model import Generator, Message
from kbqa.llm.prompts import (
    CLOSEST,
    CONDENSE_START,
    REFUSAL,
    build_messages,
    condense_messages,
    source_label,
)
from kbqa.llm.reader import Reader
from kbqa.settings import Settings
from kbqa.text import content_terms, detect_language, is_cjk

MAX_HISTORY_TURNS = 6
CONDENSE_TURNS = 4  # messages shown to the model when rewriting a follow-up
CONDENSE_CHARS = 600  # of each, enough for the names a follow-up refers to
CONDENSE_TOKENS = 64
KEEP_SHARE = 0.85  # of the follow-up's words a usable rewrite keeps (all, up to 6)
KEEP_SHARE_HAN = 0.5  # of its Han bigrams: replacing 它 or 那 also breaks its neighbours


def refusal_text(lang: str, near: Sequence[Chunk]) -> str:
    """The honest answer, naming where the closest material is.

    Example: refusal_text("en", []) == "The documents don't say."
    """
    labels = list(dict.fromkeys(source_label(c) for c in near))[:3]
    if not labels:
        return REFUSAL[lang]
    if lang == "zh":
        return f"{REFUSAL[lang]}{CLOSEST[lang]}：{'；'.join(labels)}。"
    return f"{REFUSAL[lang]} {CLOSEST[lang]}: {'; '.join(labels)}."


def recent_history(history: Sequence[Message], budget: int,
                   count_tokens: Callable[[str], int]) -> list[Message]:
    """The latest whole exchanges (a question and its answer) that fit in `budget` tokens,
    oldest first: chat templates that insist on alternating roles get them."""
    turns = [{"role": m["role"], "content": m["content"]} for m in history
             if m.get("role") in ("user", "assistant") and m.get("content")]
    kept: list[Message] = []
    used = 0
    for message in reversed(turns[-2 * MAX_HISTORY_TURNS:]):
        cost = count_tokens(message["content"]) + 8
        if used + cost > budget:
            break
        kept.insert(0, message)
        used += cost
    pairs = [kept[i:i + 2] for i in range(len(kept) - 1)
             if kept[i]["role"] == "user" and kept[i + 1]["role"] == "assistant"]
    return [message for pair in pairs for message in pair]


def relevant_hits(hits: Sequence[Hit], floor: Callable[[Hit], float]) -> list[Hit]:
    """Hits close enough in meaning and holding enough of the question's rarer terms: the
    sum of the two separates questions the documents answer from those they don't better
    than either alone (bench/answer.py's held-out calibration). `floor` per hit: each
    embedder's cosines have their own scale, and a passage in another language shares no
    terms with the question."""
    return [h for h in hits if h.similarity + h.coverage >= floor(h)]


def fit_prompt(question: str, hits: Sequence[Hit], generator: Generator, settings: Settings,
               lang: str, history: Sequence[Message] = (), focus: str = ""
               ) -> tuple[list[Message], list[Source]]:
    """The prompt and its sources, counted with the model's tokenizer and chat template so
    that prompt + answer always fit n_ctx. The sources come first; the newest history turns
    that still fit go in after them; `focus` (default: the question) chooses sentences."""
    reserve = settings.max_answer_tokens
    checks = settings.reads_twice  # the prefix the session's KV cache holds
    bare = generator.count_prompt(build_messages(question, [], lang, checks=checks))
    if bare + reserve > generator.n_ctx:
        raise PromptTooLong(
            f"the instructions and the question take {bare} tokens and {reserve} are kept for "
            f"the answer, more than the model's context of {generator.n_ctx}: shorten the "
            "question, raise KBQA_N_CTX or lower KBQA_MAX_ANSWER_TOKENS"
        )
    budget = source_budget(generator.n_ctx, reserve, bare, settings.context_tokens)
    sources = focus_sources(hits, focus or question, generator.count_tokens, budget,
                            settings.top_k)
    turns = recent_history(history, history_budget(generator.n_ctx, reserve),
                           generator.count_tokens)
    while True:
        messages = build_messages(question, sources, lang, turns, checks)
        if generator.count_prompt(messages) + reserve <= generator.n_ctx or not (
                turns or sources):
            return messages, sources
        if turns:  # the template's own tokens per turn were not in the estimate
            turns = turns[2:]
        else:
            sources = sources[:-1]


def history_budget(n_ctx: int, max_answer_tokens: int) -> int:
    """Tokens of conversation history a prompt may carry: a quarter of what the answer
    leaves."""
    return max(0, n_ctx - max_answer_tokens) // 4


def condense_question(question: str, history: Sequence[Message], generator: Generator,
                      checks: bool = True) -> str:
    """A follow-up rewritten to stand alone, for retrieval ("and the second one?" ->
    "What is the second ...?"); without history, the question itself; when the rewrite is
    unusable (empty, a refusal, far too long), the last question joined to this one.
    `checks`: the session's prefix carries the second reader's worked checks."""
    turns = [m for m in history if m.get("role") in ("user", "assistant") and m.get("content")]
    if not turns:
        return question
    last_user = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
    fallback = f"{last_user} {question}".strip()
    lang = detect_language(question)
    shown = [{"role": m["role"], "content": strip_markers(m["content"])[:CONDENSE_CHARS]}
             for m in turns[-CONDENSE_TURNS:]]
    messages = condense_messages(question, shown, lang, checks)
    while generator.count_prompt(messages) + CONDENSE_TOKENS > generator.n_ctx:
        if len(shown) <= 1:
            return fallback  # too long to rewrite; the answer step reports what to do
        shown = shown[1:]
        messages = condense_messages(question, shown, lang, checks)
    text = ""
    for piece in generator.stream_chat(messages, max_tokens=CONDENSE_TOKENS, temperature=0,
                                       reply_start=CONDENSE_START[lang]):
        text += piece
        if "\n" in text.strip():  # the question is one line: what follows is not needed
            break
    first_line = next((line.strip() for line in text.strip().splitlines() if line.strip()), "")
    rewritten = re.sub(r"^[*_\s]*(?:rewritten question|standalone question|last question|"
                       r"question|改写后的问题|最后的问题|问题)[*_\s]*[:：][*_\s]*", "",
                       first_line, flags=re.IGNORECASE).strip().strip('"“”*')
    if (not rewritten or refuses(rewritten) or parse_markers(rewritten)
            or len(rewritten) > 4 * len(question) + 200
            or not keeps_question_terms(question, rewritten)):
        return fallback
    return rewritten


def keeps_question_terms(question: str, rewritten: str) -> bool:
    """A faithful rewrite only adds to the follow-up (what "it" or "he" stand for): it keeps
    KEEP_SHARE of the follow-up's words and KEEP_SHARE_HAN of its Han bigrams. Small models
    instead often repeat the previous question, or drift ("Which club did he join?" ->
    "Where did he join the Welsh Rugby Union?"); such a rewrite would search for the wrong
    thing.

    Example: keeps_question_terms("And when does it close?", "When does it open?") is False
    """
    wanted, kept = content_terms(question), content_terms(rewritten)
    han = {t for t in wanted if is_cjk(t[0])}  # bigrams: those around a replaced 它/那 go
    return all(len(group & kept) >= share * len(group)
               for group, share in ((wanted - han, KEEP_SHARE), (han, KEEP_SHARE_HAN)) if group)


def answer_stream(question: str, hits: Sequence[Hit], generator: Generator,
                  settings: Settings, history: Sequence[Message] = (),
                  similarity: WordSimilarity | None = None, search_query: str = "",
                  reader: Reader | None = None) -> Iterator[str | Answer]:
    """Yield text pieces as the model writes them, then the checked Answer. No model is
    called when no hit reaches its relevance floor (settings.relevance_floor); `reader`
    is the second reader for claims the rules cannot decide (None: they pass)."""
    lang = (detect_language(question) if settings.answer_language == "auto"
            else settings.answer_language)

    def refuse(near: Sequence[Chunk], unsupported: Sequence[Flag] = ()) -> Answer:
        return Answer(text=refusal_text(lang, near), grounded=False, question=question,
                      unsupported=list(unsupported), search_query=search_query)

    relevant = relevant_hits(hits, lambda h: settings.relevance_floor(h.space, h.cross_language))
    if not relevant:  # nothing relevant: no model call, no invented answer
        final = refuse([h.chunk for h in hits])
        yield final.text
        yield final
        return
    # Sentences are chosen by the words of the question and, for a follow-up, of its rewrite.
    focus = question if search_query in ("", question) else f"{question} {search_query}"
    messages, sources = fit_prompt(question, relevant, generator, settings, lang, history,
                                   focus=focus)
    if not sources:
        final = refuse([h.chunk for h in relevant])
        yield final.text
        yield final
        return
    pieces: list[str] = []
    for piece in generator.stream_chat(messages, max_tokens=settings.max_answer_tokens,
                                       temperature=settings.temperature):
        pieces.append(piece)
        yield piece
    raw = "".join(pieces).strip()
    closest = [h.chunk for s in sources for h in s.hits]
    if not strip_markers(raw) or refuses(raw):
        yield refuse(closest)
        return
    checked = check_citations(raw, question, sources, similarity, lang=lang, reader=reader)
    if not checked.supported or checked.main_failed:  # the answer itself is not in them
        yield refuse(closest, checked.flags or [Flag(strip_markers(raw))])
        return
    yield Answer(text=checked.text, citations=checked.citations, grounded=not checked.flags,
                 question=question, unsupported=checked.flags, search_query=search_query)


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
           history: Sequence[Message] = (), similarity: WordSimilarity | None = None,
           reader: Reader | None = None) -> Answer:
    return final_answer(answer_stream(question, hits, generator, settings, history,
                                      similarity, reader=reader))
