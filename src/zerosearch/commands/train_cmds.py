"""``zerosearch train``, ``zerosearch warmup`` and ``zerosearch config``: a training run from a train config.

Wire into the CLI with ``add_train_parser(sub)``, ``add_warmup_parser(sub)`` and ``add_config_parser(sub)``;
each sets ``func`` to a handler that takes the parsed arguments and returns the exit code: 0 ok, 2 a usage
problem (a config file or key that does not load, --resume with a config file), reported in one line by
:func:`zerosearch.commands.errors.run_command`; 130 after Ctrl-C, once ``train`` has said how to resume.
Each takes a train config and ``key=value`` overrides; the modules that load it (torch among them) are imported
inside the handlers, so that ``zerosearch --help`` and the other commands start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from zerosearch.commands.errors import UsageError

__all__ = ["add_config_parser", "add_train_parser", "add_warmup_parser", "run_config", "run_train", "run_warmup"]

TRAIN_EPILOG = """\
examples:
  zerosearch train                                   # the embedded default (SmolLM2-135M, HotpotQA)
  zerosearch train configs/tiny.yaml                 # a tiny random model, seconds per step on CPU
  zerosearch train configs/tiny.yaml algorithm=grpo total_steps=4 curriculum.end=0.75
  zerosearch train --resume runs/reinforce-20261121-101500
  zerosearch train --resume runs/reinforce-20261121-101500 total_steps=400   # train it longer
  (a resume may change total_steps, saving, logging, final_eval, speed settings and the engine's
  address; lr, algorithm, model, reward... were used by the steps so far and stay)

