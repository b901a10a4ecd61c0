"""Read a retrieval corpus: Search-R1's jsonl layout, plain or gzipped.

Each non-blank line is one JSON object, either Search-R1's (the wiki-18 corpus)::

    {"id": "0", "contents": "\\"Evan Morris\\"\\nEvan L. Morris (January 26, 1977 ...) was ..."}

where the first line of ``contents`` is the title in double quotes and the rest is the text, or a
row with separate fields ``{"id", "title", "text"}`` (the layout :func:`save_corpus` writes). ``id``
is optional (a missing or null one becomes the 0-based row number); ``contents`` without a newline is all
text and no title. A malformed row raises :class:`CorpusError` naming the file, the line and the
field to fix.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import IO, Iterable, Iterator

from zerosearch.search.base import Document

__all__ = ["CorpusError", "document_contents", "iter_corpus", "load_corpus", "save_corpus", "split_contents"]


class CorpusError(ValueError):
    """A corpus file that cannot be read; the message names the file, line and field."""


def split_contents(contents: str) -> tuple[str, str]:
    """Split Search-R1 ``contents`` into ``(title, text)``.

    The title is the first line with one pair of surrounding double quotes removed; the text is the
    rest. Contents without a newline have no title.
    """
    head, sep, rest = contents.partition("\n")
    if not sep:
        return "", contents
    title = head.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1]
    return title, rest


def document_contents(doc: Document) -> str:
    """The inverse of :func:`split_contents`: ``"Title"\\ntext`` (just the text when untitled).

    This is the string Search-R1 indexes (BM25 and e5 alike), so indexes built here see the same text.
    """
    return f'"{doc.title}"\n{doc.text}' if doc.title else doc.text


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def _string_field(row: dict, field: str, where: str) -> str:
    value = row[field]
    if not isinstance(value, str):
        raise CorpusError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def _row_to_document(row: object, row_number: int, where: str) -> Document:
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
    raw_id = row.get("id")
    if raw_id is None:
        raw_id = row_number
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
        raise CorpusError(f"{where}: field 'id' must be a string or an integer, got {type(raw_id).__name__}")
    if "contents" in row:
        title, text = split_contents(_string_field(row, "contents", where))
    elif "text" in row:
        text = _string_field(row, "text", where)
        title = _string_field(row, "title", where) if "title" in row else ""
    else:
        raise CorpusError(
            f"{where}: missing field 'contents' (Search-R1 layout) or 'text' (title/text layout); "
            f"found fields {sorted(row)}"
        )
    return Document(text=text, title=title, id=str(raw_id))


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Yield the documents of a corpus jsonl file (``.gz`` is decompressed), one line at a time."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    row_number = 0
    with _open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            yield _row_to_document(row, row_number, where)
            row_number += 1


def load_corpus(path: str | Path) -> list[Document]:
    """All documents of a corpus jsonl file, in file order (see the module docstring for the layouts)."""
    return list(iter_corpus(path))


def save_corpus(docs: Iterable[Document], path: str | Path) -> None:
    """Write documents as ``{"id", "title", "text"}`` jsonl rows, readable by :func:`load_corpus`."""
    with Path(path).open("w", encoding="utf-8") as out:
        for doc in docs:
            out.write(json.dumps({"id": doc.id, "title": doc.title, "text": doc.text}, ensure_ascii=False))
            out.write("\n")
