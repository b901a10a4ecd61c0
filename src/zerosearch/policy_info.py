"""What a saved policy records about how it was trained, so that it is evaluated the same way.

Every policy zerosearch writes (a run's checkpoints, the format warm-up's model) holds
``zerosearch.json`` beside its weights: ``{"doc_format": "zerosearch"}``. ``zerosearch eval``, ``ask`` and
``chat`` read it when ``--doc-format`` is not given, so a policy trained on one document rendering is not
silently evaluated on another (the two renderings are in :mod:`zerosearch.search.documents`).
"""

from __future__ import annotations

import json
from pathlib import Path

from zerosearch.search.documents import DEFAULT_DOC_FORMAT, check_doc_format

__all__ = ["POLICY_INFO_FILE", "read_policy_info", "resolve_doc_format", "write_policy_info"]

POLICY_INFO_FILE = "zerosearch.json"


def write_policy_info(policy_dir: str | Path, *, doc_format: str) -> Path:
    """Write ``<policy_dir>/zerosearch.json``; return its path."""
    path = Path(policy_dir) / POLICY_INFO_FILE
    path.write_text(json.dumps({"doc_format": check_doc_format(doc_format)}, indent=2) + "\n", encoding="utf-8")
    return path


def read_policy_info(model: str | Path) -> dict:
    """The recorded info of a policy directory; ``{}`` for anything else (a hub id, a built-in name, a
    directory zerosearch did not write). ValueError naming the file when it is not a JSON object."""
    path = Path(model) / POLICY_INFO_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it or fix it") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def resolve_doc_format(requested: str | None, model: str | Path) -> str:
    """``requested`` when given, else the format ``model`` was trained with, else the default."""
    if requested is not None:
        return check_doc_format(requested)
    recorded = read_policy_info(model).get("doc_format")
    if recorded is None:
        return DEFAULT_DOC_FORMAT
    try:
        return check_doc_format(recorded)
    except ValueError as exc:
        raise ValueError(f"{Path(model) / POLICY_INFO_FILE}: field 'doc_format': {exc}") from None
