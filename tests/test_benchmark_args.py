"""The benchmarks' argument checks (benchmarks/_args.py and the scripts' parse steps): one line, before any work."""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SHARED_DATA = REPO.parent / "shared" / "data"


def _load(name: str):
    """A benchmarks/ module, loaded by path (they are scripts, not a package)."""
    key = f"zerosearch_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


args = _load("_args")


@pytest.mark.parametrize("fn, good, bad", [
    (args.positive_int, [("1", 1), ("32", 32)], ["0", "-1", "1.5", "x", ""]),
    (args.non_negative_int, [("0", 0), ("4", 4)], ["-1", "x"]),
    (args.positive_float, [("0.1", 0.1), ("2", 2.0)], ["0", "-1", "nan", "inf", "x"]),
    (args.non_negative_float, [("0", 0.0), ("0.8", 0.8)], ["-0.1", "nan", "inf", "x"]),
])
def test_number_types(fn, good, bad):
    for text, value in good:
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            fn(text)


def test_argparse_names_the_option_in_one_line(capsys):
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--pairs", type=args.positive_int, default=3)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--pairs", "0"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "bench: error: argument --pairs: must be an integer >= 1, got 0"


def test_existing_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("{}\n")
    assert args.existing_file(str(path)) == path
    with pytest.raises(argparse.ArgumentTypeError, match="does not exist"):
        args.existing_file(str(tmp_path / "missing.jsonl"))
    with pytest.raises(argparse.ArgumentTypeError, match="is not a file"):
        args.existing_file(str(tmp_path))


def test_key_value():
    assert args.key_value("lr=1e-6") == "lr=1e-6"
    assert args.key_value("engine.spec=a=b") == "engine.spec=a=b"
    for bad in ("bogus", "=1", " =1"):
        with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
            args.key_value(bad)


def test_check_overrides_names_the_option():
    assert args.check_overrides(["seed=1"], ["lr=1e-5"]) is None
    problem = args.check_overrides(["seed=1"], ["bogus=1"], "--set")
    assert problem.startswith("--set: unknown config key 'bogus'")
    # a problem in the script's own overrides is not blamed on the option
    problem = args.check_overrides(["algorithm=grpo", "rollouts_per_prompt=1"], ["lr=1e-5"], "--set")
    assert "rollouts_per_prompt" in problem and not problem.startswith("--set")


def test_read_jsonl_with_fields(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q?", "metadata": {"supporting_titles": ["A"]}}\n\n'
                    '{"question": "r?", "metadata": {}}\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:3 has no field 'metadata\.supporting_titles'"):
        args.read_jsonl_with_fields(path, ["question", "metadata.supporting_titles"])
    assert len(args.read_jsonl_with_fields(path, ["question"])) == 2
    path.write_text('{"contents": "x"}\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:1 has no field 'question' \(found fields \['contents'\]\)"):
        args.read_jsonl_with_fields(path, ["question"])
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        args.read_jsonl_with_fields(path, [])
    path.write_text("\n")
    with pytest.raises(ValueError, match="holds no rows"):
        args.read_jsonl_with_fields(path, [])


# --- simulator_throughput: the server check and failed calls ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_problem_dead_and_live():
    throughput = _load("simulator_throughput")
    problem = throughput.server_problem(f"http://127.0.0.1:{_free_port()}/v1", timeout=2)
    assert problem is not None and "refused" in problem.lower()
    assert "unknown url type" in throughput.server_problem("127.0.0.1:1/v1")

    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/v1/models"
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b'{"data": [{"id": "sim"}]}' if ok else b"")

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert throughput.server_problem(f"http://127.0.0.1:{port}/v1/") is None
        assert "HTTP 404" in throughput.server_problem(f"http://127.0.0.1:{port}/nope")
    finally:
        server.shutdown()
        server.server_close()


def test_failed_calls_give_no_throughput():
    from zerosearch.llm.base import Completion

    throughput = _load("simulator_throughput")
    requests = throughput.make_requests(3)

    class Refusing:
        name = "refusing"

        def complete(self, conversations, *, max_tokens, temperature, stop=None):
            return [Completion(error="Connection refused\nretried 3 times") for _ in conversations]

    def tokenizer(text, add_special_tokens=False):
        return {"input_ids": text.split()}

    run = argparse.Namespace(mode="prompt", max_tokens=16, temperature=0.0, topk=3)
    row = throughput.run_once("vllm (http)", 4, Refusing(), tokenizer, run, requests)
    assert row["call_failures"] == 3 and row["calls_per_s"] is None and row["docs_per_s"] is None
    assert row["first_error"] == "Connection refused retried 3 times"
    table = throughput.markdown_table([row])
    assert "None" not in table and "| - |" in table
    note, all_failed = throughput.failure_summary([row])
    assert all_failed and note.startswith("error: 1 of 1 runs had failed calls")
    assert throughput.failure_summary([{**row, "call_failures": 0}]) == (None, False)


# --- the scripts, run with bad arguments: one line, exit status 2, no work started ----------------------


def _data(*parts: str) -> str:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing (the shared data directory)")
    return str(path)


CASES = [
    ("simulator_tuning_smollm2", ["--eval-limit", "0"], "argument --eval-limit: must be an integer >= 1, got 0"),
    ("simulator_tuning_smollm2", ["--epochs", "-1"], "argument --epochs: must be a number > 0, got -1"),
    ("simulator_throughput", ["--requests", "0"], "argument --requests: must be an integer >= 1, got 0"),
    ("vs_trl", ["--models", "tiny", "--pairs", "0"], "argument --pairs: must be an integer >= 1, got 0"),
    ("train_step", ["--steps", "0", "--models", "tiny"], "argument --steps: must be an integer >= 1, got 0"),
    ("train_step", ["--models", "tiny", "--set", "bogus=1"], "--set: unknown config key 'bogus'"),
    ("fidelity_smollm2", ["--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    ("learning_smollm2", ["--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    ("learning_smollm2", ["--set", "lora.alpha=0"], "--set: lora.alpha=0"),
    ("retrieval_recall_and_qps", ["--corpus", "/nonexist"], "argument --corpus: /nonexist does not exist"),
    ("ceilings", ["--pairs", "-1"], "argument --pairs: must be an integer >= 0, got -1"),
    ("ceilings", ["--set", "bogus=1"], "--set: unknown config key 'bogus'"),
    ("ceilings", ["--model", "huge"], "argument --model: invalid choice: 'huge'"),
    ("step_ab", ["--pairs", "0"], "argument --pairs: must be an integer >= 1, got 0"),
    ("step_ab", ["--set", "bogus=1"], "--set: unknown config key 'bogus'"),
    ("step_ab", ["--base-set", "bogus=1"], "--base-set: unknown config key 'bogus'"),
    ("step_ab", ["--base", "no-such-commit"], "--base no-such-commit: git worktree add failed"),
]


@pytest.mark.parametrize("script, argv, message", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_scripts_fail_fast_in_one_line(script, argv, message, tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), *argv, "--out", str(tmp_path / "o")]
                          if script in ("train_step", "fidelity_smollm2", "learning_smollm2") else
                          [sys.executable, str(BENCHMARKS / f"{script}.py"), *argv],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}.py: error: ") and message in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_retrieval_questions_without_the_field():
    corpus = _data("corpus", "hotpotqa_distractor_paragraphs.jsonl")
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "retrieval_recall_and_qps.py"), "--questions", corpus],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(":1 has no field 'question' (found fields ['contents', 'id'])")
