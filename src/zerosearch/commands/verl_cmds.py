"""``zerosearch export-verl``: verl's RL parquet from QA files.

Wire into the CLI with ``add_export_verl_parser(sub)``; its handler returns 0 ok, 2 a usage problem
(missing or malformed file, reported in one line by :func:`zerosearch.commands.errors.run_command`; an empty
option is refused by the parser), 141 stdout's reader went away.
"""

from __future__ import annotations

import argparse
import sys

from zerosearch.commands.argtypes import file_name, nonempty
from zerosearch.commands.errors import EXIT_CLOSED_PIPE, write_stdout

__all__ = ["add_export_verl_parser", "run_export_verl"]

EXPORT_VERL_EPILOG = """\
examples:
  zerosearch export-verl --data src/zerosearch/example_data/hotpotqa_distractor_train.jsonl --out data/verl
  zerosearch export-verl --data nq_train.jsonl,hotpotqa_train.jsonl --out data/verl          # merged, as the paper
  zerosearch export-verl --data nq_test.jsonl,hotpotqa_dev.jsonl --out data/verl --split test \\
      --agent-name zerosearch_agent_eval                                                   # validation rows

input: any QA file zerosearch reads (FlashRAG jsonl, Search-R1 / ZeroSearch parquet, the Agentic-RAG variant).
output: DIR/<split>.parquet, one row per question, in the Search-R1 schema verl's RLHFDataset reads:
  prompt         one user message holding the policy prompt (as the published checkpoints expect it)
  reward_model   {style: rule, ground_truth: {target: [gold answers]}}
  extra_info     index, split, id, question, golden_answers
  agent_name     the verl agent loop for the row (see configs/verl/agent_loops.yaml)
Train on it with verl: see configs/verl/README.md.
"""


def add_export_verl_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export-verl", help="write verl's RL parquet from QA files (for training on verl)",
        description="Write QA files as verl RL parquet: the policy prompt as chat messages, the gold answers "
        "for zerosearch's reward function, and the zerosearch agent loop's name.",
        epilog=EXPORT_VERL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # every text option is checked for blanks at parse time: an empty --out would write to the current
    # directory, an empty --agent-name would quietly mean the default, an empty --split is not a file name
    parser.add_argument("--data", required=True, metavar="FILE[,FILE]", type=nonempty,
                        help="QA files, comma-separated")
    parser.add_argument("--out", required=True, metavar="DIR", type=nonempty, help="output directory (created)")
    parser.add_argument("--split", default="train", type=file_name,
                        help="split name: the file's name and extra_info.split (default: train)")
    parser.add_argument("--agent-name", default=None, type=nonempty,
                        help="agent loop for every row (default: zerosearch_agent)")
    parser.set_defaults(func=run_export_verl)
    return parser


def run_export_verl(args: argparse.Namespace) -> int:
    from zerosearch.verl import AGENT_NAME
    from zerosearch.verl.export import export_verl

    agent_name = AGENT_NAME if args.agent_name is None else args.agent_name
    path, n = export_verl(args.data, args.out, split=args.split, agent_name=agent_name)
    print(f"[zerosearch] wrote {n} rows to {path}", file=sys.stderr)
    return 0 if write_stdout(f"{path}\n") else EXIT_CLOSED_PIPE
