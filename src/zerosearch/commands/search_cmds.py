"""``zerosearch search`` (ask any engine) and ``zerosearch serve-retriever`` (a local retrieval server).

Wire into the CLI with ``add_search_parser(sub)`` and ``add_serve_retriever_parser(sub)``; each sets
``func`` to a handler that takes the parsed arguments and returns the exit code: 0 ok, 1 the search
failed (the engine's error is printed), 2 a usage problem (bad spec, missing key or file).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zerosearch.search.base import SearchEngine, SearchRequest, SearchResult

__all__ = ["add_search_parser", "add_serve_retriever_parser", "run_search", "run_serve_retriever"]

SEARCH_EPILOG = """\
engines (--engine):
{specs}

examples:
  zerosearch search "who directed Jaws"                          # BM25 over the shipped corpus
  zerosearch search "who directed Jaws" --engine bm25:wiki-18.jsonl --topk 3
  zerosearch search "who directed Jaws" --engine http://127.0.0.1:8000/retrieve
  zerosearch search "who directed Jaws" --engine google --json
  zerosearch search "Jaws director" --engine simulated:zerosearch:smollm2-135m-instruct \\
      --mode prompt --question "Who directed Jaws?" --answer "Steven Spielberg" --noisy
  zerosearch search "Jaws director" --engine simulated:http://127.0.0.1:8001/v1 \\
      --served-model Simulation_LLM_google_14B --question "Who directed Jaws?" --answer "Steven Spielberg"
"""

SERVE_EPILOG = """\
The server speaks Search-R1's retrieval API, so Search-R1/ZeroSearch clients and
`--engine http://HOST:PORT/retrieve` use it unchanged:

  POST /retrieve  {"queries": ["who directed Jaws"], "topk": 3, "return_scores": true}
  ->  {"result": [[{"document": {"id": "17", "contents": "\\"Jaws (film)\\"\\nJaws is ..."}, "score": 9.1}]]}
  GET  /health    status, index kind, document count, limits

