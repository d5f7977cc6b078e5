"""Pure context packing: the best hits that fit the token budget, in rank order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kbqa.domain import Hit
from kbqa.llm.prompts import render_source


def pack_hits(hits: Sequence[Hit], count_tokens: Callable[[str], int], budget: int,
              max_sources: int) -> list[Hit]:
    """Greedy by rank; a hit that does not fit is skipped so a smaller later one may.

    Example: pack_hits(hits, len, 0, 4) == []
    """
    packed: list[Hit] = []
    used = 0
    for hit in hits:
        if len(packed) >= max_sources:
            break
        cost = count_tokens(render_source(len(packed) + 1, hit)) + 2
        if used + cost <= budget:
            packed.append(hit)
            used += cost
    return packed


def source_budget(n_ctx: int, max_answer_tokens: int, fixed_tokens: int, cap: int) -> int:
    """Tokens left for sources once prompt, history, question and the answer are reserved.

    Example: source_budget(4096, 512, 300, 1200) == 1200
    """
    margin = 32  # chat-template tokens per message
    return max(0, min(cap, n_ctx - max_answer_tokens - fixed_tokens - margin))
