"""The files of an evaluation directory, and reading its per-question records back.

Torch-free, so that what only reads evaluations (``zerosearch compare``, the run report) starts fast; the
evaluation itself (:mod:`zerosearch.evaluate`) writes them::

    eval_config.json          what a resume must match (model, method, engine, settings, sampling)
    examples/<dataset>.jsonl  one record per question (id, question, golden_answers, prediction, scores ...)
    results.json, results.md  the summary per dataset and on average
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
    records: dict[str, dict[str, Any]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[str(record["id"])] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            if number != len(lines):
                print(f"[zerosearch] {path}:{number}: unreadable record skipped (it will be re-run)", file=sys.stderr)
    return records