The index is built on first use and cached (default: under ~/.cache/zerosearch/indexes, keyed by the
corpus file's hash), so later starts only load it.

examples:
  zerosearch serve-retriever --corpus wiki-18.jsonl --index bm25 --port 8000
  zerosearch serve-retriever --corpus wiki-18.jsonl --index dense --encoder intfloat/e5-base-v2
  curl -s localhost:8000/retrieve -H 'content-type: application/json' \\
      -d '{"queries": ["who directed Jaws"], "topk": 3, "return_scores": true}'
"""


def _usage_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "fix your command", reported in one line with exit code 2."""
    from zerosearch.llm.models import ModelNotFoundError
    from zerosearch.search.serpapi import MissingAPIKeyError

    return (ValueError, FileNotFoundError, ImportError, MissingAPIKeyError, ModelNotFoundError)


# --- zerosearch search -------------------------------------------------------------------------------


def add_search_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch search``."""
    from zerosearch.search.factory import ENGINE_SPECS

    parser = subparsers.add_parser(
        "search",
        help="search with any engine (local index, retrieval server, Google, simulation LLM)",
        description="Send one query to a search engine and print the documents it returns.",
        epilog=SEARCH_EPILOG.format(specs=ENGINE_SPECS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("query", help="the search query")
    parser.add_argument("--engine", default="example", metavar="SPEC",
                        help="which engine (forms below; default: example)")
    parser.add_argument("--topk", type=int, default=5, help="documents to return (default: 5)")
    simulated = parser.add_argument_group("simulated engines (simulated:...)")
    simulated.add_argument("--question", default="", help="the question the search is for (the simulator is told it)")
    simulated.add_argument("--answer", help="the gold answer (the simulator is told it)")
    simulated.add_argument("--noisy", action="store_true", help="ask for noisy documents instead of useful ones")
    simulated.add_argument("--mode", choices=["finetuned", "prompt"],
                           help="finetuned: a tuned Simulation LLM (default); prompt: an instruct model, few-shot")
    simulated.add_argument("--served-model", help="model name on an OpenAI-compatible server "
                                                  "(default: the one it serves)")
    simulated.add_argument("--device", help="torch device for an in-process model (default: cpu)")
    parser.add_argument("--index-dir", help="bm25:/dense:/example: where the index is cached")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_search)
    return parser


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI flags that were set, under build_engine's option names."""
    return {
        "mode": args.mode,
        "served_model": args.served_model,
        "device": args.device,
        "index_dir": args.index_dir,
    }


def _result_json(args: argparse.Namespace, engine: SearchEngine, result: SearchResult) -> dict[str, Any]:
    return {
        "engine": args.engine,
        "engine_name": engine.name,
        "query": args.query,
        "noisy": result.noisy,
        "error": result.error,
        "attempts": result.attempts,
        "documents": [
            {"title": d.title, "text": d.text, "score": d.score, "id": d.id} for d in result.documents
        ],
    }


def _print_result(args: argparse.Namespace, engine: SearchEngine, result: SearchResult) -> None:
    header = f"{engine.name} ({args.engine}): {len(result.documents)} document(s) for {args.query!r}"
    if engine.name == "simulated":
        header += f" [{'noisy' if result.noisy else 'useful'}]"
    print(header)
    for i, doc in enumerate(result.documents, start=1):
        score = f"  (score {doc.score:.3f})" if doc.score is not None else ""
        if doc.title:
            print(f"\n{i}. {doc.title}{score}\n   {doc.text}")
        else:
            print(f"\n{i}. {doc.text}{score}")


def run_search(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch search``."""
    from zerosearch.search.factory import build_engine

    if args.topk < 1:
        print(f"error: --topk must be >= 1, got {args.topk}", file=sys.stderr)
        return 2
    try:
        engine = build_engine(args.engine, **_engine_options(args))
    except _usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    request = SearchRequest(
        query=args.query,
        question=args.question,
        golden_answers=(args.answer,) if args.answer else (),
        noisy=args.noisy,
    )
    result = engine.search([request], args.topk)[0]
    if args.json:
        print(json.dumps(_result_json(args, engine, result), ensure_ascii=False, indent=2))
    elif result.ok:
        _print_result(args, engine, result)
    if not result.ok:
        print(f"error: {engine.name} search failed: {result.error}", file=sys.stderr)
        return 1
    return 0


# --- zerosearch serve-retriever ----------------------------------------------------------------------


def add_serve_retriever_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``zerosearch serve-retriever``."""
    parser = subparsers.add_parser(
        "serve-retriever",
        help="serve a BM25 or dense index of a corpus over HTTP (Search-R1's /retrieve API)",
        description="Build (once) or load an index of a corpus jsonl and serve it with Search-R1's "
                    "retrieval API.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--corpus", required=True, metavar="FILE",
                        help='corpus jsonl (.gz ok) with rows {"id", "contents": "\\"Title\\"\\ntext"} '
                             'or {"id", "title", "text"}')
    parser.add_argument("--index", required=True, choices=["bm25", "dense"], help="index kind")
    parser.add_argument("--index-dir", metavar="DIR", help="where the index is cached (default: by corpus hash)")
    parser.add_argument("--encoder", metavar="NAME",
                        help="dense only: a sentence-transformers model name or directory "
                             "(default: all-MiniLM-L6-v2, shipped; Search-R1 used intfloat/e5-base-v2)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; "
                                                            "0.0.0.0 for other machines)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--topk", type=int, default=3,
                        help="documents per query when a request gives no topk (default: 3, as Search-R1)")
    parser.add_argument("--max-topk", type=int, default=50, help="largest topk a request may ask for (default: 50)")
    parser.add_argument("--max-batch", type=int, default=4096,
                        help="most queries per request (default: 4096; Search-R1's client sends a whole rollout "
                             "batch, often over 2,000, in one request)")
    parser.add_argument("--chunk-size", type=int, default=256,
                        help="most queries the index retrieves at once; larger requests are retrieved in chunks "
                             "so memory stays flat (default: 256)")
    parser.set_defaults(func=run_serve_retriever)
    return parser


def run_serve_retriever(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch serve-retriever``: build or load the index, then serve until stopped."""
    from zerosearch.search.local_index import open_or_build_index
    from zerosearch.search.retrieval_server import serve

    try:
        index = open_or_build_index(args.corpus, args.index, index_dir=args.index_dir, encoder=args.encoder)
        info = {"index": args.index, "num_docs": len(index.docs), "corpus": str(args.corpus)}
        print(f"zerosearch: serving the {args.index} index of {args.corpus} ({len(index.docs)} documents) at "
              f"http://{args.host}:{args.port}/retrieve", file=sys.stderr)
        serve(index, args.host, args.port, default_topk=args.topk, max_topk=args.max_topk,
              max_batch=args.max_batch, chunk_size=args.chunk_size, info=info)
    except _usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
