"""Question-answer data: loading the three file layouts, the policy prompt, and a resumable sampler.

Layouts (detected per file from its first row):

* ``flashrag``: FlashRAG / Search-R1 raw jsonl rows ``{"id", "question", "golden_answers"}``;
  ``golden_answers`` may be a string or a list of strings.
* ``search_r1``: the Search-R1 / ZeroSearch training parquet: ``data_source``, ``prompt`` (one user
  message holding the rendered policy prompt ending in ``"Question: ...\\n"``), ``ability``,
  ``reward_model.ground_truth.target`` (list of answers), ``extra_info.{split, index}`` and
  possibly a ``question`` column.
* ``agentic_rag``: the verl-style variant found in the wild (chenyiqun/Agentic-RAG):
  ``reward_model.ground_truth`` is a *string* (the answers joined by ``", "``, lossy because
  answers contain commas), the answers are in ``extra_info.answer`` and the bare question in
  ``extra_info.question`` (and in ``prompt[0].content``).

Files may be ``.jsonl`` (blank lines skipped), ``.json`` (a list of row objects) or ``.parquet``.
Row numbers in errors and in :attr:`QARow.row` are 1-based line numbers for jsonl and 0-based row
indices for json and parquet.
"""

from __future__ import annotations

import json
import os
import dataclasses
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zerosearch.jsonio import BadJsonLine, iter_jsonl
from zerosearch.prompts import load_template, render

__all__ = [
    "DataError",
    "PromptSampler",
    "QARow",
    "load_qa_file",
    "load_qa_files",
    "policy_prompt",
]

PathLike = str | os.PathLike[str]
_Record = dict[str, Any]
SUFFIXES = (".jsonl", ".json", ".parquet")
_MISSING: Any = object()  # an absent (or null) field
_NO_VALUE: Any = object()  # DataError was given no offending value to show


class DataError(ValueError):
    """A data file that cannot be read as QA rows; the message names file, row and field.

    Attributes:
        path: the file.
        row: the row number (see the module docstring), or None for a file-level problem.
        field: the (dotted) field at fault, or None for a whole-row or file-level problem.
    """

    def __init__(
        self,
        path: PathLike,
        row: int | None,
        field: str | None,
        expected: str,
        got: Any = _NO_VALUE,
        *,
        unit: str = "row",
    ) -> None:
        self.path = str(path)
        self.row = row
        self.field = field
        where = [self.path]
        if row is not None:
            where.append(f"{unit} {row}")
        if field is not None:
            where.append(f"field '{field}'")
        message = f"{', '.join(where)}: expected {expected}"
        if got is not _NO_VALUE:
            message += f", got {_describe(got)}"
        super().__init__(message)


def _describe(value: Any) -> str:
    """A short description of a bad value for error messages."""
    if value is _MISSING or value is None:
        return "nothing (the field is absent or null)"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


@dataclass(frozen=True)
class QARow:
    """One question with its gold answers.

    Attributes:
        id: the row's id (from the file, or ``<data_source>_<split>_<index>`` when it has none).
        question: the question, whitespace-stripped.
        golden_answers: the gold answers, whitespace-stripped, in file order (at least one).
        data_source: the dataset name (the file's ``data_source`` field, else the file stem).
        source: the file the row came from.
        row: its row number in that file (1-based line for jsonl, 0-based index otherwise).
        record: the row as read from the file, all fields (e.g. HotpotQA's ``metadata``); not compared.
        row_unit: what ``row`` counts, as the file's reader numbered it ("line" or "row"); not compared.
    """

    id: str
    question: str
    golden_answers: tuple[str, ...]
    data_source: str
    source: str
    row: int
    record: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False, repr=False)
    row_unit: str = dataclasses.field(default="row", compare=False, hash=False, repr=False)

    def get(self, dotted: str) -> Any:
        """The raw record's field ``a.b...`` (nested mappings), or None where absent."""
        value = _get(self.record, dotted)
        return None if value is _MISSING else value

    def error(self, field: str | None, expected: str, got: Any = _NO_VALUE) -> DataError:
        """A :class:`DataError` for this row's ``field``, numbered as the file's reader numbered rows."""
        return DataError(self.source, self.row, field, expected, got, unit=self.row_unit)


