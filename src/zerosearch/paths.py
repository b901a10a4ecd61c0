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


def publish_dir(tmp: Path, final: Path) -> Path:
    """Move a fully written ``tmp`` directory to ``final`` atomically.

    Several processes may build the same cached artefact at once (parallel test runs); the first rename
    wins and the others discard their copy, so nobody ever reads a half-written directory.
    """
    import shutil

    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def private_tmp(final: Path) -> Path:
    """A temporary sibling of ``final`` unique to this process."""
    return final.with_name(f"{final.name}.tmp-{os.getpid()}")


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex): what a cache key holds for an input file."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
