"""Command-line parsing: key=value overrides may come before or after the options."""

from __future__ import annotations

import pytest

from zerosearch import cli
from zerosearch.commands import train_cmds


@pytest.mark.parametrize("argv, config, overrides", [
    (["train", "cfg.yaml", "seed=2", "--no-progress"], "cfg.yaml", ["seed=2"]),
    (["train", "cfg.yaml", "--no-progress", "seed=2"], "cfg.yaml", ["seed=2"]),
    (["train", "lr=1", "--no-progress", "seed=2", "topk=3"], "lr=1", ["seed=2", "topk=3"]),
    (["warmup", "--force", "warmup.epochs=1", "seed=2"], "warmup.epochs=1", ["seed=2"]),
    (["warmup", "seed=1", "--force", "warmup.epochs=1"], "seed=1", ["warmup.epochs=1"]),
])
def test_overrides_after_an_option_are_kept(monkeypatch, argv, config, overrides):
    seen = {}
    for name in ("run_train", "run_warmup"):
        monkeypatch.setattr(train_cmds, name, lambda args: seen.update(vars(args)) or 0)
    assert cli.main(argv) == 0
    assert seen["config"] == config and seen["overrides"] == overrides


def test_unknown_option_is_still_an_error(monkeypatch, capsys):
    monkeypatch.setattr(train_cmds, "run_train", lambda args: 0)
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "seed=2", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("kind, text, message", [
    ("positive_int", "0", "must be an integer >= 1, got 0"),
    ("positive_int", "2.5", "must be an integer >= 1, got '2.5'"),
    ("non_negative_int", "-1", "must be an integer >= 0, got -1"),
    ("positive_float", "0", "must be a number > 0, got 0"),
    ("positive_float", "inf", "must be a number > 0, got inf"),
    ("non_negative_float", "nan", "must be a number >= 0, got nan"),
    ("fraction", "1", "must be a number in [0, 1), got 1"),
    ("port_number", "65536", "must be a port from 1 to 65535 (or 0 for a free one), got 65536"),
    ("nonempty", "  ", "must not be empty; give a value"),
])
def test_argument_types_refuse_with_the_rule(kind, text, message):
    """The one set of argument types the commands and the benchmark scripts use."""
    import argparse

    from zerosearch.commands import argtypes

    with pytest.raises(argparse.ArgumentTypeError) as caught:
        getattr(argtypes, kind)(text)
    assert str(caught.value) == message
    assert argtypes.positive_int("3") == 3 and argtypes.fraction("0.1") == 0.1 and argtypes.port_number("0") == 0


@pytest.mark.parametrize("argv, message", [
    (["tune-simulator", "build", "--collected", "c.jsonl", "--out-dir", ""], "argument --out-dir: must not be empty"),
    (["tune-simulator", "train", "--dataset", "d", "--base-model", "zerosearch:tiny", "--out-dir", ""],
     "argument --out-dir: must not be empty"),
    (["tune-simulator", "collect", "--engine", "example", "--data", "q.jsonl", "--out", ""],
     "argument --out: must not be empty"),
    (["export-verl", "--data", "q.jsonl", "--out", "o", "--split", "../../escape"], "argument --split: must be a plain"),
    (["eval", "--model", "m", "--data", "q.jsonl", "--names", "a/b"], "argument --names: must be a plain name"),
    (["eval", "--model", "m", "--data", "q.jsonl", "--limit", "-1"], "argument --limit: must be an integer >= 0"),
])
def test_options_that_would_write_in_the_wrong_place_are_refused_at_parse_time(argv, message, capsys, tmp_path,
                                                                                monkeypatch):
    """An empty --out-dir wrote a model into the working directory; --split ../../x wrote outside --out."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_models_data_and_devices_are_one_line(tmp_path, capsys, monkeypatch):
    """A run directory given as the model, a non-UTF-8 or non-parquet data file, a folder as data and the meta
    device each end in exit 2 and one line (they were tracebacks from transformers, json, pyarrow, torch)."""
    run = tmp_path / "run"
    (run / "checkpoints" / "step_3" / "policy").mkdir(parents=True)
    (run / "checkpoints" / "step_3" / "state.json").write_text("{}")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"question": "caf\xe9", "golden_answers": ["x"]}\n')
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    cases = [
        (["ask", "q", "--model", str(run)], f"is a directory but not a model (no config.json); a training run's "
                                             f"policy is in {run}/checkpoints/step_N/policy (the newest: "
                                             f"{run / 'checkpoints' / 'step_3' / 'policy'})"),
        (["ask", "q", "--model", "zerosearch:tiny", "--device", "meta"], "device='meta': zerosearch runs on cpu"),
        (["eval", "--model", "zerosearch:tiny", "--data", str(latin1), "--method", "direct"],
         f"{latin1}: expected UTF-8 text, but byte 17 is not"),
        (["eval", "--model", "zerosearch:tiny", "--data", str(fake), "--method", "direct"],
         f"{fake}: expected a readable .parquet file, but reading it failed"),
        (["eval", "--model", "zerosearch:tiny", "--data", str(tmp_path), "--method", "direct"],
         f"QA data file expected, got a folder: {tmp_path}"),
    ]
    monkeypatch.chdir(tmp_path)
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
