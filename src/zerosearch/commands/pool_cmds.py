"""``zerosearch pool``: a difficulty-filtered training pool, written as a QA file that ``train_files=`` reads.

Wire into the CLI with ``add_pool_parser(sub)``; it sets ``func`` to a handler that takes the parsed arguments
and returns the exit code: 0 ok, 1 the pool was written but some searches failed while scoring (those
questions are not candidates), 2 a usage problem (a bad option, a missing file, an evaluation that was not
sampled, an empty pool: the message says what to change; one line, by :func:`zerosearch.commands.errors.run_command`).
See :mod:`zerosearch.pool` for what it computes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zerosearch.commands.argtypes import non_negative_int, nonempty, positive_float, positive_int
from zerosearch.commands.errors import UsageError
from zerosearch.commands.eval_cmds import add_generation_options
from zerosearch.commands.flags import settings_from_flags

__all__ = ["add_pool_parser", "run_pool"]

POOL_EPILOG = """\
what it does: the starting policy answers every candidate question K times (--samples, at --temperature)
through the agent loop against a real engine (a sampled evaluation, as `zerosearch eval --samples K`), and
the questions with --min-correct <= right <= --max-correct of K by EM are kept (default: mixed outcomes,
0 < right < K). A question always or never answered right gives a group baseline (grpo, rloo) nothing to
learn from; these are the ones whose rollouts disagree. The scoring is cached by content (the model's files,
the candidate files' bytes, the settings): asked again, the same pool is read back; an edited file is scored
again.

three ways to give the settings:
  --model M --data FILES [flags]     the flags below (rollout budgets default to eval's: 4 turns, 500
                                     tokens a turn; pass the budgets your run trains with)
  --config CONFIG.yaml [key=value]   a train config: its model (after its warm-up, when warmup.enabled,
                                     trained now or taken from the cache), rollout budgets, temperature,
                                     seed and pool.* section (pool.samples, pool.min_correct, pool.max_correct,
                                     pool.engine, pool.files, pool.limit, pool.warmup_questions): exactly the
                                     pool `zerosearch train CONFIG pool.enabled=true` trains on
  --from-eval EVAL_DIR               an existing `zerosearch eval --samples K` directory (no scoring;
                                     --datasets NAME picks some of its datasets)

the warm-up's questions: a warm-up trains on some training questions with their gold answers. When the
model is a warm-up's directory (or --config warms up), the questions it demonstrated are left out of the
pool by default (--warmup-questions exclude, as pool.warmup_questions), so that RL trains on questions whose
answers the policy never saw as a target; keep keeps them. POOL.json gives the pass rates of the questions
it saw and of the others either way. --exclude-questions leaves out any other questions (a warm-up's
directory, or a QA file: e.g. the questions you evaluate on).

output:
  POOL.jsonl        the kept rows (FlashRAG layout: id, question, golden_answers, every other field of the
                    row such as metadata.supporting_titles, and pool: {correct, samples}); train on them
                    with train_files=POOL.jsonl
  POOL.json         the candidates scored, all wrong / mixed / all right, the pool's size, how many the
                    warm-up saw, the starting mean@K and pass@K on the pool and on all candidates
  POOL-scoring/     the sampled evaluation (zerosearch compare and --from-eval read it)

examples:
  zerosearch pool --config configs/tiny.yaml pool.samples=4 --out pools/tiny.jsonl
  zerosearch pool --config src/zerosearch/configs/default.yaml pool.limit=100 --out pools/hotpot.jsonl
  zerosearch pool --model runs/my-run/checkpoints/step_5/policy --engine example --max-turns 2 \\
      --max-turn-tokens 128 --data src/zerosearch/example_data/hotpotqa_distractor_train.jsonl --out pool.jsonl
  zerosearch pool --from-eval runs/room --datasets train --out pool.jsonl --min-correct 2
"""

# what a scoring flag is called in a train config (--config takes every setting from the config)
CONFIG_KEYS = {
    "model": "model", "data": "pool.files", "engine": "pool.engine", "samples": "pool.samples",
    "temperature": "temperature", "min_correct": "pool.min_correct", "max_correct": "pool.max_correct",
    "warmup_questions": "pool.warmup_questions", "limit": "pool.limit", "batch_size": "pool.batch_size",
    "seed": "seed", "max_turns": "max_turns", "topk": "topk", "max_turn_tokens": "max_turn_tokens",
    "max_obs_tokens": "max_obs_tokens", "max_context_tokens": "max_context_tokens",
    "prompt_template": "prompt_template", "prompt_style": "prompt_style", "doc_format": "doc_format",
    "autocast": "autocast", "kv_cache": "kv_cache", "kv_reuse": "kv_reuse", "device": "device", "dtype": "dtype",
}
# what only scoring needs: refused with --from-eval (the evaluation already holds the answers)
SCORING = tuple(k for k in CONFIG_KEYS if k not in ("data", "min_correct", "max_correct", "warmup_questions"))
# the bounds' config keys as this command spells them, for PoolConfig's messages
FLAG_NAMES = {"pool.samples": "--samples", "pool.min_correct": "--min-correct", "pool.max_correct": "--max-correct",
              "pool.engine": "--engine", "pool.limit": "--limit", "pool.batch_size": "--batch-size"}
FLAG_HINTS = {"candidates": "--data, or --limit 0", "bounds": "--min-correct, --max-correct", "samples": "--samples",
              "keep": "--warmup-questions keep"}


def _sample_count(text: str) -> int:
    """K >= 2: a question's outcomes can be mixed only among two samples or more."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (outcomes are mixed only among several samples), got {value}")
    return value


def _jsonl_path(text: str) -> Path:
    path = Path(nonempty(text)).expanduser()
    if path.suffix != ".jsonl":
        raise argparse.ArgumentTypeError(f"must end in .jsonl (a QA file train_files= reads), got {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give the path of the pool's .jsonl file")
    return path


def add_pool_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch pool``."""
    from zerosearch.config import WARMUP_QUESTIONS
    from zerosearch.search.factory import ENGINE_SPECS

    parser = subparsers.add_parser(
        "pool", help="a training pool of the questions the starting policy answers sometimes right (K samples)",
        description="Score candidate training questions with a policy (K sampled answers each through the agent "
                    "loop) and write those with mixed outcomes as a QA file to train on, with their statistics.",
        epilog=POOL_EPILOG + "\nengines (--engine; real engines only: a simulated one writes from the answer):\n"
        + ENGINE_SPECS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="with --config: overrides of the config, e.g. pool.samples=4 pool.limit=100")
    parser.add_argument("--out", type=_jsonl_path, required=True, metavar="POOL.jsonl",
                        help="the pool's rows; POOL.json (statistics) and POOL-scoring/ are written beside it")
    parser.add_argument("--config", type=nonempty, metavar="CONFIG.yaml",
                        help="take every setting from a train config (and key=value overrides), as a run with "
                             "pool.enabled=true would")
    parser.add_argument("--from-eval", type=nonempty, metavar="EVAL_DIR",
                        help="build the pool from an existing sampled evaluation (zerosearch eval --samples K) "
                             "instead of scoring")
    parser.add_argument("--datasets", type=nonempty, action="append", metavar="NAME[,NAME...]",
                        help="with --from-eval: only these datasets of the evaluation (e.g. train of an evaluation of "
                             "--names train,dev; default: all)")
    parser.add_argument("--data", type=nonempty, action="append", metavar="FILE[,FILE...]",
                        help="candidate QA files (each one dataset); with --from-eval: the files its rows came from, "
                             "for their other fields (default: the files the evaluation recorded)")
    parser.add_argument("--engine", type=nonempty, default="example", metavar="SPEC",
                        help="real search engine to score with (default: example, BM25 over the bundled corpus)")
    parser.add_argument("--samples", type=_sample_count, default=8, metavar="K",
                        help="answers sampled per question (default: 8; at least 2)")
    parser.add_argument("--temperature", type=positive_float, default=1.0, metavar="T",
                        help="sampling temperature (default: 1.0, as training samples)")
    parser.add_argument("--min-correct", type=non_negative_int, default=1, metavar="N",
                        help="keep questions with at least N of K answers right by EM (default: 1)")
    parser.add_argument("--max-correct", type=non_negative_int, default=0, metavar="N",
                        help="... and at most N (default, or 0: K - 1)")
    parser.add_argument("--warmup-questions", choices=WARMUP_QUESTIONS, default="exclude",
                        help="the questions the model's warm-up demonstrated (when the model is a warm-up's "
                             "directory): exclude them from the pool (default) or keep them")
    parser.add_argument("--exclude-questions", type=nonempty, action="append", metavar="FILE_OR_WARMUP_DIR",
                        help="leave these questions out: a QA file, or a warm-up's directory (its demonstrations); "
                             "repeatable")
    parser.add_argument("--limit", type=non_negative_int, default=0, metavar="N",
                        help="score only the first N questions of each file (default, or 0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled answers (default: 0)")
    add_generation_options(parser, batch=True, model_required=False, method=False)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    # every setting parses to None unless given, so that an option given (refused with --config, and with
    # --from-eval where it scores) is told from one left out even at its default value; the defaults apply after
    defaults = {name: parser.get_default(name) for name in CONFIG_KEYS}
    parser.set_defaults(func=run_pool, option_defaults=defaults, **dict.fromkeys(CONFIG_KEYS))
    return parser


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` given on the command line."""
    return [n for n in names if getattr(args, n, None) is not None]


def _flag(name: str) -> str:
    return "--no-kv-reuse" if name == "kv_reuse" else "--" + name.replace("_", "-")


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for item in values or [] for part in item.split(",") if part.strip()]


