"""``zerosearch ask``, ``chat``, ``eval`` and ``report`` from the command line, with a tiny searching model."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest

from support import SHORT_TEMPLATE
from zerosearch.commands.errors import run_command
from zerosearch.commands.eval_cmds import add_ask_parser, add_chat_parser, add_eval_parser, add_report_parser

CORPUS = [
    {"id": "1", "contents": "\"Sky\"\nthe colour of the sky is blue"},
    {"id": "2", "contents": "\"Grass\"\nthe colour of grass is green"},
    {"id": "3", "contents": "\"Banana\"\nthe colour of a banana is yellow"},
]


def cli(argv: list[str]) -> int:
    """Parse and run like ``zerosearch.cli.main``, with the parsers of eval_cmds registered."""
    parser = argparse.ArgumentParser(prog="zerosearch")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_eval_parser, add_ask_parser, add_chat_parser, add_report_parser):
        add(sub)
    args = parser.parse_args(argv)
    return run_command(args)


@pytest.fixture
def setup(tmp_path, monkeypatch, searcher_model):
    """(model dir, engine spec over a 3-document corpus, the short prompt template file)."""
    monkeypatch.setenv("ZEROSEARCH_CACHE", str(tmp_path / "cache"))  # the BM25 index is built here
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS), encoding="utf-8")
    template = tmp_path / "short.txt"
    template.write_text(SHORT_TEMPLATE, encoding="utf-8")
    return str(searcher_model), f"bm25:{corpus}", str(template)


def common(setup) -> list[str]:
    model, engine, template = setup
    return ["--model", model, "--engine", engine, "--prompt-template", template, "--max-turn-tokens", "24",
            "--device", "cpu"]


def test_ask_prints_question_search_documents_and_answer(setup, capsys):
    assert cli(["ask", "what colour is the sky", *common(setup)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Question: what colour is the sky"
    assert "[turn 1] search" in out and "Search: what colour is the sky" in out
    assert "Documents (3):" in out and "  1. (Sky) the colour of the sky is blue" in out
    assert "] answer\n  <answer>" in out  # the tiny model answers after one or two searches
    assert lines[-1].startswith("Answer: ") and lines[-1] != "Answer: "
    assert out.index("Search:") < out.index("Documents") < out.index("Answer:")


def test_ask_rag_shows_the_retrieval(setup, capsys):
    model, engine, _ = setup
    assert cli(["ask", "what colour is grass", "--model", model, "--engine", engine, "--method", "rag",
                "--max-turn-tokens", "8", "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert "[retrieval] Search: what colour is grass" in out and "Documents (2):" in out
    assert "[turn 1]" in out and "\nAnswer: " in out


def test_chat_answers_each_line_until_exit(setup, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("what colour is the sky\n\nwhat colour is grass\nexit\nnot read\n"))
    assert cli(["chat", *common(setup)]) == 0
    out = capsys.readouterr().out
    assert out.count("> ") >= 3 and out.count("Question: ") == 2
    assert "Question: what colour is grass" in out and "not read" not in out


def test_chat_ends_at_end_of_input(setup, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("what colour is the sky\n"))
    assert cli(["chat", *common(setup)]) == 0
    assert capsys.readouterr().out.count("Question: ") == 1


def test_usage_errors_exit_2_with_a_message(setup, capsys, tmp_path, monkeypatch):
    model, _, _ = setup
    monkeypatch.chdir(tmp_path)  # the default --output-dir is runs/eval-... under the working directory
    assert cli(["ask", "q", "--model", model, "--engine", "nonsense:x"]) == 2
    assert "unknown search engine" in capsys.readouterr().err
    assert cli(["eval", "--model", model, "--data", str(tmp_path / "missing.jsonl"), "--method", "direct"]) == 2
    assert "not found" in capsys.readouterr().err
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "1", "question": "q", "golden_answers": ["a"]}) + "\n")
    assert cli(["eval", "--model", model, "--data", str(qa)]) == 2  # agent without --engine
    assert "needs a search engine" in capsys.readouterr().err
    # a local path that names nothing: our message, not the hub client's "Repo id must be in the form ..."
    for missing in (str(tmp_path / "nomodel"), "runs/nothing/policy", "./nomodel"):
        assert cli(["eval", "--model", missing, "--data", str(qa), "--method", "direct"]) == 2
        err = capsys.readouterr().err
        assert f"no model directory at '{missing}'" in err and "Repo id" not in err
    assert not (tmp_path / "runs").exists()  # a wrong --model leaves no output directory behind


def test_eval_command_prints_the_table_and_writes_results(setup, capsys, tmp_path):
    qa = tmp_path / "colours.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": [a]}) + "\n"
                          for i, (q, a) in enumerate([("what colour is the sky", "blue"),
                                                      ("what colour is grass", "green")])))
    out_dir = tmp_path / "eval"
    assert cli(["eval", *common(setup), "--data", str(qa), "--output-dir", str(out_dir), "--no-progress",
                "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "| metric | colours | average |" in out and "EM (exact match, %)" in out and "wall time" in out
    results = json.loads((out_dir / "results.json").read_text())
    assert results["datasets"]["colours"]["n"] == 2 and results["method"] == "agent"
    assert json.loads((out_dir / "eval_config.json").read_text())["settings"]["kv_reuse"] is True
    # --no-kv-reuse re-encodes every turn, as evaluations written before kv_reuse did (which record no key)
    assert cli(["eval", *common(setup), "--data", str(qa), "--output-dir", str(tmp_path / "encoded"),
                "--no-progress", "--no-kv-reuse", "--max-obs-tokens", "64"]) == 0
    settings = json.loads((tmp_path / "encoded" / "eval_config.json").read_text())["settings"]
    assert "kv_reuse" not in settings and settings["max_obs_tokens"] == 64


def test_ctrl_c_in_eval_keeps_the_answers_and_names_the_directory_that_resumes(setup, capsys, tmp_path,
                                                                              monkeypatch):
    """Ctrl-C after the first batch of a default-directory evaluation: the message names the directory
    (its time-stamped name was never printed before), and --output-dir with it answers only the rest."""
    from zerosearch.evaluate import Answerer

    monkeypatch.chdir(tmp_path)
    qa = tmp_path / "colours.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": [a]}) + "\n"
                          for i, (q, a) in enumerate([("what colour is the sky", "blue"),
                                                      ("what colour is grass", "green")])))
    real_answer = Answerer.answer
    asked: list[int] = []

    def answer(self, items):
        asked.append(len(items))
        if len(asked) == 2:
            raise KeyboardInterrupt
        return real_answer(self, items)

    monkeypatch.setattr(Answerer, "answer", answer)
    assert cli(["eval", *common(setup), "--data", str(qa), "--no-progress", "--batch-size", "1"]) == 130
    [out_dir] = (tmp_path / "runs").iterdir()
    err = capsys.readouterr().err
    assert f"the answers written so far are kept in {Path('runs') / out_dir.name}; the same command with " \
           f"--output-dir {Path('runs') / out_dir.name} answers only the rest" in err
    assert err.rstrip().endswith("[zerosearch] stopped by Ctrl-C") and "Traceback" not in err
    assert len((out_dir / "examples" / "colours.jsonl").read_text().splitlines()) == 1
    asked.clear()
    assert cli(["eval", *common(setup), "--data", str(qa), "--no-progress", "--batch-size", "1",
                "--output-dir", str(out_dir)]) == 0
    assert asked == [1]  # only the unanswered question
    assert json.loads((out_dir / "results.json").read_text())["datasets"]["colours"]["n"] == 2


def test_eval_into_a_training_run_directory_is_refused(setup, capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("total_steps: 1\n")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "1", "question": "what colour is the sky", "golden_answers": ["blue"]}) + "\n")
    assert cli(["eval", *common(setup), "--data", str(qa), "--output-dir", str(run), "--no-progress"]) == 2
    assert f"{run} is a training run's directory; evaluate into a folder of its own, e.g. --output-dir " \
           f"{run / 'eval' / 'mine'}" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl"]


def test_help_texts_have_examples(capsys):
    for command in ("eval", "ask", "chat", "report"):
        with pytest.raises(SystemExit):
            cli([command, "--help"])
        assert "example" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(["eval", "--help"])
    assert "--doc-format {zerosearch,search_r1}" in capsys.readouterr().out


def test_eval_samples_reports_pass_at_k_and_refuses_other_samples_on_resume(setup, capsys, tmp_path):
    qa = tmp_path / "colours.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": [a]}) + "\n"
                          for i, (q, a) in enumerate([("what colour is the sky", "blue"),
                                                      ("what colour is grass", "green")])))
    out_dir = tmp_path / "eval"
    options = [*common(setup), "--data", str(qa), "--output-dir", str(out_dir), "--no-progress"]
    assert cli(["eval", *options, "--samples", "4", "--temperature", "0.7", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "4 sampled answers per question at temperature 0.7 (seed 3)" in out
    assert "| pass@4 (any of 4 samples right by EM, %) |" in out and "| mean@4 (EM of a sample, %) |" in out
    assert json.loads((out_dir / "eval_config.json").read_text())["sampling"] == \
        {"samples": 4, "temperature": 0.7, "seed": 3}
    assert all(len(json.loads(line)["samples"]) == 4
               for line in (out_dir / "examples" / "colours.jsonl").read_text().splitlines())
    assert cli(["eval", *options, "--samples", "2", "--temperature", "0.7", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "different sampling.samples (sampling.samples: 4 there, 2 now)" in err and "\n" == err[-1:] \
        and err.count("\n") == 1


def test_eval_temperature_without_samples_and_bad_values_are_usage_errors(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "1", "question": "q", "golden_answers": ["a"]}) + "\n")
    assert cli(["eval", *common(setup), "--data", str(qa), "--temperature", "0.5"]) == 2
    assert "--temperature applies to sampled answers; add --samples K" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before the default output directory is made
    for bad in (["--samples", "-1"], ["--samples", "2", "--temperature", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            cli(["eval", *common(setup), "--data", str(qa), *bad])
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        cli(["eval", "--help"])
    help_text = capsys.readouterr().out
    assert "pass@K" in help_text and "--samples K" in help_text and "--temperature T" in help_text
