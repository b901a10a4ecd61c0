"""The difficulty-filtered training pool: the bounds on hand-made counts, ``zerosearch pool`` end to end (flags,
``--from-eval``, ``--config``), a run with ``pool.enabled`` that trains only on the pool, the scoring cache, resume
and the warm-up's questions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import COLOR_TASK
from support import SHORT_TEMPLATE
from test_evaluate import spec_of
from zerosearch import evaluate as evaluate_module
from zerosearch.cli import main
from zerosearch.config import ConfigError, PoolConfig, load_train_config
from zerosearch.data import load_qa_file
from zerosearch.evaluate import SampleCount, evaluate, read_sample_counts
from zerosearch.pool import (
    Bounds, build_pool, dataset_names, empty_pool_message, filter_counts, pass_rates, pool_row, pool_summary,
)
from zerosearch.warmup import demonstrated_questions

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
PLUM = "what colour is a plum"  # the answerer only ever names blue, green, red or yellow: always wrong


def count(question: str, correct: int, k: int = 8, key: str | None = None) -> SampleCount:
    return SampleCount(dataset="d", id=key or question, question=question, golden_answers=("x",), correct=correct,
                       samples=k)


# ------------------------------------------------------------------------------------------------
# the filter on hand-made counts


def test_the_bounds_keep_mixed_outcomes_by_default_and_follow_min_and_max():
    counts = [count("a", 0), count("b", 1), count("c", 4), count("d", 7), count("e", 8)]
    kept = lambda bounds: [c.question for c in filter_counts(counts, bounds)]  # noqa: E731
    assert kept(Bounds.of(PoolConfig())) == ["b", "c", "d"]  # 0 < right < 8
    assert kept(Bounds.of(PoolConfig(min_correct=2, max_correct=7))) == ["c", "d"]
    assert kept(Bounds.of(PoolConfig(min_correct=0))) == ["a", "b", "c", "d"]  # max_correct 0 means K - 1
    assert kept(Bounds.of(PoolConfig(min_correct=4, max_correct=8))) == ["c", "d", "e"]
    with pytest.raises(ValueError, match="sampled with K=8, the bounds are for K=4"):
        filter_counts(counts, Bounds.of(PoolConfig(samples=4)))
    # by hand: 20 of 40 samples right; 4 of 5 questions with any; 3 mixed
    assert pass_rates(counts) == {"n": 5, "mean_at_k": 0.5, "pass_at_k": 0.8, "mixed_rate": 0.6}
    # the pool b, c, d: (1 + 4 + 7) / 24 = 0.5 of the samples right
    assert pass_rates(counts[1:4]) == {"n": 3, "mean_at_k": 0.5, "pass_at_k": 1.0, "mixed_rate": 1.0}
    assert pass_rates([]) == {"n": 0, "mean_at_k": None, "pass_at_k": None, "mixed_rate": None}


@pytest.mark.parametrize("overrides, message", [
    ({"samples": 1}, "pool.samples=1: a question's outcomes can be mixed only among K >= 2"),
    ({"min_correct": 9}, r"pool.min_correct=9 must lie in \[0, 8\]"),
    ({"max_correct": 9}, r"pool.max_correct=9 must lie in \[0, 8\]"),
    ({"min_correct": 8}, r"pool.min_correct=8 is above pool.max_correct=7 \(0: samples - 1\)"),
    ({"min_correct": 5, "max_correct": 3}, "pool.min_correct=5 is above pool.max_correct=3: no question"),
    ({"engine": "simulated:zerosearch:tiny"}, "the pool is scored against a real engine"),
    ({"warmup_questions": "some"}, "pool.warmup_questions='some' is not one of exclude, keep"),
    ({"limit": -1}, r"pool.limit=-1 must lie in \[0, inf\]"),
])
def test_pool_settings_are_checked_when_the_config_loads(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [f"pool.{k}={v}" for k, v in overrides.items()])


def test_a_pool_needs_sampling_at_a_temperature():
    with pytest.raises(ConfigError, match="temperature=0 is greedy"):
        load_train_config(None, ["pool.enabled=true", "temperature=0"])
    assert load_train_config(None, ["temperature=0"]).pool.enabled is False  # no pool, no objection


def test_build_pool_counts_outcomes_the_warmups_share_and_what_it_left_out(tmp_path):
    counts = [count("what is a", 0), count("What is B?", 3), count("what is c", 5), count("what is d", 8),
              count("what is e", 2)]
    rows = load_qa_file(_rows_file(tmp_path, ["what is a", "What is B?", "what is c", "what is d", "what is e"]))
    seen = {"what is b", "what is d"}  # normalised, as demonstrated_questions gives them
    excluded = build_pool(counts, rows, Bounds.of(PoolConfig()), seen=seen, exclude_seen=True, excluded=["WHAT is e"])
    kept = build_pool(counts, rows, Bounds.of(PoolConfig()), seen=seen, exclude_seen=False)
    assert [r["question"] for r in excluded.rows] == ["what is c"]
    assert [r["question"] for r in kept.rows] == ["What is B?", "what is c", "what is e"]
    s = excluded.stats
    assert s["candidates"] == 5 and s["in_bounds"] == 3 and s["size"] == 1
    assert s["outcomes"] == {"all_wrong": 1, "mixed": 3, "all_correct": 1}
    assert s["excluded"] == {"warmup": 1, "listed": 1}
    assert s["warmup_seen"] == {"candidates": 2, "in_bounds": 1, "kept": 0}
    assert kept.stats["warmup_seen"] == {"candidates": 2, "in_bounds": 1, "kept": 1}
    assert kept.stats["excluded"] == {"warmup": 0, "listed": 0} and kept.stats["warmup_questions"] == "keep"
    # the starting pass rates, by hand: all candidates 18/40 right, 4 of 5 with any; the pool (c) 5/8
    assert s["pass_rates"]["candidates"] == {"n": 5, "mean_at_k": 18 / 40, "pass_at_k": 0.8, "mixed_rate": 0.6}
    assert s["pass_rates"]["pool"] == {"n": 1, "mean_at_k": 5 / 8, "pass_at_k": 1.0, "mixed_rate": 1.0}
    # the warm-up's questions beside the others: b (3) and d (8) against a, c, e (0, 5, 2)
    assert s["by_warmup"]["seen"] == {"n": 2, "mean_at_k": 11 / 16, "pass_at_k": 1.0, "mixed_rate": 0.5}
    assert s["by_warmup"]["unseen"]["mean_at_k"] == pytest.approx(7 / 24)
    assert build_pool(counts, rows, Bounds.of(PoolConfig())).stats["warmup_seen"] is None  # no warm-up
    summary = pool_summary(s)
    assert summary.startswith("training pool: 1 of 5 candidates (1 all wrong, 3 mixed, 1 all right of 8; the "
                              "warm-up saw 2 candidates, 1 of them within the bounds, 1 left out; 1 left out as listed)")
    assert "starting mean@8 62.5%, pass@8 100.0% on the pool, 45.0% and 80.0% on all candidates" in summary


def _rows_file(tmp_path: Path, questions: list[str], name: str = "cands.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": q, "question": q, "golden_answers": ["x"],
                                        "metadata": {"supporting_titles": [f"title of {q}"]}}) + "\n"
                            for q in questions), encoding="utf-8")
    return path


def test_a_pool_row_keeps_the_rows_fields_in_the_flashrag_layout(tmp_path):
    verl = tmp_path / "verl.jsonl"
    verl.write_text(json.dumps({"data_source": "nq", "prompt": [{"role": "user", "content": "Question: who?\n"}],
                                "ability": "fact", "reward_model": {"ground_truth": {"target": ["Ann"]}},
                                "extra_info": {"split": "train", "index": 7}, "question": "who?",
                                "metadata": {"hops": 2}}) + "\n")
    row = load_qa_file(verl)[0]
    written = pool_row(SampleCount("nq", row.id, "who?", ("Ann",), 3, 8), row)
    assert written == {"id": "nq_train_7", "question": "who?", "golden_answers": ["Ann"], "data_source": "nq",
                       "metadata": {"hops": 2}, "pool": {"correct": 3, "samples": 8}}
    again = tmp_path / "pool.jsonl"
    again.write_text(json.dumps(written) + "\n")
    back = load_qa_file(again)[0]  # read as a FlashRAG row, not a verl one
    assert (back.id, back.question, back.golden_answers, back.data_source) == ("nq_train_7", "who?", ("Ann",), "nq")
    # a repeated id (key "q#2" in an evaluation) finds its own row
    rows = load_qa_file(_rows_file(tmp_path, ["q", "q"]))
    pool = build_pool([count("q", 1, key="q"), count("q", 2, key="q#2")], rows, Bounds.of(PoolConfig()))
    assert [r["pool"]["correct"] for r in pool.rows] == [1, 2] and pool.stats["rows_without_source"] == 0


def test_an_empty_pool_says_why_and_what_to_change():
    stats = build_pool([count("a", 0), count("b", 8), count("c", 3)], [], Bounds.of(PoolConfig()), seen={"c"}).stats
    names = {"candidates": "pool.files, pool.limit", "bounds": "pool.min_correct", "samples": "pool.samples",
             "keep": "pool.warmup_questions=keep"}
    message = empty_pool_message(stats, names)
    assert "\n" not in message
    assert message == ("the training pool is empty: none of the 3 candidates had 1 to 7 of 8 sampled answers right "
                       "(1 all wrong, 1 mixed, 1 all right; 1 within the bounds were left out as seen by the warm-up "
                       "or listed); score more candidates (pool.files, pool.limit), widen the bounds (pool.min_correct), "
                       "sample more answers (pool.samples) or keep the warm-up's questions (pool.warmup_questions=keep)")


def test_dataset_names_number_repeated_stems_only():
    assert dataset_names(["a/train.jsonl", "b/dev.jsonl"]) is None
    assert dataset_names(["a/train.jsonl", "b/train.parquet", "c/x.jsonl", "d/train.jsonl"]) == \
        ["train", "train-2", "x", "train-3"]


def test_demonstrated_questions_are_the_warmups_normalised_questions(tmp_path):
    assert demonstrated_questions(tmp_path) is None and demonstrated_questions("zerosearch:tiny") is None
    (tmp_path / "demonstrations.jsonl").write_text(
        json.dumps({"question": "What colour is GRASS?", "golden_answers": ["green"]}) + "\n\n")
    assert demonstrated_questions(tmp_path) == {"what colour is grass"}


# ------------------------------------------------------------------------------------------------
# the command


@pytest.fixture
def world(tmp_path, monkeypatch, corpus_file):
    """A cache of its own, the colour questions and a plum (never answered right) as candidates, a short prompt."""
    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))
    rows = [{"id": f"c{i}", "question": q, "golden_answers": [a], "metadata": {"supporting_titles": [f"T{i}"]}}
            for i, (q, a) in enumerate(COLOR_TASK.items())]
    rows.append({"id": "plum", "question": PLUM, "golden_answers": ["purple"]})
    candidates = tmp_path / "cands.jsonl"
    candidates.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    template = tmp_path / "short.txt"
    template.write_text(SHORT_TEMPLATE, encoding="utf-8")
    return {"candidates": candidates, "template": template, "engine": f"bm25:{corpus_file}", "dir": tmp_path}


def _flags(model, world, out, *extra):
    return ["pool", "--model", str(model), "--data", str(world["candidates"]), "--engine", world["engine"],
            "--prompt-template", str(world["template"]), "--max-turn-tokens", "16", "--device", "cpu",
            "--no-progress", "--out", str(out), *extra]


class _Counting:
    """Counts the models an evaluation loads (a cached evaluation loads none)."""

    def __init__(self, monkeypatch):
        self.loads = 0
        real = evaluate_module.Answerer

        def counted(*args, **kwargs):
            self.loads += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(evaluate_module, "Answerer", counted)


def _questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_command_writes_the_mixed_rows_as_a_qa_file_train_accepts(answerer_model, world, capsys):
    out = world["dir"] / "pools" / "colours.jsonl"
    assert main(_flags(answerer_model, world, out)) == 0
    counts = {c.question: c.correct for c in read_sample_counts(world["dir"] / "pools" / "colours-scoring")}
    assert set(counts) == set(COLOR_TASK) | {PLUM} and counts[PLUM] == 0
    mixed = [q for q in [*COLOR_TASK, PLUM] if 0 < counts[q] < 8]
    assert mixed, "the answerer names colours at random: some questions have mixed outcomes"
    assert _questions(out) == mixed
    rows = load_qa_file(out)  # train_files= reads it
    for row, record in zip(rows, map(json.loads, out.read_text().splitlines())):
        i = list(COLOR_TASK).index(row.question)
        assert row.id == f"c{i}" and row.golden_answers == (COLOR_TASK[row.question],)
        assert record["metadata"] == {"supporting_titles": [f"T{i}"]}  # what the warm-up uses, kept
        assert record["pool"] == {"correct": counts[row.question], "samples": 8}
    stats = json.loads(out.with_suffix(".json").read_text())
    assert stats["candidates"] == 5 and stats["size"] == len(mixed) and stats["samples"] == 8
    assert stats["outcomes"]["mixed"] == len(mixed) and stats["outcomes"]["all_wrong"] >= 1
    assert stats["warmup_seen"] is None and stats["model"] == str(answerer_model)
    assert stats["pass_rates"]["candidates"]["mean_at_k"] == pytest.approx(sum(counts.values()) / 40)
    printed = capsys.readouterr().out
    assert f"training pool: {len(mixed)} of 5 candidates" in printed and "| training pool |" in printed
    assert f"train on it: zerosearch train CONFIG.yaml train_files={out}" in printed
    cfg = load_train_config(TINY, [f"model={answerer_model}", f"train_files={out}"])
    from zerosearch.trainer import Trainer

    trainer = Trainer(cfg, world["dir"] / "run", progress=False)
    assert [r.question for r in trainer.rows] == mixed


def test_scoring_is_cached_by_content_and_scored_again_after_an_edit(answerer_model, world, monkeypatch):
    counting = _Counting(monkeypatch)
    evals = world["dir"] / "cache" / "evals"
    assert main(_flags(answerer_model, world, world["dir"] / "a.jsonl")) == 0
    assert counting.loads == 1 and len(list(evals.iterdir())) == 1
    assert main(_flags(answerer_model, world, world["dir"] / "b.jsonl")) == 0  # the same pool again: from the cache
    assert counting.loads == 1 and len(list(evals.iterdir())) == 1
    assert (world["dir"] / "a.jsonl").read_text() == (world["dir"] / "b.jsonl").read_text()
    with world["candidates"].open("a", encoding="utf-8") as handle:  # edited in place: the same path, new bytes
        handle.write(json.dumps({"id": "x", "question": "what colour is snow", "golden_answers": ["white"]}) + "\n")
    assert main(_flags(answerer_model, world, world["dir"] / "c.jsonl")) == 0
    assert counting.loads == 2 and len(list(evals.iterdir())) == 2
    assert json.loads((world["dir"] / "c.json").read_text())["candidates"] == 6


def test_the_same_inputs_spelled_otherwise_reuse_the_cached_scoring(answerer_model, world, monkeypatch):
    """The cache is keyed by content: another path to the same model, corpus and prompt is a hit, not a refusal
    to resume an evaluation "made with another model"."""
    counting = _Counting(monkeypatch)
    assert main(_flags(answerer_model, world, world["dir"] / "a.jsonl")) == 0
    copy, corpus, template = world["dir"] / "model-copy", world["dir"] / "corpus-copy.jsonl", world["dir"] / "t.txt"
    shutil.copytree(answerer_model, copy)
    shutil.copy(world["engine"].removeprefix("bm25:"), corpus)
    shutil.copy(world["template"], template)
    world.update(engine=f"bm25:{corpus}", template=template)
    assert main(_flags(copy, world, world["dir"] / "b.jsonl")) == 0
    assert counting.loads == 1
    assert (world["dir"] / "a.jsonl").read_text() == (world["dir"] / "b.jsonl").read_text()
    assert json.loads((world["dir"] / "b-scoring" / "eval_config.json").read_text())["model"] == str(copy)


def test_from_eval_builds_the_pool_without_scoring(answerer_model, world, monkeypatch, capsys):
    eval_dir = world["dir"] / "eval"
    evaluate(str(answerer_model), spec_of([world["candidates"]], world["engine"], samples=4, max_turn_tokens=16,
                                          batch_size=8, prompt_template=str(world["template"]), device="cpu"),
             eval_dir, progress=False)
    counting = _Counting(monkeypatch)
    out = world["dir"] / "from-eval.jsonl"
    assert main(["pool", "--from-eval", str(eval_dir), "--out", str(out), "--max-correct", "2"]) == 0
    assert counting.loads == 0
    counts = read_sample_counts(eval_dir)
    assert _questions(out) == [c.question for c in counts if 1 <= c.correct <= 2]
    assert "K=4 sampled answers each at temperature 1" in capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all("metadata" in r for r in records)  # the rows' other fields, from the file the evaluation recorded
    stats = json.loads(out.with_suffix(".json").read_text())
    assert stats["samples"] == 4 and stats["bounds"] == {"min_correct": 1, "max_correct": 2}
    assert stats["from_eval"] == str(eval_dir)

    # --datasets picks among an evaluation's datasets (e.g. the train part of an evaluation of train and dev)
    more = world["dir"] / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"m{i}", "question": q, "golden_answers": [a]}) + "\n"
                            for i, (q, a) in enumerate(COLOR_TASK.items())))
    both = world["dir"] / "both"
    evaluate(str(answerer_model), spec_of([world["candidates"], more], world["engine"], samples=4, max_turn_tokens=16,
                                          batch_size=8, prompt_template=str(world["template"]), device="cpu"),
             both, progress=False)
    mixed = {c.id for c in read_sample_counts(both) if 0 < c.correct < 4}
    assert {i[0] for i in mixed} == {"c", "m"}, "both datasets have mixed questions"
    assert main(["pool", "--from-eval", str(both), "--out", str(out)]) == 0
    assert {r["id"] for r in map(json.loads, out.read_text().splitlines())} == mixed
    assert main(["pool", "--from-eval", str(both), "--datasets", "more", "--out", str(out)]) == 0
    assert {r["id"] for r in map(json.loads, out.read_text().splitlines())} == {i for i in mixed if i[0] == "m"}
    capsys.readouterr()
    assert main(["pool", "--from-eval", str(both), "--datasets", "dev", "--out", str(out)]) == 2
    assert f"--datasets dev: {both} holds cands, more" in capsys.readouterr().err

    greedy = world["dir"] / "greedy"
    evaluate(str(answerer_model), spec_of([world["candidates"]], world["engine"], limit=1, max_turn_tokens=8,
                                          prompt_template=str(world["template"]), device="cpu"),
             greedy, progress=False)
    assert main(["pool", "--from-eval", str(greedy), "--out", str(out)]) == 2
    assert "evaluated without sampled answers; evaluate with --samples K" in capsys.readouterr().err
    assert main(["pool", "--from-eval", str(eval_dir), "--out", str(out), "--samples", "8"]) == 2
    assert "--samples: --from-eval reads the answers an evaluation already sampled" in capsys.readouterr().err
    assert main(["pool", "--from-eval", str(eval_dir), "--out", str(out), "--min-correct", "5"]) == 2
    assert "--min-correct 5 must lie in [0, 4]" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--model", "m"], "give --model M and --data FILE[,FILE]"),
    (["--model", "m", "--data", "x.jsonl", "pool.samples=4"], "key=value overrides (pool.samples=4) apply to --config"),
    (["--config", str(TINY), "--samples", "4"], "--samples: with --config every setting comes from the config; give "
                                                "pool.samples=... as an override instead"),
    (["--config", str(TINY), "--no-kv-reuse"], "give kv_reuse=... as an override"),
    (["--config", str(TINY), "--from-eval", "e"], "give one of them"),
    (["--model", "m", "--data", "missing.jsonl"], "QA data file(s) not found: missing.jsonl"),
    (["--model", "m", "--data", "x.jsonl", "--datasets", "train"], "--datasets chooses among the datasets of --from-eval"),
    (["--config", str(TINY), "pool.samples=1"], "pool.samples=1: a question's outcomes can be mixed"),
])
def test_usage_errors_are_one_line_with_exit_2(argv, message, tmp_path, capsys):
    assert main(["pool", *argv, "--out", str(tmp_path / "p.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["--samples", "1"], "argument --samples: must be at least 2"),
    (["--out", "pool.json"], "argument --out: must end in .jsonl"),
    (["--min-correct", "-1"], "argument --min-correct: must be an integer >= 0"),
])
def test_bad_option_values_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pool", "--model", "m", "--data", "x.jsonl", "--out", "p.jsonl", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_model_warmups_questions_are_left_out_unless_kept(answerer_model, world, capsys):
    warm = world["dir"] / "warm"
    shutil.copytree(answerer_model, warm)
    grass = "what colour is grass"
    (warm / "demonstrations.jsonl").write_text(json.dumps({"question": "What colour is GRASS?",
                                                           "golden_answers": ["green"]}) + "\n")
    out = world["dir"] / "excluded.jsonl"
    assert main(_flags(warm, world, out)) == 0
    counts = {c.question: c.correct for c in read_sample_counts(world["dir"] / "excluded-scoring")}
    in_bounds = 0 < counts[grass] < 8
    stats = json.loads(out.with_suffix(".json").read_text())
    assert grass not in _questions(out)
    assert stats["warmup_questions"] == "exclude" and stats["excluded"]["warmup"] == int(in_bounds)
    assert stats["warmup_seen"] == {"candidates": 1, "in_bounds": int(in_bounds), "kept": 0}
    assert stats["by_warmup"]["seen"]["n"] == 1 and stats["by_warmup"]["unseen"]["n"] == 4
    assert "| candidates the warm-up saw | 1 |" in capsys.readouterr().out
    kept = world["dir"] / "kept.jsonl"
    assert main(_flags(warm, world, kept, "--warmup-questions", "keep")) == 0
    assert (grass in _questions(kept)) == in_bounds
    assert json.loads(kept.with_suffix(".json").read_text())["warmup_seen"]["kept"] == int(in_bounds)
    # --exclude-questions takes a warm-up's directory (or a QA file) for any model
    listed = world["dir"] / "listed.jsonl"
    assert main(_flags(answerer_model, world, listed, "--exclude-questions", str(warm))) == 0
    assert grass not in _questions(listed)
    assert json.loads(listed.with_suffix(".json").read_text())["excluded"]["listed"] == int(in_bounds)


# ------------------------------------------------------------------------------------------------
# a run with pool.enabled


def _run_args(model, world, out, *extra):
    return ["train", str(TINY), f"model={model}", f"train_files={world['candidates']}",
            f"prompt_template={world['template']}", "pool.enabled=true", f"pool.engine={world['engine']}",
            "max_turn_tokens=16", "temperature=0.7", "pool.samples=6", "total_steps=1", "prompts_per_step=4",
            f"output_dir={out}", "--no-progress", *extra]


def test_a_run_with_a_pool_trains_only_on_it_records_it_and_resumes_on_it(answerer_model, world, monkeypatch,
                                                                          capsys):
    warm = world["dir"] / "warm"  # a warm-up's directory as the starting policy
    shutil.copytree(answerer_model, warm)
    (warm / "demonstrations.jsonl").write_text(json.dumps({"question": "what colour is the sky",
                                                           "golden_answers": ["blue"]}) + "\n")
    # the command with the run's config first: the run then takes the scoring from the cache
    overrides = [a for a in _run_args(warm, world, "x")[2:] if "=" in a and not a.startswith(("output_dir", "total",
                                                                                                "pool.enabled"))]
    counting = _Counting(monkeypatch)
    assert main(["pool", "--config", str(TINY), *overrides, "--out", str(world["dir"] / "before.jsonl"),
                 "--no-progress"]) == 0
    assert counting.loads == 1
    printed = capsys.readouterr().out
    assert f"train on it: zerosearch train {TINY} {' '.join(overrides)} pool.enabled=true" in printed

    run = world["dir"] / "run"
    assert main(_run_args(warm, world, run, "total_steps=2", "report=true")) == 0
    assert counting.loads == 1  # the same pool: from the cache
    pool = _questions(run / "pool.jsonl")
    assert pool == _questions(world["dir"] / "before.jsonl") and PLUM not in pool and "what colour is the sky" not in pool
    drawn = {json.loads(line)["question"] for step in (1, 2)
             for line in (run / "rollouts" / f"step_{step}.jsonl").read_text().splitlines()}
    assert drawn and drawn <= set(pool)  # eight prompts drawn from the pool, none from outside it
    stats = json.loads((run / "pool.json").read_text())
    assert stats["size"] == len(pool) and stats["candidates"] == 5 and stats["model"] == str(warm)
    assert stats["samples"] == 6 and stats["temperature"] == 0.7
    assert stats["warmup_seen"]["candidates"] == 1 and stats["warmup_questions"] == "exclude"
    # scored as the run rolls out (its budgets, prompt and temperature, seeded by its seed), on pool.engine
    scoring = json.loads((run / "pool-scoring" / "eval_config.json").read_text())
    assert (scoring["model"], scoring["method"], scoring["engine"]) == (str(warm), "agent", world["engine"])
    assert scoring["sampling"] == {"samples": 6, "temperature": 0.7, "seed": 0}
    settings = scoring["settings"]
    assert (settings["max_turns"], settings["topk"], settings["max_turn_tokens"], settings["max_obs_tokens"],
            settings["max_context_tokens"], settings["prompt_template"]) == (2, 3, 16, 256, 1024, str(world["template"]))
    err = capsys.readouterr().err
    assert f"training pool: {len(pool)} of 5 candidates" in err and "training pool " in err.split("time:")[1]
    html = (run / "report" / "index.html").read_text()
    assert "<h2>Training pool</h2>" in html and "candidates the warm-up saw" in html

    # resumed after the candidate file changed: the stored pool, not scored again
    world["candidates"].write_text(json.dumps({"id": "n", "question": "what colour is coal",
                                               "golden_answers": ["black"]}) + "\n")
    before = (run / "pool.jsonl").read_text()
    assert main(["train", "--resume", str(run), "total_steps=3", "--no-progress"]) == 0
    assert counting.loads == 1 and (run / "pool.jsonl").read_text() == before
    assert {json.loads(line)["question"] for line in (run / "rollouts" / "step_3.jsonl").read_text().splitlines()} \
        <= set(pool)
    (run / "pool.jsonl").unlink()
    assert main(["train", "--resume", str(run), "total_steps=4", "--no-progress"]) == 2
    assert "pool.jsonl is missing" in capsys.readouterr().err


def test_an_empty_pool_stops_the_run_before_any_step(answerer_model, world, capsys):
    world["candidates"].write_text(json.dumps({"id": "plum", "question": PLUM, "golden_answers": ["purple"]}) + "\n")
    run = world["dir"] / "run"
    assert main(_run_args(answerer_model, world, run, "pool.samples=4")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: the training pool is empty: none of the 1 candidates had 1 to 3 of 4 sampled "
                          "answers right (1 all wrong") and "pool.min_correct" in err
    assert not (run / "metrics.jsonl").exists() and json.loads((run / "pool.json").read_text())["size"] == 0
