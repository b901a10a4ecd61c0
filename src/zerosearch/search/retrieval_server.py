"""A retrieval server speaking Search-R1's HTTP API, over any local retriever.

Mirrors ``search_r1/search/retrieval_server.py`` (Search-R1), so Search-R1/ZeroSearch clients and
:class:`~zerosearch.search.http_engine.RetrievalHTTPEngine` work against it unchanged:

``POST /retrieve`` with ``{"queries": ["..."], "topk": 3, "return_scores": true}``:

* ``return_scores`` true: ``{"result": [[{"document": {"id": "0", "contents": "\\"Title\\"\\ntext"},
  "score": 12.3}, ...], ...]}``
* ``return_scores`` false (Search-R1's default): ``{"result": [[{"id": "0", "contents": "..."},
  ...], ...]}``

``topk`` may be omitted (or null): the server's ``default_topk`` (3, Search-R1's ``--topk``) applies.

Unlike Search-R1's server, requests are validated, and a bad one gets HTTP 422 with
``{"error": "<what to fix>", "detail": [...pydantic errors...]}``: ``queries`` must be a non-empty
list of strings of at most ``max_batch`` items, each at most ``max_query_chars`` characters;
``topk`` an integer in ``[1, max_topk]``; no unknown fields (a typo such as ``"top_k"`` would
otherwise silently fall back to the default). A retriever failure gives HTTP 500 with ``{"error"}``.

Batch size: Search-R1's client sends every active query of a rollout batch in one request (batch size
x rollouts, often over 2,000), so ``max_batch`` defaults to 4,096. The retriever sees at most
``chunk_size`` queries at a time (256 by default), so its working memory (a BM25 score matrix, a dense
encoder's batch) stays the same however large the request; concurrent requests take turns chunk by
chunk.

``GET /health`` answers ``{"status": "ok", "retriever": ..., "limits": ..., "chunk_size": ...,
...info}``.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the request model defined inside
# create_app as a class, not as a string it would look up in this module's globals.
import logging
import socket
import threading
from typing import Annotated, Any, Callable, Mapping, Protocol, Sequence

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from zerosearch.search.base import Document
from zerosearch.search.corpus import document_contents

__all__ = ["Retriever", "base_url", "create_app", "document_json", "open_socket", "serve"]

_log = logging.getLogger(__name__)

REQUEST_EXAMPLE = '{"queries": ["who wrote Hamlet"], "topk": 3, "return_scores": true}'


class Retriever(Protocol):
    """What the server needs: ranked documents for a batch of queries."""

    def retrieve(self, queries: Sequence[str], topk: int) -> list[list[Document]]: ...


def document_json(doc: Document) -> dict[str, Any]:
    """A document as Search-R1 serves it: ``{"id", "contents"}`` (``contents``: ``"Title"\\ntext``)."""
    return {"id": doc.id, "contents": document_contents(doc)}


def _request_model(max_topk: int, max_batch: int, max_query_chars: int) -> type[BaseModel]:
    Query = Annotated[StrictStr, Field(max_length=max_query_chars)]

    class RetrieveRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        queries: Annotated[list[Query], Field(min_length=1, max_length=max_batch)]
        topk: Annotated[StrictInt, Field(ge=1, le=max_topk)] | None = None
        return_scores: StrictBool = False

    return RetrieveRequest


def _explain(errors: Sequence[Mapping[str, Any]], limits: Mapping[str, int]) -> str:
    """One line per pydantic error, saying which field is wrong and what is allowed."""
    hints = {
        "queries": f"a non-empty list of at most {limits['max_batch']} strings, "
        f"each at most {limits['max_query_chars']} characters",
        "topk": f"an integer from 1 to {limits['max_topk']}, or omitted",
        "return_scores": "true or false",
    }
    lines = []
    for error in errors:
        if error.get("type") == "json_invalid":
            lines.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})")
            continue
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        field = ".".join(loc) or "body"
        if error.get("type") == "extra_forbidden":
            hint = "only the fields queries, topk, return_scores"
        else:
            hint = hints.get(loc[0]) if loc else "a JSON object"
        lines.append(f"{field}: {error.get('msg', 'invalid')}" + (f" (expected {hint})" if hint else ""))
    return "invalid request: " + "; ".join(lines) + f". Example: {REQUEST_EXAMPLE}"


def create_app(
    retriever: Retriever,
    *,
    max_topk: int = 50,
    max_batch: int = 4096,
    max_query_chars: int = 2000,
    chunk_size: int = 256,
    default_topk: int = 3,
    info: Mapping[str, Any] | None = None,
) -> FastAPI:
    """The FastAPI app serving ``retriever`` with Search-R1's API.

    Args:
        retriever: anything with ``retrieve(queries, topk) -> list[list[Document]]``; calls are
            serialised (one batch at a time), so it need not be thread-safe.
        max_topk, max_batch, max_query_chars: request limits (see the module docstring).
        chunk_size: most queries handed to the retriever at once; a larger request is retrieved in
            chunks, in order.
        default_topk: documents per query when a request gives no ``topk``.
        info: extra facts for ``GET /health`` (e.g. index kind, corpus path, document count).
    """
    if not 1 <= default_topk <= max_topk:
        raise ValueError(f"need 1 <= default_topk <= max_topk, got {default_topk} and {max_topk}")
    if max_batch < 1 or max_query_chars < 1 or chunk_size < 1:
        raise ValueError(f"max_batch, max_query_chars and chunk_size must be >= 1, got {max_batch}, "
                         f"{max_query_chars}, {chunk_size}")
    limits = {"max_topk": max_topk, "max_batch": max_batch, "max_query_chars": max_query_chars}
    # chunk_size is how the server works, not a limit a client must respect: reported beside the limits
    RetrieveRequest = _request_model(max_topk, max_batch, max_query_chars)
    lock = threading.Lock()
    app = FastAPI(title="zerosearch retrieval server", description="Search-R1 compatible /retrieve")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        return JSONResponse(status_code=422, content={"error": _explain(errors, limits), "detail": errors})

    @app.post("/retrieve")
    def retrieve(request: RetrieveRequest) -> JSONResponse:  # type: ignore[valid-type]
        topk = default_topk if request.topk is None else request.topk
        queries = list(request.queries)
        ranked: list[list[Document]] = []
        for start in range(0, len(queries), chunk_size):
            chunk = queries[start : start + chunk_size]
            try:
                with lock:  # per chunk: concurrent large requests take turns
                    found = retriever.retrieve(chunk, topk)
            except Exception as exc:  # reported to the client, which may retry (HTTP 500)
                _log.exception("retrieval failed for a chunk of %d queries", len(chunk))
                return JSONResponse(status_code=500,
                                    content={"error": f"retrieval failed: {type(exc).__name__}: {exc}"})
            if len(found) != len(chunk):
                message = f"the retriever returned {len(found)} result lists for {len(chunk)} queries"
                return JSONResponse(status_code=500, content={"error": message})
            ranked.extend(found)
        if request.return_scores:
            result = [[{"document": document_json(d), "score": d.score} for d in docs[:topk]] for docs in ranked]
        else:
            result = [[document_json(d) for d in docs[:topk]] for docs in ranked]
        return JSONResponse({"result": result})  # already plain JSON: skip FastAPI's re-encoding

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "retriever": type(retriever).__name__,
            "default_topk": default_topk,
            "limits": limits,
            "chunk_size": chunk_size,
            **dict(info or {}),
        }

    return app


def open_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one the system picks), not yet listening.

    Binding before a long index build finds a port in use at once, while clients still get "connection
    refused" (not a hang) until :func:`serve` listens. Raises ``OSError`` (``socket.gaierror`` for a host
    that does not resolve).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # as uvicorn does: a restarted server need not wait out its old connections' TIME_WAIT; a port
    # another server listens on is still refused (EADDRINUSE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def base_url(host: str, sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket, with the port it really has (port 0 picks one)."""
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    retriever: Retriever,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    sock: socket.socket | None = None,
    on_ready: Callable[[str], None] | None = None,
    **app_options: Any,
) -> None:
    """Serve ``retriever`` on ``host:port`` until interrupted (options: see :func:`create_app`).

    Args:
        sock: a bound socket (from :func:`open_socket`, listening or not) to serve on instead of binding
            ``host:port`` here; ``host`` still names it in ``on_ready``'s URL.
        on_ready: called with the base URL (``http://HOST:PORT``) once the server accepts requests, so a
            "serving at" line is never printed for a server that failed to start.
    """
    import uvicorn

    app = create_app(retriever, **app_options)  # bad options fail before anything is bound
    if sock is None:
        sock = open_socket(host, port)
    url = base_url(host, sock)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready(url)

    config = uvicorn.Config(app, host=host, port=sock.getsockname()[1], log_level="info")
    with sock:
        _Server(config).run(sockets=[sock])
