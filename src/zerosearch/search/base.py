"""The search-engine interface every engine implements.

An engine takes a *batch* of :class:`SearchRequest` and returns one :class:`SearchResult` per request,
in order. Engines never raise for a failed call: a call that still fails after the engine's own bounded
retries comes back as ``SearchResult(error="...")`` so the trainer can count it and leave that trajectory
out of the update (the original code silently trained on "No information available").

The useful/noisy flag is decided by the caller (the rollout draws it from the curriculum with a seeded
generator) and passed in the request; real engines ignore it, the simulated engine obeys it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class SearchRequest:
    """One search call.

    query: the text between <search> and </search>, stripped.
    question: the dataset question the policy is answering (the simulator is told it).
    golden_answers: gold answers; the simulator is told the first one.
    noisy: for the simulated engine, write noisy (True) or useful (False) documents.
    """

    query: str
    question: str = ""
    golden_answers: tuple[str, ...] = ()
    noisy: bool = False


@dataclass(frozen=True)
class Document:
    """A retrieved or simulated document. ``title`` may be empty (simulated documents have none).

    ``kind`` is ``"passage"`` (a corpus passage or a simulated document) or ``"web"`` (a web search
    result: ``title`` is the page title, ``text`` its snippet); the two render differently in the
    original ZeroSearch format (see :func:`zerosearch.search.documents.render_documents`).
    """

    text: str
    title: str = ""
    score: float | None = None
    id: str | None = None
    kind: str = "passage"


@dataclass
class SearchResult:
    """Documents for one request, or an error. ``noisy`` echoes the request's flag for logging.

    ``echo``: the simulation LLM's reply restated its prompt (:mod:`zerosearch.search.echo`); such a result
    is an error too (it never reaches the policy), flagged so that it can be counted apart.
    """

    documents: list[Document] = field(default_factory=list)
    error: str | None = None
    noisy: bool = False
    attempts: int = 1
    echo: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class SearchEngine(Protocol):
    """Anything with ``search(requests, topk) -> results`` (same length, same order)."""

    name: str

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]: ...


def check_topk(topk: int) -> None:
    """The one argument check of :meth:`SearchEngine.search`: ``topk`` documents per request, at least one.
    Raises ValueError (an engine's caller passes ``RolloutSettings.topk``, checked where it is configured)."""
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")


def is_url(text: str) -> bool:
    """Whether an engine spec (or the part after ``simulated:``) names a server: an http(s) URL."""
    return text.startswith(("http://", "https://"))
