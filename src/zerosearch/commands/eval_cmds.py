"""``zerosearch eval``, ``zerosearch ask``, ``zerosearch chat`` and ``zerosearch report``.

Wire into the CLI with ``add_eval_parser(sub)``, ``add_ask_parser(sub)``, ``add_chat_parser(sub)`` and
``add_report_parser(sub)``; each sets ``func`` to a handler that takes the parsed arguments and returns
the exit code: 0 ok, 1 the work ran but something failed (search failures in an evaluation, a failed
search in ``ask``), 2 a usage problem (bad option, missing file, unknown model or engine), reported in one
line by :func:`zerosearch.commands.errors.run_command`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence, TextIO

from zerosearch.commands.argtypes import file_name, non_negative_int, nonempty, positive_float, positive_int
from zerosearch.commands.errors import UsageError
from zerosearch.commands.flags import add_setting_flags, settings_from_flags

__all__ = [
    "add_ask_parser",
    "add_chat_parser",
    "add_eval_parser",
    "add_generation_options",
    "add_report_parser",
    "format_answer",
    "run_ask",
    "run_chat",
    "run_eval",
    "run_report",
]

EVAL_EPILOG = """\
methods (--method):
  agent    the trained protocol: think, <search> the engine, read <information>, <answer> (default)
  direct   answer at once, no search               (prompts/eval_direct.txt)
  cot      reason step by step, then answer         (prompts/eval_cot.txt)
  rag      top-k documents for the question, then answer (prompts/eval_rag.txt)
All are greedy. The prediction is the last <answer>...</answer>; a reply without one scores 0.

sampled answers (--samples K [--temperature T]): how much room RL has before training
  besides the greedy answer, K answers per question are sampled at temperature T (default 1.0, the training
  rollouts'; the model's own top_k/top_p never apply) through the same method; each sample has its own seed
  from --seed, so a resumed run draws the same samples. Reported beside the greedy scores:
  pass@K    a question counts if any of its K samples is right by EM (what RL could sharpen toward)
  mean@K    the EM of one sample, averaged (the policy RL starts from, at temperature T)
  pass@k    for k = 2, 4, ... below K, the unbiased estimator of Chen et al. (2021)
  mixed     questions with 0 < right < K: the ones whose rollouts disagree, where a group baseline learns
  Every sample is kept in the records (samples: [...], correct_samples).

engines (--engine, for agent and rag):
{specs}

output (--output-dir, default runs/eval-<model>-<method>-<time>); an existing directory is resumed:
  results.md / results.json     EM, cover-EM, F1, searches, turns, invalid actions, tokens per dataset
  examples/<dataset>.jsonl      every question with its prediction, scores, queries and documents

examples:
  zerosearch eval --model runs/reinforce-20261121-101500/checkpoints/step_200/policy \\
      --data data/nq_test.jsonl,data/hotpotqa_dev.jsonl --engine http://127.0.0.1:8000/retrieve --sample 500
  zerosearch eval --model zerosearch:smollm2-135m-instruct --method rag --engine example \\
      --data src/zerosearch/example_data/hotpotqa_distractor_dev.jsonl --limit 50
  zerosearch eval --model Qwen/Qwen2.5-3B-Instruct --method direct --data nq.jsonl,bamboogle.jsonl \\
      --names NQ,Bamboogle
  zerosearch eval --model runs/my-run/warmup --engine example --sample 300 --samples 8 \\
      --data src/zerosearch/example_data/hotpotqa_distractor_dev.jsonl
"""

ASK_EPILOG = """\
examples:
  zerosearch ask "Who directed Jaws?" --model runs/my-run/checkpoints/step_200/policy --engine example
  zerosearch ask "Who directed Jaws?" --model zerosearch:smollm2-135m-instruct --engine bm25:wiki.jsonl
  zerosearch ask "Who directed Jaws?" --model Qwen/Qwen2.5-3B-Instruct --method rag --engine google
