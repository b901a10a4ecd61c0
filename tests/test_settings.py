"""One home per setting: the rollout's turn settings are declared once (``RolloutSettings``: default, range,
help) and the train config, the evaluation and the command line copy them from there."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from zerosearch.config import RolloutSettings, TrainConfig, load_train_config
from zerosearch.settings import ConfigError, check_settings, same_as, setting

# the train config's top-level key of each rollout setting
TRAIN_KEYS = {"max_turns": "max_turns", "topk": "topk", "max_turn_tokens": "max_turn_tokens",
              "max_obs_tokens": "max_obs_tokens", "max_context_tokens": "max_context_tokens",
              "temperature": "temperature", "batch_size": "rollout_batch_size", "kv_cache": "kv_cache",
              "doc_format": "doc_format", "kv_reuse": "kv_reuse"}
CHECKS = ("low", "high", "choices")


def _field(cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


# --------------------------------------------------------------------------- the machinery


@dataclass
class _Owner:
    count: int = setting(3, low=1, high=9, help="how many (default: {default})")
    mode: str = setting("a", choices=("a", "b"))
    free: float | None = setting(None, low=0.0)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class _Copy:
    n: int = same_as(_Owner, "count", default=4)

    def __post_init__(self) -> None:
        check_settings(self, prefix="copy.")


def test_a_setting_checks_its_range_and_choices_and_names_its_key():
    _Owner(count=9, mode="b", free=None)  # the bounds are inclusive; None is "decided elsewhere"
    with pytest.raises(ConfigError, match=r"^count=0 must lie in \[1, 9\]$"):
        _Owner(count=0)
    with pytest.raises(ConfigError, match=r"^mode='c' is not one of a, b$"):
        _Owner(mode="c")
    with pytest.raises(ConfigError, match=r"^free=nan must be a finite number$"):
        _Owner(free=float("nan"))
    # a copy keeps the owner's range under its own name and default
    assert _Copy().n == 4
    with pytest.raises(ConfigError, match=r"^copy\.n=10 must lie in \[1, 9\]$"):
        _Copy(n=10)
    with pytest.raises(TypeError, match="range is set where the setting is declared"):
        same_as(_Owner, "count", low=0)


# --------------------------------------------------------------------------- the rollout's settings in the train config


def test_the_train_config_takes_each_rollout_setting_from_rollout_settings():
    """Default and check of every top-level rollout key are RolloutSettings' own: nothing restated."""
    for name, key in TRAIN_KEYS.items():
        home, copy = _field(RolloutSettings, name), _field(TrainConfig, key)
        assert copy.default == home.default, key
        assert {c: copy.metadata.get(c) for c in CHECKS} == {c: home.metadata.get(c) for c in CHECKS}, key
        assert any(home.metadata.get(c) is not None for c in CHECKS) or home.type in (bool, "bool"), name
    assert TrainConfig().rollout == RolloutSettings()


@pytest.mark.parametrize(("override", "message"), [
    ("topk=0", r"topk=0 must lie in \[1, inf\]"),
    ("max_turns=-1", r"max_turns=-1 must lie in \[0, inf\]"),
    ("rollout_batch_size=-1", r"rollout_batch_size=-1 must lie in \[0, inf\]"),
    ("max_obs_tokens=0", r"max_obs_tokens=0 must lie in \[1, inf\]"),
    ("temperature=-0.5", r"temperature=-0.5 must lie in \[0.0, inf\]"),
    ("kv_cache=paged", r"kv_cache='paged' is not one of dynamic, static"),
])
def test_a_rollout_setting_out_of_range_is_a_config_error_naming_the_train_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(None, [override])


def test_train_config_rollout_gathers_the_keys_it_was_given():
    cfg = load_train_config(None, ["max_turns=3", "topk=2", "rollout_batch_size=4", "kv_cache=static",
                                   "kv_reuse=false", "doc_format=search_r1", "temperature=0.5"])
    assert cfg.rollout == RolloutSettings(max_turns=3, topk=2, batch_size=4, kv_cache="static", kv_reuse=False,
                                          doc_format="search_r1", temperature=0.5)
    with pytest.raises(ConfigError, match=r"^batch_size=-1 must lie in \[0, inf\]$"):
        RolloutSettings(batch_size=-1)


