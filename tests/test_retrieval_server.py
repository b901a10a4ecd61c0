"""The retrieval server and its client, over real HTTP on loopback.

* A real ``serve-retriever`` process (``python -m zerosearch.cli serve-retriever`` once the CLI has
  the command, else the same parser and handler run by a two-line script) serves a BM25 index of
  300 HotpotQA paragraphs; it is queried with raw HTTP (Search-R1's exact response shape, request
  validation) and through :class:`RetrievalHTTPEngine` and ``zerosearch search``.
* A small scripted FastAPI server (uvicorn in a thread) answers 500/429 N times then succeeds,
  always 400, too slowly, or with a malformed body, to check the client's retries and error reports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("bm25s")

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402

from support import serve_in_thread  # noqa: E402
from zerosearch.commands.search_cmds import add_search_parser  # noqa: E402
from zerosearch.search.base import SearchRequest  # noqa: E402
from zerosearch.search.http_engine import RetrievalHTTPEngine  # noqa: E402

pytestmark = pytest.mark.integration

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_CORPUS = SHARED_DATA / "corpus" / "hotpotqa_distractor_paragraphs.jsonl"
CORPUS_ROWS = 300
# titles of paragraphs among the first 300 that BM25 ranks first when queried with the title, and
# whose words occur in at least 3 paragraphs (BM25 leaves out documents sharing no word with the query)
KNOWN_TITLES = ["Socialist Revolutionary Party", "Communism in Russia", "Ford flathead V8 engine", "Fyre Festival"]
STARTUP_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy


# --- the real server -------------------------------------------------------------------------------


def _serve_command(args: list[str]) -> list[str]:
    """``zerosearch serve-retriever ARGS`` through the CLI if it has the command, else the same handler."""
    probe = subprocess.run([sys.executable, "-m", "zerosearch.cli", "serve-retriever", "--help"],
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "zerosearch.cli", "serve-retriever", *args]
    script = (
        "import argparse, sys\n"
        "from zerosearch.commands.search_cmds import add_serve_retriever_parser\n"
        "parser = argparse.ArgumentParser(prog='zerosearch')\n"
        "add_serve_retriever_parser(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    return [sys.executable, "-c", script, "serve-retriever", *args]


def _wait_until_up(process: subprocess.Popen, url: str) -> None:
    deadline = time.time() + STARTUP_SECONDS
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-retriever exited with {process.returncode}:\n{process.stderr.read()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"serve-retriever did not answer within {STARTUP_SECONDS} s:\n{process.stderr.read()}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[dict]:
    if not SHARED_CORPUS.is_file():
        pytest.skip(f"shared corpus not found: {SHARED_CORPUS}")
    with SHARED_CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, CORPUS_ROWS)]


@pytest.fixture(scope="module")
def server_url(corpus, tmp_path_factory) -> str:
    """Base URL of a real ``serve-retriever`` over BM25 of the first 300 paragraphs."""
    tmp = tmp_path_factory.mktemp("retriever")
    corpus_file = tmp / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(row) + "\n" for row in corpus), encoding="utf-8")
    port = _free_port()
    command = _serve_command(["--corpus", str(corpus_file), "--index", "bm25", "--index-dir", str(tmp / "index"),
                              "--host", "127.0.0.1", "--port", str(port)])
    env = {**os.environ, "ZEROSEARCH_CACHE": str(tmp / "cache")}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, base + "/health")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def _small_corpus(corpus, tmp_path) -> Path:
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(row) + "\n" for row in corpus[:20]), encoding="utf-8")
    return corpus_file


def test_port_0_serves_on_a_free_port_and_says_so_only_once_listening(corpus, tmp_path):
    """The "serving" line names the port the system picked, and is printed only when the server answers:
    a request sent the moment it appears succeeds, with no retry."""
    command = _serve_command(["--corpus", str(_small_corpus(corpus, tmp_path)), "--index", "bm25",
                              "--index-dir", str(tmp_path / "index"), "--port", "0"])
    env = {**os.environ, "ZEROSEARCH_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        for line in process.stderr:  # ends if the process exits
            seen.append(line)
            if "serving" in line:
                break
        serving = [line for line in seen if "serving" in line]
        assert serving, "".join(seen)
        prefix = "zerosearch: serving the bm25 index of "
        assert serving[0].startswith(prefix) and "(20 documents) at http://127.0.0.1:" in serving[0]
        url = serving[0].rsplit(" at ", 1)[1].strip()
        port = int(url.split(":")[2].split("/")[0])
        assert port != 0 and url == f"http://127.0.0.1:{port}/retrieve"
        health = httpx.get(url.replace("/retrieve", "/health"), timeout=5)  # no waiting: it already listens
        assert health.status_code == 200 and health.json()["num_docs"] == 20
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def test_a_port_in_use_is_one_line_and_nothing_is_served_or_built(corpus, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = _serve_command(["--corpus", str(_small_corpus(corpus, tmp_path)), "--index", "bm25",
                                  "--index-dir", str(tmp_path / "index"), "--port", str(port)])
        env = {**os.environ, "ZEROSEARCH_CACHE": str(tmp_path / "cache")}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=STARTUP_SECONDS)
    assert done.returncode == 2
    assert done.stderr == f"error: port {port} is in use on 127.0.0.1; pass --port N (or --port 0 for a free one)\n"
    assert not (tmp_path / "index").exists()  # checked before the index was built


def _post(server_url: str, body) -> httpx.Response:
    return httpx.post(server_url + "/retrieve", json=body, timeout=10)


def test_health_reports_the_index(server_url):
    health = httpx.get(server_url + "/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["index"] == "bm25"
    assert health["num_docs"] == CORPUS_ROWS
    assert health["default_topk"] == 3
    assert health["limits"] == {"max_topk": 50, "max_batch": 4096, "max_query_chars": 2000}
    assert health["chunk_size"] == 256


def test_response_shape_with_scores_is_search_r1s(server_url, corpus):
    response = _post(server_url, {"queries": KNOWN_TITLES[:2], "topk": 3, "return_scores": True})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"result"}
    assert len(body["result"]) == 2
    by_id = {row["id"]: row["contents"] for row in corpus}
    for title, items in zip(KNOWN_TITLES, body["result"]):
        assert len(items) == 3
        for item in items:
            assert set(item) == {"document", "score"}
            assert set(item["document"]) == {"id", "contents"}
            assert isinstance(item["score"], float)
            assert item["document"]["contents"] == by_id[item["document"]["id"]]  # the corpus row, verbatim
        assert items[0]["document"]["contents"].startswith(f'"{title}"\n')
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)


def test_without_scores_items_are_bare_documents_and_topk_defaults_to_3(server_url):
    body = _post(server_url, {"queries": KNOWN_TITLES}).json()  # Search-R1 defaults: no scores, topk 3
    assert len(body["result"]) == len(KNOWN_TITLES)
    for title, items in zip(KNOWN_TITLES, body["result"]):
        assert len(items) == 3
        assert all(set(item) == {"id", "contents"} for item in items)
        assert items[0]["contents"].startswith(f'"{title}"\n')
    explicit = _post(server_url, {"queries": KNOWN_TITLES[:1], "topk": 1, "return_scores": False}).json()
    assert explicit["result"] == [body["result"][0][:1]]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"queries": []}, "queries"),
        ({"topk": 3}, "queries"),
        ({"queries": "who wrote Hamlet"}, "queries"),
        ({"queries": ["ok", 7]}, "queries.1"),
        ({"queries": ["x" * 2001]}, "queries.0"),
        ({"queries": ["q"] * 4097}, "queries"),
        ({"queries": ["q"], "topk": 0}, "topk"),
        ({"queries": ["q"], "topk": 51}, "topk"),
        ({"queries": ["q"], "topk": "3"}, "topk"),
        ({"queries": ["q"], "return_scores": "yes"}, "return_scores"),
        ({"queries": ["q"], "top_k": 3}, "top_k"),
        (["q"], "body"),
    ],
)
def test_invalid_requests_get_422_saying_what_to_fix(server_url, body, field):
    response = _post(server_url, body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith("invalid request: ")
    assert f"{field}: " in error
    assert '"queries"' in error  # an example of a valid body


def test_body_that_is_not_json_gets_422(server_url):
    response = httpx.post(server_url + "/retrieve", content=b"{queries: [", timeout=5,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["error"]


def test_engine_parses_documents_and_keeps_order_across_chunks(server_url, corpus):
    titles = [row["contents"].split("\n", 1)[0].strip('"') for row in corpus[:10]]
    requests = [SearchRequest(query=t, noisy=i % 2 == 1) for i, t in enumerate(titles)]
    with RetrievalHTTPEngine(server_url + "/retrieve", batch_size=4) as engine:
        results = engine.search(requests, topk=2)
        assert (engine.calls, engine.retries, engine.failures) == (3, 0, 0)  # 10 queries in chunks of 4
        singles = [engine.search([r], topk=2)[0] for r in requests]
        known = engine.search([SearchRequest(query=t) for t in KNOWN_TITLES], topk=1)
    assert [r.documents for r in results] == [r.documents for r in singles]
    assert [r.noisy for r in results] == [r.noisy for r in requests]
    by_id = {row["id"]: row["contents"] for row in corpus}
    for result in results:
        assert result.ok and result.attempts == 1 and 1 <= len(result.documents) <= 2
        for doc in result.documents:
            assert by_id[doc.id] == f'"{doc.title}"\n{doc.text}'  # title unquoted, text without the title
            assert isinstance(doc.score, float)
    assert [r.documents[0].title for r in known] == KNOWN_TITLES


def test_engine_reports_a_topk_over_the_server_limit_without_retrying(server_url):
    with RetrievalHTTPEngine(server_url + "/retrieve", backoff=0.01) as engine:
        [result] = engine.search([SearchRequest(query="Pashmina")], topk=51)
    assert not result.ok and result.attempts == 1
    assert "HTTP 422" in result.error and "topk" in result.error
    assert engine.retries == 0 and engine.failures == 1


def test_search_command_prints_numbered_documents(server_url, capsys):
    parser = argparse.ArgumentParser(prog="zerosearch")
    add_search_parser(parser.add_subparsers(dest="command", required=True))
    engine = f"retrieval:{server_url}"  # the factory completes the path to /retrieve
    args = parser.parse_args(["search", "Fyre Festival", "--engine", engine, "--topk", "2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "retrieval" in out and "\n1. Fyre Festival" in out and "\n2. " in out and "\n3. " not in out
    args = parser.parse_args(["search", "Fyre Festival", "--engine", engine, "--topk", "1", "--json"])
    assert args.func(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["error"] is None and [d["title"] for d in payload["documents"]] == ["Fyre Festival"]


def test_retriever_failures_are_http_500_with_the_reason():
    from fastapi.testclient import TestClient

    from zerosearch.search.retrieval_server import create_app

    class Broken:
        def retrieve(self, queries, topk):
            raise MemoryError("index too large")

    class Short:
        def retrieve(self, queries, topk):
            return []

    for retriever, message in [(Broken(), "retrieval failed: MemoryError: index too large"),
                               (Short(), "returned 0 result lists for 1 queries")]:
        response = TestClient(create_app(retriever)).post("/retrieve", json={"queries": ["q"]})
        assert response.status_code == 500 and message in response.json()["error"]


class _Recording:
    """A retriever that answers instantly and records the size of every batch it is handed."""

    def __init__(self):
        self.batches: list[int] = []

    def retrieve(self, queries, topk):
        from zerosearch.search.base import Document

        self.batches.append(len(queries))
        return [[Document(text=f"about {q}", title=q, id=q)] for q in queries]


def test_large_requests_are_served_in_bounded_chunks_in_order():
    """Issue 14.5: Search-R1's client sends a whole rollout batch at once (often over 2,000 queries)."""
    from fastapi.testclient import TestClient

    from zerosearch.search.retrieval_server import create_app

    retriever = _Recording()
    client = TestClient(create_app(retriever))
    queries = [f"q{i}" for i in range(4096)]
    response = client.post("/retrieve", json={"queries": queries, "topk": 1})
    assert response.status_code == 200
    assert [items[0]["id"] for items in response.json()["result"]] == queries
    assert retriever.batches == [256] * 16  # the index never sees more than chunk_size at once
    retriever.batches.clear()
    small = TestClient(create_app(retriever, max_batch=10, chunk_size=3))
    assert small.post("/retrieve", json={"queries": queries[:10]}).status_code == 200
    assert retriever.batches == [3, 3, 3, 1]
    over = small.post("/retrieve", json={"queries": queries[:11]})
    assert over.status_code == 422 and "at most 10 strings" in over.json()["error"]