"""

CHAT_EPILOG = """\
Type a question after the "> " prompt; each is answered as `zerosearch ask` does (reasoning, searches,
documents, answer). Leave with exit, quit or end of input (Ctrl-D).

examples:
  zerosearch chat --model runs/my-run/checkpoints/step_200/policy --engine example
  printf 'Who directed Jaws?\\nexit\\n' | zerosearch chat --model zerosearch:tiny --engine example
"""

DOC_CHARS = 160  # documents are abbreviated to this many characters in ask/chat


def _names(value: str) -> list[str]:
    """``--names``: each becomes a file name under the output directory's examples/."""
    return [file_name(part) for part in _split(value)]


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def add_generation_options(parser: argparse.ArgumentParser, batch: bool, model_required: bool = True,
                           method: bool = True) -> None:
    """Options shared by eval, ask, chat and pool (pool: the model is not required, the method is the agent): the
    fields of :class:`~zerosearch.eval_settings.EvalSettings` and the device and dtype of
    :class:`~zerosearch.eval_settings.EvalSpec`, each with its default, check and help from its field."""
    from zerosearch.eval_settings import EvalSettings, EvalSpec

    parser.add_argument("--model", type=nonempty, required=model_required, metavar="M",
                        help="model directory, hub id or built-in (zerosearch:smollm2-135m-instruct, zerosearch:tiny)")
    if method:
        add_setting_flags(parser, EvalSettings, "method")
    add_setting_flags(parser, EvalSettings, "max_turns", "topk", "max_turn_tokens", "max_obs_tokens",
                      "max_context_tokens", "prompt_template", "prompt_style")
    add_setting_flags(parser, EvalSpec, "device", "dtype")
    add_setting_flags(parser, EvalSettings, "autocast", "kv_cache", "kv_reuse", "doc_format")
    if batch:
        add_setting_flags(parser, EvalSettings, "batch_size")


def _settings(args: argparse.Namespace) -> Any:
    """The evaluation settings the flags give (ask and chat: one question at a time)."""
    from zerosearch.eval_settings import EvalSettings

    return settings_from_flags(EvalSettings, args, batch_size=getattr(args, "batch_size", 1)).resolved(
        args.model, args.engine)


