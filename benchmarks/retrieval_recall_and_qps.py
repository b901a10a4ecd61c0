"""Recall and speed of the local retrieval engines (BM25 and dense) on the HotpotQA distractor corpus.

For each index kind: build time over the corpus, recall@k on the dev questions (the share of
questions with at least one, and with all, of their supporting paragraphs, matched by title, in the
top k; the json also lists the indices of the questions missed), and queries/second for batched
retrieval at batch sizes 1 and 32. The dense build time includes loading the encoder. Prints a
markdown table and writes the figures as json.

    python benchmarks/retrieval_recall_and_qps.py --out retrieval.json

The data default to ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

from zerosearch.search.base import Document
from zerosearch.search.corpus import iter_corpus, load_corpus
from zerosearch.search.local_index import DEFAULT_ENCODER, BM25Index, DenseIndex, LocalIndex

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_args.py
from _args import existing_file, positive_int, read_jsonl_with_fields  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH_SIZES = (1, 32)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=existing_file,
                        default=DATA / "corpus" / "hotpotqa_distractor_paragraphs.jsonl",
                        help="corpus jsonl (Search-R1 layout)")
    parser.add_argument("--questions", type=existing_file, default=DATA / "qa" / "hotpotqa_distractor_dev.jsonl",
                        help="questions jsonl whose rows have question and metadata.supporting_titles")
    parser.add_argument("--kinds", nargs="+", choices=["bm25", "dense"], default=["bm25", "dense"],
                        help="which indexes to measure")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER,
                        help="dense encoder: a sentence-transformers model name or directory")
    parser.add_argument("--encode-batch-size", type=positive_int, default=64, help="texts per encoder call")
    parser.add_argument("--topk", type=positive_int, default=5, help="k of recall@k")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("retrieval_recall_and_qps.json"),
                        help="where to write the figures as json")
    args = parser.parse_args()
    # checked before any index is built (the defaults are not passed through type=)
    for option, path in (("--corpus", args.corpus), ("--questions", args.questions)):
        if not Path(path).is_file():
            parser.error(f"argument {option}: {path} does not exist: give the path of an existing file")
    try:
        next(iter_corpus(args.corpus), None)  # the first row's layout
    except ValueError as exc:  # CorpusError: names the file, line and field
        parser.error(f"argument --corpus: {exc}")
    try:
        args.question_rows = load_questions(args.questions)
    except ValueError as exc:
        parser.error(f"argument --questions: {exc}")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a directory: give a file name for the json")
    return args


def load_questions(path: Path) -> tuple[list[str], list[set[str]]]:
    """Questions and, for each, the titles of its supporting paragraphs.

    Raises:
        ValueError: a row without ``question`` or ``metadata.supporting_titles`` (naming the file and line),
            or no rows.
    """
    rows = read_jsonl_with_fields(path, ["question", "metadata.supporting_titles"])
    return [r["question"] for r in rows], [set(r["metadata"]["supporting_titles"]) for r in rows]


def recall(found: list[list[Document]], gold: list[set[str]]) -> dict[str, Any]:
    """Share of questions with any / all of their supporting titles retrieved, and the misses' indices."""
    titles = [{doc.title for doc in docs} for docs in found]
    missed_any = [i for i, (t, g) in enumerate(zip(titles, gold)) if not t & g]
    missed_all = [i for i, (t, g) in enumerate(zip(titles, gold)) if not g <= t]
    return {
        "recall_any": 1 - len(missed_any) / len(gold),
        "recall_all": 1 - len(missed_all) / len(gold),
        "missed_any": missed_any,
        "missed_all": missed_all,
    }


def queries_per_second(index: LocalIndex, queries: list[str], batch_size: int, topk: int) -> float:
    """Queries/second when ``queries`` go to ``retrieve`` ``batch_size`` at a time (after one warm-up)."""
    index.retrieve(queries[:batch_size], topk)
    start = time.perf_counter()
    for i in range(0, len(queries), batch_size):
        index.retrieve(queries[i:i + batch_size], topk)
    return len(queries) / (time.perf_counter() - start)


def measure(kind: str, build: Callable[[], LocalIndex], questions: list[str], gold: list[set[str]],
            topk: int) -> dict[str, Any]:
    """Build one index and measure it."""
    start = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - start
    figures = {"kind": kind, "build_s": build_s, **recall(index.retrieve(questions, topk), gold)}
    for batch_size in BATCH_SIZES:
        figures[f"qps_batch{batch_size}"] = queries_per_second(index, questions, batch_size, topk)
    return figures


def markdown_table(rows: list[dict[str, Any]], topk: int, num_docs: int, num_questions: int) -> str:
    header = (f"| index | recall@{topk} (any supporting) | recall@{topk} (all supporting) | build time (s) | "
              + " | ".join(f"QPS, batch {b}" for b in BATCH_SIZES) + " |")
    lines = [f"{num_docs} paragraphs, {num_questions} questions", "", header,
             "|" + "---|" * (4 + len(BATCH_SIZES))]
    for r in rows:
        qps = " | ".join(f"{r[f'qps_batch{b}']:.1f}" for b in BATCH_SIZES)
        figures = f"{r['recall_any']:.3f} | {r['recall_all']:.3f} | {r['build_s']:.1f}"
        lines.append(f"| {r['label']} | {figures} | {qps} |")
    return "\n".join(lines)


def environment(threads: int | None) -> dict[str, Any]:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    packages = ["bm25s", "snowballstemmer", "faiss-cpu", "sentence-transformers", "torch"]
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in packages},
    }


def main() -> None:
    args = parse_args()
    env = environment(args.threads)
    docs = load_corpus(args.corpus)
    questions, gold = args.question_rows
    builders: dict[str, tuple[str, Callable[[], LocalIndex]]] = {
        "bm25": ("BM25 (bm25s, Snowball English stemming, English stopwords)", lambda: BM25Index.build(docs)),
        "dense": (f"dense ({args.encoder}, FAISS flat IP)", lambda: DenseIndex.build(
            docs, encoder=args.encoder, batch_size=args.encode_batch_size, show_progress=True)),
    }
    rows = []
    for kind in args.kinds:
        label, build = builders[kind]
        rows.append({"label": label, **measure(kind, build, questions, gold, args.topk)})
    table = markdown_table(rows, args.topk, len(docs), len(questions))
    print(table)
    report = {"corpus": str(args.corpus), "questions": str(args.questions), "num_docs": len(docs),
              "num_questions": len(questions), "topk": args.topk, "environment": env, "results": rows,
              "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
