"""``zerosearch compare``: two evaluations of the same questions, paired, with confidence intervals and p-values.

Wire into the CLI with ``add_compare_parser(sub)``; it sets ``func`` to a handler that takes the parsed
arguments and returns the exit code: 0 ok, 2 a usage problem (a directory that is not an evaluation, an
examples file on one side only, evaluations of different questions, a bad option), reported in one line by
:func:`zerosearch.commands.errors.run_command`. Only torch-free modules are imported, so the command answers
in a second.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from zerosearch.commands.argtypes import nonempty, positive_int
from zerosearch.commands.errors import UsageError

__all__ = ["MIN_RESAMPLES", "add_compare_parser", "run_compare"]

MIN_RESAMPLES = 2000  # fewer leave the interval's ends visibly wobbling from seed to seed

COMPARE_EPILOG = """\
what it computes, per dataset and on the average over datasets (as results.md averages):
  EM and F1 of A and of B (%) on the questions both answered, and the difference B - A (points)
  95% CI     a paired bootstrap interval of B - A: the questions are resampled with replacement, each
             keeping its two answers together (the average resamples within each dataset); seeded
  p          McNemar's exact two-sided test on the EM outcomes: of the questions exactly one of the two got
             right, is B's share different from 1/2? (binomial test; 1 when no question differs)
  reading    "no detectable change" where the interval contains 0, else "B higher" / "B lower"
Both evaluations must hold the same questions (same datasets, ids, question texts and gold answers);
otherwise the command says which differ. Evaluate both with the same --data, --limit/--sample and --seed.

output (--out, default runs/compare-<A>-vs-<B>-<time>):
  comparison.md     the EM table (with p) and the F1 table, as printed
  comparison.json   {"a", "b", "bootstrap", "datasets": {NAME: ROW}, "average": ROW} with
                    ROW = {"n", "em": {"a", "b", "diff", "ci95": [lo, hi], "p_mcnemar"},
                           "f1": {"a", "b", "diff", "ci95": [lo, hi]}}

examples:
  zerosearch compare runs/eval-warmup-agent runs/eval-step200-agent
  zerosearch compare runs/my-run/eval/warmup runs/my-run/eval --labels "after warm-up,after RL" --out cmp/
  zerosearch compare runs/eval-a runs/eval-b --resamples 20000 --seed 1
"""


def _resamples(text: str) -> int:
    value = positive_int(text)
    if value < MIN_RESAMPLES:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_RESAMPLES} (a 95% interval's ends need them), "
                                         f"got {value}")
    return value


def _labels(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"must be two names separated by a comma (e.g. 'warm-up,RL'), got {text!r}")
    return parts[0], parts[1]


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch compare``."""
    from zerosearch.paired import DEFAULT_RESAMPLES

    parser = subparsers.add_parser(
        "compare", help="compare two evaluations of the same questions: B - A with 95%% CIs and McNemar's p",
        description="Pair two evaluation directories (zerosearch eval --output-dir) question by question and "
                    "report, per dataset and on average, EM and F1 of each, the difference B - A with a paired "
                    "bootstrap 95% confidence interval, and McNemar's exact p on EM.",
        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("eval_a", metavar="EVAL_A", type=nonempty, help="the evaluation compared against (before)")
    parser.add_argument("eval_b", metavar="EVAL_B", type=nonempty, help="the evaluation compared (after)")
    parser.add_argument("--out", type=nonempty, metavar="DIR",
                        help="where to write comparison.md and comparison.json (default: runs/compare-<A>-vs-<B>-<time>)")
    parser.add_argument("--labels", type=_labels, metavar="A,B", default=("A", "B"),
                        help="names of the two evaluations in the tables (default: A,B)")
    parser.add_argument("--resamples", type=_resamples, default=DEFAULT_RESAMPLES, metavar="N",
                        help=f"bootstrap resamples (default: {DEFAULT_RESAMPLES:,}; at least {MIN_RESAMPLES:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.set_defaults(func=run_compare)
    return parser


def _default_out(eval_a: str, eval_b: str) -> Path:
    def slug(path: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path.rstrip("/")).name).strip("-") or "eval"

    return Path("runs") / f"compare-{slug(eval_a)}-vs-{slug(eval_b)}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_compare(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch compare``: compare, write both files, print the tables."""
    from zerosearch.paired import COMPARISON_JSON, COMPARISON_MD, compare_evaluations, write_comparison

    comparison = compare_evaluations(args.eval_a, args.eval_b, seed=args.seed, resamples=args.resamples)
    out = Path(args.out) if args.out else _default_out(args.eval_a, args.eval_b)
    label_a, label_b = args.labels
    try:
        _, md_path = write_comparison(comparison, out, label_a, label_b)
    except OSError as exc:  # --out names a file, or a folder that cannot be written
        raise UsageError(f"cannot write the comparison into {out}: {exc.strerror or exc}; pass another --out") from None
    print(md_path.read_text(encoding="utf-8"))
    print(f"written: {out / COMPARISON_MD} and {out / COMPARISON_JSON}")
    return 0
