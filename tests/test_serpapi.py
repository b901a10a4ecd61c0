"""SerpAPIEngine (Google through SerpAPI) with only the network faked.

SerpAPI is a paid service (every query costs money, and the tests must run offline), so the HTTP
exchange is faked with ``httpx.MockTransport`` answering a recorded SerpAPI Google response
(``fixtures/serpapi_response.json``) or scripted failures. Everything above the transport (request
parameters, parsing, retries, caching, key redaction) is the real code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from zerosearch.search.base import SearchRequest
from zerosearch.search.serpapi import KEY_ENV_VARS, MissingAPIKeyError, SerpAPIEngine, organic_documents

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "serpapi_response.json"
KEY = "sk-test-0123456789abcdef0123456789abcdef"


@pytest.fixture
def recorded() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


class FakeSerpAPI:
    """A transport answering with a script: a list of responses (the last one repeats)."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses[min(len(self.requests), len(self.responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _engine(fake: FakeSerpAPI, **kwargs) -> SerpAPIEngine:
    return SerpAPIEngine(api_key=KEY, transport=fake.transport, backoff=0.001, backoff_max=0.01, **kwargs)


def test_documents_are_title_and_snippet_of_organic_results(recorded):
    fake = FakeSerpAPI(httpx.Response(200, json=recorded))
    engine = _engine(fake)
    [result] = engine.search([SearchRequest(query="who directed jaws", noisy=True)], topk=3)
    assert result.ok and result.attempts == 1 and result.noisy
    organic = recorded["organic_results"]
    assert [(d.title, d.text, d.id) for d in result.documents] == [
        (r["title"], r["snippet"], r["link"]) for r in organic[:3]
    ]
    params = fake.requests[0].url.params
    assert fake.requests[0].url.path == "/search.json" and fake.requests[0].url.host == "serpapi.com"
    assert dict(params) == {"engine": "google", "q": "who directed jaws", "num": "3", "api_key": KEY}
    assert engine.name == "google" and (engine.calls, engine.failures, engine.retries) == (1, 0, 0)


def test_topk_is_respected_and_a_missing_snippet_gives_an_empty_text(recorded):
    engine = _engine(FakeSerpAPI(httpx.Response(200, json=recorded)))
    [five] = engine.search([SearchRequest(query="q")], topk=5)
    [one] = engine.search([SearchRequest(query="q")], topk=1)
    [many] = engine.search([SearchRequest(query="q")], topk=10)
    assert len(five.documents) == 5 and len(one.documents) == 1 and len(many.documents) == 5
    assert five.documents[3].title == "Jaws | Universal Pictures" and five.documents[3].text == ""


def test_results_are_ordered_by_position():
    payload = {"organic_results": [{"position": 2, "title": "b", "snippet": "B"},
                                   {"position": 1, "title": "a", "snippet": "A"}]}
    assert [d.title for d in organic_documents(payload, 5)] == ["a", "b"]


def test_answers_are_cached_per_query_and_topk(recorded):
    fake = FakeSerpAPI(httpx.Response(200, json=recorded))
    engine = _engine(fake)
    batch = [SearchRequest(query="jaws"), SearchRequest(query="jaws", noisy=True), SearchRequest(query="shark")]
    first = engine.search(batch, topk=2)
    assert len(fake.requests) == 2  # "jaws" sent once
    second = engine.search(batch, topk=2)
    assert len(fake.requests) == 2 and engine.cache_hits == 2
    assert [r.attempts for r in second] == [0, 0, 0]  # no call was made
    assert [r.documents for r in second] == [r.documents for r in first]
    assert [r.noisy for r in second] == [False, True, False]
    engine.search(batch[:1], topk=3)
    assert len(fake.requests) == 3  # another topk is another query


def test_5xx_is_retried_then_succeeds(recorded):
    fake = FakeSerpAPI(httpx.Response(500, text="hiccup"), httpx.Response(503), httpx.Response(200, json=recorded))
    engine = _engine(fake, max_retries=3)
    [result] = engine.search([SearchRequest(query="jaws")], topk=2)
    assert result.ok and result.attempts == 3 and len(result.documents) == 2
    assert (engine.calls, engine.retries, engine.failures) == (1, 2, 0)


def test_failures_are_reported_not_cached_and_401_is_not_retried(recorded):
    message = "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"
    invalid = httpx.Response(401, json={"error": message})
    fake = FakeSerpAPI(invalid, httpx.Response(200, json=recorded))
    engine = _engine(fake, max_retries=3)
    [failed] = engine.search([SearchRequest(query="jaws")], topk=2)
    assert not failed.ok and failed.attempts == 1 and failed.documents == []
    assert "HTTP 401" in failed.error and "Invalid API key" in failed.error
    [retried] = engine.search([SearchRequest(query="jaws")], topk=2)
    assert retried.ok and len(fake.requests) == 2  # the failure was not cached
    assert (engine.calls, engine.failures) == (2, 1)


def test_no_results_is_an_empty_answer_not_an_error():
    empty = {"search_metadata": {"status": "Success"}, "error": "Google hasn't returned any results for this query."}
    engine = _engine(FakeSerpAPI(httpx.Response(200, json=empty)))
    [result] = engine.search([SearchRequest(query="zxqv jjkw")], topk=5)
    assert result.ok and result.documents == []


def test_key_never_shows_in_repr_errors_or_logs(recorded, caplog):
    reset = httpx.ConnectError("connection reset while fetching")  # an exception text naming no URL...

    def leaky(request: httpx.Request) -> httpx.Response:  # ...but this one does, key included
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    engine = _engine(FakeSerpAPI(reset), max_retries=1)
    assert KEY not in repr(engine) and KEY not in str(vars(engine))
    [result] = engine.search([SearchRequest(query="jaws")], topk=1)
    assert not result.ok and result.attempts == 2 and "ConnectError" in result.error

    engine = SerpAPIEngine(api_key=KEY, transport=httpx.MockTransport(leaky), max_retries=0)
    [result] = engine.search([SearchRequest(query="jaws")], topk=1)
    assert "cannot reach https://serpapi.com/search.json" in result.error
    assert KEY not in result.error and "api_key=***" in result.error

    engine = _engine(FakeSerpAPI(httpx.Response(500, text="hiccup"), httpx.Response(200, json=recorded)))
    with caplog.at_level(logging.DEBUG):
        [result] = engine.search([SearchRequest(query="jaws")], topk=1)
    assert result.ok
    assert "HTTP Request: GET https://serpapi.com/search.json" in caplog.text  # httpx did log the request...
    assert KEY not in caplog.text and "api_key=***" in caplog.text  # ...without the key


def test_missing_key_says_which_variable_to_set(monkeypatch):
    for name in KEY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MissingAPIKeyError, match="SERPAPI_API_KEY") as excinfo:
        SerpAPIEngine()
    assert "SER_API_KEY" in str(excinfo.value) and "serpapi.com/manage-api-key" in str(excinfo.value)


@pytest.mark.parametrize("variable", KEY_ENV_VARS)
def test_key_is_read_from_either_variable(monkeypatch, recorded, variable):
    for name in KEY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, KEY)
    fake = FakeSerpAPI(httpx.Response(200, json=recorded))
    engine = SerpAPIEngine(transport=fake.transport)
    engine.search([SearchRequest(query="jaws")], topk=1)
    assert fake.requests[0].url.params["api_key"] == KEY
