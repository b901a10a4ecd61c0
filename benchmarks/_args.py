"""Argument checks shared by the benchmark scripts, so that a bad option fails at parse time in one line.

``type=`` functions for argparse (a bad value raises :class:`argparse.ArgumentTypeError`, which argparse
prints as ``error: argument --NAME: ...`` and exits with status 2) and a few checks that need more than
one value. Loaded from a benchmark script by putting its own directory on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _args import positive_int  # noqa: E402

The number and file types are :mod:`zerosearch.commands.argtypes` (the command line's own); only the
standard library is imported (``check_overrides`` imports :mod:`zerosearch.config` when called), so a
script can check its arguments before torch or a model loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# the command line's own argument types (standard library only), so the scripts and `zerosearch` say the same
from zerosearch.commands.argtypes import (  # noqa: E402,F401
    existing_file, non_negative_float, non_negative_int, positive_float, positive_int,
)


def key_value(text: str) -> str:
    """A ``KEY=VALUE`` config override (the key is checked against the config by :func:`check_overrides`)."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} must look like KEY=VALUE, e.g. lr=1e-6")
    return text


def check_overrides(overrides: Sequence[str], extra: Sequence[str] = (), option: str = "--set",
                    path: str | Path | None = None) -> str | None:
    """Why ``zerosearch.config.load_train_config(path, [*overrides, *extra])`` would fail; None where it would not.

    ``overrides`` are the script's own (built from its options), ``extra`` the user's ``KEY=VALUE`` items of
    ``option``: a message about ``extra`` names ``option``.
    """
    from zerosearch.config import ConfigError, load_train_config

    def problem(items: list[str]) -> str | None:
        try:
            load_train_config(path, items)
        except ConfigError as exc:
            return str(exc).removeprefix("the key=value overrides: ")
        return None

    base = problem(list(overrides))
    if base is not None or not extra:
        return base
    found = problem([*overrides, *extra])
    return None if found is None else f"{option}: {found}"


def _field(row: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = row
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def read_jsonl_with_fields(path: str | Path, fields: Iterable[str]) -> list[dict[str, Any]]:
    """The rows of a jsonl file, each required to hold every one of ``fields`` (dotted: ``metadata.titles``).

    Raises:
        ValueError: a one-line message naming the file, the line and what is wrong with it.
    """
    path = Path(path)
    fields = list(fields)
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number} is not a JSON object")
            for name in fields:
                if not _field(row, name)[0]:
                    raise ValueError(f"{path}:{number} has no field {name!r} (found fields {sorted(row)})")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows


def add_rl_options(parser: argparse.ArgumentParser, steps: int, dev_help: str, prompts: int = 2, rollouts: int = 4,
                   lr: float = 1e-5, warmup_examples: int = 64, dev: int = 300) -> None:
    """The options :func:`rl_overrides` reads (fidelity_smollm2's; the defaults are the embedded default's)."""
    parser.add_argument("--steps", type=positive_int, default=steps, help=f"RL steps per arm (default {steps})")
    parser.add_argument("--prompts", type=positive_int, default=prompts, help=f"questions per step (default {prompts})")
    parser.add_argument("--rollouts", type=positive_int, default=rollouts,
                        help=f"rollouts per question (default {rollouts})")
    parser.add_argument("--lr", type=positive_float, default=lr, help=f"RL learning rate (default {lr:g})")
    parser.add_argument("--warmup-examples", type=positive_int, default=warmup_examples,
                        help=f"warm-up demonstrations (default {warmup_examples}, the embedded default's)")
    parser.add_argument("--dev", type=positive_int, default=dev, help=dev_help)
    parser.add_argument("--seed", type=int, default=0)


def rl_overrides(args: argparse.Namespace) -> list[str]:
    """The settings every RL arm of fidelity_smollm2 shares, as ``key=value`` overrides of the embedded default
    (from the options of :func:`add_rl_options`: --steps, --prompts, --rollouts, --lr, --seed, --warmup-examples,
    --dev)."""
    return [f"total_steps={args.steps}", f"prompts_per_step={args.prompts}", f"rollouts_per_prompt={args.rollouts}",
            f"lr={args.lr}", f"seed={args.seed}", f"warmup.max_examples={args.warmup_examples}",
            f"final_eval.limit={args.dev}", "save_every=1000000", "report=true"]


def check_arms(parser: argparse.ArgumentParser, args: argparse.Namespace, arms: dict[str, list[str]]) -> None:
    """Parse ``args.arms`` (comma-separated names of ``arms``) into a list, check ``--out`` is no file, and
    load each arm's config (:func:`rl_overrides` + the arm's own) now, not after the warm-up:
    ``parser.error`` on any fault."""
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(args.arms) - set(arms))
    if unknown or not args.arms:
        parser.error(f"--arms: unknown arm(s) {', '.join(unknown)}; choose from {', '.join(arms)}" if unknown
                     else f"--arms: name at least one of {', '.join(arms)}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file: give a directory (it is created if missing)")
    from zerosearch.config import EMBEDDED_DEFAULT

    for arm in args.arms:
        problem = check_overrides(rl_overrides(args) + arms[arm], path=EMBEDDED_DEFAULT)
        if problem:
            parser.error(f"arm {arm}: {problem}")