def test_engine_splits_its_batches_to_the_servers_limit():
    from zerosearch.search.retrieval_server import create_app

    retriever = _Recording()
    with serve_in_thread(create_app(retriever, max_batch=5)) as url:
        with RetrievalHTTPEngine(url + "/retrieve", batch_size=64) as engine:
            results = engine.search([SearchRequest(query=f"q{i}") for i in range(12)], topk=1)
            assert engine.server_max_batch == 5 and engine.chunk_size() == 5
            assert (engine.calls, engine.failures) == (3, 0)
    assert all(r.ok for r in results) and [r.documents[0].id for r in results] == [f"q{i}" for i in range(12)]
    assert retriever.batches == [5, 5, 2]


@pytest.mark.integration
def test_load_eight_clients_of_2000_queries_each(server_url):
    """8 concurrent clients each POST 2,000 queries in one request (as Search-R1's client does) to the
    real server over BM25: every one is answered, complete and in order."""
    from concurrent.futures import ThreadPoolExecutor

    words = ["Russia", "engine", "festival", "party", "music", "river", "film", "war", "city", "football"]

    def client(c: int) -> tuple[int, list, float]:
        queries = [f"{words[(c + i) % len(words)]} {words[(i * 7) % len(words)]} {i}" for i in range(2000)]
        start = time.perf_counter()
        response = httpx.post(server_url + "/retrieve", json={"queries": queries, "topk": 3}, timeout=600)
        return response.status_code, response.json().get("result", []), time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(client, range(8)))
    wall = time.perf_counter() - start
    for status, result, _ in answers:
        assert status == 200
        assert len(result) == 2000 and all(1 <= len(items) <= 3 for items in result)
    print(f"8 clients x 2,000 queries (top-3, BM25 over {CORPUS_ROWS} paragraphs): {wall:.1f} s wall, "
          f"{16000 / wall:.0f} queries/s; slowest client {max(a[2] for a in answers):.1f} s")


