"""The ``zerosearch`` command as a whole: every command's --help, the one error path, the start-up cost."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from zerosearch import cli
from zerosearch.commands import train_cmds
from zerosearch.commands.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, run_command, user_errors


def _command_words(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The words of every command and sub-command the parser registers (``()`` is ``zerosearch`` itself)."""
    found = [prefix]
    for action in parser._actions:  # argparse has no public list of a parser's sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _command_words(sub, (*prefix, name))
    return found


COMMAND_WORDS = _command_words(cli.build_parser())


def test_every_command_is_registered():
    names = {words[0] for words in COMMAND_WORDS if words}
    assert names == {"train", "warmup", "eval", "compare", "pool", "ask", "chat", "report", "search",
                     "serve-retriever", "tune-simulator", "export-verl", "config"}
    assert {w for w in COMMAND_WORDS if len(w) == 2} == {("tune-simulator", s)
                                                         for s in ("collect", "build", "train", "evaluate")}


@pytest.mark.parametrize("words", COMMAND_WORDS, ids=lambda words: " ".join(words) or "zerosearch")
def test_every_command_help_prints_and_exits_0(words, capsys):
    """``--help`` formats every option's help (a bare "%" in one, "95% CIs", made ``zerosearch --help`` a
    traceback: argparse %-formats help strings)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('zerosearch', *words))}")
    assert "show this help message and exit" in out


def _user_errors() -> list[BaseException]:
    from zerosearch.checkpoint import CheckpointError
    from zerosearch.config import ConfigError
    from zerosearch.data import DataError
    from zerosearch.llm.models import ModelNotFoundError
    from zerosearch.pool import EmptyPoolError
    from zerosearch.search.corpus import CorpusError
    from zerosearch.search.serpapi import MissingAPIKeyError

    return [UsageError("--a and --b do not go together; drop --b"), ConfigError("lr=-1 must be > 0"),
            EmptyPoolError("no question fits; widen --max-correct"), DataError("qa.jsonl", 3, "question", "text"),
            CheckpointError("step_2 is truncated"), CorpusError("c.jsonl:2: not valid JSON"),
            ModelNotFoundError("no model directory at 'x'"), MissingAPIKeyError("set SERPAPI_API_KEY"),
            FileNotFoundError("QA data file not found: q.jsonl"), FileExistsError("runs/x exists"),
            PermissionError(13, "Permission denied"), ImportError("dense indexes need faiss"),
            ValueError("unknown search engine 'x'")]


@pytest.mark.parametrize("error", _user_errors(), ids=lambda e: type(e).__name__)
def test_each_user_error_is_one_line_and_exit_2(error, monkeypatch, capsys):
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(train_cmds, "run_config", fail)
    assert isinstance(error, user_errors())
    assert cli.main(["config"]) == EXIT_USAGE == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


@pytest.mark.parametrize("bug", [RuntimeError("shape mismatch"), KeyError("reward_mean"), TypeError("None")],
                         ids=lambda e: type(e).__name__)
def test_any_other_exception_keeps_its_traceback(bug):
    def fail(args: argparse.Namespace) -> int:
        raise bug

    with pytest.raises(type(bug)):
        run_command(argparse.Namespace(func=fail))


def test_ctrl_c_is_exit_130_after_the_commands_own_message(capsys):
    def interrupted(args: argparse.Namespace) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            print("[zerosearch] interrupted: runs/x is kept; go on with ...", file=sys.stderr)
            raise

    assert run_command(argparse.Namespace(func=interrupted)) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == ("[zerosearch] interrupted: runs/x is kept; go on with ...\n"
                                       "[zerosearch] stopped by Ctrl-C\n")


def test_the_handlers_return_code_is_the_exit_code():
    assert run_command(argparse.Namespace(func=lambda args: 1)) == 1


def test_a_torch_free_command_does_not_import_torch(tmp_path):
    """The error path imports the user errors' modules only when one is raised: `zerosearch compare` (and its
    errors) start without torch, which took over a second before every command."""
    code = ("import sys; from zerosearch.cli import main; "
            f"code = main(['compare', {str(tmp_path / 'a')!r}, {str(tmp_path / 'b')!r}]); "
            "assert code == 2, code; assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
