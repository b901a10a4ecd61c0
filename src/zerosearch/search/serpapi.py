"""Google search through SerpAPI, as ZeroSearch evaluated with (a paid service: each query costs).

As in the original: ``GET https://serpapi.com/search.json`` with ``engine=google``, ``q=query``,
``num=topk``; the documents are the ``organic_results`` (in ``position`` order, at most ``topk``),
each with the result's title as title and its snippet as text (the link becomes the id).

The API key is read from ``$SERPAPI_API_KEY`` (or ``$SER_API_KEY``, the name the original README
used) unless given. It never appears in a repr, an error message or a log line: SerpAPI takes it as
a query parameter, so every error text is scrubbed of it, and a filter on the ``httpx`` logger
redacts ``api_key=`` values from httpx's request log.

Queries are sent concurrently from a small thread pool, retried like every network call here (see
:mod:`zerosearch.retry`), and successful answers are cached in memory per ``(query, topk)`` so a
repeated query is neither paid for twice nor sent twice. A query that still fails comes back as
``SearchResult(error=...)``. SerpAPI answers a query Google has no results for with HTTP 200 and an
``error`` field; that is an empty result, not a failure.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx

from zerosearch.retry import CountedRetries
from zerosearch.search.base import Document, SearchRequest, SearchResult, check_topk
from zerosearch.search.http_engine import describe_http_error, retryable_http_error

__all__ = ["KEY_ENV_VARS", "SERPAPI_URL", "MissingAPIKeyError", "SerpAPIEngine", "organic_documents"]

SERPAPI_URL = "https://serpapi.com/search.json"
KEY_ENV_VARS = ("SERPAPI_API_KEY", "SER_API_KEY")
_NO_RESULTS = re.compile(r"hasn'?t returned any results", re.IGNORECASE)
_KEY_PARAM = re.compile(r"(api_key=)[^&\s\"']+")
_MAX_BODY_IN_ERROR = 300


class MissingAPIKeyError(RuntimeError):
    """No SerpAPI key was given or found in the environment."""


class SerpAPIError(RuntimeError):
    """SerpAPI answered HTTP 200 with an error message (other than "no results")."""


class _RedactAPIKey(logging.Filter):
    """Replaces ``api_key=...`` values in log records with ``api_key=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message:
            record.msg, record.args = _KEY_PARAM.sub(r"\1***", message), ()
        return True


_LOG_FILTER = _RedactAPIKey()


