"""Every cache under ``cache_dir()`` is keyed by the content of what shapes it, not by a path: a file edited in
place (same path) must miss the cache (issue 25: a ``bm25:FILE`` corpus and a ``prompt_template=FILE`` entered
the evaluation cache's key as their paths, so an edited corpus left a stale "untrained" column)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from zerosearch import compare, paths
from zerosearch.config import load_train_config
from zerosearch.datasets import default_dev_files
from zerosearch.eval_settings import DataSelection, EvalSettings, EvalSpec
from zerosearch.llm.models import model_fingerprint, smollm2_cache_dir
from zerosearch.models.tiny import tiny_model_dir


def _corpus(path: Path, text: str) -> Path:
    path.write_text(json.dumps({"id": "a", "contents": f'"Title"\n{text}'}) + "\n", encoding="utf-8")
    return path


def test_a_file_edited_in_place_gets_another_digest_even_within_one_clock_tick(tmp_path):
    """Same path, same size, written right after the first digest (same mtime tick on coarse file systems):
    the remembered digest must not be served (git's racy case)."""
    f = tmp_path / "f.txt"
    f.write_text("aaaa")
    first = paths.file_digest(f)
    f.write_text("bbbb")
    assert paths.file_digest(f) != first
    assert paths.cache_key({"x": paths.file_digest(f)}) != paths.cache_key({"x": first})


def test_a_model_is_fingerprinted_by_the_content_of_its_files_not_its_path(tmp_path):
    a = tmp_path / "a"
    shutil.copytree(tiny_model_dir(), a)
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert model_fingerprint(str(a)) == model_fingerprint(str(b))  # moved, same content: the same key
    before = model_fingerprint(str(a))
    config = json.loads((a / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (a / "config.json").write_text(json.dumps(config))  # edited in place
    assert model_fingerprint(str(a)) != before
    edited = model_fingerprint(str(a))
    (a / "chat_template.jinja").write_text("{{ messages }}")  # a file the old fingerprint never looked at
    assert model_fingerprint(str(a)) != edited


def test_the_evaluation_cache_misses_when_the_corpus_or_the_template_is_edited_in_place(tmp_path):
    corpus = _corpus(tmp_path / "corpus.jsonl", "Jaws is a 1975 film.")
    template = tmp_path / "policy.txt"
    template.write_text("Answer {question}\n")
    spec = EvalSpec(data=DataSelection(default_dev_files(), limit=5), engine=f"bm25:{corpus}",
                    settings=EvalSettings(method="agent", batch_size=4, max_turns=2, prompt_template=str(template)))
    key = compare._cache_key("zerosearch:tiny", spec)
    assert compare._cache_key("zerosearch:tiny", replace(spec)) == key
    _corpus(corpus, "Jaws is a 1976 film.")
    assert compare._cache_key("zerosearch:tiny", spec) != key
    key = compare._cache_key("zerosearch:tiny", spec)
    template.write_text("Answer: {question}\n")
    assert compare._cache_key("zerosearch:tiny", spec) != key
    # a baseline that searches nothing is not keyed by the engine
    direct = replace(spec, settings=replace(spec.settings, method="direct", prompt_template=None))
    key = compare._cache_key("zerosearch:tiny", direct)
    _corpus(corpus, "Jaws is a 1977 film.")
    assert compare._cache_key("zerosearch:tiny", direct) == key


def test_the_warmup_cache_misses_when_its_engine_corpus_is_edited_in_place(tmp_path):
    from zerosearch.warmup import warmup_key

    corpus = _corpus(tmp_path / "corpus.jsonl", "Jaws is a 1975 film.")
    cfg = load_train_config(None, [f"warmup.engine=bm25:{corpus}"])
    key = warmup_key(cfg, "m", [], [], "t", False)
    _corpus(corpus, "Jaws is a 1976 film.")
    assert warmup_key(cfg, "m", [], [], "t", False) != key


def test_an_index_is_rebuilt_when_its_corpus_is_edited_in_place(tmp_path, monkeypatch):
    pytest.importorskip("bm25s")
    from zerosearch.search.local_index import open_or_build_index

    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))
    corpus = _corpus(tmp_path / "corpus.jsonl", "Jaws is a thriller film directed by Steven Spielberg.")
    first = open_or_build_index(corpus, "bm25")
    assert "Spielberg" in first.retrieve(["jaws director"], 1)[0][0].text
    _corpus(corpus, "Jaws is a thriller film directed by somebody else entirely.")
    again = open_or_build_index(corpus, "bm25")
    assert "Spielberg" not in again.retrieve(["jaws director"], 1)[0][0].text  # not the stale index
    assert len(list((tmp_path / "cache" / "indexes").iterdir())) == 2
    # an index directory given by name records what it was built from, and refuses other inputs
    named = tmp_path / "named"
    open_or_build_index(corpus, "bm25", index_dir=named)
    assert open_or_build_index(corpus, "bm25", index_dir=named).docs  # the same inputs: reused
    _corpus(corpus, "Jaws is a thriller film directed by nobody.")
    with pytest.raises(ValueError, match="was built from other inputs than the corpus given now"):
        open_or_build_index(corpus, "bm25", index_dir=named)


def test_a_dense_index_is_keyed_by_its_encoders_files(tmp_path):
    from zerosearch.search.local_index import default_index_dir

    corpus = _corpus(tmp_path / "corpus.jsonl", "Jaws is a 1975 film.")
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "modules.json").write_text("[]")
    (encoder / "1_Pooling").mkdir()
    (encoder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    before = default_index_dir(corpus, "dense", str(encoder))
    (encoder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert default_index_dir(corpus, "dense", str(encoder)) != before


def test_the_engine_fingerprint_reads_corpora_and_models_by_content(tmp_path):
    from zerosearch.search.factory import engine_fingerprint

    corpus = _corpus(tmp_path / "corpus.jsonl", "Jaws is a 1975 film.")
    bm25 = engine_fingerprint(f"bm25:{corpus}")
    assert engine_fingerprint(f"bm25:{corpus}") == bm25
    _corpus(corpus, "Jaws is a 1976 film.")
    assert engine_fingerprint(f"bm25:{corpus}") != bm25
    assert engine_fingerprint("example")["kind"] == "bm25"
    model = tmp_path / "sim"
    shutil.copytree(tiny_model_dir(), model)
    simulated = engine_fingerprint(f"simulated:{model}")
    (model / "generation_config.json").write_text('{"temperature": 0.1}')
    assert engine_fingerprint(f"simulated:{model}") != simulated
    # what a server serves cannot be seen from here: its address is all the key holds
    assert engine_fingerprint("http://127.0.0.1:8000/retrieve") == {"kind": "retrieval",
                                                                     "address": "http://127.0.0.1:8000/retrieve"}


def test_the_smollm2_conversion_is_keyed_by_the_gguf_content(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF version 1")
    first = smollm2_cache_dir(gguf)
    gguf.write_bytes(b"GGUF version 2")
    assert smollm2_cache_dir(gguf) != first


def test_the_tiny_model_is_keyed_by_its_builders_code(tmp_path, monkeypatch):
    import zerosearch.models.tiny as tiny

    source = tmp_path / "tiny.py"
    shutil.copy(tiny.__file__, source)
    monkeypatch.setattr(tiny, "__file__", str(source))
    key = tiny.tiny_model_key()
    source.write_text(source.read_text() + "\n# intermediate_size = hidden_size * 3\n")
    assert tiny.tiny_model_key() != key
