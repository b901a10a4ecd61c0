"""``zerosearch tune-simulator {collect,build,train,evaluate}``: tune a simulation LLM on real search results.

Wire into the CLI with ``add_tune_simulator_parser(sub)``; each stage sets ``func`` to a handler that
takes the parsed arguments and returns the exit code: 0 ok, 2 a usage problem (bad spec, missing file,
an option that does not apply), reported in one line by :func:`zerosearch.commands.errors.run_command`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from functools import partial
from pathlib import Path
from typing import Any

from zerosearch.commands.argtypes import (
    fraction, non_negative_float, non_negative_int, nonempty, positive_float, positive_int,
)
from zerosearch.commands.errors import UsageError
from zerosearch.commands.flags import settings_from_flags

__all__ = ["add_tune_simulator_parser"]

EPILOG = """\
The pipeline (the paper's simulator tuning; see `zerosearch tune-simulator STAGE --help`):
  collect   run a policy against a REAL engine and record every search call and the outcome
  build     label calls useful/noisy, balance, split by question -> chat SFT data (train/val.jsonl)
  train     supervised fine-tuning (loss on the reply only) -> a plain HF model directory
  evaluate  tuned vs untuned simulators vs the real engine on held-apart questions

end-to-end example (HotpotQA, BM25 as the real engine, SmolLM2 as the simulator base):
  zerosearch tune-simulator collect --engine bm25:data/hotpotqa_paragraphs.jsonl \\
      --data data/hotpotqa_train.jsonl --query-source question --out runs/sim/collected.jsonl
  zerosearch tune-simulator build --collected runs/sim/collected.jsonl --out-dir runs/sim/data
  zerosearch tune-simulator train --dataset runs/sim/data --base-model zerosearch:smollm2-135m-instruct \\
      --out-dir runs/sim/model --lora --lr 1e-3 --epochs 3 --batch-size 4
  zerosearch tune-simulator evaluate --engine bm25:data/hotpotqa_paragraphs.jsonl \\
      --data data/hotpotqa_dev.jsonl --limit 50 --out-dir runs/sim/eval \\
      --simulator untuned=prompt:simulated:zerosearch:smollm2-135m-instruct \\
      --simulator tuned=finetuned:simulated:runs/sim/model
  zerosearch train engine.simulator.model=runs/sim/model engine.simulator.mode=finetuned   # RL with it
"""

COLLECT_EPILOG = """\
--query-source policy (the paper): the policy's own searches, each labelled later by whether the
  trajectory answered correctly (cover EM) and whether the documents contain a gold answer.
--query-source question: one search per question, the question as the query, labelled by answer
  containment alone; for a policy too weak to write searches (no --policy needed). With
  --extra-queries FIELD each query listed in that field of the row is searched too, standing in for the
  sub-queries of a capable multi-hop searcher; the same question then gives both useful and noisy calls.
One JSON line per question; rerunning the same command resumes (questions already in --out are skipped).

examples:
  zerosearch tune-simulator collect --policy runs/policy/final --engine http://127.0.0.1:8000/retrieve \\
      --data data/nq_train.jsonl,data/hotpotqa_train.jsonl --limit 20000 --out runs/sim/collected.jsonl
  zerosearch tune-simulator collect --engine example --data data/train.jsonl --query-source question \\
      --out runs/sim/collected.jsonl
  zerosearch tune-simulator collect --engine example --data data/hotpotqa_train.jsonl --query-source question \\
      --extra-queries metadata.supporting_titles --out runs/sim/collected.jsonl
"""

BUILD_EPILOG = """\
labels: useful = correct answer AND a gold answer in the documents; noisy = wrong answer AND none in
them; mixed cases are dropped (question-mode calls: containment alone). Yes/no answers cannot be judged
by containment and are dropped. Then duplicates (same query and documents) are dropped, questions split
into train/val, and each split balanced by downsampling the larger class (--balance upsample instead
repeats the smaller class in train, so no labelled call is thrown away; for small collections).
writes: train.jsonl, val.jsonl ({"messages": [...]}), train_calls.jsonl, val_calls.jsonl, stats.json

example:
  zerosearch tune-simulator build --collected runs/sim/collected.jsonl --out-dir runs/sim/data --val-fraction 0.1
"""

TRAIN_EPILOG = """\
Defaults follow the paper (full fine-tuning, lr 1e-6, batch 2, 1000 steps; for 3B-14B models). Small
models and LoRA want a larger learning rate (e.g. --lora --lr 1e-3). Rerun the same command to resume
from the newest checkpoint in OUT_DIR/checkpoints. The result loads as --engine simulated:OUT_DIR and
in vLLM (`vllm serve OUT_DIR`).

examples:
  zerosearch tune-simulator train --dataset runs/sim/data --base-model Qwen/Qwen2.5-3B-Instruct \\
      --out-dir runs/sim/model --device cuda
  zerosearch tune-simulator train --dataset runs/sim/data --base-model zerosearch:smollm2-135m-instruct \\
      --out-dir runs/sim/model --lora --lr 1e-3 --epochs 3 --batch-size 4 --max-length 512
"""

EVALUATE_EPILOG = """\
--simulator [LABEL=]MODE:simulated:MODEL_OR_URL, repeatable; MODE is prompt (an instruct model,
  few-shot prompt) or finetuned (a tuned simulator, the short prompt). Examples:
    untuned=prompt:simulated:zerosearch:smollm2-135m-instruct
    tuned=finetuned:simulated:runs/sim/model
    14B=finetuned:simulated:http://127.0.0.1:8001/v1
measures: useful-mode sets holding a gold answer; noisy-mode sets parsed and holding none; format
(parsed, exactly --topk documents, words per document, documents within --word-range); a fixed
reader's EM/F1 answering from the documents. The real engine (--engine) is the reference row.
writes: results.json, results.md, samples.jsonl

example:
  zerosearch tune-simulator evaluate --engine example --data data/dev.jsonl --limit 50 --out-dir runs/sim/eval \\
      --simulator untuned=prompt:simulated:zerosearch:smollm2-135m-instruct \\
      --simulator tuned=finetuned:simulated:runs/sim/model
"""


# --- option types (numbers: zerosearch.commands.argtypes) ---------------------------------------------------


def _simulator(value: str) -> Any:
    """``--simulator`` parsed when the command line is, so a bad one is named before any model loads."""
    from zerosearch.simulator_tuning import parse_simulator_spec

    try:
        return parse_simulator_spec(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- Ctrl-C: say what is kept and the command that goes on ----------------------------------------------


def _command_line(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command that reruns this stage with the options given: the one that resumes it after Ctrl-C.

    Options left at their default are left out (rerunning gives them the same value anyway).
    """
    words = parser.prog.split()
    for action in parser._actions:  # argparse has no public list of a parser's options
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value == action.default:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            words.append(flag)
        elif isinstance(value, list) and action.nargs is None:  # append: the flag once per value
            for item in value:
                words += [flag, _spelled(item)]
        elif isinstance(value, list):
            words += [flag, *map(_spelled, value)]
        else:
            words += [flag, _spelled(value)]
    return shlex.join(words)


def _spelled(value: Any) -> str:
    """A parsed option value as it is typed (a ``--simulator`` spec back in its ``LABEL=MODE:SPEC`` form)."""
    if hasattr(value, "spec") and hasattr(value, "mode"):
        return f"{value.label}={value.mode}:{value.spec}" if value.label else f"{value.mode}:{value.spec}"
    return str(value)


def _say_interrupted(kept: str, goes_on: str, command: str) -> None:
    print(f"[zerosearch] interrupted: {kept}; {goes_on}:\n  {command}", file=sys.stderr)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _add_doc_format(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--doc-format", choices=["zerosearch", "search_r1"], default="zerosearch",
                        help=f"how {what}: zerosearch 'Doc 1: text' or search_r1 'Doc 1(Title: \"t\") text' "
                             "(default: zerosearch)")


# --- collect -------------------------------------------------------------------------------------------


def _check_collect_options(args: argparse.Namespace) -> None:
    """The option combinations collect cannot run with, named as typed (before the data or a model loads)."""
    if args.query_source == "policy" and not args.policy:
        raise UsageError("--query-source policy (the default) needs --policy MODEL, the policy whose searches are "
                         "recorded; or use --query-source question (the question as the query, no policy)")
    if args.extra_queries and args.query_source != "question":
        raise UsageError("--extra-queries works with --query-source question only (a policy writes its own "
                         "queries); add --query-source question or drop --extra-queries")


def _run_collect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from dataclasses import asdict

    from zerosearch.config import RolloutSettings
    from zerosearch.prompts import load_template
    from zerosearch.simulator_tuning import collect

    _check_collect_options(args)
    try:
        summary = collect(
            args.policy, args.engine, args.data, args.out, query_source=args.query_source,
            extra_query_field=args.extra_queries, limit=args.limit or None,  # --limit 0: all
            batch_size=args.batch_size, rollout=settings_from_flags(RolloutSettings, args, batch_size=0),
            policy_template=load_template(args.prompt_template) if args.prompt_template else None,
            seed=args.seed, device=args.device, progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        _say_collect_interrupted(Path(args.out), _command_line(parser, args))
        raise
    _print_json(asdict(summary))
    return 0


def _say_collect_interrupted(out: Path, command: str) -> None:
    rows = out.read_bytes().count(b"\n") if out.is_file() else 0  # complete lines: a torn one is redone
    _say_interrupted(f"the {rows} question(s) collected so far are kept in {out}",
                     "the same command skips them and collects the rest", command)


def _add_collect(stages: Any) -> None:
    from zerosearch.config import GREEDY_ROLLOUT

    parser = stages.add_parser(
        "collect", help="record a policy's searches of a real engine (with outcomes)",
        description="Run a policy against a real search engine over QA rows and append one JSON line per "
                    "question: its search calls (query and documents) and whether it answered correctly.",
        epilog=COLLECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--engine", type=nonempty, required=True, metavar="SPEC",
                        help="the real engine: example, bm25:FILE, http://HOST:PORT/retrieve, google, ...")
    parser.add_argument("--data", type=nonempty, required=True, metavar="FILES", help="QA files, comma-separated")
    parser.add_argument("--out", type=nonempty, required=True, metavar="FILE",
                        help="the jsonl to append to (resumable)")
    parser.add_argument("--policy", type=nonempty, metavar="MODEL",
                        help="the policy model (path, hub id, zerosearch:*); needed for --query-source policy")
    parser.add_argument("--query-source", choices=["policy", "question"], default="policy",
                        help="policy: the policy's searches (default); question: the question as the query")
    parser.add_argument("--extra-queries", metavar="FIELD",
                        help="with --query-source question: also search each query in this field of the rows "
                             "(dotted; a string or a list), e.g. metadata.supporting_titles in HotpotQA")
    parser.add_argument("--limit", type=non_negative_int, metavar="N",
                        help="use only the first N questions (default, or 0: all)")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                        help="questions per rollout batch (default: 8)")
    rollout = GREEDY_ROLLOUT  # collect's defaults: the paper's budgets (RolloutSettings'), greedy
    parser.add_argument("--max-turns", type=positive_int, default=rollout.max_turns, metavar="N",
                        help=f"search turns before the forced answer (default: {rollout.max_turns})")
    parser.add_argument("--topk", type=positive_int, default=rollout.topk, metavar="K",
                        help=f"documents per search (default: {rollout.topk})")
    parser.add_argument("--temperature", type=non_negative_float, default=rollout.temperature,
                        help=f"policy sampling temperature (default: {rollout.temperature:g}, greedy)")
    parser.add_argument("--max-turn-tokens", type=positive_int, default=rollout.max_turn_tokens, metavar="N",
                        help=f"tokens per policy turn (default: {rollout.max_turn_tokens})")
    parser.add_argument("--prompt-template", metavar="NAME_OR_FILE",
                        help="the policy prompt template (default: the built-in Search-R1 prompt)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="torch seed for a sampling policy (default: 0)")
    parser.add_argument("--device", default="auto", help="policy device: auto, cpu, cuda (default: auto)")
    _add_doc_format(parser, "the policy is shown documents")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=partial(_run_collect, parser=parser))


# --- build ---------------------------------------------------------------------------------------------


def _run_build(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from zerosearch.simulator_tuning import build

    if args.max_examples is not None and args.max_examples < 2:
        raise UsageError(f"--max-examples must be >= 2 (one per class), got {args.max_examples}")
    stats = build(args.collected, args.out_dir, seed=args.seed, val_fraction=args.val_fraction,
                  max_examples=args.max_examples, max_doc_words=args.max_doc_words,
                  correct_metric=args.correct_metric, balance_by=args.balance)
    _print_json(asdict(stats))
    return 0


def _add_build(stages: Any) -> None:
    parser = stages.add_parser(
        "build", help="label, balance and split collected calls into chat SFT data",
        description="Label collected search calls useful or noisy and write balanced chat-format SFT data "
                    "for the simulator, split by question.",
        epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--collected", type=nonempty, required=True, nargs="+", metavar="FILE",
                        help="collect output(s)")
    parser.add_argument("--out-dir", type=nonempty, required=True, metavar="DIR", help="where the dataset goes")
    parser.add_argument("--val-fraction", type=fraction, default=0.1,
                        help="share of questions held out for validation, in [0, 1) (default: 0.1)")
    parser.add_argument("--max-examples", type=positive_int, metavar="N",
                        help="cap on training examples (half per class; at least 2)")
    parser.add_argument("--max-doc-words", type=non_negative_int, default=40, metavar="N",
                        help="cut documents to this many words, snippet-like; 0 keeps them whole (default: 40)")
    parser.add_argument("--balance", choices=["downsample", "upsample"], default="downsample",
                        help="make the classes equal in train by dropping calls of the larger one (default, as "
                             "the paper) or by repeating calls of the smaller one")
    parser.add_argument("--correct-metric", choices=["cover_em", "em"], default="cover_em",
                        help="what makes a trajectory correct (default: cover_em, the original code's EM)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the split and balancing (default: 0)")
    parser.set_defaults(func=_run_build)


# --- train ---------------------------------------------------------------------------------------------


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from zerosearch.simulator_tuning import train

    try:
        info = train(
            args.dataset, args.base_model, args.out_dir, lora=args.lora, lora_r=args.lora_r,
            lora_alpha=args.lora_alpha, lr=args.lr, max_steps=args.max_steps, epochs=args.epochs,
            batch_size=args.batch_size, grad_accum=args.grad_accum, max_length=args.max_length, seed=args.seed,
            save_steps=args.save_steps, gradient_checkpointing=args.gradient_checkpointing, device=args.device,
            progress=not args.no_progress, bf16=args.bf16,
        )
    except KeyboardInterrupt:
        _say_train_interrupted(Path(args.out_dir), args.save_steps, _command_line(parser, args))
        raise
    _print_json(info)
    print(f"[zerosearch] simulator saved to {args.out_dir}; use it as --engine simulated:{args.out_dir}",
          file=sys.stderr)
    return 0


def _say_train_interrupted(out_dir: Path, save_steps: int, command: str) -> None:
    from zerosearch.checkpoint import latest_checkpoint

    newest = latest_checkpoint(out_dir)  # OUT_DIR/checkpoints/step_N, as train writes them (zerosearch.sft)
    if newest is not None:
        _say_interrupted(f"its newest checkpoint, {newest}, is kept (with the losses up to it)",
                         "the same command resumes from it", command)
    elif save_steps == 0:
        _say_interrupted("nothing is kept (checkpoints are off: --save-steps 0)", "the same command starts over",
                         command)
    else:
        _say_interrupted(f"nothing is kept (no checkpoint yet; one is written every {save_steps} steps)",
                         "the same command starts over", command)


def _add_train(stages: Any) -> None:
    parser = stages.add_parser(
        "train", help="fine-tune a simulator on the built data (loss on the reply only)",
        description="Supervised fine-tuning of an instruct model into a simulation LLM, with the loss on the "
                    "assistant reply only (zerosearch.sft, the same code as the policy's format warm-up); saves a "
                    "plain Hugging Face directory, LoRA merged.",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", type=nonempty, required=True, metavar="DIR", help="build's output directory")
    parser.add_argument("--base-model", type=nonempty, required=True, metavar="MODEL",
                        help="an instruct model: path, hub id or zerosearch:smollm2-135m-instruct")
    parser.add_argument("--out-dir", type=nonempty, required=True, metavar="DIR", help="where the tuned model goes")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=positive_int, metavar="N",
                        help="optimizer steps (default: 1000, the paper's)")
    length.add_argument("--epochs", type=positive_float, help="train for this many epochs instead of --max-steps")
    parser.add_argument("--lr", type=positive_float, default=1e-6, help="learning rate (default: 1e-6, the paper's)")
    parser.add_argument("--batch-size", type=positive_int, default=2, metavar="N",
                        help="examples per device step (default: 2)")
    parser.add_argument("--grad-accum", type=positive_int, default=1, metavar="N",
                        help="gradient accumulation steps (default: 1)")
    parser.add_argument("--max-length", type=positive_int, default=1024, metavar="N",
                        help="longest example in tokens; longer ones are left out (default: 1024)")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (merged into the output)")
    parser.add_argument("--lora-r", type=positive_int, default=16, help="LoRA rank (default: 16)")
    parser.add_argument("--lora-alpha", type=positive_int, default=32, help="LoRA alpha (default: 32)")
    parser.add_argument("--save-steps", type=non_negative_int, default=200, metavar="N",
                        help="checkpoint every N steps for resuming; 0 = never (default: 200)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 mixed precision (default: on for a CUDA GPU that supports it; --bf16 also "
                             "speeds up CPUs with avx512_bf16 or AMX, 1.3x per step on a 2-core EPYC)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=partial(_run_train, parser=parser))


# --- evaluate ------------------------------------------------------------------------------------------


def _check_evaluate_options(args: argparse.Namespace) -> None:
    if args.data is None and args.calls is None:
        raise UsageError("give the items to evaluate: --data FILES (held-apart questions, each the query) or "
                         "--calls FILE (build's val_calls.jsonl, the collected queries)")
    if args.data is not None and args.calls is not None:
        raise UsageError("give --data (questions as queries) or --calls (build's val_calls.jsonl), not both")
    low, high = args.word_range
    if low > high:
        raise UsageError(f"--word-range LOW HIGH: LOW must not exceed HIGH, got {low} {high}")


def _run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from zerosearch.simulator_tuning import evaluate, results_table

    _check_evaluate_options(args)
    out_dir = Path(args.out_dir)
    existed = out_dir.exists()
    try:
        results = evaluate(
            args.simulator, args.engine, out_dir, qa_files=args.data,
            calls_file=args.calls, limit=args.limit or None, topk=args.topk,  # --limit 0: all
            reader_model=args.reader, max_tokens=args.max_tokens, temperature=args.temperature,
            batch_size=args.batch_size, word_range=(args.word_range[0], args.word_range[1]), seed=args.seed,
            device=args.device, doc_format=args.doc_format, progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        # evaluate() removes an --out-dir it made and left empty; one that was there keeps what it held
        kept = (f"nothing new is kept ({out_dir} holds what it held before)" if existed
                else "nothing is kept (evaluate writes its results only at the end)")
        _say_interrupted(kept, "the same command starts over", _command_line(parser, args))
        raise
    print(results_table(results))
    return 0


def _add_evaluate(stages: Any) -> None:
    parser = stages.add_parser(
        "evaluate", help="compare simulators with each other and with a real engine",
        description="Evaluate simulators in useful and noisy mode on held-apart questions: answer "
                    "containment, output format and a fixed reader's EM/F1, with a real engine as reference.",
        epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--simulator", action="append", required=True, type=_simulator, metavar="[LABEL=]MODE:SPEC",
                        help="a simulator to evaluate (repeatable)")
    parser.add_argument("--engine", type=nonempty, metavar="SPEC", help="the real engine, the reference row (optional)")
    parser.add_argument("--data", type=nonempty, metavar="FILES", help="held-apart QA files; the question is the query")
    parser.add_argument("--calls", type=nonempty, metavar="FILE",
                        help="build's val_calls.jsonl: collected queries instead")
    parser.add_argument("--out-dir", type=nonempty, required=True, metavar="DIR", help="where results go")
    parser.add_argument("--limit", type=non_negative_int, default=50, metavar="N",
                        help="evaluate the first N items; 0 = all (default: 50)")
    _add_doc_format(parser, "the reader is shown documents (as the policy you train will see them)")
    parser.add_argument("--topk", type=positive_int, default=5, metavar="K", help="documents per search (default: 5)")
    parser.add_argument("--reader", metavar="MODEL",
                        help="the fixed reader (default: the first in-process simulator's base model)")
    parser.add_argument("--max-tokens", type=positive_int, default=600, metavar="N",
                        help="simulator tokens per call (default: 600)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0,
                        help="simulator temperature (default: 0, greedy)")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                        help="requests per generate call (default: 8)")
    parser.add_argument("--word-range", type=non_negative_int, nargs=2, default=[15, 60], metavar=("LOW", "HIGH"),
                        help="words a document should have, for the format figures (default: 15 60)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of in-process simulators (default: 0)")
    parser.add_argument("--device", default="cpu", help="device of in-process models (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=partial(_run_evaluate, parser=parser))


# --- the group -----------------------------------------------------------------------------------------


def add_tune_simulator_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch tune-simulator`` and its four stages."""
    parser = subparsers.add_parser(
        "tune-simulator",
        help="tune a simulation LLM on real search results (collect, build, train, evaluate)",
        description="Fine-tune a simulation LLM on documents a real engine returned, labelled useful or "
                    "noisy by the searching policy's outcome (the paper's simulation tuning).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stages = parser.add_subparsers(dest="stage", required=True, metavar="{collect,build,train,evaluate}")
    _add_collect(stages)
    _add_build(stages)
    _add_train(stages)
    _add_evaluate(stages)
    return parser