class _Secret:
    """Holds the key so that printing the engine's ``__dict__`` does not show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _find_key(api_key: str | None, key_env: str) -> str:
    if api_key:
        return api_key
    names = (key_env,) + tuple(name for name in KEY_ENV_VARS if name != key_env)
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    raise MissingAPIKeyError(
        f"Google search needs a SerpAPI key: set the environment variable {names[0]} "
        f"(also read: {', '.join(names[1:])}) to your key from https://serpapi.com/manage-api-key, "
        "or pick another engine (e.g. --engine example, or a local retrieval server)"
    )


def organic_documents(payload: Any, topk: int) -> list[Document]:
    """The first ``topk`` organic results of a SerpAPI Google answer, as documents."""
    if not isinstance(payload, dict):
        raise SerpAPIError(f"the answer is not a JSON object but {type(payload).__name__}")
    results = payload.get("organic_results")
    if results is None:
        error = payload.get("error")
        if error is None or _NO_RESULTS.search(str(error)):
            return []  # Google found nothing: a valid, empty answer
        raise SerpAPIError(f"SerpAPI error: {str(error)[:_MAX_BODY_IN_ERROR]}")
    if not isinstance(results, list):
        raise SerpAPIError("'organic_results' is not a list")
    items = [r for r in results if isinstance(r, dict)]
    items.sort(key=lambda r: r.get("position") if isinstance(r.get("position"), int) else len(results))
    return [
        Document(
            text=str(item.get("snippet") or ""),
            title=str(item.get("title") or ""),
            id=str(item["link"]) if item.get("link") else None,
            kind="web",
        )
        for item in items[:topk]
    ]


class SerpAPIEngine(CountedRetries):
    """A :class:`~zerosearch.search.base.SearchEngine` over Google through SerpAPI.

    Args:
        api_key: the key; default: ``$key_env``, then the other names in :data:`KEY_ENV_VARS`.
        key_env: the environment variable to read the key from first.
        timeout, max_retries, backoff, backoff_max: per-request limits (see :mod:`zerosearch.retry`).
        max_concurrency: most requests in flight at once.
        cache_size: most ``(query, topk)`` answers kept in memory (least recently used dropped
            first); 0 disables the cache.
        url: the endpoint (only worth changing for a proxy).
        transport: an ``httpx`` transport to send requests through (tests inject a fake one).

    Counters (cumulative, thread-safe): ``calls`` (queries sent to SerpAPI, ok or not; cache hits are
    not calls), ``failures`` (queries that still failed), ``retries`` (extra requests),
    ``cache_hits``. Requests sent (and paid for) = ``calls + retries``.
    """

    name = "google"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        key_env: str = KEY_ENV_VARS[0],
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        max_concurrency: int = 4,
        cache_size: int = 10_000,
        url: str = SERPAPI_URL,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._init_retries(timeout=timeout, max_retries=max_retries, backoff=backoff, backoff_max=backoff_max)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self._key = _Secret(_find_key(api_key, key_env))
        self.url = url
        self.max_concurrency = max_concurrency
        self.cache_size = cache_size
        self.cache_hits = 0
        self._cache: OrderedDict[tuple[str, int], list[Document]] = OrderedDict()
        self._client = httpx.Client(timeout=timeout, transport=transport)
        httpx_logger = logging.getLogger("httpx")
        if _LOG_FILTER not in httpx_logger.filters:
            httpx_logger.addFilter(_LOG_FILTER)

    def __repr__(self) -> str:
        return f"SerpAPIEngine(url={self.url!r}, api_key='***', max_concurrency={self.max_concurrency})"

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        """One result per request, in order. Each distinct query is sent at most once per call."""
        check_topk(topk)
        queries = list(dict.fromkeys(request.query for request in requests))
        answers: dict[str, SearchResult] = {}
        missing = []
        for query in queries:
            cached = self._cached(query, topk)
            if cached is None:
                missing.append(query)
            else:
                answers[query] = SearchResult(documents=cached, attempts=0)
        if missing:
            workers = min(self.max_concurrency, len(missing))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serpapi") as pool:
                for query, result in zip(missing, pool.map(lambda q: self._search_one(q, topk), missing)):
                    answers[query] = result
        return [_copy_for(answers[request.query], request) for request in requests]

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> "SerpAPIEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------

    def _search_one(self, query: str, topk: int) -> SearchResult:
        outcome = self._call_counted(lambda: self._get(query, topk), retryable_http_error)
        if outcome.error is not None:
            attempts = f"{outcome.attempts} attempt{'' if outcome.attempts == 1 else 's'}"
            error = self._redact(f"SerpAPI: {describe_http_error(outcome.error)} [after {attempts}]")
            return SearchResult(error=error, attempts=outcome.attempts)
        documents = outcome.value or []
        self._store(query, topk, documents)
        return SearchResult(documents=documents, attempts=outcome.attempts)

    def _get(self, query: str, topk: int) -> list[Document]:
        params = {"engine": "google", "q": query, "num": topk, "api_key": self._key.reveal()}
        response = self._client.get(self.url, params=params)
        response.raise_for_status()
        try:
            payload = response.json()
        except ValueError as exc:
            raise SerpAPIError(f"the answer is not JSON: {response.text[:_MAX_BODY_IN_ERROR]!r}") from exc
        return organic_documents(payload, topk)

    def _cached(self, query: str, topk: int) -> list[Document] | None:
        with self._lock:
            documents = self._cache.get((query, topk))
            if documents is not None:
                self._cache.move_to_end((query, topk))
                self.cache_hits += 1
            return documents

    def _store(self, query: str, topk: int, documents: list[Document]) -> None:
        if self.cache_size == 0:
            return
        with self._lock:
            self._cache[(query, topk)] = documents
            self._cache.move_to_end((query, topk))
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


    def _redact(self, text: str) -> str:
        return _KEY_PARAM.sub(r"\1***", text).replace(self._key.reveal(), "***")


def _copy_for(answer: SearchResult, request: SearchRequest) -> SearchResult:
    """A fresh result per request (two requests with one query must not share a list)."""
    return SearchResult(
        documents=list(answer.documents), error=answer.error, noisy=request.noisy, attempts=answer.attempts
    )
