"""The files of an evaluation directory, and reading its per-question records back.

Torch-free, so that what only reads evaluations (``zerosearch compare``, the run report) starts fast; the
evaluation itself (:mod:`zerosearch.evaluate`) writes them::

    eval_config.json          what a resume must match (model, method, engine, settings, sampling)
    examples/<dataset>.jsonl  one record per question (id, question, golden_answers, prediction, scores ...)
    results.json, results.md  the summary per dataset and on average
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from zerosearch.jsonio import BadJsonLine, iter_jsonl

__all__ = ["CONFIG_FILE", "EXAMPLES_DIR", "RESULTS_JSON", "RESULTS_MD", "read_examples"]

EXAMPLES_DIR = "examples"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CONFIG_FILE = "eval_config.json"


def read_examples(path: Path) -> dict[str, dict[str, Any]]:
    """Records of an examples file by id (the last record of an id wins); unreadable lines are skipped.

    A line torn by a kill mid-write is expected at the end of the file; one anywhere else is reported
    on stderr. Either way the example is simply run again.
    """
    if not path.exists():
        return {}

    def unreadable(number: int) -> None:
        print(f"[zerosearch] {path}:{number}: unreadable record skipped (it will be re-run)", file=sys.stderr)

    def skip(bad: BadJsonLine) -> None:
        if not bad.last:  # a torn last line is what a kill leaves: expected, not worth a word
            unreadable(bad.line)

    records: dict[str, dict[str, Any]] = {}
    for number, record in iter_jsonl(path, skip):
        if isinstance(record, dict) and "id" in record:
            records[str(record["id"])] = record
        else:  # JSON but no record (a torn write is never valid JSON)
            unreadable(number)
    return records
