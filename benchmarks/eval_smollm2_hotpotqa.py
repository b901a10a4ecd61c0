"""Evaluation of SmolLM2-135M-Instruct on HotpotQA (distractor dev) with BM25: rag and agent, with wall time.

Runs ``zerosearch eval`` (the same code path, in-process) once per method, greedy, on the dev
questions with BM25 over the distractor paragraphs, and prints each results table, the wall time and
the seconds per question, then one comparison table. The untrained 135M model is a floor, not a
result: it shows the evaluation machinery end to end and what a search policy has to beat.

    python benchmarks/eval_smollm2_hotpotqa.py --limit 50
    python benchmarks/eval_smollm2_hotpotqa.py --methods rag --limit 300 --out-dir runs/bench-eval

Output directories are resumable: rerunning with the same ``--out-dir`` only answers what is missing
(and then the wall time covers only that part). The data default to ``../shared/data`` beside the
repository.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import existing_file, non_negative_int, positive_int  # noqa: E402

from zerosearch.evaluate import (
    EXAMPLES_DIR, RESULTS_MD, DataSelection, EvalSettings, EvalSpec, evaluate, read_examples,
)
from zerosearch.rewards import answer_metrics

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = "zerosearch:smollm2-135m-instruct"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=existing_file, default=DATA / "qa" / "hotpotqa_distractor_dev.jsonl",
                        help="QA jsonl (default: the 300 HotpotQA distractor dev questions)")
    parser.add_argument("--corpus", type=existing_file,
                        default=DATA / "corpus" / "hotpotqa_distractor_paragraphs.jsonl",
                        help="corpus for BM25 (engine bm25:CORPUS)")
    parser.add_argument("--methods", nargs="+", default=["rag", "agent"], choices=["agent", "direct", "cot", "rag"])
    parser.add_argument("--limit", type=positive_int, default=None, help="first N questions (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="questions per generation batch")
    parser.add_argument("--max-turns", type=non_negative_int, default=4,
                        help="agent: searches before the forced answer")
    parser.add_argument("--max-turn-tokens", type=positive_int, default=500, help="tokens per turn at most")
    parser.add_argument("--topk", type=positive_int, default=3, help="documents per search")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's; on a shared CPU 1 can be many times faster)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs") / "bench-eval-smollm2-hotpotqa",
                        help="one sub-directory per method is written here")
    args = parser.parse_args()
    # the defaults are not passed through type=, and a file that exists may still not be QA rows or a corpus
    from zerosearch.data import load_qa_file
    from zerosearch.search.corpus import iter_corpus

    for option, path in (("--data", args.data), ("--corpus", args.corpus)):
        if not Path(path).is_file():
            parser.error(f"argument {option}: {path} does not exist: give the path of an existing file")
    try:
        load_qa_file(args.data)
    except ValueError as exc:  # DataError: names the file, row and field
        parser.error(f"argument --data: {exc}")
    try:
        next(iter_corpus(args.corpus), None)  # the first row's layout
    except ValueError as exc:  # CorpusError
        parser.error(f"argument --corpus: {exc}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f"--out-dir {args.out_dir} is a file: give a directory (it is created if missing)")
    return args


def reply_as_answer(directory: Path) -> dict[str, float]:
    """Scores if a reply without ``<answer>`` counted as its whole last turn (chat tokens removed).

    Not what ``zerosearch eval`` reports (there a missing answer scores 0 for every method): an
    untrained 135M model rarely writes the tags, so this shows how much of the floor is format.
    """
    records = list(read_examples(directory / EXAMPLES_DIR / "hotpotqa.jsonl").values())
    totals = {"em": 0.0, "cover_em": 0.0, "f1": 0.0}
    for r in records:
        last = [t for t in r["turns"] if t["action"] != "retrieve"][-1:]
        reply = re.sub(r"<\|[^|]*\|>", "", last[0]["text"]).strip() if last else None
        scores = answer_metrics(r["prediction"] if r["prediction"] is not None else reply, r["golden_answers"])
        for key in totals:
            totals[key] += scores[key] / len(records)
    return totals


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = f"bm25:{args.corpus}"
    print(f"model {MODEL}, engine {engine}, data {args.data}, limit {args.limit or 'all'}, "
          f"batch {args.batch_size}, max turns {args.max_turns}, max turn tokens {args.max_turn_tokens}, "
          f"top-k {args.topk}; {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    rows = []
    for method in args.methods:
        start = time.perf_counter()
        spec = EvalSpec(DataSelection([str(args.data)], limit=args.limit, names=["hotpotqa"]),
                        EvalSettings(method=method, batch_size=args.batch_size, max_turns=args.max_turns,
                                     topk=args.topk, max_turn_tokens=args.max_turn_tokens), engine, device="cpu")
        results = evaluate(MODEL, spec, args.out_dir / method)
        wall = time.perf_counter() - start
        print(f"\n## {method}\n")
        print((args.out_dir / method / RESULTS_MD).read_text(encoding="utf-8"))
        summary = results["datasets"]["hotpotqa"]
        print(f"wall time {wall:.1f} s for this invocation; {summary['seconds_per_question']:.2f} s per question "
              "(generation and search, excluding model loading)")
        rows.append((method, summary, wall, reply_as_answer(args.out_dir / method)))
    print("\n| method | questions | EM | cover-EM | F1 | answered | searches/q | tokens/q | s/question | wall s "
          "| EM / cover-EM / F1 if the reply counted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method, s, wall, lenient in rows:
        print(f"| {method} | {s['n']} | {100 * s['em']:.2f} | {100 * s['cover_em']:.2f} | {100 * s['f1']:.2f} | "
              f"{100 * s['answered_rate']:.1f} | {s['searches_per_question']:.2f} | {s['response_tokens']:.0f} | "
              f"{s['seconds_per_question']:.2f} | {wall:.0f} | {100 * lenient['em']:.2f} / "
              f"{100 * lenient['cover_em']:.2f} / {100 * lenient['f1']:.2f} |")
    (args.out_dir / "benchmark.json").write_text(json.dumps(
        [{"method": m, "wall_seconds": w, **s, "reply_as_answer": lenient} for m, s, w, lenient in rows],
        indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
