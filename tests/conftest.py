from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import warm_tiny_model  # noqa: E402

# Tiny models gain nothing from several threads, and on a shared 2-core machine oversubscription makes
# them ten times slower.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

COLOR_TASK = {  # a learnable task: each question has one right colour
    "what colour is the sky": "blue",
    "what colour is grass": "green",
    "what colour is an apple": "red",
    "what colour is a banana": "yellow",
}
COLORS = ["blue", "green", "red", "yellow"]


@pytest.fixture(scope="session")
def searcher_model(tmp_path_factory) -> Path:
    """A tiny model that searches once, then answers after the <information> block."""
    demos = []
    for q, a in COLOR_TASK.items():
        for c in COLORS:
            demos.append((q, [
                (f"<search> {q} </search>", 1),
                ("\n\n<information>Doc 1: the colour is " + c + "</information>\n\n", 0),
                (f"<answer> {c} </answer>", 1),
            ]))
    return warm_tiny_model(tmp_path_factory.mktemp("searcher"), demos, steps=150, lr=5e-3)


@pytest.fixture(scope="session")
def answerer_model(tmp_path_factory) -> Path:
    """A tiny model that answers directly with a colour chosen roughly at random."""
    demos = [(q, [(f"<answer> {c} </answer>", 1)]) for q in COLOR_TASK for c in COLORS]
    return warm_tiny_model(tmp_path_factory.mktemp("answerer"), demos, steps=100, lr=5e-3)


@pytest.fixture
def corpus_file(tmp_path):
    """A three-document corpus in the Search-R1 jsonl format (``"Title"\ntext``), two of them about jaws."""
    import json

    rows = [
        {"id": "a", "contents": '"Jaws (film)"\nJaws is a 1975 thriller film directed by Steven Spielberg.'},
        {"id": "b", "contents": '"Moose Jaw"\nMoose Jaw is a city in south-central Saskatchewan.'},
        {"id": "c", "contents": '"Hamlet"\nHamlet is a tragedy written by William Shakespeare.'},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
