"""Argument types for the command line and the benchmark scripts: a bad value is a usage error naming the option.

Each is an argparse ``type=``: it returns the parsed value or raises :class:`argparse.ArgumentTypeError`,
which argparse prints as ``error: argument --NAME: <message>`` with exit status 2, before any data or model
loads. Only the standard library is imported, so checking arguments costs nothing.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = [
    "existing_file", "file_name", "fraction", "non_negative_float", "non_negative_int", "nonempty", "port_number",
    "positive_float", "positive_int",
]


def _int(text: str, words: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}") from None


def _float(text: str, words: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a count: steps, questions, batch size, top-k...)."""
    value = _int(text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (where 0 has a meaning the option's help gives: none, all, off)."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, a timeout, epochs)."""
    value = _float(text, "a number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a temperature, a weight)."""
    value = _float(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1) (a held-out share)."""
    value = _float(text, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0 meaning a free one the system picks."""
    value = _int(text, "a port number (0-65535)")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535 (or 0 for a free one), got {value}")
    return value


def nonempty(text: str) -> str:
    """Text that must not be blank: an empty string would otherwise quietly mean the default (or the current
    directory, or every network interface)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty; give a value")
    return text


def existing_file(text: str) -> Path:
    """The path of a file that exists."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist: give the path of an existing file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file: give the path of an existing file")
    return path


def file_name(text: str) -> str:
    """A name that becomes one file's name inside the output folder: not empty, no folder separators, not
    ``.``/``..`` (``--split ../../x`` wrote outside ``--out``)."""
    name = nonempty(text).strip()
    if "/" in name or "\\" in name or name in (".", ".."):
        raise argparse.ArgumentTypeError(f"must be a plain name (it names a file in the output folder), got {text!r}")
    return name
