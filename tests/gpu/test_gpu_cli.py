"""On the GPU: ``zerosearch train`` and ``zerosearch eval`` run end to end with the tiny model, through
``zerosearch.cli.main`` as a user's command does (weights in bf16, the device default on CUDA).

Two training paths: gradient checkpointing with LoRA and a static KV cache (the first H200 run failed in
this corner: ``generate`` compiled the model, and in train mode under checkpointing the KV cache was dropped),
and the defaults (a prompt's rollouts sharing its forward pass, the KV cache carried across turns).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gpu_support import device, on_device

pytestmark = [pytest.mark.gpu, on_device]

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
TRAIN_FILE = REPO / "src" / "zerosearch" / "example_data" / "hotpotqa_distractor_train.jsonl"
CORPUS = [
    {"id": "1", "contents": "\"Sky\"\nthe colour of the sky is blue"},
    {"id": "2", "contents": "\"Grass\"\nthe colour of grass is green"},
    {"id": "3", "contents": "\"Banana\"\nthe colour of a banana is yellow"},
]
QUESTIONS = [("what colour is the sky", "blue"), ("what colour is grass", "green"),
             ("what colour is a banana", "yellow"), ("what colour is an apple", "red")]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))  # BM25 indexes and the tiny model go here


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("path,overrides", [
    ("checkpointing, LoRA, static cache",
     ["gradient_checkpointing=true", "lora.enabled=true", "kv_cache=static"]),
    ("defaults, GRPO", ["algorithm=grpo"]),
])
def test_train_runs_two_steps(tmp_path, cache, capsys, path, overrides):
    from zerosearch.cli import main

    dev = device()
    run = tmp_path / "run"
    code = main(["train", str(TINY), f"train_files={TRAIN_FILE}", f"device={dev}", "total_steps=2",
                 f"output_dir={run}", "entropy_coef=0.01", "--no-progress", *overrides])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "finished" in err and "at step 2/2" in err
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("policy_loss", "entropy", "grad_norm", "reward_mean"):
            assert math.isfinite(row[key]), (path, row["step"], key, row[key])
        assert row["trajectories_updated"] > 0
    # the untrained model earns no reward and starts at the reference, so the entropy bonus makes the gradient:
    # zero would mean the backward pass missed the weights (LoRA under checkpointing needs its input hook)
    assert all(r["grad_norm"] > 0 for r in rows)
    policy = run / "checkpoints" / "step_2" / "policy"
    weights = "adapter_model.safetensors" if "lora.enabled=true" in overrides else "model.safetensors"
    assert (policy / weights).is_file()
    config = json.loads((run / "checkpoints" / "step_2" / "state.json").read_text())["config"]
    assert config["device"] == str(dev)


@pytest.mark.parametrize("flags", [[], ["--kv-cache", "static"]])
def test_eval_runs(tmp_path, cache, capsys, searcher_model, flags):
    from support import SHORT_TEMPLATE
    from zerosearch.cli import main

    dev = device()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS), encoding="utf-8")
    template = tmp_path / "short.txt"
    template.write_text(SHORT_TEMPLATE, encoding="utf-8")
    qa = tmp_path / "colours.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": [a]}) + "\n"
                          for i, (q, a) in enumerate(QUESTIONS)))
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(searcher_model), "--engine", f"bm25:{corpus}", "--data", str(qa),
                 "--prompt-template", str(template), "--max-turn-tokens", "24", "--device", str(dev),
                 "--batch-size", "3", "--output-dir", str(out), "--no-progress", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "| metric | colours | average |" in captured.out
    results = json.loads((out / "results.json").read_text())
    colours = results["datasets"]["colours"]
    assert colours["n"] == len(QUESTIONS)
    assert colours["searches_per_question"] > 0  # the searcher searched: the engine was reached
    examples = (out / "examples" / "colours.jsonl").read_text().splitlines()
    assert len(examples) == len(QUESTIONS)
