"""What more than one stage of simulator tuning shares: the constants of the record files, answer
containment and search-snippet cutting (the labelling rules' "contain", in the package docstring), documents
as JSON dicts, and jsonl reading and writing."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from zerosearch.rewards import normalize_answer
from zerosearch.search.base import Document

__all__ = [
    "CORRECT_METRICS",
    "NOISY",
    "PathLike",
    "QUERY_SOURCES",
    "TUNING_INFO",
    "USEFUL",
    "contains_answer",
    "snippet",
]

PathLike = str | os.PathLike[str]
USEFUL, NOISY = "useful", "noisy"
QUERY_SOURCES = ("policy", "question")
CORRECT_METRICS = ("cover_em", "em")
TUNING_INFO = "simulator_tuning.json"  # written last into a trained simulator's directory
_CLOSED_ANSWERS = frozenset({"yes", "no"})


def contains_answer(documents: Sequence[Document], golden_answers: Iterable[str]) -> bool | None:
    """Whether a normalised gold answer occurs, as whole words, in the documents' titles and texts.

    Returns None when no gold answer can be judged this way (only yes/no or empty answers).
    """
    golds = [g for g in map(normalize_answer, golden_answers) if g and g not in _CLOSED_ANSWERS]
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


def _doc_dict(doc: Document) -> dict[str, Any]:
    out: dict[str, Any] = {"title": doc.title, "text": doc.text}
    if doc.id is not None:
        out["id"] = doc.id
    return out


def _doc_from_dict(data: dict[str, Any]) -> Document:
    return Document(text=str(data.get("text", "")), title=str(data.get("title", "")), id=data.get("id"))


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a jsonl file; a torn (unparseable) *last* line is skipped with a warning."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                print(f"[zerosearch] {path}: ignoring a torn last line {number}", file=sys.stderr)
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc}); fix or delete that line") from None
    return rows


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, dynamic_ncols=True)
