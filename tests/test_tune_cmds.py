"""`zerosearch tune-simulator`: option ranges, resuming with other settings, error wording, Ctrl-C.

Engines are the in-memory FixedDocumentsEngine (``build_engine`` patched), models the tiny one, so each
test takes seconds.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from support import FixedDocumentsEngine
from zerosearch.cli import main
from zerosearch.config import RolloutSettings
from zerosearch.simulator_tuning import build, collect, eval_items, train

TRAIN_MODULE = "zerosearch.simulator_tuning.train"


def _cli(*argv: str) -> int:
    """Exit code of ``zerosearch ARGV`` (argparse's usage errors included)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code)


def _qa(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Q{i}?", "golden_answers": ["blue"]}) + "\n"
                            for i in range(n)))
    return path


class InterruptingEngine(FixedDocumentsEngine):
    """Answers ``calls`` search calls, then the next one is a Ctrl-C."""

    def __init__(self, calls: int) -> None:
        super().__init__(["the sky is blue"])
        self.calls = calls

    def search(self, requests, topk):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return super().search(requests, topk)


@pytest.fixture
def engine(monkeypatch) -> FixedDocumentsEngine:
    """``--engine fixed`` (any spec) builds this in-memory engine."""
    fixed = FixedDocumentsEngine(["the sky is blue"])
    monkeypatch.setattr("zerosearch.search.factory.build_engine", lambda spec, **_: fixed)
    return fixed


def _resume_command(err: str) -> list[str]:
    """The command an interruption message says goes on, as arguments to ``main``."""
    line = err.split("[zerosearch] interrupted:", 1)[1].splitlines()[1]
    words = shlex.split(line)
    assert words[:2] == ["zerosearch", "tune-simulator"]
    return words[1:]


# --- 1, 2: numeric options ----------------------------------------------------------------------------

STAGE_ARGS = {
    "collect": ["--engine", "e", "--data", "d", "--out", "o"],
    "build": ["--collected", "c", "--out-dir", "o"],
    "train": ["--dataset", "d", "--base-model", "m", "--out-dir", "o"],
    "evaluate": ["--simulator", "prompt:simulated:m", "--data", "d", "--out-dir", "o"],
}
OUT_OF_RANGE = [
    ("collect", "--limit", "-1"), ("collect", "--batch-size", "0"), ("collect", "--max-turns", "0"),
    ("collect", "--topk", "0"), ("collect", "--temperature", "-0.5"), ("collect", "--max-turn-tokens", "0"),
    ("collect", "--seed", "-1"), ("collect", "--limit", "two"),
    ("build", "--val-fraction", "1"), ("build", "--val-fraction", "-0.1"), ("build", "--max-examples", "0"),
    ("build", "--max-doc-words", "-1"), ("build", "--seed", "-1"),
    ("train", "--max-steps", "0"), ("train", "--max-steps", "-5"), ("train", "--epochs", "0"),
    ("train", "--epochs", "nan"), ("train", "--lr", "0"), ("train", "--batch-size", "0"),
    ("train", "--grad-accum", "0"), ("train", "--max-length", "0"), ("train", "--lora-r", "0"),
    ("train", "--lora-alpha", "0"), ("train", "--save-steps", "-1"), ("train", "--seed", "-1"),
    ("evaluate", "--limit", "-1"), ("evaluate", "--topk", "0"), ("evaluate", "--max-tokens", "0"),
    ("evaluate", "--temperature", "-1"), ("evaluate", "--batch-size", "0"), ("evaluate", "--seed", "-1"),
]


@pytest.mark.parametrize("stage,option,value", OUT_OF_RANGE)
def test_numeric_options_out_of_range_are_usage_errors_naming_the_option(stage, option, value, capsys):
    assert _cli("tune-simulator", stage, *STAGE_ARGS[stage], option, value) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and ("must be" in err or "expected" in err)


def test_limit_0_means_all_and_negative_limits_are_refused(tmp_path, engine, capsys):
    qa = _qa(tmp_path / "qa.jsonl", 4)
    out = tmp_path / "c.jsonl"
    assert _cli("tune-simulator", "collect", "--engine", "fixed", "--data", qa, "--query-source", "question",
                "--limit", "0", "--out", out, "--no-progress") == 0
    assert len(out.read_text().splitlines()) == 4  # all, not none
    for stage, said in (("collect", "(default, or 0: all)"), ("evaluate", "0 = all")):
        capsys.readouterr()
        _cli("tune-simulator", stage, "--help")
        assert said in " ".join(capsys.readouterr().out.split())  # --help says what 0 means
    # the API refuses what a slice would misread: -1 as "all but the last", 0 as "none"
    for limit in (0, -1):
        with pytest.raises(ValueError, match="limit must be >= 1"):
            collect(None, engine, qa, tmp_path / "x.jsonl", query_source="question", limit=limit, progress=False)
        with pytest.raises(ValueError, match="limit must be >= 1"):
            eval_items(qa, limit=limit)
    assert len(eval_items(qa, limit=None)) == 4 and len(eval_items(qa, limit=3)) == 3
    assert not (tmp_path / "x.jsonl").exists()