# --- zerosearch eval ---------------------------------------------------------------------------------


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch eval``."""
    from zerosearch.search.factory import ENGINE_SPECS

    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model (agent or baseline) on QA files: EM, cover-EM, F1, searches",
        description="Evaluate a search policy, or a baseline with the same model, on one or more QA files "
                    "and write a results table, per-question records and a resumable output directory.",
        epilog=EVAL_EPILOG.format(specs=ENGINE_SPECS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=nonempty, required=True, action="append", metavar="FILE[,FILE...]",
                        help="QA files (FlashRAG jsonl, Search-R1 parquet...); each is one dataset named after "
                             "its file stem, or, for a file whose rows name their data_source (the published "
                             "test parquet), one dataset per source; repeat or comma-separate")
    parser.add_argument("--engine", type=nonempty, metavar="SPEC", help="search engine for agent and rag (forms below)")
    add_generation_options(parser, batch=True)
    parser.add_argument("--names", type=_names, metavar="NAME[,NAME...]",
                        help="dataset names, one per file (default: the file stems)")
    parser.add_argument("--group-by", default="data_source", metavar="FIELD",
                        help="split each file into datasets by this row field (default: data_source, as the "
                             "papers' tables list nq, triviaqa, popqa, hotpotqa, 2wikimultihopqa, musique, "
                             "bamboogle; files without it stay whole); a dotted field such as metadata.type; "
                             "none: never split. The average is over datasets, not questions")
    parser.add_argument("--limit", type=non_negative_int, metavar="N",
                        help="only the first N questions of each dataset (default, or 0: all, as final_eval.limit)")
    parser.add_argument("--sample", type=positive_int, metavar="N",
                        help="a seeded random sample of N questions per dataset, so per source (all if fewer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample and of --samples (default: 0)")
    parser.add_argument("--samples", type=non_negative_int, default=0, metavar="K",
                        help="also sample K answers per question and report pass@K and mean@K beside the greedy "
                             "scores (default: 0, greedy only; see below)")
    parser.add_argument("--temperature", type=positive_float, metavar="T",
                        help="sampling temperature of --samples (default: 1.0, as training samples)")
    parser.add_argument("--output-dir", type=nonempty, metavar="DIR",
                        help="where to write (default: runs/eval-<model>-<method>-<time>); resumed if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.set_defaults(func=run_eval)
    return parser


def _eval_spec(args: argparse.Namespace, data_files: list[str]) -> Any:
    """The evaluation ``zerosearch eval``'s flags describe."""
    from zerosearch.eval_settings import DataSelection, EvalSettings, EvalSpec, SamplingSettings

    data = DataSelection(data_files, limit=args.limit or None, sample=args.sample, seed=args.seed, names=args.names,
                         group_by=None if args.group_by.lower() == "none" else args.group_by)
    sampling = SamplingSettings(samples=args.samples, seed=args.seed,
                                temperature=1.0 if args.temperature is None else args.temperature)
    return EvalSpec(data=data, settings=settings_from_flags(EvalSettings, args), engine=args.engine,
                    sampling=sampling, device=args.device, dtype=args.dtype)


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch eval``: run (or resume) the evaluation and print the table."""
    from zerosearch.evaluate import RESULTS_MD, default_output_dir, evaluate

    if args.temperature is not None and not args.samples:
        raise UsageError("--temperature applies to sampled answers; add --samples K (e.g. --samples 8)")
    data_files = [path for item in args.data for path in _split(item)]
    # named here, not inside evaluate(), so that Ctrl-C can say which directory resumes
    output_dir = args.output_dir or str(default_output_dir(args.model, args.method))
    try:
        results = evaluate(args.model, _eval_spec(args, data_files), output_dir, progress=not args.no_progress)
    except KeyboardInterrupt:
        if os.path.isdir(output_dir):
            print(f"[zerosearch] interrupted: the answers written so far are kept in {output_dir}; the same "
                  f"command with --output-dir {output_dir} answers only the rest", file=sys.stderr)
        raise
    from pathlib import Path

    print((Path(results["output_dir"]) / RESULTS_MD).read_text(encoding="utf-8"))
    print(f"wall time {results['wall_seconds']:.1f} s; results in {results['output_dir']}")
    if results["search_failures"]:
        print(f"warning: {results['search_failures']} search call(s) failed; those questions scored 0 "
              "(status search_failed) and are re-run when you resume with the same --output-dir", file=sys.stderr)
        return 1
    return 0


# --- zerosearch ask / chat ---------------------------------------------------------------------------


def _valid_text(text: str) -> str:
    """Text as the model's tokenizer takes it: bytes that were not UTF-8 (kept by Python as lone surrogates
    in argv and stdin) become U+FFFD instead of failing inside the tokenizer."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _abbreviate(text: str, limit: int = DOC_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _clean(text: str, special_tokens: Sequence[str]) -> str:
    for token in special_tokens:
        text = text.replace(token, "")
    return text.strip()


