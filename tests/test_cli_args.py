"""Command-line parsing: key=value overrides may come before or after the options."""

from __future__ import annotations

import pytest

from zerosearch import cli


@pytest.mark.parametrize("argv, config, overrides", [
    (["train", "cfg.yaml", "seed=2", "--no-progress"], "cfg.yaml", ["seed=2"]),
    (["train", "cfg.yaml", "--no-progress", "seed=2"], "cfg.yaml", ["seed=2"]),
    (["train", "lr=1", "--no-progress", "seed=2", "topk=3"], "lr=1", ["seed=2", "topk=3"]),
    (["warmup", "--force", "warmup.epochs=1", "seed=2"], "warmup.epochs=1", ["seed=2"]),
    (["warmup", "seed=1", "--force", "warmup.epochs=1"], "seed=1", ["warmup.epochs=1"]),
])
def test_overrides_after_an_option_are_kept(monkeypatch, argv, config, overrides):
    seen = {}
    for name in ("_cmd_train", "_cmd_warmup"):
        monkeypatch.setattr(cli, name, lambda args: seen.update(vars(args)) or 0)
    assert cli.main(argv) == 0
    assert seen["config"] == config and seen["overrides"] == overrides


def test_unknown_option_is_still_an_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_train", lambda args: 0)
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
