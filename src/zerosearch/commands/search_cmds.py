"""``zerosearch search`` (ask any engine) and ``zerosearch serve-retriever`` (a local retrieval server).

Wire into the CLI with ``add_search_parser(sub)`` and ``add_serve_retriever_parser(sub)``; each sets
``func`` to a handler that takes the parsed arguments and returns the exit code: 0 ok, 1 the search
failed (the engine's error is printed), 2 a usage problem (bad spec, missing key or file, an option the
engine does not take, a port in use; one line, by :func:`zerosearch.commands.errors.run_command`), 141 the
reader of stdout went away (``| head``), quietly.
Options are checked before anything slow starts (a model, an index build), and errors name them as typed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import socket
import sys
from typing import TYPE_CHECKING, Any

from zerosearch.commands.argtypes import nonempty, port_number, positive_int
from zerosearch.commands.errors import EXIT_CLOSED_PIPE, UsageError, write_stdout
from zerosearch.search.base import SearchEngine, SearchRequest, SearchResult

if TYPE_CHECKING:
    from zerosearch.search.local_index import EncoderNotFoundError

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


# --- argument types (checked at parse time, so argparse names the option as typed) ---------------------


def _query(text: str) -> str:
    if not text.strip():  # an empty query finds nothing, silently
        raise argparse.ArgumentTypeError("must not be empty; give the text to search for")
    return text


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
    parser.add_argument("query", type=_query, help="the search query")
    parser.add_argument("--engine", default="example", metavar="SPEC",
                        help="which engine (forms below; default: example)")
    parser.add_argument("--topk", type=positive_int, default=5, help="documents to return (default: 5)")
    simulated = parser.add_argument_group("simulated engines (simulated:...; an error with any other engine)")
    simulated.add_argument("--question", default="", help="the question the search is for (the simulator is told it)")
    simulated.add_argument("--answer", type=nonempty,
                           help="the gold answer (the simulator is told it; needed except by --mode prompt --noisy)")
    simulated.add_argument("--noisy", action="store_true", help="ask for noisy documents instead of useful ones")
    simulated.add_argument("--mode", choices=["finetuned", "prompt"],
                           help="finetuned: a tuned Simulation LLM (default); prompt: an instruct model, few-shot")
    simulated.add_argument("--served-model", type=nonempty, help="simulated:URL: model name on the "
                           "OpenAI-compatible server (default: the one it serves)")
    simulated.add_argument("--device", type=nonempty, help="simulated:MODEL: torch device for the in-process "
                           "model (default: cpu)")
    parser.add_argument("--index-dir", type=nonempty,
                        help="local engines only (example, bm25:, dense:): where the index is cached")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_search)
    return parser


_SIMULATED = {"simulated_url", "simulated_model"}
_LOCAL = {"example", "bm25", "dense"}

# flag -> (its attribute, the engine kinds it applies to, those engines in words). Any other engine would
# ignore the flag (--noisy, --question, --answer) or reject it under build_engine's option name (mode=...),
# so it is an error that names the flag as typed.
_ENGINE_FLAGS: dict[str, tuple[str, set[str], str]] = {
    "--question": ("question", _SIMULATED, "simulated engines (--engine simulated:MODEL or simulated:URL)"),
    "--answer": ("answer", _SIMULATED, "simulated engines (--engine simulated:MODEL or simulated:URL)"),
    "--noisy": ("noisy", _SIMULATED, "simulated engines (--engine simulated:MODEL or simulated:URL)"),
    "--mode": ("mode", _SIMULATED, "simulated engines (--engine simulated:MODEL or simulated:URL)"),
    "--served-model": ("served_model", {"simulated_url"}, "a simulation LLM behind a server "
                       "(--engine simulated:http://HOST:PORT/v1)"),
    "--device": ("device", {"simulated_model"}, "an in-process simulation LLM (--engine simulated:MODEL)"),
    "--index-dir": ("index_dir", _LOCAL, "local indexes (--engine example, bm25:FILE or dense:FILE)"),
}


def _flag_error(args: argparse.Namespace) -> str | None:
    """Why the flags given do not fit the engine (one line), or None."""
    from zerosearch.search.factory import engine_kind

    kind = engine_kind(args.engine)
    if kind is None:
        return None  # build_engine lists the accepted forms
    for flag, (attribute, kinds, engines) in _ENGINE_FLAGS.items():
        if getattr(args, attribute) and kind not in kinds:
            return f"{flag} applies only to {engines}, not to --engine {args.engine.strip()}; leave it out"
    if kind in _SIMULATED and not args.answer and _needs_answer(args.mode, args.noisy):
        documents = "noisy" if args.noisy else "useful"
        return (f"the simulator's {args.mode or 'finetuned'} prompt for {documents} documents includes the "
                'gold answer: pass --answer TEXT (and --question TEXT), e.g. --answer "Steven Spielberg"')
    return None


def _needs_answer(mode: str | None, noisy: bool) -> bool:
    """Whether the simulator's template for ``mode`` (default finetuned) has an ``{answer}`` placeholder."""
    from zerosearch.prompts import load_template, placeholders
    from zerosearch.search.simulated import MODES

    useful, noisy_template = MODES[mode or "finetuned"]
    return "answer" in placeholders(load_template(noisy_template if noisy else useful))


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