def _check_modes(args: argparse.Namespace) -> str | None:
    """A usage error of the options' combination, or None."""
    if args.config and args.from_eval:
        return "--config scores with a train config's settings and --from-eval reads an evaluation; give one of them"
    if args.overrides and not args.config:
        return f"key=value overrides ({args.overrides[0]}) apply to --config CONFIG.yaml; give the option flags instead"
    if args.config:
        given = _given(args, tuple(CONFIG_KEYS))
        if given:
            return (f"{_flag(given[0])}: with --config every setting comes from the config; give "
                    f"{CONFIG_KEYS[given[0]]}=... as an override instead")
        return None
    if args.datasets and not args.from_eval:
        return "--datasets chooses among the datasets of --from-eval EVAL_DIR; with --data, name only the files to score"
    if args.from_eval:
        given = _given(args, SCORING)
        if given:
            return (f"{_flag(given[0])}: --from-eval reads the answers an evaluation already sampled; it does not "
                    "score (drop the option, or score anew with --model)")
        return None
    if not args.model or not args.data:
        return "give --model M and --data FILE[,FILE] (or --config CONFIG.yaml, or --from-eval EVAL_DIR)"
    return None


def _bounds(samples: int, min_correct: int, max_correct: int, engine: str = "example"):
    """The bounds, checked by :class:`~zerosearch.config.PoolConfig` (its messages spelled as this command's flags)."""
    from zerosearch.config import ConfigError, PoolConfig
    from zerosearch.pool import Bounds

    try:
        return Bounds.of(PoolConfig(samples=samples, min_correct=min_correct, max_correct=max_correct, engine=engine))
    except ConfigError as exc:
        message = str(exc)
        for key, flag in FLAG_NAMES.items():
            message = message.replace(f"{key}=", f"{flag} ").replace(key, flag)
        raise ConfigError(message) from None


