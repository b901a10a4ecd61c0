"""JSON Lines in, JSON out: the one reader of the project's jsonl files, and values made safe for JSON.

Standard library only, so that what merely reads files (the report, ``zerosearch compare``, the CLI) starts
without torch.

A file is split into lines at ``"\\n"`` (and ``"\\r"``, Python's universal newlines), never at the other line
boundaries :meth:`str.splitlines` knows: ``json.dumps(..., ensure_ascii=False)``, which writes this project's
records, leaves U+2028, U+2029 and U+0085 unescaped inside strings, so a record whose document holds one would
read as two broken lines (the readers this module replaced did that, and skipped or refused such a record).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["BadJsonLine", "iter_jsonl", "json_safe", "read_jsonl", "skip_bad_lines", "skip_torn_last_line"]


class BadJsonLine(ValueError):
    """A line of a jsonl file that is not valid JSON.

    Attributes:
        path: the file.
        line: the line's number, from 1.
        error: the :class:`json.JSONDecodeError`.
        last: whether it is the file's last line, where a write torn by a kill leaves half a record.
    """

    def __init__(self, path: str | os.PathLike[str], line: int, error: json.JSONDecodeError, last: bool) -> None:
        super().__init__(f"{path}, line {line}: not valid JSON ({error}); fix or delete that line")
        self.path = str(path)
        self.line = line
        self.error = error
        self.last = last


OnBadLine = Callable[[BadJsonLine], None]


def skip_torn_last_line(bad: BadJsonLine) -> None:
    """``on_bad_line`` for the files this project appends to: a bad *last* line (a write torn by a kill) is
    skipped with a warning on stderr; a bad line anywhere else is raised."""
    if not bad.last:
        raise bad
    print(f"[zerosearch] {bad.path}: ignoring a torn last line {bad.line}", file=sys.stderr)


def skip_bad_lines(bad: BadJsonLine) -> None:
    """``on_bad_line`` for readers that show what they can (the run report): every bad line is skipped, silently."""


def _raise(bad: BadJsonLine) -> None:
    raise bad


def _numbered_lines(handle: TextIO) -> Iterator[tuple[int, str, bool]]:
    """(number from 1, line, whether it is the last line) of an open text file."""
    number, line = 0, next(handle, None)
    while line is not None:
        number += 1
        following = next(handle, None)
        yield number, line, following is None
        line = following


def iter_jsonl(path: str | os.PathLike[str], on_bad_line: OnBadLine | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` of each non-blank line of the UTF-8 jsonl file ``path``, in file order.

    A line that is not valid JSON becomes a :class:`BadJsonLine` passed to ``on_bad_line`` (the line is skipped
    when it returns; it may raise), or raised when ``on_bad_line`` is None. See :func:`skip_torn_last_line` and
    :func:`skip_bad_lines`. Records are whatever JSON values the lines hold (the caller checks their shape).

    Raises:
        FileNotFoundError, OSError: the file cannot be opened. UnicodeDecodeError: it is not UTF-8.
        BadJsonLine: a bad line, with ``on_bad_line`` None (or raising it).
    """
    handle_bad = on_bad_line or _raise
    with Path(path).open(encoding="utf-8") as handle:
        for number, line, last in _numbered_lines(handle):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                bad = BadJsonLine(path, number, exc, last)
            else:
                yield number, record
                continue
            handle_bad(bad)  # outside the except block: a BadJsonLine it raises does not chain the decode error


def read_jsonl(path: str | os.PathLike[str], on_bad_line: OnBadLine | None = None) -> list[Any]:
    """The records of a jsonl file, in file order: :func:`iter_jsonl` without the line numbers."""
    return [record for _, record in iter_jsonl(path, on_bad_line)]


def json_safe(value: Any) -> Any:
    """``value`` with each non-finite float (NaN, +-inf), at any depth of dicts, lists and tuples, replaced by
    None (JSON's null: a missing value), so that ``json.dumps`` writes standard JSON instead of ``NaN``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