def format_answer(record: dict[str, Any], special_tokens: Sequence[str] = ()) -> str:
    """A terminal-readable account of one answered question: turns, searches, documents, answer."""
    lines = [f"Question: {record['question']}"]
    number = 0
    for turn in record["turns"]:
        text = _clean(turn["text"], special_tokens)
        if turn["action"] == "retrieve":
            lines.append(f"\n[retrieval] Search: {turn['query']}")
        else:
            number += 1
            note = " (no <search> or <answer> tag)" if turn["action"] == "invalid" else ""
            lines.append(f"\n[turn {number}] {turn['action']}{note}")
            if text:
                lines += ["  " + line for line in text.splitlines()]
            if turn["action"] == "search":
                lines.append(f"Search: {turn['query']}")
        if turn.get("error"):
            lines.append(f"  search failed: {turn['error']}")
        elif turn["action"] in ("search", "retrieve"):
            lines.append(f"Documents ({len(turn['documents'])}):")
            lines += [f"  {i}. {_abbreviate(doc)}" for i, doc in enumerate(turn["documents"], start=1)]
    if record["prediction"] is not None:
        lines.append(f"\nAnswer: {record['prediction']}")
    else:
        lines.append(f"\nAnswer: (none; status {record['status']})")
    return "\n".join(lines)


def _load_answerer(args: argparse.Namespace) -> Any:
    from zerosearch.evaluate import NEEDS_ENGINE, Answerer
    from zerosearch.search.factory import build_engine

    engine = build_engine(args.engine) if args.method in NEEDS_ENGINE else None
    return Answerer(args.model, engine, _settings(args), device=args.device, dtype=args.dtype)


def _answer_and_print(answerer: Any, question: str, out: TextIO) -> bool:
    """Answer ``question``, print the account; False if a search failed."""
    record = answerer.answer([(question, ())])[0]
    print(format_answer(record, answerer.tokenizer.all_special_tokens), file=out, flush=True)
    return record["search_failures"] == 0


def _add_ask_chat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", type=nonempty, default="example", metavar="SPEC",
                        help="search engine (default: example, BM25 over the shipped HotpotQA corpus; "
                             "forms as in `zerosearch search --help`)")
    add_generation_options(parser, batch=False)


def add_ask_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch ask``."""
    parser = subparsers.add_parser(
        "ask", help="answer one question, showing the reasoning, each search and its documents",
        description="Answer one question with a model and a search engine; print every turn, each search, "
                    "the documents it returned (abbreviated) and the answer.",
        epilog=ASK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", help="the question")
    _add_ask_chat_options(parser)
    parser.set_defaults(func=run_ask)
    return parser


def run_ask(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch ask``."""
    answerer = _load_answerer(args)
    return 0 if _answer_and_print(answerer, _valid_text(args.question), sys.stdout) else 1


def add_chat_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch chat``."""
    parser = subparsers.add_parser(
        "chat", help="answer questions typed at a prompt, one after another (model loaded once)",
        description="Read questions from standard input and answer each as `zerosearch ask` does.",
        epilog=CHAT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_ask_chat_options(parser)
    parser.set_defaults(func=run_chat)
    return parser


def run_chat(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch chat``: a read-answer loop until EOF, ``exit`` or ``quit``."""
    answerer = _load_answerer(args)
    print("Ask a question (exit, quit or Ctrl-D to leave).", flush=True)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        question = _valid_text(line).strip()
        if question.lower() in ("exit", "quit"):
            return 0
        if question:
            _answer_and_print(answerer, question, sys.stdout)
            print(flush=True)


# --- zerosearch report -------------------------------------------------------------------------------


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch report``."""
    parser = subparsers.add_parser(
        "report", help="write an HTML report of a training run (plots, sample trajectories, evaluation)",
        description="Write RUN_DIR/report/index.html: training curves, a sample of trajectories and, if "
                    "RUN_DIR/eval holds one, the evaluation table. One self-contained file.",
        epilog="example:\n  zerosearch report runs/reinforce-20261121-101500 && "
               "xdg-open runs/reinforce-20261121-101500/report/index.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory (holds metrics.jsonl)")
    parser.add_argument("--trajectories", type=positive_int, default=3, metavar="N",
                        help="trajectories shown from each of the first, middle and last logged steps (default: 3)")
    parser.set_defaults(func=run_report)
    return parser


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch report``: write the report and print its path."""
    from zerosearch.report import write_report

    print(write_report(args.run_dir, trajectories_per_step=args.trajectories))
    return 0
