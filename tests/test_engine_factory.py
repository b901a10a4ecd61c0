"""build_engine: each spec form gives the right engine; bad specs and options say what to write.

Nothing heavy starts: local indexes are built over a few documents (the shipped corpus once, ~3 s),
the dense index builder and the in-process chat model are replaced by recorders (their own tests
cover them), and HTTP engines are only constructed (they connect on first search).
"""

from __future__ import annotations


import pytest

from zerosearch.llm.openai_backend import OpenAIChatModel
from zerosearch.search import local_index
from zerosearch.search.factory import ENGINE_SPECS, build_engine
from zerosearch.search.http_engine import RetrievalHTTPEngine
from zerosearch.search.serpapi import KEY_ENV_VARS, MissingAPIKeyError, SerpAPIEngine
from zerosearch.search.simulated import SimulatedSearchEngine

pytest.importorskip("bm25s")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))  # default index dirs land here

# corpus_file: tests/conftest.py


def test_bm25_spec_builds_a_local_engine(corpus_file, tmp_path):
    engine = build_engine(f"bm25:{corpus_file}", index_dir=tmp_path / "index")
    assert isinstance(engine, local_index.LocalIndexEngine)
    assert isinstance(engine.index, local_index.BM25Index) and engine.name == "bm25"
    assert (tmp_path / "index" / "index.json").is_file()


def test_example_is_bm25_over_the_shipped_corpus(tmp_path):
    engine = build_engine("example", index_dir=tmp_path / "example-index")
    assert isinstance(engine.index, local_index.BM25Index)
    assert len(engine.index.docs) == 10787


def test_dense_spec_goes_through_open_or_build_index(monkeypatch, corpus_file):
    calls = []

    def fake_open(corpus, kind, **options):  # a real dense build loads an encoder: not here
        calls.append((str(corpus), kind, options))
        return local_index.BM25Index.build(local_index.load_corpus(corpus))

    monkeypatch.setattr(local_index, "open_or_build_index", fake_open)
    engine = build_engine(f"dense:{corpus_file}", encoder="intfloat/e5-base-v2", index_dir=None)
    assert isinstance(engine, local_index.LocalIndexEngine)
    assert calls == [(str(corpus_file), "dense", {"encoder": "intfloat/e5-base-v2"})]


@pytest.mark.parametrize(
    "spec, url",
    [
        ("http://127.0.0.1:8000/retrieve", "http://127.0.0.1:8000/retrieve"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/retrieve"),
        ("retrieval:https://search.example.org/retrieve", "https://search.example.org/retrieve"),
        ("retrieval:http://10.0.0.2:9000/", "http://10.0.0.2:9000/retrieve"),
    ],
)
def test_url_specs_build_the_retrieval_client(spec, url):
    engine = build_engine(spec, batch_size=8, timeout=5)
    assert isinstance(engine, RetrievalHTTPEngine)
    assert (engine.url, engine.batch_size, engine.timeout, engine.name) == (url, 8, 5, "retrieval")


def test_google_spec_builds_serpapi_and_needs_a_key(monkeypatch):
    for name in KEY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MissingAPIKeyError, match="SERPAPI_API_KEY"):
        build_engine("google")
    monkeypatch.setenv("SERPAPI_API_KEY", "test-key")
    engine = build_engine("google", max_concurrency=2)
    assert isinstance(engine, SerpAPIEngine) and engine.name == "google" and engine.max_concurrency == 2


def test_simulated_url_uses_an_openai_compatible_server():
    engine = build_engine("simulated:http://127.0.0.1:8001/v1", served_model="sim-14b", mode="prompt")
    assert isinstance(engine, SimulatedSearchEngine) and engine.mode == "prompt"
    assert isinstance(engine.chat_model, OpenAIChatModel)
    assert (engine.chat_model.model, engine.chat_model.base_url) == ("sim-14b", "http://127.0.0.1:8001/v1")
    bare = build_engine("simulated:http://127.0.0.1:8001", served_model="sim-14b")
    assert bare.chat_model.base_url == "http://127.0.0.1:8001/v1"


