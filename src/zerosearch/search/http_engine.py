"""A search engine over a retrieval server speaking Search-R1's HTTP API.

The API (Search-R1 ``search_r1/search/retrieval_server.py``, also served by
``zerosearch serve-retriever``): ``POST /retrieve`` with
``{"queries": [...], "topk": k, "return_scores": true}`` answers
``{"result": [[{"document": {"id": ..., "contents": "\\"Title\\"\\ntext"}, "score": s}, ...], ...]}``,
one list per query, in order. Each document's ``contents`` is the wiki-18 layout: the title in
double quotes on the first line, the text after it.

One POST per chunk of ``batch_size`` queries, or of the server's own limit when it is smaller: a
server that reports ``limits.max_batch`` at ``GET /health`` (``zerosearch serve-retriever`` does;
Search-R1's server has no limit and no ``/health``) is asked once, before the first search. A chunk
is retried (see :mod:`zerosearch.retry`) on timeouts, connection errors, HTTP 5xx and 429/408/409;
any other 4xx (e.g. a topk above the server's limit) fails at once. A chunk that still fails comes
back as ``SearchResult(error=..., attempts=n)`` for each of its requests: never raised, never
replaced by placeholder documents.
"""

from __future__ import annotations

from typing import Any, Sequence

import httpx

from zerosearch.retry import CountedRetries, is_retryable_status
from zerosearch.search.base import Document, SearchRequest, SearchResult, check_topk, is_url
from zerosearch.search.corpus import split_contents

__all__ = ["RetrievalHTTPEngine", "describe_http_error", "parse_response", "retryable_http_error"]

_MAX_BODY_IN_ERROR = 300


class MalformedResponse(ValueError):
    """The server answered 2xx, but not in the Search-R1 response shape."""


def parse_document(item: Any) -> Document:
    """One element of a ``result`` list: ``{"document": {...}, "score": s}`` or the bare document.

    The document holds ``contents`` (or, from Search-R1's BM25 retriever, ``title`` and ``text``)
    and usually an ``id``.
    """
    if not isinstance(item, dict):
        raise MalformedResponse(f"a result item should be a JSON object, got {type(item).__name__}")
    doc, score = (item["document"], item.get("score")) if "document" in item else (item, None)
    if not isinstance(doc, dict):
        raise MalformedResponse(f"'document' should be a JSON object, got {type(doc).__name__}")
    if isinstance(doc.get("contents"), str):
        title, text = split_contents(doc["contents"])
    elif isinstance(doc.get("text"), str):
        title, text = str(doc.get("title") or ""), doc["text"]
    else:
        raise MalformedResponse(f"a document has neither 'contents' nor 'text' (keys: {sorted(doc)})")
    doc_id = doc.get("id")
    return Document(
        text=text,
        title=title,
        score=float(score) if isinstance(score, (int, float)) else None,
        id=None if doc_id is None else str(doc_id),
    )


def parse_response(payload: Any, expected: int) -> list[list[Document]]:
    """Parse a ``/retrieve`` JSON body holding ``expected`` result lists."""
    if not isinstance(payload, dict) or not isinstance(payload.get("result"), list):
        raise MalformedResponse("the response has no 'result' list")
    result = payload["result"]
    if len(result) != expected:
        raise MalformedResponse(f"sent {expected} queries but got {len(result)} result lists")
    if not all(isinstance(items, list) for items in result):
        raise MalformedResponse("every entry of 'result' should be a list of documents")
    return [[parse_document(item) for item in items] for items in result]


