"""What more than one stage of simulator tuning shares: the constants of the record files, answer
containment and search-snippet cutting (the labelling rules' "contain", in the package docstring; they live
in :mod:`zerosearch.search.snippets`, shared with the policy's warm-up), documents as JSON dicts, and jsonl
reading and writing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zerosearch.jsonio import read_jsonl, skip_torn_last_line
from zerosearch.search.base import Document
from zerosearch.search.snippets import contains_answer, snippet

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
    return read_jsonl(path, skip_torn_last_line)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, dynamic_ncols=True)