def test_simulated_url_without_a_model_name_asks_the_server():
    with pytest.raises(ValueError, match="--served-model"):
        build_engine("simulated:http://127.0.0.1:9/v1")  # nothing listens on port 9


def test_simulated_model_is_loaded_in_process(monkeypatch):
    from zerosearch.llm import transformers_backend

    loaded = []

    class Recorder:
        name = "recorder"

        def __init__(self, path, **options):
            loaded.append((path, options))

    monkeypatch.setattr(transformers_backend, "TransformersChatModel", Recorder)
    monkeypatch.setattr("zerosearch.llm.models.resolve_model_path", lambda spec: f"/resolved/{spec}")
    engine = build_engine("simulated:zerosearch:smollm2-135m-instruct", device="cpu", mode="finetuned")
    assert isinstance(engine, SimulatedSearchEngine) and isinstance(engine.chat_model, Recorder)
    assert loaded == [("/resolved/zerosearch:smollm2-135m-instruct", {"device": "cpu"})]


@pytest.mark.parametrize("spec", ["", "bing", "bm25", "faiss:corpus.jsonl", "ftp://host/retrieve", "simulate:x"])
def test_unknown_spec_lists_the_accepted_forms(spec):
    with pytest.raises(ValueError) as excinfo:
        build_engine(spec)
    message = str(excinfo.value)
    assert f"unknown search engine {spec!r}" in message
    assert ENGINE_SPECS in message
    for form in ("example", "bm25:PATH_TO_CORPUS", "dense:PATH_TO_CORPUS", "http://HOST:PORT/retrieve",
                 "google", "simulated:MODEL", "simulated:URL"):
        assert form in message


@pytest.mark.parametrize(
    "spec, match",
    [
        ("bm25:", "needs a corpus file"),
        ("simulated:", "needs a model"),
        ("retrieval:localhost:8000", "needs an http"),
    ],
)
def test_incomplete_specs_say_what_is_missing(spec, match):
    with pytest.raises(ValueError, match=match):
        build_engine(spec)


def test_missing_corpus_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        build_engine(f"bm25:{tmp_path / 'nope.jsonl'}")


def test_an_option_the_engine_does_not_take_is_an_error(corpus_file):
    with pytest.raises(ValueError, match="mode do not apply to engine 'bm25:.*it takes: encoder, index_dir"):
        build_engine(f"bm25:{corpus_file}", mode="prompt")
    assert isinstance(build_engine(f"bm25:{corpus_file}", mode=None, index_dir=None), local_index.LocalIndexEngine)


@pytest.mark.parametrize("spec, message", [
    ("bing", "unknown search engine 'bing'"),
    ("", "unknown search engine ''"),
    ("bm25:", "needs a corpus file"),
    ("dense:/nonexistent.jsonl", "corpus file /nonexistent.jsonl does not exist"),
    ("retrieval:ftp://x", r"needs an http\(s\) URL"),
    ("simulated:", "needs a model after the colon"),
    ("simulated:/nonexistent/model", "no model directory at '/nonexistent/model'"),
])
def test_check_engine_spec_finds_a_bad_spec_without_building_anything(spec, message, monkeypatch):
    from zerosearch.search.factory import check_engine_spec

    monkeypatch.setattr(local_index, "open_or_build_index", lambda *a, **k: pytest.fail("built an index"))
    with pytest.raises(Exception, match=message):
        check_engine_spec(spec)


def test_check_engine_spec_passes_good_specs_untouched(corpus_file, monkeypatch):
    from zerosearch.search.factory import check_engine_spec

    monkeypatch.setattr(local_index, "open_or_build_index", lambda *a, **k: pytest.fail("built an index"))
    for spec in ("example", f"bm25:{corpus_file}", f"dense:{corpus_file}", "http://127.0.0.1:1/retrieve",
                 "retrieval:http://127.0.0.1:1", "simulated:zerosearch:tiny", "simulated:http://127.0.0.1:1/v1"):
        check_engine_spec(spec)
    monkeypatch.delenv("SERPAPI_API_KEY", raising=False)
    monkeypatch.delenv("SER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="google needs a SerpAPI key"):
        check_engine_spec("google")
