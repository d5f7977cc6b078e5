"""Pure chunking: sections -> token-sized chunks cut at paragraph, sentence or row ends.

Token counts come from a callable (the embedder's tokenizer in production, a word counter in
unit tests), so the budget matches what the embedder will really see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kbqa.domain import ChunkDraft, Section
from kbqa.text import ends_sentence, is_cjk, split_sentences

TokenCounter = Callable[[str], int]
BatchCounter = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class Unit:
    """A sentence (or a piece of an over-long one) and whether it starts a paragraph."""

    text: str
    tokens: int
    para_start: bool


def join_pieces(left: str, right: str) -> str:
    """Join two text pieces; no space between CJK characters.

    Example: join_pieces("你好", "世界") == "你好世界"; join_pieces("a", "b") == "a b"
    """
    if not left:
        return right
    if not right:
        return left
    if is_cjk(left[-1]) or is_cjk(right[0]):
        return left + right
    return left + " " + right


def split_long(text: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """Cut a unit longer than the budget at word (or, for CJK/no spaces, character) bounds.

    Example: split_long("north north", 1, lambda s: len(s.split())) == ["north", "north"]
    """
    total = count(text)
    if total <= max_tokens:
        return [text]
    chars_per_token = max(len(text) / max(total, 1), 1.0)
    step = max(int(max_tokens * chars_per_token * 0.9), 1)
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = _cut(text, start, min(start + step, len(text)))
        while end - start > 1 and count(text[start:end].strip()) > max_tokens:
            shorter = start + max((end - start) * 3 // 4, 1)
            cut = _cut(text, start, shorter)
            end = cut if cut < end else shorter  # a word longer than the budget is cut
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        start = end
    return pieces


LONGEST_WORD = 64  # characters: longer runs without a space (hashes, URLs) may be cut


def _cut(text: str, start: int, end: int) -> int:
    """Move a cut back to the last space before `end`, so words stay whole; with no space
    since `start`, forward to the end of the word (the caller cuts it if it is over the
    budget). CJK text, which has no spaces, is cut anywhere between its characters."""
    if end >= len(text):
        return len(text)
    space = text.rfind(" ", start + 1, end + 1)
    if space > start:
        return space
    if is_cjk(text[end - 1]) or is_cjk(text[end]):
        return max(end, start + 1)
    # A bounded look (or long unspaced text goes quadratic): a word of up to LONGEST_WORD
    # characters, or four times the window, stays whole.
    limit = start + max(4 * (end - start), LONGEST_WORD)
    word_end = text.find(" ", end, limit + 1)
    if word_end < 0 and len(text) <= limit:
        word_end = len(text)
    return word_end if word_end > end else max(end, start + 1)


def sentence_units(text: str, max_tokens: int, count: TokenCounter,
                   count_many: BatchCounter | None = None) -> list[Unit]:
    """Sentences with their token counts (counted in one batch when the counter allows);
    a sentence over the budget is cut into pieces that fit."""
    sentences = split_sentences(text)
    texts = [sentence for sentence, _ in sentences]
    sizes = count_many(texts) if count_many is not None else [count(t) for t in texts]
    units: list[Unit] = []
    for (sentence, para_start), size in zip(sentences, sizes, strict=True):
        if size <= max_tokens:
            units.append(Unit(sentence, size, para_start))
            continue
        for i, piece in enumerate(split_long(sentence, max_tokens, count)):
            units.append(Unit(piece, count(piece), para_start and i == 0))
    return units


def pack_units(units: Sequence[Unit], max_tokens: int, overlap_tokens: int) -> list[str]:
    """Greedy packing of whole units that prefers to cut between paragraphs.

    A chunk that is at least half full ends before a paragraph that would not fit whole.
    A cut between paragraphs needs no overlap; a cut inside one repeats its trailing
    sentences up to `overlap_tokens`, so no sentence loses its context.

    Example: pack_units([Unit("a", 1, True)] * 3, 2, 1) == ["a\na", "a"]
    """
    paragraph_rest = _paragraph_sizes(units)
    chunks: list[str] = []
    current: list[Unit] = []
    size = 0
    fresh = 0  # units in `current` not yet emitted in an earlier chunk
    for i, unit in enumerate(units):
        overflow = size + unit.tokens > max_tokens
        early = (unit.para_start and size >= max_tokens // 2
                 and size + paragraph_rest[i] > max_tokens)
        if current and (overflow or early):
            chunks.append(_render(current))
            carried: list[Unit] = []
            carried_size = 0
            if not unit.para_start:
                for prev in reversed(current):
                    if carried_size + prev.tokens > overlap_tokens:
                        break
                    carried.insert(0, prev)
                    carried_size += prev.tokens
                if carried_size + unit.tokens > max_tokens:
                    carried, carried_size = [], 0
            current, size, fresh = carried, carried_size, 0
        current.append(unit)
        size += unit.tokens
        fresh += 1
    if current and fresh:
        chunks.append(_render(current))
    return chunks


def _paragraph_sizes(units: Sequence[Unit]) -> list[int]:
    """For each unit, the tokens from it to the end of its paragraph."""
    sizes = [0] * len(units)
    running = 0
    for i in range(len(units) - 1, -1, -1):
        running += units[i].tokens
        sizes[i] = running
        if units[i].para_start:
            running = 0
    return sizes


def pack_rows(rows: Sequence[str], max_tokens: int, count: TokenCounter) -> list[str]:
    """Table rows packed whole into chunks; every chunk starts with the header row, so a
    row never loses the names of its columns.

    Example: pack_rows(["h", "a", "b"], 2, lambda s: 1) == ["h\na", "h\nb"]
    """
    if not rows:
        return []
    header, body = rows[0], list(rows[1:])
    if not body:  # a lone row: cut to fit like any other
        return split_long(header, max_tokens, count)
    header_tokens = count(header)
    if header_tokens > max_tokens // 2:  # a header that big is data, not a label
        header, header_tokens, body = "", 0, list(rows)
    budget = max(max_tokens - header_tokens, 1)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for row in body:
        for piece in split_long(row, budget, count):
            tokens = count(piece)
            if current and size + tokens > budget:
                chunks.append("\n".join([header, *current] if header else current))
                current, size = [], 0
            current.append(piece)
            size += tokens
    if current:
        chunks.append("\n".join([header, *current] if header else current))
    return chunks


def _render(units: Iterable[Unit]) -> str:
    text = ""
    for unit in units:
        if text and (unit.para_start or not ends_sentence(text)):
            text += "\n" + unit.text  # a row or heading line stays a line of its own
        else:
            text = join_pieces(text, unit.text)
    return text


def chunk_sections(
    sections: Sequence[Section],
    count: TokenCounter,
    max_tokens: int = 200,
    overlap_tokens: int = 40,
    count_many: BatchCounter | None = None,
) -> list[ChunkDraft]:
    """Chunk each section on its own, so a chunk never spans two pages, slides or headings;
    prose is cut between paragraphs, then sentences; tables between rows.

    Example: chunk_sections([Section("One. Two.", page=3)], lambda s: 1, 5)[0].page == 3
    """
    drafts: list[ChunkDraft] = []
    for section in sections:
        if section.table:
            rows = [line.strip() for line in section.text.split("\n") if line.strip()]
            texts = pack_rows(rows, max_tokens, count)
        else:
            units = sentence_units(section.text, max_tokens, count, count_many)
            texts = pack_units(units, max_tokens, overlap_tokens)
        for text in texts:
            drafts.append(
                ChunkDraft(text=text, page=section.page, heading=section.heading,
                           ordinal=len(drafts), location=section.location)
            )
    return drafts