@dataclass(frozen=True)
class _Where:
    """The location of one record, to build :class:`DataError` messages."""

    path: str
    row: int
    unit: str

    def error(self, field: str | None, expected: str, got: Any = _NO_VALUE) -> DataError:
        return DataError(self.path, self.row, field, expected, got, unit=self.unit)


# ---------------------------------------------------------------------------------------------
# Reading records


def _read_jsonl(path: Path) -> list[tuple[_Where, Any]]:
    try:
        return [(_Where(str(path), number, "line"), record) for number, record in iter_jsonl(path)]
    except BadJsonLine as bad:  # a QA file is the user's: any bad line, the last one included, is theirs to fix
        expected = f"one JSON object per line, but the line is not valid JSON: {bad.error}"
        raise _Where(str(path), bad.line, "line").error(None, expected) from bad.error


def _read_json(path: Path) -> list[tuple[_Where, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        expected = f"a JSON list of row objects, but the file is not valid JSON: {exc}"
        raise DataError(path, None, None, expected) from exc
    if not isinstance(data, list):
        raise DataError(path, None, None, "a JSON list of row objects", data)
    return [(_Where(str(path), index, "row"), record) for index, record in enumerate(data)]


def _read_parquet(path: Path) -> list[tuple[_Where, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    records = table.to_pylist()
    return [(_Where(str(path), index, "row"), record) for index, record in enumerate(records)]


_READERS: dict[str, Callable[[Path], list[tuple[_Where, Any]]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
}


# ---------------------------------------------------------------------------------------------
# Field helpers


def _get(record: _Record, dotted: str) -> Any:
    """``record[a][b]...`` for ``dotted == "a.b..."``, or ``_MISSING`` if absent or null."""
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return _MISSING
        value = value[key]
    return value


def _text(where: _Where, field: str, value: Any) -> str:
    """``value`` stripped, which must be a non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise where.error(field, "a non-empty string", value)
    return value.strip()


def _answers(where: _Where, field: str, value: Any) -> tuple[str, ...]:
    """A string or list of strings as a tuple of stripped, non-blank answers."""
    expected = "a non-empty string or a non-empty list of non-empty strings"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise where.error(field, expected, value)
    answers = []
    for index, answer in enumerate(value):
        if not isinstance(answer, str) or not answer.strip():
            raise where.error(f"{field}[{index}]", "a non-empty string", answer)
        answers.append(answer.strip())
    return tuple(answers)


def _row_id(where: _Where, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise where.error("id", "a non-empty string or an integer", value)
    return str(value).strip()


def _prompt_text(where: _Where, record: _Record) -> str:
    """The content of the last message of the ``prompt`` field (a list of chat messages)."""
    prompt = _get(record, "prompt")
    if not isinstance(prompt, list) or not prompt or not isinstance(prompt[-1], dict):
        raise where.error("prompt", "a non-empty list of {role, content} messages", prompt)
    return _text(where, "prompt[-1].content", prompt[-1].get("content"))


def _question_from_prompt(where: _Where, prompt: str) -> str:
    """The text after the last ``"Question: "`` of a rendered policy prompt."""
    marker = "Question: "
    if marker not in prompt:
        raise where.error(
            "prompt",
            f"a rendered policy prompt containing {marker!r} (or a 'question' column)",
            prompt,
        )
    return _text(where, "prompt", prompt.rsplit(marker, 1)[1])


# ---------------------------------------------------------------------------------------------
# Layouts


def _parse_flashrag(where: _Where, record: _Record, default_source: str, index: int) -> QARow:
    source = _get(record, "data_source")
    data_source = default_source if source is _MISSING else _text(where, "data_source", source)
    raw_id = _get(record, "id")
    return QARow(
        id=f"{data_source}_{index}" if raw_id is _MISSING else _row_id(where, raw_id),
        question=_text(where, "question", _get(record, "question")),
        golden_answers=_answers(where, "golden_answers", _get(record, "golden_answers")),
        data_source=data_source,
        source=where.path,
        row=where.row,
        row_unit=where.unit,
    )


def _verl_identity(
    where: _Where, record: _Record, default_source: str, index: int
) -> tuple[str, str]:
    """``(id, data_source)`` of a verl-style row (Search-R1 or Agentic-RAG layout)."""
    source = _get(record, "data_source")
    data_source = default_source if source is _MISSING else _text(where, "data_source", source)
    raw_id = _get(record, "id")
    if raw_id is not _MISSING:
        return _row_id(where, raw_id), data_source
    split = _get(record, "extra_info.split")
    row_index = _get(record, "extra_info.index")
    parts = [data_source]
    if split is not _MISSING:
        parts.append(str(split))
    parts.append(str(index if row_index is _MISSING else row_index))
    return "_".join(parts), data_source


def _parse_search_r1(where: _Where, record: _Record, default_source: str, index: int) -> QARow:
    row_id, data_source = _verl_identity(where, record, default_source, index)
    question = _get(record, "question")
    if question is _MISSING:
        question = _question_from_prompt(where, _prompt_text(where, record))
    target = "reward_model.ground_truth.target"
    return QARow(
        id=row_id,
        question=_text(where, "question", question),
        golden_answers=_answers(where, target, _get(record, target)),
        data_source=data_source,
        source=where.path,
        row=where.row,
        row_unit=where.unit,
    )


def _parse_agentic_rag(where: _Where, record: _Record, default_source: str, index: int) -> QARow:
    row_id, data_source = _verl_identity(where, record, default_source, index)
    for field in ("question", "extra_info.question"):
        question = _get(record, field)
        if question is not _MISSING:
            question = _text(where, field, question)
            break
    else:
        prompt = _prompt_text(where, record)
        question = _question_from_prompt(where, prompt) if "Question: " in prompt else prompt
    # ground_truth joins the answers with ", " and answers may contain commas: never split it.
    field = "extra_info.answer"
    if _get(record, field) is _MISSING:
        field = "reward_model.ground_truth"
    return QARow(
        id=row_id,
        question=question,
        golden_answers=_answers(where, field, _get(record, field)),
        data_source=data_source,
        source=where.path,
        row=where.row,
        row_unit=where.unit,
    )


_Parser = Callable[[_Where, _Record, str, int], QARow]


def _detect_layout(record: _Record) -> _Parser:
    """The parser for a file whose first record is ``record``."""
    if "reward_model" not in record:
        return _parse_flashrag
    if isinstance(_get(record, "reward_model.ground_truth"), str):
        return _parse_agentic_rag
    return _parse_search_r1


# ---------------------------------------------------------------------------------------------
# Public loading API


def load_qa_file(path: PathLike) -> list[QARow]:
    """Load every QA row of one ``.jsonl``, ``.json`` or ``.parquet`` file (layout auto-detected).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: an unsupported suffix, an empty file, or a malformed row (the message names
            file, row and field).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"QA data file expected, got a folder: {path}; name the files in it")
    if not path.is_file():
        raise FileNotFoundError(f"QA data file not found: {path}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(path, None, None, f"a file ending in one of {', '.join(SUFFIXES)}")
    try:
        records = reader(path)
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"UTF-8 text, but byte {exc.start} is not (is it a {path.suffix} file?)") \
            from None
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow's ArrowInvalid and kin: the file is not what it says
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(path, None, None, f"a readable {path.suffix} file, but reading it failed: {first}") from None
    if not records:
        raise DataError(path, None, None, "at least one QA row, but the file has none")
    for where, record in records:
        if not isinstance(record, dict):
            raise where.error(None, "a JSON object (a mapping of field names to values)", record)
    parse = _detect_layout(records[0][1])
    return [replace(parse(where, record, path.stem, index), record=record)
            for index, (where, record) in enumerate(records)]


def _split_paths(paths: Sequence[PathLike] | PathLike) -> list[PathLike]:
    """A list of paths from a list or a comma-separated string (blank items ignored)."""
    if isinstance(paths, str):
        items: list[PathLike] = [part.strip() for part in paths.split(",") if part.strip()]
    elif isinstance(paths, os.PathLike):
        items = [paths]
    else:
        items = list(paths)
    if not items:
        raise ValueError(
            "no QA data files given: pass a path, a list of paths or 'a.jsonl,b.parquet'"
        )
    return items


def load_qa_files(paths: Sequence[PathLike] | PathLike) -> list[QARow]:
    """Load and concatenate (in order) the rows of several QA files.

    Args:
        paths: a list of paths, a single path, or a comma-separated string of paths.

    Raises:
        FileNotFoundError: any file is missing (all missing files are listed, nothing is loaded).
        DataError: as :func:`load_qa_file`.
    """
    items = _split_paths(paths)
    folders = [str(item) for item in items if Path(item).is_dir()]
    if folders:
        raise FileNotFoundError(f"QA data file(s) expected, got folder(s): {', '.join(folders)}; name the files "
                                f"in them (comma-separated)")
    missing = [str(item) for item in items if not Path(item).is_file()]
    if missing:
        raise FileNotFoundError(f"QA data file(s) not found: {', '.join(missing)}")
    return [row for item in items for row in load_qa_file(item)]


# ---------------------------------------------------------------------------------------------
# Policy prompt


@lru_cache(maxsize=1)
def _policy_template() -> str:
    return load_template("policy")


def policy_prompt(question: str, template: str | None = None) -> str:
    """The policy prompt for ``question`` (stripped, ``?`` appended if missing, as the original).

    Args:
        question: the question text.
        template: template text with a ``{question}`` placeholder; default: the built-in ``policy``.
    """
    question = question.strip()
    if not question:
        raise ValueError("policy_prompt: the question is empty")
    if not question.endswith("?"):
        question += "?"
    return render(_policy_template() if template is None else template, question=question)


# ---------------------------------------------------------------------------------------------
# Sampling


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class PromptSampler:
    """Deterministic epoch-based sampling of row indices, resumable from a tiny state.

    Each epoch visits every index once, in a permutation drawn from
    ``numpy.random.default_rng([seed, epoch])``; a batch may span an epoch boundary. Because the
    permutation depends only on ``(seed, epoch)``, the state is just ``(seed, epoch, position)``.
    """

    def __init__(self, n_rows: int, seed: int = 0) -> None:
        self.n_rows = _check_int("n_rows", n_rows, 1)
        self.seed = _check_int("seed", seed, 0)
        self.epoch = 0
        self.position = 0
        self._order: tuple[int, np.ndarray] | None = None

    def _permutation(self) -> np.ndarray:
        """The current epoch's order of indices (cached)."""
        if self._order is None or self._order[0] != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = (self.epoch, rng.permutation(self.n_rows))
        return self._order[1]

    def next_batch(self, k: int) -> list[int]:
        """The next ``k`` row indices (k may exceed ``n_rows``; the batch then spans epochs)."""
        k = _check_int("k", k, 1)
        batch: list[int] = []
        while len(batch) < k:
            take = min(k - len(batch), self.n_rows - self.position)
            batch.extend(self._permutation()[self.position : self.position + take].tolist())
            self.position += take
            if self.position == self.n_rows:
                self.epoch += 1
                self.position = 0
        return batch

    def state_dict(self) -> dict[str, int]:
        """A JSON-serialisable state: ``seed``, ``epoch``, ``position`` and ``n_rows``."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "n_rows": self.n_rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the continuation equals the uninterrupted sequence.

        Raises:
            ValueError: a key is missing or invalid, or the state was saved for another row count.
        """
        missing = sorted({"seed", "epoch", "position"} - state.keys())
        if missing:
            raise ValueError(
                f"sampler state lacks {missing}; pass a dict from PromptSampler.state_dict()"
            )
        n_rows = state.get("n_rows", self.n_rows)
        if n_rows != self.n_rows:
            raise ValueError(
                f"sampler state was saved for {n_rows} rows but this sampler has {self.n_rows}: "
                "the training data changed since the checkpoint"
            )
        position = _check_int("position", state["position"], 0)
        if position >= self.n_rows:
            raise ValueError(f"sampler state position {position} is not below n_rows={self.n_rows}")
        self.seed = _check_int("seed", state["seed"], 0)
        self.epoch = _check_int("epoch", state["epoch"], 0)
        self.position = position
        self._order = None
