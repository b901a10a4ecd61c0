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
