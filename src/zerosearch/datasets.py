"""The example world shipped inside the package (HotpotQA distractor questions + their paragraphs).

See ``example_data/LICENSE.md`` for the source and licence (CC BY-SA 4.0).
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DATA = Path(__file__).resolve().parent / "example_data"


def default_train_files() -> list[str]:
    return [str(EXAMPLE_DATA / "hotpotqa_distractor_train.jsonl")]


def default_dev_files() -> list[str]:
    return [str(EXAMPLE_DATA / "hotpotqa_distractor_dev.jsonl")]


def default_corpus() -> str:
    """The 10,787-paragraph corpus (gzipped jsonl, Search-R1 layout)."""
    return str(EXAMPLE_DATA / "hotpotqa_distractor_paragraphs.jsonl.gz")
