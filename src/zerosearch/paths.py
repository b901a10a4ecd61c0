"""Where zerosearch keeps things on disk, and how its caches are keyed (by content: :func:`file_digest`)."""

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


# file_digest's memory: (path, device, inode, size, mtime ns, ctime ns) -> SHA-256
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}
# A file changed this recently may change again within the same timestamp tick (ext4 stamps with the kernel
# tick, milliseconds apart): its digest is not remembered (git's "racy" rule for its index).
_RACY_SECONDS = 2.0


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex): what a cache key holds for an input file.

    Every cache under :func:`cache_dir` is keyed by the content of its inputs, never by their path alone: a
    file edited in place (same path) gives another key. Digests are remembered for the life of the process
    by the file's stat (device, inode, size, modification and change times in ns), as git's index remembers
    blob hashes, so a key computed again (a model's weights, a corpus) costs a ``stat``; an edit changes
    the times, and a file changed in the last 2 seconds is always read again.
    """
    import hashlib
    import time

    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    key = (resolved, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    started = time.time()
    digest = hashlib.sha256()
    with open(resolved, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if started - max(stat.st_mtime_ns, stat.st_ctime_ns) / 1e9 > _RACY_SECONDS:
        _DIGESTS[key] = digest.hexdigest()
    return digest.hexdigest()


def folder_digests(folder: str | os.PathLike[str]) -> list[list[str]]:
    """``[[relative path, SHA-256], ...]`` of every file under ``folder`` (sub-folders included; names that
    start with ``.`` skipped: ``.git``, ``.cache``, editors' files), sorted: a model directory's content."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    return [[p.relative_to(root).as_posix(), file_digest(p)] for p in files]


def text_digest(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes (hex): a cache key's entry for a template or other text input."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(payload: object) -> str:
    """A cache entry's name: 16 hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted keys;
    anything JSON cannot hold as its ``str``). ``payload`` holds what shapes the entry, files by content."""
    import json

    return text_digest(json.dumps(payload, sort_keys=True, default=str))[:16]