def _excluded(args: argparse.Namespace) -> set[str]:
    from zerosearch.pool import read_questions

    return {q for source in _split(args.exclude_questions) for q in read_questions(source)}


def _paths(out: Path) -> tuple[Path, Path]:
    """POOL.json and POOL-scoring/ beside POOL.jsonl."""
    return out.with_suffix(".json"), out.parent / f"{out.stem}-scoring"


def _from_flags(args: argparse.Namespace, excluded: set[str]):
    from zerosearch.data import load_qa_files
    from zerosearch.eval_settings import DataSelection, EvalSettings, EvalSpec, SamplingSettings
    from zerosearch.pool import build_pool, dataset_names, score_candidates, write_pool
    from zerosearch.warmup import demonstrated_questions

    bounds = _bounds(args.samples, args.min_correct, args.max_correct, args.engine)
    files = _split(args.data)
    rows = load_qa_files(files)  # a missing or bad file is said before a model loads
    info_path, scoring = _paths(args.out)
    spec = EvalSpec(
        data=DataSelection(files, limit=args.limit or None, seed=args.seed, names=dataset_names(files), group_by=None),
        settings=settings_from_flags(EvalSettings, args), engine=args.engine,  # the agent: pool has no --method
        sampling=SamplingSettings(samples=args.samples, temperature=args.temperature, seed=args.seed),
        device=args.device, dtype=args.dtype)
    counts, results = score_candidates(args.model, spec, scoring, progress=not args.no_progress)
    pool = build_pool(counts, rows, bounds, seen=demonstrated_questions(args.model),
                      exclude_seen=args.warmup_questions == "exclude", excluded=excluded)
    info = {"model": args.model, "engine": args.engine, "files": files, "limit": args.limit,
            "temperature": args.temperature, "seed": args.seed, "scoring_dir": str(scoring)}
    write_pool(pool, args.out, info_path, info)
    return pool, results.get("search_failures", 0)


