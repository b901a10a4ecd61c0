"""The ``zerosearch`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TRAIN_EPILOG = """\
examples:
  zerosearch train                                   # the embedded default (SmolLM2-135M, HotpotQA)
  zerosearch train configs/tiny.yaml                 # a tiny random model, seconds per step on CPU
  zerosearch train configs/tiny.yaml algorithm=grpo total_steps=4 curriculum.end=0.75
  zerosearch train --resume runs/reinforce-20261121-101500

config keys (key=value, dotted for sections; values are YAML):
  model                  path, hub id or built-in (zerosearch:smollm2-135m-instruct, zerosearch:tiny)
  algorithm              reinforce | grpo | ppo
  train_files            QA files (FlashRAG jsonl, Search-R1 parquet, ...), comma-separated or a list
  total_steps            training steps
  prompts_per_step       questions per step; rollouts_per_prompt trajectories each
  max_turns, topk        search turns before the forced answer; documents per search
  lr, kl_coef            policy learning rate; weight of the KL-to-reference loss (0: no reference)
  curriculum.start/end/base   noise probability ramp p(step) (base 4 as in the paper)
  engine.simulator.*     the document-writing LLM: backend (transformers|openai), model, mode, base_url
  lora.enabled, lora.r   LoRA instead of full fine-tuning
  seed, output_dir, run_name
the full list with defaults: zerosearch config
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config
    from zerosearch.trainer import finish_run, resume_run, start_run

    overrides = list(args.overrides)
    config = args.config
    if config and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `zerosearch train lr=1e-5` with no config file
        config = None
    if args.resume:
        if config:
            print("error: --resume takes its config from the run directory; pass only key=value overrides",
                  file=sys.stderr)
            return 2
        trainer = resume_run(args.resume, overrides, progress=not args.no_progress)
        print(f"[zerosearch] resuming {trainer.run_dir} at step {trainer.step + 1}/{trainer.cfg.total_steps}",
              file=sys.stderr)
    else:
        if config is None:
            config = str(EMBEDDED_DEFAULT)
            print(f"[zerosearch] no config file given: using the embedded default {config}", file=sys.stderr)
        cfg = load_train_config(config, overrides)
        trainer = start_run(cfg, progress=not args.no_progress)
        print(f"[zerosearch] run directory: {trainer.run_dir}", file=sys.stderr)
    history = trainer.train()
    written = finish_run(trainer)
    lines = [f"[zerosearch] finished {trainer.run_dir} at step {trainer.step}/{trainer.cfg.total_steps}"]
    if history:
        last = history[-1]
        lines.append(f"  last step: reward {last['reward_mean']:.3f}, F1 {last['f1_mean']:.3f}, "
                     f"searches/rollout {last['searches_per_rollout']:.2f}, noise p {last['noise_probability']:.2f}")
    lines.append(f"  metrics:     {trainer.run_dir / 'metrics.jsonl'}")
    lines.append(f"  checkpoints: {trainer.run_dir / 'checkpoints'}")
    if "eval" in written:
        lines.append(f"  evaluation:  {written['eval'] / 'results.md'}")
    if "report" in written:
        lines.append(f"  report:      {written['report']}")
    print("\n".join(lines), file=sys.stderr)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from zerosearch.config import EMBEDDED_DEFAULT, load_train_config, to_dict

    config = args.config
    if config and "=" in config and not Path(config).exists():
        args.overrides.insert(0, config)
        config = None
    cfg = load_train_config(config or EMBEDDED_DEFAULT, args.overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerosearch",
        description="Teach an LLM to search by RL against a simulated search engine (ZeroSearch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a search policy", epilog=TRAIN_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Train a policy with simulated search (REINFORCE, GRPO or PPO).")
    train.add_argument("config", nargs="?", help="a YAML config (configs/*.yaml); defaults apply to what it omits")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-6 curriculum.end=0.5")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    train.set_defaults(func=_cmd_train)

    from zerosearch.commands.eval_cmds import add_ask_parser, add_chat_parser, add_eval_parser, add_report_parser
    from zerosearch.commands.search_cmds import add_search_parser, add_serve_retriever_parser
    from zerosearch.commands.tune_cmds import add_tune_simulator_parser

    add_eval_parser(sub)
    add_ask_parser(sub)
    add_chat_parser(sub)
    add_report_parser(sub)
    add_search_parser(sub)
    add_serve_retriever_parser(sub)
    add_tune_simulator_parser(sub)

    config = sub.add_parser("config", help="print the resolved config (defaults + file + overrides)",
                            description="Print every config key with its value: the embedded default "
                            "(or CONFIG) with the overrides applied.")
    config.add_argument("config", nargs="?")
    config.add_argument("overrides", nargs="*")
    config.set_defaults(func=_cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    from zerosearch.config import ConfigError
    from zerosearch.data import DataError

    try:
        return args.func(args)
    except (ConfigError, DataError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
