"""Does a set of documents hold a gold answer, and a search-engine snippet of a passage.

Shared by simulator tuning (labelling real search results useful or noisy, cutting passages to the
simulator's "about 30 words") and the policy's format warm-up (which demonstrations are grounded in what
they show, and how long the documents they show are).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from zerosearch.rewards import normalize_answer
from zerosearch.search.base import Document

__all__ = ["CLOSED_ANSWERS", "contains_answer", "snippet"]

CLOSED_ANSWERS = frozenset({"yes", "no"})  # answers that containment cannot judge


def contains_answer(documents: Sequence[Document], golden_answers: Iterable[str]) -> bool | None:
    """Whether a normalised gold answer occurs, as whole words, in the documents' titles and texts.

    Returns None when no gold answer can be judged this way (only yes/no or empty answers).
    """
    golds = [g for g in map(normalize_answer, golden_answers) if g and g not in CLOSED_ANSWERS]
    if not golds:
        return None
    text = f" {normalize_answer(' '.join(f'{d.title} {d.text}' for d in documents))} "
    return any(f" {g} " in text for g in golds)


def _holds_answer(words: Sequence[str], answers: Sequence[str]) -> bool:
    return bool(answers) and bool(contains_answer([Document(" ".join(words))], answers))


def _window_start(words: Sequence[str], max_words: int, answers: Sequence[str]) -> int:
    """Where a ``max_words`` window of ``words`` starts so that it shows a gold answer the text holds.

    The text's start if its first window holds one; else the start of the last sentence whose window
    does (the sentence that mentions the answer); else the first word start whose window does; else 0.
    """
    if not _holds_answer(words, answers) or _holds_answer(words[:max_words], answers):
        return 0
    sentence_starts = [i + 1 for i, word in enumerate(words[:-1]) if word.endswith((".", "!", "?"))]
    for start in sentence_starts[::-1] + list(range(len(words))):
        if _holds_answer(words[start : start + max_words], answers):
            return start
    return 0


def snippet(text: str, max_words: int, answers: Sequence[str] = ()) -> str:
    """``text`` with whitespace collapsed, cut to a window of at most ``max_words`` words (0: no cut).

    The window starts at the beginning or, when a gold answer in ``answers`` occurs in the text beyond the
    first window, at the sentence mentioning it (as a search engine's snippet shows the passage around the
    matching words), so cutting never removes the answer a document holds. The window then ends at its last
    sentence end (``.``, ``!``, ``?``) in its second half when there is one and the answer stays inside.
    """
    words = text.split()
    if max_words <= 0 or len(words) <= max_words:
        return " ".join(words)
    start = _window_start(words, max_words, answers)
    head = words[start : start + max_words]
    keep_answer = _holds_answer(head, answers)
    for end in range(len(head), len(head) // 2, -1):
        if head[end - 1].endswith((".", "!", "?")) and (not keep_answer or _holds_answer(head[:end], answers)):
            return " ".join(head[:end])
    return " ".join(head)