def _from_config(args: argparse.Namespace, excluded: set[str]):
    from zerosearch.config import load_train_config
    from zerosearch.pool import make_pool
    from zerosearch.runtime import configure_threads

    cfg = load_train_config(args.config, args.overrides)
    configure_threads(cfg.num_threads)
    model = cfg.model
    if cfg.warmup.enabled:  # the starting policy of a run is the warmed-up model
        from zerosearch.warmup import run_warmup

        model = str(run_warmup(cfg, progress=not args.no_progress).model_dir)
    info_path, scoring = _paths(args.out)
    pool = make_pool(cfg, model, args.out, info_path, scoring, progress=not args.no_progress, excluded=excluded)
    return pool, 0


def _eval_files(eval_dir: Path, datasets: set[str]) -> list[str]:
    """The files an evaluation recorded (results.json) for ``datasets``, or [] when it did not finish."""
    from zerosearch.eval_files import RESULTS_JSON

    try:
        results = json.loads((eval_dir / RESULTS_JSON).read_text(encoding="utf-8"))
        return list(dict.fromkeys(d["file"] for name, d in results["datasets"].items() if name in datasets))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _from_eval(args: argparse.Namespace, excluded: set[str]):
    from zerosearch.data import load_qa_files
    from zerosearch.eval_files import CONFIG_FILE
    from zerosearch.evaluate import read_sample_counts
    from zerosearch.pool import build_pool, write_pool
    from zerosearch.warmup import demonstrated_questions

    eval_dir = Path(args.from_eval)
    counts = read_sample_counts(eval_dir)  # refuses a directory that is not a sampled evaluation, saying so
    config = json.loads((eval_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    sampling = config["sampling"]
    present = sorted({c.dataset for c in counts})
    chosen = set(_split(args.datasets)) or set(present)
    unknown = sorted(chosen - set(present))
    if unknown:
        raise ValueError(f"--datasets {','.join(unknown)}: {eval_dir} holds {', '.join(present) or 'no scored question'}")
    counts = [c for c in counts if c.dataset in chosen]
    if not counts:
        raise ValueError(f"{eval_dir} holds no scored question yet (resume it with the same zerosearch eval command)")
    bounds = _bounds(int(sampling["samples"]), args.min_correct, args.max_correct)
    files = _split(args.data) or [f for f in _eval_files(eval_dir, chosen) if Path(f).is_file()]
    if not files:
        print(f"[zerosearch] warning: the files {eval_dir} evaluated are not found: the pool's rows keep only id, "
              "question and gold answers (pass --data FILES for their other fields)", file=sys.stderr)
    pool = build_pool(counts, load_qa_files(files) if files else [], bounds, seen=demonstrated_questions(config["model"]),
                      exclude_seen=args.warmup_questions == "exclude", excluded=excluded)
    if files and pool.stats["rows_without_source"]:
        print(f"[zerosearch] warning: {pool.stats['rows_without_source']} kept question(s) are not in "
              f"{', '.join(files)}: their rows keep only id, question and gold answers", file=sys.stderr)
    info = {"model": config["model"], "engine": config.get("engine"), "files": files, "from_eval": str(eval_dir),
            "temperature": sampling["temperature"], "seed": sampling["seed"], "scoring_dir": str(eval_dir)}
    info_path, _ = _paths(args.out)
    write_pool(pool, args.out, info_path, info)
    print(f"[zerosearch] {eval_dir}: {len(counts)} questions with K={bounds.samples} sampled answers each at "
          f"temperature {sampling['temperature']:g}", file=sys.stderr)
    return pool, 0


def run_pool(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch pool``: score (or read) the candidates, write the pool, print what it holds."""
    from zerosearch.pool import EmptyPoolError, empty_pool_message, pool_summary, pool_table

    problem = _check_modes(args)
    if problem:
        raise UsageError(problem)
    for name, default in args.option_defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    build = _from_config if args.config else _from_eval if args.from_eval else _from_flags
    pool, failures = build(args, _excluded(args))
    if not pool.rows:
        raise EmptyPoolError(empty_pool_message(pool.stats, FLAG_HINTS))
    print(pool_summary(pool.stats))
    print()
    print(pool_table(pool.stats))
    info_path, _ = _paths(args.out)
    print(f"written: {args.out} ({len(pool.rows)} row{'s' if len(pool.rows) != 1 else ''}) and {info_path}")
    train = (" ".join(["zerosearch train", args.config, *args.overrides, "pool.enabled=true"]) if args.config
             else f"zerosearch train CONFIG.yaml train_files={args.out}")
    print(f"train on it: {train}")
    if failures:
        print(f"warning: {failures} search call(s) failed while scoring; those questions are not candidates (the same "
              "command scores them again)", file=sys.stderr)
        return 1
    return 0
