"""``zerosearch search``, ``serve-retriever`` and ``export-verl`` on the command line: a bad option is one
line naming it as typed, found before anything slow starts (a model, an index build, a server), and
output into a closed pipe ends quietly.

Nothing heavy runs: the parser and handlers are called in-process over a three-document BM25 corpus,
``build_engine`` / the index builder are replaced by tripwires where the point is that they are never
reached, and the one subprocess (a closed pipe) searches that small corpus. What only a running server
shows (the "serving" line, a port in use) is in tests/test_retrieval_server.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from zerosearch.commands import search_cmds, verl_cmds
from zerosearch.commands.errors import UsageError, run_command
from zerosearch.search import factory, local_index
from zerosearch.search.base import SearchResult

pytest.importorskip("bm25s")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))  # default index dirs land here

# corpus_file: tests/conftest.py


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zerosearch")
    sub = parser.add_subparsers(dest="command", required=True)
    search_cmds.add_search_parser(sub)
    search_cmds.add_serve_retriever_parser(sub)
    verl_cmds.add_export_verl_parser(sub)
    return parser.parse_args(argv)


def _parse_error(argv: list[str], capsys) -> str:
    """The argparse error line for ``argv`` (which must be refused with exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    args = _parse(argv)
    code = run_command(args)  # the handler under the CLI's error path, as ``zerosearch.cli.main`` runs it
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_index_build(monkeypatch):
    """Fail the test if serve-retriever gets as far as opening the index."""
    def tripwire(*args, **kwargs):
        raise AssertionError("the index was opened before the options were checked")

    monkeypatch.setattr(local_index, "open_or_build_index", tripwire)


@pytest.fixture
def no_engine_build(monkeypatch):
    """Fail the test if search gets as far as building the engine (an in-process simulator loads a model)."""
    def tripwire(*args, **kwargs):
        raise AssertionError("the engine was built before the options were checked")

    monkeypatch.setattr(factory, "build_engine", tripwire)


# --- serve-retriever: options checked first, named as typed (faults 1 and 2) -------------------------


@pytest.mark.parametrize("value", ["99999", "65536", "-1", "eighty"])
def test_serve_port_out_of_range_is_refused_at_parse_time(corpus_file, value, capsys):
    line = _parse_error(["serve-retriever", "--corpus", str(corpus_file), "--index", "bm25", "--port", value], capsys)
    assert line.startswith("zerosearch serve-retriever: error: argument --port: ")
    assert "65535" in line or "integer" in line


@pytest.mark.parametrize("flag", ["--topk", "--max-topk", "--max-batch", "--chunk-size"])
def test_serve_counts_below_one_are_refused_at_parse_time(corpus_file, flag, capsys):
    line = _parse_error(["serve-retriever", "--corpus", str(corpus_file), "--index", "bm25", flag, "0"], capsys)
    assert f"argument {flag}: must be an integer >= 1, got 0" in line


def test_serve_topk_over_max_topk_names_both_flags_before_loading(corpus_file, no_index_build, capsys):
    code, out, err = _run(["serve-retriever", "--corpus", str(corpus_file), "--index", "bm25", "--port", "0",
                           "--topk", "9", "--max-topk", "4"], capsys)
    assert code == 2 and out == ""
    assert err == "error: --topk 9 is over --max-topk 4; lower --topk or raise --max-topk\n"


def test_serve_encoder_with_bm25_names_the_flags(corpus_file, no_index_build, capsys):
    code, _, err = _run(["serve-retriever", "--corpus", str(corpus_file), "--index", "bm25", "--port", "0",
                         "--encoder", "intfloat/e5-base-v2"], capsys)
    assert code == 2
    assert err.startswith("error: --encoder is for --index dense") and err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--corpus", "--index-dir", "--encoder", "--host"])
def test_serve_empty_text_options_are_refused(corpus_file, flag, capsys):
    argv = ["serve-retriever", "--corpus", str(corpus_file), "--index", "dense", flag, ""]
    assert f"argument {flag}: must not be empty" in _parse_error(argv, capsys)


@pytest.mark.parametrize("host, message", [
    ("nonexistent.invalid", "--host nonexistent.invalid is not an address or a name"),
    ("192.0.2.1", "--host 192.0.2.1 is not an address of this machine"),  # TEST-NET-1: never local
])
def test_serve_host_that_cannot_be_bound_is_one_line(corpus_file, no_index_build, host, message, capsys):
    code, _, err = _run(["serve-retriever", "--corpus", str(corpus_file), "--index", "bm25", "--host", host,
                         "--port", "0"], capsys)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


def test_a_port_taken_between_bind_and_listen_is_reported_as_in_use():
    """Two servers may both bind a port (SO_REUSEADDR) while building their indexes; the second to
    listen must get the same one line as a port in use at start."""
    from zerosearch.search.retrieval_server import open_socket

    first = open_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        second = open_socket("127.0.0.1", port)
    except OSError:
        first.close()
        pytest.skip("this system does not let two sockets bind one port")
    with first, second:
        first.listen()
        args = argparse.Namespace(host="127.0.0.1", port=port)
        with pytest.raises(UsageError, match=f"port {port} is in use on 127.0.0.1; pass --port N"):
            search_cmds._listen(second, args)


# --- serve-retriever: an encoder that does not load (fault 3) -----------------------------------------


def test_serve_dense_with_a_missing_encoder_is_one_line_naming_the_flag(corpus_file, tmp_path, capsys):
    pytest.importorskip("faiss")
    pytest.importorskip("sentence_transformers")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: nothing may be downloaded
    code, _, err = _run(["serve-retriever", "--corpus", str(corpus_file), "--index", "dense", "--port", "0",
                         "--index-dir", str(tmp_path / "index"), "--encoder", "nonexistent-model"], capsys)
    assert code == 2
    error = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "Traceback" not in err
    assert error[0].startswith("error: --encoder 'nonexistent-model' could not be loaded (")
    assert "sentence-transformers model" in error[0] and "leave --encoder out" in error[0]
    assert not (tmp_path / "index").exists()  # no half-built index left behind


# --- search: flags that do not fit the engine (fault 5) -----------------------------------------------


def test_simulated_without_answer_says_pass_answer_before_loading_the_model(no_engine_build, capsys):
    code, out, err = _run(["search", "Jaws director", "--engine", "simulated:zerosearch:tiny"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "pass --answer TEXT" in err and err.count("\n") == 1
    assert "SearchRequest" not in err and "golden_answers" not in err


class _FakeEngine:
    name = "simulated"

    def __init__(self):
        self.requests = []

    def search(self, requests, topk):
        self.requests.extend(requests)
        return [SearchResult(documents=[], noisy=r.noisy) for r in requests]


def test_simulated_prompt_mode_noisy_needs_no_answer(monkeypatch, capsys):
    """The original's noisy few-shot prompt tells the model neither question nor answer."""
    engine = _FakeEngine()
    monkeypatch.setattr(factory, "build_engine", lambda spec, **options: engine)
    code, out, _ = _run(["search", "Jaws director", "--engine", "simulated:zerosearch:tiny", "--mode", "prompt",
                         "--noisy"], capsys)
    assert code == 0 and "[noisy]" in out
    assert [(r.query, r.golden_answers, r.noisy) for r in engine.requests] == [("Jaws director", (), True)]


@pytest.mark.parametrize("flags, engine, named", [
    (["--noisy"], "example", "--noisy"),
    (["--noisy"], "http://127.0.0.1:8000/retrieve", "--noisy"),
    (["--question", "Who directed Jaws?"], "google", "--question"),
    (["--answer", "Spielberg"], "bm25:corpus.jsonl", "--answer"),
    (["--mode", "prompt"], "example", "--mode"),
    (["--served-model", "m", "--answer", "a"], "simulated:zerosearch:tiny", "--served-model"),
    (["--device", "cpu", "--answer", "a"], "simulated:http://127.0.0.1:8001/v1", "--device"),
    (["--index-dir", "idx", "--answer", "a"], "simulated:zerosearch:tiny", "--index-dir"),
])
def test_a_flag_the_engine_would_ignore_or_reject_is_named(no_engine_build, flags, engine, named, capsys):
    code, _, err = _run(["search", "q", "--engine", engine, *flags], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {named} applies only to ") and f"not to --engine {engine}" in err


@pytest.mark.parametrize("argv, named", [
    (["search", ""], "argument query: must not be empty"),
    (["search", "q", "--topk", "0"], "argument --topk: must be an integer >= 1"),
    (["search", "q", "--answer", " "], "argument --answer: must not be empty"),
    (["search", "q", "--index-dir", ""], "argument --index-dir: must not be empty"),
])
def test_search_bad_values_are_refused_at_parse_time(argv, named, capsys):
    assert named in _parse_error(argv, capsys)


# --- output into a closed pipe (fault 4) --------------------------------------------------------------


def test_search_into_a_closed_pipe_exits_quietly(corpus_file, tmp_path):
    """`zerosearch search ... --json | head`: the reader goes away; no BrokenPipeError traceback, now
    or when Python flushes stdout at exit."""
    env = {**os.environ, "ZEROSEARCH_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "zerosearch.cli", "search", "Jaws", "--engine", f"bm25:{corpus_file}", "--json",
         "--index-dir", str(tmp_path / "index")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # the reader is gone before the command writes anything
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == search_cmds.EXIT_CLOSED_PIPE
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


def test_export_verl_into_a_closed_pipe_exits_quietly(tmp_path, monkeypatch, capsys):
    from zerosearch.datasets import default_dev_files

    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        code, _, err = _run(["export-verl", "--data", default_dev_files()[0], "--out", str(tmp_path)], capsys)
        assert os.path.samestat(os.fstat(closed.fileno()), os.stat(os.devnull))  # stdout now goes nowhere
    assert code == search_cmds.EXIT_CLOSED_PIPE and "Traceback" not in err


# --- export-verl: empty strings (fault 6) -------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--agent-name", "--split", "--out", "--data"])
def test_export_verl_empty_options_are_errors_naming_them(flag, tmp_path, capsys):
    argv = {"--data": "a.jsonl", "--out": str(tmp_path / "out")}
    argv[flag] = "  " if flag == "--split" else ""
    line = _parse_error(["export-verl", *[part for item in argv.items() for part in item]], capsys)
    assert line == f"zerosearch export-verl: error: argument {flag}: must not be empty; give a value"
    assert not (tmp_path / "out").exists()


def test_socket_errors_read_as_what_to_change():
    import errno

    assert search_cmds._socket_error(OSError(errno.EACCES, "Permission denied"), "0.0.0.0", 80).startswith(
        "port 80 on 0.0.0.0 needs more privileges")
    assert "pass another --host or --port" in search_cmds._socket_error(OSError(errno.EINVAL, "bad"), "h", 1)


def test_port_zero_is_accepted():
    assert _parse(["serve-retriever", "--corpus", "c.jsonl", "--index", "bm25", "--port", "0"]).port == 0