class RetrievalHTTPEngine(CountedRetries):
    """A :class:`~zerosearch.search.base.SearchEngine` over ``POST {url}`` (Search-R1's API).

    Args:
        url: the full endpoint, e.g. ``http://127.0.0.1:8000/retrieve``.
        timeout: seconds per POST (connect, read, write, pool).
        max_retries: retries after the first attempt, so at most ``max_retries + 1`` POSTs per chunk.
        backoff, backoff_max: first retry delay and its cap, in seconds (see :mod:`zerosearch.retry`).
        batch_size: most queries per POST; a larger batch is split into chunks sent in order. Lowered to
            the server's ``limits.max_batch`` when its ``/health`` reports one.

    Counters (cumulative, thread-safe): ``calls`` (chunks sent, ok or not), ``failures`` (chunks
    that still failed after retries), ``retries`` (extra POSTs). POSTs sent = ``calls + retries``.
    """

    name = "retrieval"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        batch_size: int = 64,
    ) -> None:
        self._init_retries(timeout=timeout, max_retries=max_retries, backoff=backoff, backoff_max=backoff_max)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not is_url(url):
            raise ValueError(f"the retrieval URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout = timeout
        self.batch_size = batch_size
        self.server_max_batch: int | None = None  # from /health, asked once (None: no limit reported)
        self._asked_limits = False
        self._client = httpx.Client(timeout=timeout)

    def __repr__(self) -> str:
        return f"RetrievalHTTPEngine(url={self.url!r}, batch_size={self.batch_size})"

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        """One result per request, in order; a chunk that fails gives an error for each request."""
        check_topk(topk)
        size = self.chunk_size()
        results: list[SearchResult] = []
        for start in range(0, len(requests), size):
            results.extend(self._search_chunk(requests[start : start + size], topk))
        return results

    def chunk_size(self) -> int:
        """Queries per POST: ``batch_size``, or the server's ``limits.max_batch`` if that is smaller."""
        if not self._asked_limits:
            self._asked_limits = True
            self.server_max_batch = self._server_limit()
        return min(self.batch_size, self.server_max_batch or self.batch_size)

    def _server_limit(self) -> int | None:
        """``limits.max_batch`` from ``GET {base}/health``, or None where the server reports none.

        Best effort, one attempt: a server without ``/health`` (Search-R1's) or one that is down says
        nothing here; the searches themselves then report what is wrong, with retries.
        """
        base = self.url[: -len("/retrieve")] if self.url.endswith("/retrieve") else self.url.rsplit("/", 1)[0]
        try:
            response = self._client.get(base + "/health", timeout=min(self.timeout, 10.0))
            limit = response.json().get("limits", {}).get("max_batch") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1 else None

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> "RetrievalHTTPEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------

    def _search_chunk(self, chunk: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        queries = [request.query for request in chunk]
        outcome = self._call_counted(lambda: self._post(queries, topk), retryable_http_error)
        if outcome.error is not None:
            attempts = _plural(outcome.attempts, "attempt")
            error = f"{describe_http_error(outcome.error)} from {self.url} [after {attempts}]"
            return [SearchResult(error=error, noisy=r.noisy, attempts=outcome.attempts) for r in chunk]
        return [
            SearchResult(documents=docs, noisy=r.noisy, attempts=outcome.attempts)
            for r, docs in zip(chunk, outcome.value or [])
        ]

    def _post(self, queries: list[str], topk: int) -> list[list[Document]]:
        response = self._client.post(
            self.url, json={"queries": queries, "topk": topk, "return_scores": True}
        )
        response.raise_for_status()
        try:
            payload = response.json()
        except ValueError as exc:
            raise MalformedResponse(f"the response is not JSON: {response.text[:_MAX_BODY_IN_ERROR]!r}") from exc
        return parse_response(payload, len(queries))



def retryable_http_error(exc: Exception) -> bool:
    """Worth retrying: a timeout, a connection error, HTTP 5xx or 408/409/429."""
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return is_retryable_status(exc.response.status_code)
    return False


def describe_http_error(exc: Exception) -> str:
    """A one-line account of a failure: for an HTTP status error, the status and the server's
    (shortened) error body rather than httpx's message, which holds the request URL; else the
    exception's type and message."""
    if isinstance(exc, httpx.HTTPStatusError):
        body = exc.response.text.strip().replace("\n", " ")[:_MAX_BODY_IN_ERROR]
        return f"HTTP {exc.response.status_code}: {body}"
    message = str(exc).strip().replace("\n", " ")[:_MAX_BODY_IN_ERROR]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