# --------------------------------------------------------------------------- the evaluation's settings and its flags

# EvalSettings fields copied from RolloutSettings, and those whose default the evaluation sets itself (Search-R1's
# evaluation: 4 turns; top-k and context decided by the engine and the model; the model's recorded doc format)
EVAL_FROM_ROLLOUT = ("max_turns", "topk", "max_turn_tokens", "max_obs_tokens", "max_context_tokens", "kv_cache",
                     "doc_format", "kv_reuse")
EVAL_OWN_DEFAULTS = {"max_turns": 4, "topk": None, "max_context_tokens": None, "doc_format": None}


def _eval_parser():
    import argparse

    from zerosearch.commands.eval_cmds import add_eval_parser

    parser = argparse.ArgumentParser(prog="zerosearch")
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser


def test_the_evaluation_takes_its_turn_settings_from_rollout_settings():
    from zerosearch.eval_settings import EvalSettings

    for name in EVAL_FROM_ROLLOUT:
        home, copy = _field(RolloutSettings, name), _field(EvalSettings, name)
        assert {c: copy.metadata.get(c) for c in CHECKS} == {c: home.metadata.get(c) for c in CHECKS}, name
        assert copy.default == EVAL_OWN_DEFAULTS.get(name, home.default), name
    for bad, message in [({"topk": 0}, r"^topk=0 must lie in \[1, inf\]$"),
                         ({"max_turns": -1}, r"^max_turns=-1 must lie in \[0, inf\]$"),
                         ({"kv_cache": "paged"}, r"^kv_cache='paged' is not one of dynamic, static$"),
                         ({"batch_size": 0}, r"^batch_size=0 must lie in \[1, inf\]$"),
                         ({"method": "magic"}, r"^method='magic' is not one of agent, direct, cot, rag$")]:
        with pytest.raises(ConfigError, match=message):
            EvalSettings(**bad)


def test_the_eval_commands_flags_are_made_from_the_settings_fields(capsys):
    """Defaults and checks of `zerosearch eval`'s flags are the fields'; what the flags give is what evaluate()
    gets (the spec the command builds)."""
    from zerosearch.commands.eval_cmds import _eval_spec
    from zerosearch.eval_settings import EvalSettings

    parser = _eval_parser()
    args = parser.parse_args(["eval", "--model", "m", "--data", "a.jsonl"])
    spec = _eval_spec(args, ["a.jsonl"])
    assert spec.settings == EvalSettings()
    assert spec.settings.max_turn_tokens == RolloutSettings().max_turn_tokens
    assert (spec.device, spec.dtype, spec.engine, spec.data.files) == ("auto", "auto", None, ("a.jsonl",))
    args = parser.parse_args(["eval", "--model", "m", "--data", "a.jsonl", "--max-turns", "0", "--topk", "2",
                              "--no-kv-reuse", "--kv-cache", "static", "--batch-size", "3", "--seed", "5",
                              "--samples", "4", "--method", "rag", "--doc-format", "search_r1"])
    spec = _eval_spec(args, ["a.jsonl"])
    assert spec.settings == EvalSettings(method="rag", max_turns=0, topk=2, kv_reuse=False, kv_cache="static",
                                         batch_size=3, doc_format="search_r1")
    assert (spec.sampling.samples, spec.sampling.seed, spec.data.seed) == (4, 5, 5)
    for flag, value, message in [("--topk", "0", "must be an integer >= 1, got 0"),
                                 ("--max-turns", "-1", "must be an integer >= 0, got -1"),
                                 ("--max-obs-tokens", "0", "must be an integer >= 1, got 0"),
                                 ("--kv-cache", "paged", "invalid choice: 'paged'")]:
        with pytest.raises(SystemExit):
            parser.parse_args(["eval", "--model", "m", "--data", "a.jsonl", flag, value])
        assert f"argument {flag}: {message}" in capsys.readouterr().err