# --- failure handling against a scripted server ---------------------------------------------------


def _ok_body(queries: list[str]) -> dict:
    return {"result": [[{"document": {"id": "1", "contents": f'"T"\n{q}'}, "score": 1.0}] for q in queries]}


class ScriptedServer:
    """``/{script}/{key}/retrieve``: ``fail500-N``/``fail429-N`` (fail the first N requests for
    ``key``), ``bad400`` (always 400), ``slow`` (sleep past the client's timeout), ``garbage``
    (200 with a wrong shape), ``notjson`` (200 with text)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.app = FastAPI()
        self.app.post("/{script}/{key}/retrieve")(self.retrieve)

    async def retrieve(self, script: str, key: str, body: dict):
        self.seen[key] += 1  # one event loop: no lock needed
        name, _, count = script.partition("-")
        if name in ("fail500", "fail429") and self.seen[key] <= int(count):
            return JSONResponse(status_code=int(name[4:]), content={"error": "try later"})
        if name == "bad400":
            return JSONResponse(status_code=400, content={"error": "bad request: no such collection"})
        if name == "slow":
            import asyncio

            await asyncio.sleep(SLOW_SECONDS)
        if name == "garbage":
            return {"results": []}
        if name == "notjson":
            return PlainTextResponse("<html>proxy error</html>")
        return _ok_body(body["queries"])


# no test here depends on how fast the machine is: loopback answers take milliseconds beside CLIENT_TIMEOUT,
# and a "slow" answer is far slower than any timeout a test sets
CLIENT_TIMEOUT = 3.0
SLOW_SECONDS = 120.0


@pytest.fixture(scope="module")
def scripted():
    server = ScriptedServer()
    with serve_in_thread(server.app) as url:
        server.base = url
        yield server


def _engine(url: str, **kwargs) -> RetrievalHTTPEngine:
    return RetrievalHTTPEngine(url, **{"timeout": CLIENT_TIMEOUT, "backoff": 0.01, "backoff_max": 0.05, **kwargs})


REQUESTS = [SearchRequest(query="a"), SearchRequest(query="b", noisy=True)]


@pytest.mark.parametrize("script", ["fail500-2", "fail429-2"])
def test_5xx_and_429_are_retried_then_succeed(scripted, script):
    with _engine(f"{scripted.base}/{script}/{script}-ok/retrieve", max_retries=3) as engine:
        results = engine.search(REQUESTS, topk=1)
    assert all(r.ok and r.attempts == 3 for r in results)
    assert [r.documents[0].text for r in results] == ["a", "b"]
    assert [r.noisy for r in results] == [False, True]
    assert (engine.calls, engine.retries, engine.failures) == (1, 2, 0)
    assert scripted.seen[f"{script}-ok"] == 3


def test_a_chunk_that_keeps_failing_is_an_error_for_each_request(scripted):
    with _engine(f"{scripted.base}/fail500-99/keeps-failing/retrieve", max_retries=2, batch_size=1) as engine:
        results = engine.search(REQUESTS, topk=1)
    assert all(not r.ok and r.attempts == 3 and r.documents == [] for r in results)
    assert "HTTP 500" in results[0].error and "try later" in results[0].error
    assert "after 3 attempts" in results[0].error
    assert (engine.calls, engine.retries, engine.failures) == (2, 4, 2)
    assert scripted.seen["keeps-failing"] == 6


def test_400_is_not_retried(scripted):
    with _engine(f"{scripted.base}/bad400/no-retry/retrieve", max_retries=3) as engine:
        results = engine.search(REQUESTS, topk=1)
    assert all(not r.ok and r.attempts == 1 for r in results)
    assert "HTTP 400" in results[0].error and "no such collection" in results[0].error
    assert engine.retries == 0 and scripted.seen["no-retry"] == 1


def test_timeout_is_retried_then_reported(scripted):
    start = time.monotonic()
    with _engine(f"{scripted.base}/slow/slow/retrieve", max_retries=1, timeout=0.5) as engine:
        [result] = engine.search(REQUESTS[:1], topk=1)
    assert not result.ok and result.attempts == 2
    assert "Timeout" in result.error
    assert engine.retries == 1
    assert time.monotonic() - start < SLOW_SECONDS / 2  # the client gave up; it did not wait for the server


@pytest.mark.parametrize("script, message", [("garbage", "no 'result' list"), ("notjson", "not JSON")])
def test_malformed_answers_are_errors_not_retried(scripted, script, message):
    with _engine(f"{scripted.base}/{script}/{script}/retrieve", max_retries=3) as engine:
        [result] = engine.search(REQUESTS[:1], topk=1)
    assert not result.ok and result.attempts == 1
    assert "MalformedResponse" in result.error and message in result.error


def test_connection_refused_is_retried_then_reported():
    with _engine(f"http://127.0.0.1:{_free_port()}/retrieve", max_retries=2) as engine:
        [result] = engine.search(REQUESTS[:1], topk=1)
    assert not result.ok and result.attempts == 3
    assert "ConnectError" in result.error
    assert engine.retries == 2 and engine.failures == 1
