"""The evaluation cache of the before/after table: what its key covers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from zerosearch import compare, rewards
from zerosearch.datasets import default_dev_files
from zerosearch.eval_settings import DataSelection, EvalSettings, EvalSpec


def test_cached_baselines_are_invalidated_by_a_change_in_scoring(monkeypatch):
    spec = EvalSpec(DataSelection(default_dev_files(), limit=5), EvalSettings(batch_size=4, max_turns=2), "example")
    key = compare._cache_key("zerosearch:tiny", spec)
    batched = replace(spec, settings=replace(spec.settings, batch_size=8))
    assert compare._cache_key("zerosearch:tiny", batched) == key  # batching is not a setting
    assert compare._cache_key("zerosearch:tiny", replace(spec, data=replace(spec.data, limit=6))) != key
    # the settings are keyed resolved: the engine's default top-k, left out or given, is one entry
    given = replace(spec, settings=replace(spec.settings, topk=3, doc_format="zerosearch"))
    assert compare._cache_key("zerosearch:tiny", given) == key
    assert compare._cache_key("zerosearch:tiny", replace(spec, settings=replace(spec.settings, topk=2))) != key
    digest = compare.file_digest
    scoring = Path(rewards.__file__)
    monkeypatch.setattr(compare, "file_digest",
                        lambda p: "edited" if Path(p) == scoring else digest(p))
    assert compare._cache_key("zerosearch:tiny", spec) != key  # rewards.py changed: scores are stale


def test_a_runs_evaluation_takes_the_runs_rollout_settings():
    """eval_spec: the run's turn budgets as TrainConfig.rollout gathers them, greedy, the final-eval questions."""
    from zerosearch.config import load_train_config

    cfg = load_train_config(None, ["max_turns=3", "topk=4", "max_obs_tokens=300", "kv_cache=static",
                                   "doc_format=search_r1", "prompt_template=mine.txt", "final_eval.limit=7",
                                   "final_eval.engine=bm25:corpus.jsonl", "device=cpu", "autocast=bf16"])
    spec = compare.eval_spec(cfg)
    assert spec.settings == EvalSettings(method="agent", max_turns=3, topk=4, max_turn_tokens=500, max_obs_tokens=300,
                                         max_context_tokens=8192, batch_size=16, prompt_template="mine.txt",
                                         prompt_style="auto", autocast="bf16", kv_cache="static",
                                         doc_format="search_r1", kv_reuse=True)
    assert (spec.engine, spec.data.limit, spec.data.files, spec.device) == (
        "bm25:corpus.jsonl", 7, tuple(default_dev_files()), "cpu")
    assert not spec.sampling.enabled
    cfg.final_eval.method = "direct"  # a baseline keeps its own template
    assert compare.eval_spec(cfg).settings.prompt_template is None


# ---------------------------------------------------------------------------------------------
# the before/after table's paired rows

# per stage: EM of 10 questions. After RL vs after warm-up: only RL right on q2, q3, q4 (3), only warm-up on q1
# (1): diff +20 points, p = 2 * (C(4,0) + C(4,1)) / 2^4 = 0.625. After RL vs untrained: 4 questions only RL got
# right, none the other way: diff +40 points, p = 2 * C(4,0) / 2^4 = 0.125.
STAGE_EMS = {"untrained": [0] * 10, "warmup": [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "trained": [1, 0, 1, 1, 1, 0, 0, 0, 0, 0]}


def fake_evaluations(monkeypatch):
    """final_evaluation's evaluate and evaluate_cached, writing the stages' records of STAGE_EMS by hand."""
    from test_paired import make_eval, rows
    from zerosearch import evaluate as evaluate_module

    def write(model: str, out: Path) -> dict:
        stage = {"base": "untrained", "warm": "warmup"}.get(model, "trained")
        make_eval(out, {"hotpotqa": rows(STAGE_EMS[stage])}, model=model)
        em = sum(STAGE_EMS[stage]) / 10
        return {"model": model, "engine": "example", "average": {"n": 10, "em": em, "f1": em}}

    monkeypatch.setattr(compare, "evaluate_cached", lambda model, spec, out, progress: write(model, out))
    monkeypatch.setattr(evaluate_module, "evaluate", lambda model, spec, output_dir, progress: write(model, output_dir))


def test_final_evaluation_adds_the_paired_differences(tmp_path, monkeypatch):
    from zerosearch.config import TrainConfig
    from zerosearch.paired import compare_evaluations

    fake_evaluations(monkeypatch)
    cfg = TrainConfig(model="base")
    cfg.final_eval.baselines = True
    run = tmp_path / "run"
    results = compare.final_evaluation(cfg, run, tmp_path / "policy", init_model="warm", progress=False)
    assert list(results) == ["untrained", "warmup", "trained"]
    summary = json.loads((run / "eval" / "comparison.json").read_text())
    assert list(summary) == ["untrained", "warmup", "trained", "paired"]  # the stages' keys as before
    assert summary["warmup"]["em"] == 0.2 and summary["trained"]["model"] == str(tmp_path / "policy")
    paired = summary["paired"]
    assert list(paired) == ["trained_vs_warmup", "trained_vs_untrained"]
    assert paired["trained_vs_warmup"] == compare_evaluations(run / "eval" / "warmup", run / "eval")
    assert paired["trained_vs_warmup"]["average"]["em"]["diff"] == pytest.approx(20)
    assert paired["trained_vs_warmup"]["average"]["em"]["p_mcnemar"] == pytest.approx(0.625)
    assert paired["trained_vs_untrained"]["average"]["em"]["p_mcnemar"] == pytest.approx(0.125)
    table = (run / "eval" / "comparison.md").read_text()
    assert table.startswith("On the same 10 questions") and "| metric | untrained | after warm-up | after RL |" in table
    ci = paired["trained_vs_warmup"]["average"]["em"]["ci95"]
    assert f"| after RL vs after warm-up | 10 | +20.0 [{ci[0]:.1f}, {ci[1]:.1f}] | 0.625 |" in table
    assert "| after RL vs untrained | 10 | +40.0 [" in table and "| 0.125 |" in table
    # after RL vs warm-up: differences +1 x3, -1 x1, 0 x6; a resample sums to <= 0 often (~1 in 10): spans 0
    warmup_row = next(line for line in table.splitlines() if line.startswith("| after RL vs after warm-up"))
    assert warmup_row.endswith("| no detectable change |")


def test_paired_table_reading_and_without_warmup(tmp_path, monkeypatch):
    from zerosearch.config import TrainConfig

    fake_evaluations(monkeypatch)
    cfg = TrainConfig(model="base")
    cfg.final_eval.baselines = True
    run = tmp_path / "run"
    compare.final_evaluation(cfg, run, tmp_path / "policy", init_model="base", progress=False)  # no warm-up
    summary = json.loads((run / "eval" / "comparison.json").read_text())
    assert list(summary["paired"]) == ["trained_vs_untrained"]
    row = summary["paired"]["trained_vs_untrained"]["average"]
    table = (run / "eval" / "comparison.md").read_text()
    # untrained 0 of 10, trained 4 of 10 (F1 = EM here): a resample's difference is k/10, k ~ Binomial(10, 0.4),
    # and P(k = 0) = 0.6^10 = 0.006 < 0.025, so both intervals exclude 0
    assert row["em"]["ci95"][0] > 0 and row["f1"]["ci95"][0] > 0
    assert "| EM higher, F1 higher |" in table and "after warm-up" not in table.split("Paired differences")[1]
    assert compare.paired_table({}) == ""