def test_evaluate_limit_0_evaluates_every_item(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("zerosearch.simulator_tuning.evaluate", lambda *a, **kw: seen.update(kw) or {})
    monkeypatch.setattr("zerosearch.simulator_tuning.results_table", lambda results: "")
    assert _cli("tune-simulator", "evaluate", "--simulator", "prompt:simulated:m", "--data", "d",
                "--out-dir", tmp_path / "e", "--limit", "0") == 0
    assert seen["limit"] is None  # all


def test_train_refuses_zero_steps_or_epochs_before_loading_anything(tmp_path):
    for length in ({"max_steps": 0}, {"max_steps": -3}, {"epochs": 0.0}, {"epochs": -1.0}):
        with pytest.raises(ValueError, match=f"--{next(iter(length)).replace('_', '-')} must be"):
            train(tmp_path / "no-dataset", "zerosearch:tiny", tmp_path / "m", **length)
    assert not (tmp_path / "m").exists()


# --- 3: collect refuses to resume into a file made with other settings ------------------------------------


def test_collect_refuses_an_out_file_made_with_other_settings(tmp_path, engine):
    qa = _qa(tmp_path / "qa.jsonl", 3)
    out = tmp_path / "c.jsonl"
    one, two = RolloutSettings(topk=1), RolloutSettings(topk=2)
    collect(None, engine, qa, out, query_source="question", rollout=one, limit=2, progress=False)
    before = out.read_text()
    with pytest.raises(ValueError, match=r"other settings \(--topk: 1 there, 2 now\).*another --out"):
        collect(None, engine, qa, out, query_source="question", rollout=two, progress=False)
    with pytest.raises(ValueError, match="--extra-queries: none there, metadata.titles now"):
        collect(None, engine, qa, out, query_source="question", rollout=one, extra_query_field="metadata.titles",
                progress=False)
    assert out.read_text() == before  # nothing appended
    summary = collect(None, engine, qa, out, query_source="question", rollout=one, batch_size=5, progress=False)
    assert (summary.skipped, summary.written) == (2, 1)  # the same settings (another batch size) resume

    # a policy-mode file (rows from before settings were recorded carry only their query source)
    policy_file = tmp_path / "policy.jsonl"
    policy_file.write_text(json.dumps({"row_id": "q0", "question": "Q0?", "golden_answers": ["blue"],
                                       "query_source": "policy", "searches": []}) + "\n")
    with pytest.raises(ValueError) as caught:
        collect(None, engine, qa, policy_file, query_source="question", progress=False)
    message = str(caught.value)
    assert "--query-source: policy there, question now" in message and "--policy" not in message
    assert len(policy_file.read_text().splitlines()) == 1


def test_collect_cli_says_the_mismatch_in_one_line(tmp_path, engine, capsys):
    qa = _qa(tmp_path / "qa.jsonl", 2)
    out = tmp_path / "c.jsonl"
    base = ["tune-simulator", "collect", "--engine", "fixed", "--data", qa, "--out", out, "--query-source",
            "question", "--no-progress"]
    assert _cli(*base) == 0
    capsys.readouterr()
    assert _cli(*base, "--topk", "3") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--topk: 5 there, 3 now" in err


# --- 4, 5: error wording ----------------------------------------------------------------------------------


def test_evaluate_says_which_of_data_and_calls_is_wrong(tmp_path, capsys):
    base = ["tune-simulator", "evaluate", "--simulator", "prompt:simulated:m", "--out-dir", tmp_path / "e"]
    assert _cli(*base) == 2
    err = capsys.readouterr().err
    assert "give the items to evaluate: --data" in err and "--calls" in err and "not both" not in err
    assert _cli(*base, "--data", "a.jsonl", "--calls", "b.jsonl") == 2
    assert "not both" in capsys.readouterr().err
    assert _cli(*base, "--data", "a.jsonl", "--word-range", "60", "15") == 2
    assert "--word-range" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_collect_errors_name_the_options_as_typed(tmp_path, capsys):
    qa = _qa(tmp_path / "qa.jsonl", 1)
    base = ["tune-simulator", "collect", "--engine", "fixed", "--data", qa, "--out", tmp_path / "c.jsonl"]
    assert _cli(*base) == 2
    err = capsys.readouterr().err
    assert "--policy MODEL" in err and "--query-source question" in err and "query_source=" not in err
    assert _cli(*base, "--policy", "m", "--extra-queries", "metadata.titles") == 2
    err = capsys.readouterr().err
    assert "--extra-queries works with --query-source question" in err and "_" not in err.split("(")[0]
    assert _cli("tune-simulator", "evaluate", "--simulator", "nonsense", "--data", qa, "--out-dir", tmp_path) == 2
    assert "argument --simulator: bad simulator 'nonsense'" in capsys.readouterr().err


def test_collect_with_a_missing_policy_writes_nothing(tmp_path, capsys):
    qa = _qa(tmp_path / "qa.jsonl", 1)
    missing = str(tmp_path / "nomodel")
    assert _cli("tune-simulator", "collect", "--engine", "fixed", "--data", qa, "--policy", missing,
                "--out", tmp_path / "sim" / "c.jsonl") == 2
    assert f"no model directory at '{missing}'" in capsys.readouterr().err
    assert not (tmp_path / "sim").exists()  # --out's folder is made only once the policy is known to exist


def test_library_errors_the_commands_print_name_options_not_parameters(tmp_path):
    from zerosearch.simulator_tuning.evaluate import _default_reader, parse_simulator_spec

    with pytest.raises(ValueError) as caught:
        _default_reader([parse_simulator_spec("prompt:simulated:http://127.0.0.1:1/v1")])
    assert "--reader MODEL" in str(caught.value)
    collected = tmp_path / "c.jsonl"
    collected.write_text(json.dumps({"row_id": "1", "question": "Q?", "golden_answers": ["coal"],
                                     "query_source": "question", "searches": [
                                         {"turn": 0, "query": "q", "documents": [{"title": "", "text": "coal"}]}]}))
    with pytest.raises(ValueError) as caught:
        build(collected, tmp_path / "ds")
    assert "--query-source question" in str(caught.value) and "query_source=" not in str(caught.value)
    dataset = _chat_dataset(tmp_path / "chat", 2)
    with pytest.raises(ValueError, match="raise --max-length"):
        train(dataset, "zerosearch:tiny", tmp_path / "m", max_steps=1, max_length=2, device="cpu", progress=False)
    calls = tmp_path / "calls.jsonl"
    calls.write_text(json.dumps({"question": "Q?", "golden_answers": ["x"]}) + "\n")
    with pytest.raises(ValueError, match=r"row 1: no query; --calls takes build's val_calls.jsonl"):
        eval_items(calls_file=calls)


# --- 6: Ctrl-C says what is kept and the command that goes on ----------------------------------------------


def test_collect_ctrl_c_says_what_is_kept_and_the_command_resumes(tmp_path, monkeypatch, capsys):
    qa = _qa(tmp_path / "qa.jsonl", 5)
    out = tmp_path / "c.jsonl"
    monkeypatch.setattr("zerosearch.search.factory.build_engine", lambda spec, **_: InterruptingEngine(calls=2))
    assert _cli("tune-simulator", "collect", "--engine", "fixed", "--data", qa, "--query-source", "question",
                "--batch-size", "1", "--out", out, "--no-progress") == 130
    err = capsys.readouterr().err
    assert f"the 2 question(s) collected so far are kept in {out}" in err
    command = _resume_command(err)
    assert command == ["tune-simulator", "collect", "--engine", "fixed", "--data", str(qa), "--out", str(out),
                       "--query-source", "question", "--batch-size", "1", "--no-progress"]
    monkeypatch.setattr("zerosearch.search.factory.build_engine", lambda spec, **_: InterruptingEngine(calls=99))
    assert _cli(*command) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 2
    assert len(out.read_text().splitlines()) == 5


def test_evaluate_ctrl_c_leaves_no_empty_out_dir(tmp_path, monkeypatch, capsys):
    qa = _qa(tmp_path / "qa.jsonl", 2)
    out = tmp_path / "runs" / "eval"
    monkeypatch.setattr("zerosearch.search.factory.build_engine", lambda spec, **_: InterruptingEngine(calls=0))
    assert _cli("tune-simulator", "evaluate", "--engine", "fixed", "--data", qa, "--out-dir", out,
                "--simulator", "small=prompt:simulated:zerosearch:tiny", "--reader", "zerosearch:tiny",
                "--max-tokens", "4", "--no-progress") == 130
    err = capsys.readouterr().err
    assert not out.exists() and not out.parent.exists()
    assert "nothing is kept" in err
    command = _resume_command(err)
    assert command[command.index("--simulator") + 1] == "small=prompt:simulated:zerosearch:tiny"


def _chat_dataset(directory: Path, n: int, val: int = 0) -> Path:
    """train.jsonl (and val.jsonl) in build's chat format, ``n`` (``val``) short examples."""
    directory.mkdir(parents=True, exist_ok=True)

    def rows(prefix: str, count: int) -> str:
        return "".join(json.dumps({"messages": [
            {"role": "system", "content": ""}, {"role": "user", "content": f"Query: {prefix}{i}\nUseful Output:"},
            {"role": "assistant", "content": f"Doc 1: the answer to {prefix}{i} is {i % 3}"}]}) + "\n"
            for i in range(count))

    (directory / "train.jsonl").write_text(rows("t", n))
    if val:
        (directory / "val.jsonl").write_text(rows("v", val))
    return directory


def _interrupt_before_step(monkeypatch, step: int) -> None:
    """Ctrl-C when the fine-tuning is about to take optimizer step ``step``."""
    from zerosearch.sft import SFTRun

    original = SFTRun.train_step

    def train_step(self):
        if self.step + 1 == step:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(SFTRun, "train_step", train_step)


def test_train_ctrl_c_names_the_checkpoint_and_the_command_resumes(tmp_path, monkeypatch, capsys):
    dataset = _chat_dataset(tmp_path / "ds", 6)

    def argv(out: Path) -> list[str]:
        return ["tune-simulator", "train", "--dataset", str(dataset), "--base-model", "zerosearch:tiny",
                "--out-dir", str(out), "--max-steps", "5", "--lr", "0.001", "--save-steps", "2", "--device", "cpu",
                "--no-progress"]

    out = tmp_path / "sim"
    with monkeypatch.context() as patch:
        _interrupt_before_step(patch, 4)
        assert _cli(*argv(out)) == 130
    err = capsys.readouterr().err
    assert f"its newest checkpoint, {out / 'checkpoints' / 'step_2'}, is kept" in err
    command = _resume_command(err)
    assert command == argv(out)
    assert _cli(*command) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["steps"] == 5 and info["resumed_at_step"] == 2

    with monkeypatch.context() as patch:  # before the first checkpoint: nothing is kept, and it is said
        _interrupt_before_step(patch, 1)
        assert _cli(*argv(tmp_path / "sim2")) == 130
    assert "nothing is kept (no checkpoint yet; one is written every 2 steps)" in capsys.readouterr().err


# --- 7: a resumed training reports the whole run ---------------------------------------------------------


def test_resumed_training_summary_is_the_uninterrupted_runs(tmp_path, monkeypatch):
    dataset = _chat_dataset(tmp_path / "ds", 8, val=2)
    options = dict(lr=1e-3, max_steps=12, batch_size=2, save_steps=4, device="cpu", progress=False)
    whole = train(dataset, "zerosearch:tiny", tmp_path / "whole", **options)

    with monkeypatch.context() as patch:
        _interrupt_before_step(patch, 10)  # after the checkpoint at step 8
        with pytest.raises(KeyboardInterrupt):
            train(dataset, "zerosearch:tiny", tmp_path / "resumed", **options)
    with pytest.raises(ValueError, match=r"other settings \(--lr: 0.001 there, 0.002 now\).*delete"):
        train(dataset, "zerosearch:tiny", tmp_path / "resumed", **{**options, "lr": 2e-3})
    resumed = train(dataset, "zerosearch:tiny", tmp_path / "resumed", **options)

    assert resumed["resumed_at_step"] == 8 and whole["resumed_at_step"] is None
    assert whole["eval_loss_before"] is not None
    assert resumed["eval_loss_before"] == pytest.approx(whole["eval_loss_before"], rel=1e-6)
    assert [step for step, _ in resumed["loss_curve"]] == [10, 12] == [step for step, _ in whole["loss_curve"]]
    assert [loss for _, loss in resumed["loss_curve"]] == pytest.approx([loss for _, loss in whole["loss_curve"]],
                                                                        rel=1e-5)
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-5)
    saved = json.loads((tmp_path / "resumed" / "simulator_tuning.json").read_text())
    assert saved["train_loss"] == resumed["train_loss"] and not (tmp_path / "resumed" / "checkpoints").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