config keys (key=value, dotted for sections; values are YAML):
  model                  path, hub id or built-in (zerosearch:smollm2-135m-instruct, zerosearch:tiny)
  algorithm              reinforce | grpo | rloo (leave-one-out baseline) | ppo
  grpo_singleton         grpo: a prompt left with one rollout gets its raw reward (verl) or 0 (zero)
  grpo_scale_by_std      grpo: divide by the group's std (true) or only centre (false: Dr. GRPO)
  drop_uniform_groups    grpo/rloo: drop groups whose rewards are all equal (no gradient) and draw more
                         prompts, in at most max_sampling_rounds rounds a step (DAPO's dynamic sampling)
  train_files            QA files (FlashRAG jsonl, Search-R1 parquet, ...), comma-separated or a list
  pool.enabled           train only on the questions the starting policy answers sometimes right: the
                         candidates (pool.files, default train_files) are scored with pool.samples answers
                         each (pool.min_correct/max_correct; pool.engine; cached); see `zerosearch pool --help`
  total_steps            training steps
  prompts_per_step       questions per step; rollouts_per_prompt trajectories each
  max_turns, topk        search turns before the forced answer; documents per search
  lr, kl_coef            policy learning rate; weight of the KL-to-reference loss (0: no reference)
  curriculum.start/end/base   noise probability ramp p(step) (base 4 as in the paper)
  engine.simulator.*     the document-writing LLM: backend (transformers|openai), model, mode, base_url
  engine.kind, engine.spec   simulated (default, the curriculum applies) | real: train against engine.spec,
                         any engine (example, bm25:FILE, dense:FILE, http://HOST:PORT, google), as Search-R1
                         does; the curriculum does not apply (noise_probability is null in the metrics)
  lora.enabled, lora.r   LoRA instead of full fine-tuning
  warmup.enabled         a supervised format warm-up before RL (cached; see `zerosearch warmup --help`)
  format_reward          weight of a bonus for a well-formed trajectory (0 = the paper's reward)
  final_eval.baselines   also evaluate the untrained and warmed-up models: a before/after table
  autocast, kv_cache     bf16 mixed precision (auto: on CPUs with bf16 instructions); static KV cache
  kv_reuse               a later turn continues from the turn before's KV cache (same rollouts, on by default)
  micro_batch_tokens, shared_prefix   padded tokens per forward pass; a prompt's rollouts share its
                         forward pass (same gradients, less work; on by default)
  doc_format             how documents are shown: zerosearch (the original's "Doc 1: text", default) |
                         search_r1 ("Doc 1(Title: \"t\") text"); saved with the policy, eval uses it
  seed, output_dir, run_name
the full list with defaults: zerosearch config
"""

WARMUP_EPILOG = """\
examples:
  zerosearch warmup                                  # the embedded default's warm-up (SmolLM2-135M, HotpotQA)
  zerosearch warmup configs/tiny.yaml warmup.max_examples=16 warmup.epochs=1
  zerosearch warmup train_files=my_train.jsonl warmup.engine=bm25:my_corpus.jsonl warmup.subquery_field=

what it does: builds one demonstration per training row (the question as the first search, a sub-query
from warmup.subquery_field as the second where the first missed the answer, then the gold answer) with
the real documents in <information> (loss_mask 0), and fine-tunes `model` on the policy's tokens only.
The result is cached by its settings: `zerosearch train` with warmup.enabled=true reuses it.

warm-up keys (key=value; the run's model, train_files, topk, max_turns, max_obs_tokens, seed apply too):
  warmup.engine            real engine for the documents (example, bm25:FILE, dense:FILE, http://...)
  warmup.subquery_field    row field listing sub-queries (default metadata.supporting_titles; empty: none)
  warmup.max_examples      demonstrations to train on (0 = one per training row)
  warmup.max_doc_words     documents cut to a snippet of this many words around the answer (0 = whole)
  warmup.require_grounded  leave out rows whose shown documents never contain the answer
  warmup.epochs, warmup.lr, warmup.batch_size, warmup.lora, warmup.lora_r, warmup.max_length
"""


def _add_config_arguments(parser: argparse.ArgumentParser, config_help: str, overrides_help: str) -> None:
    """The positional CONFIG and key=value overrides every command of this module takes."""
    parser.add_argument("config", nargs="?", help=config_help)
    parser.add_argument("overrides", nargs="*", help=overrides_help)


def _config_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The config file and the overrides: a first word with "=" that names no file is an override, so that
    ``zerosearch train lr=1e-5`` (no config file) works."""
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not Path(config).exists():
        overrides.insert(0, config)
        config = None
    return config, overrides


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch train``."""
    parser = subparsers.add_parser("train", help="train a search policy", epilog=TRAIN_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   description="Train a policy with simulated search (REINFORCE, GRPO or PPO).")
    _add_config_arguments(parser, "a YAML config (configs/*.yaml); defaults apply to what it omits",
                          "key=value overrides, e.g. lr=1e-6 curriculum.end=0.5")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.set_defaults(func=run_train)
    return parser


def add_warmup_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch warmup``."""
    parser = subparsers.add_parser(
        "warmup", help="teach the policy the search protocol by SFT before RL (cached)",
        epilog=WARMUP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The format warm-up (cold start) of a train config: supervised training on demonstration "
                    "trajectories built with a real search engine, for models too small to follow the protocol "
                    "from the prompt. Prints the warmed-up model's directory.")
    _add_config_arguments(parser, "a train YAML config (default: the embedded default)",
                          "key=value overrides, e.g. warmup.max_examples=32")
    parser.add_argument("--force", action="store_true", help="train again even if the cache holds this warm-up")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.set_defaults(func=run_warmup)
    return parser


def add_config_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch config``."""
    parser = subparsers.add_parser("config", help="print the resolved config (defaults + file + overrides)",
                                   description="Print every config key with its value: the embedded default "
                                               "(or CONFIG) with the overrides applied.")
    _add_config_arguments(parser, "a YAML config, e.g. configs/tiny.yaml or a run's config.yaml (default: the "
                                  "embedded default)",
                          "key=value overrides, e.g. lr=1e-6 engine.simulator.mode=finetuned")
    parser.set_defaults(func=run_config)
    return parser


# --- handlers --------------------------------------------------------------------------------------


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch train``: start (or resume) the run, train, evaluate, and sum it up on stderr."""
    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config
    from zerosearch.trainer import finish_run, resume_run, start_run

    started = time.perf_counter()
    config, overrides = _config_and_overrides(args)
    if args.resume:
        if config:
            raise UsageError("--resume takes its config from the run directory; pass only key=value overrides")
        trainer = resume_run(args.resume, overrides, progress=not args.no_progress)
        for key, (old, new) in trainer.resume_changes.items():
            print(f"[zerosearch] changed on resume: {key} {old!r} -> {new!r} (saved in config.yaml)", file=sys.stderr)
        if trainer.step >= trainer.cfg.total_steps:  # nothing left: say so rather than "at step 7/6"
            print(f"[zerosearch] {trainer.run_dir} already finished its {trainer.cfg.total_steps} steps; raise "
                  f"total_steps (e.g. --resume {args.resume} total_steps={trainer.cfg.total_steps + 10}) to go on",
                  file=sys.stderr)
        else:
            print(f"[zerosearch] resuming {trainer.run_dir} at step {trainer.step + 1}/{trainer.cfg.total_steps}",
                  file=sys.stderr)
    else:
        if config is None:
            config = str(EMBEDDED_DEFAULT)
            print(f"[zerosearch] no config file given: using the embedded default {config}", file=sys.stderr)
        cfg = load_train_config(config, overrides)
        trainer = start_run(cfg, progress=not args.no_progress)
        print(f"[zerosearch] run directory: {trainer.run_dir}", file=sys.stderr)
    setup_seconds = time.perf_counter() - started
    try:
        history = trainer.train()
        train_seconds = time.perf_counter() - started - setup_seconds
        written = finish_run(trainer)
    except KeyboardInterrupt:
        _say_how_to_resume(trainer.run_dir)
        raise
    finish_seconds = time.perf_counter() - started - setup_seconds - train_seconds
    lines = [f"[zerosearch] finished {trainer.run_dir} at step {trainer.step}/{trainer.cfg.total_steps}"]
    if history:
        last = history[-1]
        p = last["noise_probability"]
        lines.append(f"  last step: reward {last['reward_mean']:.3f}, F1 {last['f1_mean']:.3f}, "
                     f"searches/rollout {last['searches_per_rollout']:.2f}, "
                     + ("real engine (no curriculum)" if p is None else f"noise p {p:.2f}"))
    comparison = trainer.run_dir / "eval" / "comparison.md"
    if "eval" in written and comparison.exists():
        lines += ["", comparison.read_text(encoding="utf-8").rstrip(), ""]
    pool = _pool_line(trainer.run_dir) if trainer.cfg.pool.enabled else None
    if pool:
        lines.append(f"  {pool}")
    warmup = ("cached" if trainer.warmup_cached else f"{trainer.warmup_seconds:.0f} s") if trainer.cfg.warmup.enabled \
        else "off"
    scoring = f", training pool {trainer.pool_seconds:.0f} s" if trainer.cfg.pool.enabled else ""
    lines.append(f"  time:        {time.perf_counter() - started:.0f} s = warm-up {warmup}{scoring}, other setup "
                 f"{setup_seconds - trainer.warmup_seconds - trainer.pool_seconds:.0f} s, RL {train_seconds:.0f} s, "
                 f"evaluation and report {finish_seconds:.0f} s")
    lines.append(f"  metrics:     {trainer.run_dir / 'metrics.jsonl'}")
    lines.append(f"  checkpoints: {trainer.run_dir / 'checkpoints'}")
    if "eval" in written:
        lines.append(f"  evaluation:  {written['eval'] / 'results.md'}")
    if "report" in written:
        lines.append(f"  report:      {written['report']}")
    print("\n".join(lines), file=sys.stderr)
    return 0


def _pool_line(run_dir: Path) -> str | None:
    """The run's training pool in one line (from its pool.json), or None when it has none."""
    from zerosearch.pool import POOL_INFO, pool_summary

    path = run_dir / POOL_INFO
    if not path.is_file():
        return None
    return f"{pool_summary(json.loads(path.read_text(encoding='utf-8')))} ({path})"


def _say_how_to_resume(run_dir: Path) -> None:
    """After Ctrl-C in a run: what is kept and the command that goes on from it."""
    from zerosearch.checkpoint import latest_checkpoint

    newest = latest_checkpoint(run_dir)
    kept = f"its newest checkpoint is {newest.name}" if newest else "it has no checkpoint yet (it restarts at step 1)"
    print(f"[zerosearch] interrupted: {run_dir} is kept and {kept}; go on with\n"
          f"  zerosearch train --resume {run_dir}", file=sys.stderr)


def run_warmup(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch warmup``: warm up (or take from the cache) and print the model's directory."""
    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config
    from zerosearch.runtime import configure_threads
    from zerosearch.warmup import run_warmup as warm_up

    config, overrides = _config_and_overrides(args)
    cfg = load_train_config(config or EMBEDDED_DEFAULT, overrides)
    configure_threads(cfg.num_threads)
    result = warm_up(cfg, force=args.force, progress=not args.no_progress)
    info = result.info
    demos = info["demonstrations"]
    curve = info["sft"].get("loss_curve") or []
    loss = f"loss {curve[0][1]:.3f} -> {curve[-1][1]:.3f}, " if curve else ""
    print(f"[zerosearch] warm-up {'taken from the cache' if result.cached else 'trained'}: "
          f"{demos['one_search'] + demos['two_searches']} demonstrations ({demos['one_search']} with one search, "
          f"{demos['two_searches']} with two) from {demos['rows']} training rows; {info['sft']['steps']} steps, "
          f"{loss}{info['seconds']:.0f} s", file=sys.stderr)
    # the same config and overrides (the warm-up's own aside), so that the run is the one warmed up for
    words = ["zerosearch train", *([config] if config else []),
             *[o for o in overrides if not o.startswith(("warmup.", "model="))],
             f"model={result.model_dir}", "warmup.enabled=false"]
    if cfg.engine.simulator.model == "policy":  # the documents stay written by the model before its warm-up
        words.append(f"engine.simulator.model={cfg.model}")
    print(f"  train from it: {' '.join(words)}", file=sys.stderr)
    print(result.model_dir)
    return 0


def run_config(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch config``: print the resolved config as YAML."""
    import yaml

    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config, to_dict

    config, overrides = _config_and_overrides(args)
    cfg = load_train_config(config or EMBEDDED_DEFAULT, overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