def _result_text(args: argparse.Namespace, engine: SearchEngine, result: SearchResult) -> str:
    header = f"{engine.name} ({args.engine}): {len(result.documents)} document(s) for {args.query!r}"
    if engine.name == "simulated":
        header += f" [{'noisy' if result.noisy else 'useful'}]"
    lines = [header]
    for i, doc in enumerate(result.documents, start=1):
        score = f"  (score {doc.score:.3f})" if doc.score is not None else ""
        if doc.title:
            lines.append(f"\n{i}. {doc.title}{score}\n   {doc.text}")
        else:
            lines.append(f"\n{i}. {doc.text}{score}")
    return "\n".join(lines) + "\n"


def run_search(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch search``."""
    from zerosearch.search.factory import build_engine

    problem = _flag_error(args)  # before building: an in-process simulator loads a model
    if problem:
        raise UsageError(problem)
    engine = build_engine(args.engine, **_engine_options(args))
    request = SearchRequest(
        query=args.query,
        question=args.question,
        golden_answers=(args.answer,) if args.answer else (),
        noisy=args.noisy,
    )
    result = engine.search([request], args.topk)[0]
    text = ""
    if args.json:
        text = json.dumps(_result_json(args, engine, result), ensure_ascii=False, indent=2) + "\n"
    elif result.ok:
        text = _result_text(args, engine, result)
    if not write_stdout(text):
        return EXIT_CLOSED_PIPE
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
    parser.add_argument("--corpus", required=True, metavar="FILE", type=nonempty,
                        help='corpus jsonl (.gz ok) with rows {"id", "contents": "\\"Title\\"\\ntext"} '
                             'or {"id", "title", "text"}')
    parser.add_argument("--index", required=True, choices=["bm25", "dense"], help="index kind")
    parser.add_argument("--index-dir", metavar="DIR", type=nonempty,
                        help="where the index is cached (default: by corpus hash)")
    parser.add_argument("--encoder", metavar="NAME", type=nonempty,
                        help="dense only: a sentence-transformers model directory, or a hub name already in "
                             "the Hugging Face cache (default: all-MiniLM-L6-v2, shipped; Search-R1 used "
                             "intfloat/e5-base-v2)")
    parser.add_argument("--host", default="127.0.0.1", type=nonempty,
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for other machines)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port (default: 8000; 0: a free one, printed when serving)")
    parser.add_argument("--topk", type=positive_int, default=3,
                        help="documents per query when a request gives no topk (default: 3, as Search-R1)")
    parser.add_argument("--max-topk", type=positive_int, default=50,
                        help="largest topk a request may ask for (default: 50)")
    parser.add_argument("--max-batch", type=positive_int, default=4096,
                        help="most queries per request (default: 4096; Search-R1's client sends a whole rollout "
                             "batch, often over 2,000, in one request)")
    parser.add_argument("--chunk-size", type=positive_int, default=256,
                        help="most queries the index retrieves at once; larger requests are retrieved in chunks "
                             "so memory stays flat (default: 256)")
    parser.set_defaults(func=run_serve_retriever)
    return parser


def _check_serve_options(args: argparse.Namespace) -> None:
    """Options that are wrong together (each alone was checked by its argparse type)."""
    if args.encoder is not None and args.index != "dense":
        raise UsageError("--encoder is for --index dense; a BM25 index has no encoder, leave --encoder out")
    if args.topk > args.max_topk:
        raise UsageError(f"--topk {args.topk} is over --max-topk {args.max_topk}; lower --topk or raise --max-topk")


def _socket_error(exc: OSError, host: str, port: int) -> str:
    """A failure to bind or listen, as what to change on the command line."""
    if isinstance(exc, socket.gaierror):
        return f"--host {host} is not an address or a name this machine can resolve ({exc.strerror}); pass an " \
               "address such as 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}; pass --port N (or --port 0 for a free one)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine; pass 127.0.0.1 (this machine only) or " \
               "0.0.0.0 (all interfaces)"
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs more privileges than this process has (ports below 1024 usually " \
               "need root); pass --port 1024 or above (or --port 0 for a free one)"
    return f"cannot listen on {host} port {port} ({exc.strerror or exc}); pass another --host or --port"


def _bind(args: argparse.Namespace) -> socket.socket:
    from zerosearch.search.retrieval_server import open_socket

    try:
        return open_socket(args.host, args.port)
    except OSError as exc:
        raise UsageError(_socket_error(exc, args.host, args.port)) from None


def _listen(sock: socket.socket, args: argparse.Namespace) -> None:
    try:
        # SO_REUSEADDR lets two servers bind one port while neither listens yet: the second one learns here
        sock.listen(2048)
    except OSError as exc:
        raise UsageError(_socket_error(exc, args.host, args.port)) from None


def _encoder_error(args: argparse.Namespace, exc: EncoderNotFoundError) -> str:
    """A dense encoder that did not load, named as --encoder when the user gave it."""
    if args.encoder is None:  # the encoder of a cached index, or the shipped default: the library's words
        return str(exc)
    return (f"--encoder {args.encoder!r} could not be loaded ({exc.reason}); pass a directory holding a "
            "sentence-transformers model, a hub name already in the Hugging Face cache (nothing is downloaded "
            "offline), or leave --encoder out for the shipped all-MiniLM-L6-v2")


def _open_index(args: argparse.Namespace) -> Any:
    from zerosearch.search.local_index import EncoderNotFoundError, open_or_build_index

    try:
        return open_or_build_index(args.corpus, args.index, index_dir=args.index_dir, encoder=args.encoder)
    except EncoderNotFoundError as exc:
        raise UsageError(_encoder_error(args, exc)) from None


def _serve(index: Any, sock: socket.socket, args: argparse.Namespace) -> None:
    from zerosearch.search.retrieval_server import serve

    def ready(url: str) -> None:  # called once uvicorn accepts requests, with the port it really has
        print(f"zerosearch: serving the {args.index} index of {args.corpus} ({len(index.docs)} documents) at "
              f"{url}/retrieve", file=sys.stderr, flush=True)

    info = {"index": args.index, "num_docs": len(index.docs), "corpus": str(args.corpus)}
    serve(index, args.host, args.port, sock=sock, on_ready=ready, default_topk=args.topk, max_topk=args.max_topk,
          max_batch=args.max_batch, chunk_size=args.chunk_size, info=info)


def run_serve_retriever(args: argparse.Namespace) -> int:
    """Handler of ``zerosearch serve-retriever``: check the options, bind the port (before the index, so a
    port in use is reported at once, not after a long build), build or load the index, listen, then serve
    until stopped. "serving" is printed only once the server accepts requests."""
    _check_serve_options(args)
    with contextlib.closing(_bind(args)) as sock:
        index = _open_index(args)
        _listen(sock, args)
        _serve(index, sock, args)
    return 0
