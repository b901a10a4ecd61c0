"""How a ``zerosearch`` command ends: the one error path every command runs under.

:func:`run_command` runs the handler that a ``commands/*`` module registered (``set_defaults(func=...)``) and
turns what it raises into the exit the user sees:

* 0 and 1: what the handler returned (1: the work ran but something failed, as the command's help says);
* 2 and one line ``error: <message>``: an exception of :func:`user_errors`, a command line or a file that
  cannot be used as given; the message says what to change, so no traceback;
* 130 and ``[zerosearch] stopped by Ctrl-C``: a Ctrl-C, after the handler has said what it keeps and the
  command that goes on (it catches KeyboardInterrupt, prints that, and re-raises).

A handler that prints a result other programs read (``search``, ``export-verl``) writes it with
:func:`write_stdout` and returns :data:`EXIT_CLOSED_PIPE` (141), quietly, when the reader went away.

Any other exception is a bug and keeps its traceback. A handler that finds its options wrong together
raises :class:`UsageError` (argparse itself refuses one bad option at parse time, also with exit 2).
Only the standard library is imported here; the user errors' classes load when an exception is raised.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["EXIT_CLOSED_PIPE", "EXIT_INTERRUPTED", "EXIT_USAGE", "UsageError", "run_command", "user_errors",
           "write_stdout"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C
# what a shell reports for a Unix tool whose reader went away (128 + SIGPIPE), e.g. under `set -o pipefail`
EXIT_CLOSED_PIPE = 141


class UsageError(Exception):
    """A command line that cannot run as given (options wrong together, a port in use...): one line, exit 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "fix your command": reported as ``error: <message>`` and exit 2.

    ``ValueError`` covers the project's own errors, each a message that names the file, row, key or option
    and what to change: ``ConfigError`` (and ``EmptyPoolError``), ``DataError``, ``CheckpointError``,
    ``CorpusError``, ``EncoderNotFoundError``, ``NoExampleFitsError``, a malformed server response, an
    unknown engine spec. ``OSError`` covers a missing or existing file (``FileNotFoundError``,
    ``FileExistsError``) and one that cannot be read or written; ``ImportError`` an optional package not
    installed (faiss, peft...). The two RuntimeErrors are named: a model that is not found, a missing API key.
    """
    # imported here, not at the top: only when an exception is raised (these modules load httpx)
    from zerosearch.llm.models import ModelNotFoundError
    from zerosearch.search.serpapi import MissingAPIKeyError

    return (UsageError, ValueError, OSError, ImportError, ModelNotFoundError, MissingAPIKeyError)


def write_stdout(text: str) -> bool:
    """Write ``text`` to stdout and flush it; False if the reader has gone away (``| head``).

    Python would report the closed pipe as a BrokenPipeError traceback, and again when it flushes stdout
    at exit; pointing stdout at devnull lets it exit quietly instead (the recipe in Python's ``signal``
    documentation). The caller should then stop and return :data:`EXIT_CLOSED_PIPE`.
    """
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func(args)`` (the handler of the parsed command) and return the exit code (module docstring)."""
    try:
        return args.func(args)
    except user_errors() as exc:  # what to fix in the command: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C: a line (the command said what it keeps), not a traceback
        print("[zerosearch] stopped by Ctrl-C", file=sys.stderr)
        return EXIT_INTERRUPTED
