"""The ``zerosearch`` command: the parser of every command in :mod:`zerosearch.commands`, and ``main``.

Each command lives in a ``commands/*_cmds.py`` module, which registers its parser and handler
(``add_*_parser``); every handler runs under the one error path, :func:`zerosearch.commands.errors.run_command`.
"""

from __future__ import annotations

import argparse
import os
import sys

from zerosearch.commands import (
    compare_cmds, eval_cmds, pool_cmds, search_cmds, train_cmds, tune_cmds, verl_cmds,
)
from zerosearch.commands.errors import run_command

# in the order `zerosearch --help` lists them
COMMANDS = (
    train_cmds.add_train_parser,
    train_cmds.add_warmup_parser,
    eval_cmds.add_eval_parser,
    compare_cmds.add_compare_parser,
    pool_cmds.add_pool_parser,
    eval_cmds.add_ask_parser,
    eval_cmds.add_chat_parser,
    eval_cmds.add_report_parser,
    search_cmds.add_search_parser,
    search_cmds.add_serve_retriever_parser,
    tune_cmds.add_tune_simulator_parser,
    verl_cmds.add_export_verl_parser,
    train_cmds.add_config_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerosearch",
        description="Teach an LLM to search by RL against a simulated search engine (ZeroSearch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in COMMANDS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse stops filling a ``nargs="*"`` positional at the first option, so the key=value
        # overrides after one (`train cfg.yaml --no-progress seed=2`) arrive here: they are overrides too
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
