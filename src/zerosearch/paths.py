"""Where zerosearch keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ZEROSEARCH_CACHE`` or ``$XDG_CACHE_HOME/zerosearch`` or ``~/.cache/zerosearch``."""
    root = os.environ.get("ZEROSEARCH_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zerosearch"
