"""``evaluate(samples=K)``: K sampled answers per question beside the greedy one, recounted by hand."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from support import FixedDocumentsEngine
from test_evaluate import lines, qa_file, run, short_template, without_time  # noqa: F401 (fixture)
from zerosearch import rollout
from zerosearch.evaluate import RESULTS_JSON, RESULTS_MD, SamplingSettings, read_sample_counts

SAMPLE_KEYS = {"prediction", "em", "cover_em", "f1", "status", "n_searches", "n_turns", "n_invalid",
               "search_failures", "response_tokens", "seconds", "turns"}


def sampled(model, data, out, template, **kwargs):
    options = dict(samples=8, temperature=1.0, batch_size=4)
    options.update(kwargs)
    return run(model, data, out, FixedDocumentsEngine(["the colour is blue"]), template=template, **options)


def recount(records: list[dict], k: int) -> dict:
    """The sampled summary computed again from the records, by the definitions."""
    correct = [sum(s["em"] == 1 for s in r["samples"]) for r in records]

    def mean(values):
        return sum(values) / len(values)

    return {
        "pass_at_k": mean([c > 0 for c in correct]),
        "mean_at_k": mean([s["em"] for r in records for s in r["samples"]]),
        "sample_f1": mean([s["f1"] for r in records for s in r["samples"]]),
        "mixed_rate": mean([0 < c < k for c in correct]),
        "pass@2": mean([1 - math.comb(k - c, 2) / math.comb(k, 2) for c in correct]),
        "pass@4": mean([1 - math.comb(k - c, 4) / math.comb(k, 4) for c in correct]),
    }


def test_sampled_evaluation_keeps_every_sample_and_its_summary_recounts(answerer_model, short_template, tmp_path):
    out = tmp_path / "sampled"
    results = sampled(answerer_model, [qa_file(tmp_path, 8), qa_file(tmp_path, 4, "more")], out, short_template)
    config = json.loads((out / "eval_config.json").read_text())
    assert config["sampling"] == {"samples": 8, "temperature": 1.0, "seed": 0}
    assert results["sampling"] == {"samples": 8, "temperature": 1.0, "seed": 0}
    for name, n in (("colours", 8), ("more", 4)):
        records = lines(out / "examples" / f"{name}.jsonl")
        assert len(records) == n
        for record in records:
            assert len(record["samples"]) == 8 and all(set(s) == SAMPLE_KEYS for s in record["samples"])
            assert record["correct_samples"] == sum(s["em"] == 1 for s in record["samples"])
            assert record["status"] and record["prediction"] is not None  # the greedy answer is still there
        summary = results["datasets"][name]
        again = recount(records, 8)
        assert summary["samples"] == 8
        for key in ("pass_at_k", "mean_at_k", "sample_f1", "mixed_rate"):
            assert summary[key] == pytest.approx(again[key]), key
        assert summary["pass_at"]["2"] == pytest.approx(again["pass@2"])
        assert summary["pass_at"]["4"] == pytest.approx(again["pass@4"])
        assert summary["pass_at"]["1"] == pytest.approx(again["mean_at_k"])  # pass@1 is the mean of the samples
        assert summary["pass_at"]["8"] == pytest.approx(again["pass_at_k"])
        assert summary["em"] == pytest.approx(sum(r["em"] for r in records) / n)  # greedy, as before
    colours = results["datasets"]["colours"]
    # the answerer names a colour at random: one of eight samples is right far more often than the greedy one
    assert colours["pass_at_k"] > colours["mean_at_k"] and colours["pass_at_k"] > colours["em"]
    assert 0 < colours["mixed_rate"] <= 1
    average = results["average"]
    assert average["pass_at_k"] == pytest.approx((colours["pass_at_k"] + results["datasets"]["more"]["pass_at_k"]) / 2)
    assert average["pass_at"]["4"] == pytest.approx(
        (colours["pass_at"]["4"] + results["datasets"]["more"]["pass_at"]["4"]) / 2)
    table = (out / RESULTS_MD).read_text()
    assert "8 sampled answers per question at temperature 1 (seed 0)" in table
    row = next(line for line in table.splitlines() if line.startswith("| pass@8 (any of 8"))
    assert row == ("| pass@8 (any of 8 samples right by EM, %) | " + " | ".join(
        f"{100 * c['pass_at_k']:.2f}" for c in (colours, results["datasets"]["more"], average)) + " |")
    for label in ("| mean@8 (EM of a sample, %) |", "| F1 of a sample (%) |", "| pass@2 (%) |", "| pass@4 (%) |",
                  "| mixed outcomes (0 < right < 8, % of questions) |"):
        assert label in table
    assert "| pass@1 (%) |" not in table  # that is mean@8


def test_samples_do_not_depend_on_batching_or_interruption_and_follow_the_seed(answerer_model, short_template,
                                                                              tmp_path):
    data = [qa_file(tmp_path, 6)]
    whole = tmp_path / "whole"
    sampled(answerer_model, data, whole, short_template, samples=4, batch_size=4)  # one question per batch
    resumed = tmp_path / "resumed"
    sampled(answerer_model, data, resumed, short_template, samples=4, batch_size=8, limit=2)  # two per batch
    sampled(answerer_model, data, resumed, short_template, samples=4, batch_size=12)  # the other four: three
    assert without_samples_time(lines(resumed / "examples" / "colours.jsonl")) == \
        without_samples_time(lines(whole / "examples" / "colours.jsonl"))
    other = tmp_path / "other-seed"
    sampled(answerer_model, data, other, short_template, samples=4, seed=1)
    assert [s["turns"] for r in lines(other / "examples" / "colours.jsonl") for s in r["samples"]] != \
        [s["turns"] for r in lines(whole / "examples" / "colours.jsonl") for s in r["samples"]]


def without_samples_time(records: list[dict]) -> list[dict]:
    return [{**r, "samples": without_time(r["samples"])} for r in without_time(records)]


def test_resuming_with_other_samples_temperature_or_seed_is_refused(answerer_model, short_template, tmp_path):
    data = [qa_file(tmp_path, 1)]
    out = tmp_path / "x"
    sampled(answerer_model, data, out, short_template, samples=2)
    with pytest.raises(ValueError, match=r"sampling.samples \(sampling.samples: 2 there, 3 now\)"):
        sampled(answerer_model, data, out, short_template, samples=3)
    with pytest.raises(ValueError, match=r"sampling.temperature: 1.0 there, 0.5 now"):
        sampled(answerer_model, data, out, short_template, samples=2, temperature=0.5)
    with pytest.raises(ValueError, match=r"sampling.seed: 0 there, 4 now"):
        sampled(answerer_model, data, out, short_template, samples=2, seed=4)
    with pytest.raises(ValueError, match=r"sampling.samples: 2 there, not recorded now"):
        sampled(answerer_model, data, out, short_template, samples=0)
    greedy = tmp_path / "greedy"
    sampled(answerer_model, data, greedy, short_template, samples=0)
    with pytest.raises(ValueError, match=r"sampling.samples: not recorded there, 2 now"):
        sampled(answerer_model, data, greedy, short_template, samples=2)


def test_a_greedy_evaluation_writes_nothing_about_sampling(answerer_model, short_template, tmp_path):
    out = tmp_path / "greedy"
    results = sampled(answerer_model, [qa_file(tmp_path, 2)], out, short_template, samples=0, temperature=0.3)
    assert set(json.loads((out / "eval_config.json").read_text())) == {"model", "method", "engine", "settings"}
    assert "sampling" not in results and "pass_at_k" not in results["average"]
    assert all("samples" not in r and "correct_samples" not in r for r in lines(out / "examples" / "colours.jsonl"))
    assert "pass@" not in (out / RESULTS_MD).read_text() and "sampled" not in (out / RESULTS_MD).read_text()
    assert "sampling" not in json.loads((out / RESULTS_JSON).read_text())


def test_a_questions_samples_share_its_prompts_prefill(answerer_model, short_template, tmp_path, monkeypatch):
    calls = []
    real = rollout.shared_prefill

    def spy(model, input_ids, attention_mask):
        cache = real(model, input_ids, attention_mask)
        calls.append((input_ids.shape[0], len({tuple(r) for r in input_ids.tolist()}), cache is not None))
        return cache

    monkeypatch.setattr(rollout, "shared_prefill", spy)
    sampled(answerer_model, [qa_file(tmp_path, 4)], tmp_path / "x", short_template, samples=4, batch_size=8)
    # greedy: 4 distinct prompts, nothing shared; sampled: 2 questions x 4 rows, 2 distinct contexts, prefilled once
    assert (4, 4, False) in calls
    assert calls.count((8, 2, True)) == 2


def test_sampling_ignores_the_checkpoints_generation_config(answerer_model, short_template, tmp_path):
    model = tmp_path / "own-config"
    shutil.copytree(answerer_model, model)
    # settings that would reshape the sampled distribution if they applied: top_k=1 would make every sample the
    # greedy answer, and repetition_penalty acts even on the argmax the row-seeded sampler takes
    (model / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "top_k": 1, "top_p": 0.1, "repetition_penalty": 5.0, "temperature": 0.1}))
    results = sampled(model, [qa_file(tmp_path, 4)], tmp_path / "x", short_template, samples=8)
    sampled(answerer_model, [qa_file(tmp_path, 4)], tmp_path / "plain", short_template, samples=8)
    own, plain = (lines(tmp_path / name / "examples" / "colours.jsonl") for name in ("x", "plain"))
    assert [[s["turns"] for s in r["samples"]] for r in own] == [[s["turns"] for s in r["samples"]] for r in plain]
    assert any(len({s["prediction"] for s in r["samples"]}) > 1 for r in own)
    assert results["datasets"]["colours"]["pass_at_k"] > results["datasets"]["colours"]["em"]


def test_read_sample_counts_gives_each_questions_count_of_k(answerer_model, short_template, tmp_path):
    out = tmp_path / "x"
    sampled(answerer_model, [qa_file(tmp_path, 3), qa_file(tmp_path, 2, "more")], out, short_template, samples=4)
    counts = read_sample_counts(out)
    records = lines(out / "examples" / "colours.jsonl") + lines(out / "examples" / "more.jsonl")
    assert [(c.dataset, c.id, c.question, c.golden_answers, c.correct, c.samples) for c in counts] == [
        (r["dataset"], r["id"], r["question"], tuple(r["golden_answers"]), r["correct_samples"], 4) for r in records]
    with pytest.raises(ValueError, match="without sampled answers; evaluate with --samples K"):
        sampled(answerer_model, [qa_file(tmp_path, 1)], tmp_path / "g", short_template, samples=0)
        read_sample_counts(tmp_path / "g")
    with pytest.raises(ValueError, match="not an evaluation directory"):
        read_sample_counts(tmp_path)


def test_sampling_settings_check_their_values():
    assert SamplingSettings(8).pass_ks == [1, 2, 4, 8]
    assert SamplingSettings(5).pass_ks == [1, 2, 4, 5]
    assert SamplingSettings(1).pass_ks == [1] and SamplingSettings(0).pass_ks == []
    with pytest.raises(ValueError, match="samples must be >= 0"):
        SamplingSettings(-1)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="temperature must be a number > 0"):
            SamplingSettings(4, temperature=bad)


def test_rag_retrieves_once_for_all_of_a_questions_samples(searcher_model, tmp_path):
    engine = FixedDocumentsEngine(["the colour is blue"])
    results = run(searcher_model, [qa_file(tmp_path, 3)], tmp_path / "rag", engine, method="rag", samples=4,
                  batch_size=4)
    # one retrieval per question for the greedy answer, one for its four samples
    assert len(engine.requests) == 2 * 3
    records = lines(tmp_path / "rag" / "examples" / "colours.jsonl")
    assert all(s["turns"][0]["action"] == "retrieve" and s["n_searches"] == 1 for r in records for s in r["samples"])
    assert results["datasets"]["colours"]["samples"] == 4


def test_sampled_searches_log_no_noise_draw(searcher_model, short_template, tmp_path):
    """A real engine has no curriculum: a sampled answer's searches log noisy null, as the greedy ones do (they
    logged false, from a dummy probability 0 drawn with a throwaway generator)."""
    run(searcher_model, [qa_file(tmp_path, 2)], tmp_path / "agent", FixedDocumentsEngine(["the colour is blue"]),
        template=short_template, samples=2, batch_size=2)
    records = lines(tmp_path / "agent" / "examples" / "colours.jsonl")
    searches = [t for r in records for s in r["samples"] for t in s["turns"] if t["action"] == "search"]
    assert searches and all(t["noisy"] is None for t in searches)
