"""Write verl's RL parquet from QA files (``zerosearch export-verl``).

Every layout :func:`zerosearch.data.load_qa_files` reads (FlashRAG jsonl, Search-R1 / ZeroSearch parquet,
the Agentic-RAG variant) becomes one row per question in the Search-R1 schema that verl's ``RLHFDataset``
reads, plus what the zerosearch agent loop and reward function need:

=================  ==================================================================================
``data_source``    the row's dataset (its ``data_source`` field, else the file's stem)
``prompt``         ``[{"role": "user", "content": policy_prompt(question)}]``: the exact policy prompt
``ability``        ``"fact-reasoning"``
``reward_model``   ``{"style": "rule", "ground_truth": {"target": [gold answers]}}``
``extra_info``     ``{"index", "split", "id", "question", "golden_answers"}``; ``index`` counts rows over
                   all files (verl numbers a prompt's rollouts by it, so it must differ between rows)
``agent_name``     the agent loop verl runs for the row (default :data:`zerosearch.verl.AGENT_NAME`)
``id``, ``question``  the row's id and bare question, so that zerosearch reads the file back unchanged
=================  ==================================================================================

Needs pyarrow only, not verl.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from zerosearch.data import QARow, load_qa_files, policy_prompt
from zerosearch.verl import AGENT_NAME

__all__ = ["ABILITY", "export_verl", "verl_record"]

ABILITY = "fact-reasoning"


def verl_record(row: QARow, index: int, split: str, agent_name: str = AGENT_NAME) -> dict[str, Any]:
    """One verl RL row for ``row`` (see the module docstring for the fields)."""
    golds = list(row.golden_answers)
    return {
        "data_source": row.data_source,
        "prompt": [{"role": "user", "content": policy_prompt(row.question)}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": {"target": golds}},
        "extra_info": {"index": index, "split": split, "id": row.id, "question": row.question,
                       "golden_answers": golds},
        "agent_name": agent_name,
        "id": row.id,
        "question": row.question,
    }


def export_verl(data: Sequence[str | os.PathLike[str]] | str, out_dir: str | os.PathLike[str], split: str = "train",
                agent_name: str = AGENT_NAME) -> tuple[Path, int]:
    """Write ``out_dir/<split>.parquet`` from the QA files ``data`` (a list, or ``"a.jsonl,b.parquet"``).

    Returns the file written and its number of rows.

    Raises:
        FileNotFoundError, DataError: as :func:`zerosearch.data.load_qa_files`.
        ValueError: an empty ``split`` or ``agent_name``.
    """
    if not split.strip() or not agent_name.strip():
        raise ValueError("split and agent_name must be non-empty")
    rows = load_qa_files(data)
    records = [verl_record(row, index, split, agent_name) for index, row in enumerate(rows)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{split}.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    return path, len(records)
