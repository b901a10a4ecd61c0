"""Settings fields that carry their own default, check and help: the one home of each setting.

A component's settings are one dataclass (:class:`~zerosearch.config.RolloutSettings`,
:class:`~zerosearch.evaluate.EvalSettings`, :class:`~zerosearch.curriculum.Curriculum`...). A field declared
with :func:`setting` holds its default, its check (a range or a list of choices) and its help text, the last
in ``metadata["help"]`` as TRL's ``HfArgumentParser`` reads it. A dataclass that exposes the same setting under
its own name or with its own default (the train config's flat ``rollout_batch_size`` is the rollout's
``batch_size``; the evaluation's ``max_turns`` defaults to 4) copies the field with :func:`same_as`, so the
range is written once. :func:`check_settings` checks every such field of an instance and raises
:class:`ConfigError` naming the key as that dataclass spells it; the command line builds its flags from the
same fields (:mod:`zerosearch.commands.flags`).

Only the standard library is imported: every layer may use this module.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["ConfigError", "check_choice", "check_range", "check_settings", "same_as", "setting"]


class ConfigError(ValueError):
    """A config value or key is wrong; the message says what to change."""


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise ConfigError ``name=value is not one of ...`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")


def check_range(name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise ConfigError ``name=value must lie in [low, high]`` (None: unbounded) when ``value`` is outside."""
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"{name}={value!r} must lie in {bounds}")


def setting(default: Any, *, low: float | None = None, high: float | None = None,
            choices: tuple[Any, ...] | None = None, help: str = "", **flag: Any) -> Any:
    """A dataclass field whose default, check and help live together.

    ``low`` / ``high``: the closed range of a number; ``choices``: the allowed values. ``help``: what the
    setting does (a flag's help; ``{default}`` in it becomes the default). ``flag``: how a command-line flag
    spells it where that differs from ``--name`` (``flag="--no-kv-reuse"`` for a boolean that defaults to
    True, ``metavar="N"``, ``type=`` for an argparse type). A value of None is never checked: it means
    "decided elsewhere" (the model's context length, the engine's top-k).
    """
    metadata = {"help": help, "low": low, "high": high, "choices": choices, **flag}
    return dataclasses.field(default=default, metadata={k: v for k, v in metadata.items() if v is not None})


def same_as(owner: type, name: str, **changes: Any) -> Any:
    """A field declared as ``owner``'s field ``name`` (its default, check and help), with ``changes``: another
    ``default=``, ``help=`` or flag spelling. The range and the choices always stay the owner's."""
    source = {f.name: f for f in dataclasses.fields(owner)}[name]
    if "low" in changes or "high" in changes or "choices" in changes:
        raise TypeError(f"{owner.__name__}.{name}'s range is set where the setting is declared, not in a copy")
    default = changes.pop("default", source.default)
    return dataclasses.field(default=default, metadata={**source.metadata, **changes})


def check_settings(obj: Any, prefix: str = "") -> None:
    """Check every field of dataclass instance ``obj`` declared with a range or choices (:func:`setting`).

    Raises ConfigError naming ``prefix + field name`` and the allowed values; a non-finite number is refused
    (NaN passes every comparison). Fields without a check, and values of None, are left alone.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        key = prefix + f.name
        choices = f.metadata.get("choices")
        if choices is not None:
            check_choice(key, value, choices)
        low, high = f.metadata.get("low"), f.metadata.get("high")
        if low is None and high is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} must be a finite number")
        check_range(key, value, low, high)
