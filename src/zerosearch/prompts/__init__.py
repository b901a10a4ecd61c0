"""Prompt templates: plain-text files with ``{name}`` placeholders.

Built-in templates live beside this module as ``<name>.txt`` (``policy`` is the exact Search-R1 /
ZeroSearch policy prompt). A placeholder is ``{`` + a Python identifier + ``}``; any other brace is
literal text. :func:`render` substitutes in a single pass, so field values may contain braces (or
even ``{name}`` tokens) and are inserted verbatim.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

__all__ = ["available_templates", "constant_head", "load_template", "placeholders", "render"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BARE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def available_templates() -> list[str]:
    """Names of the built-in templates (the ``.txt`` files shipped in this package), sorted."""
    folder = resources.files(__name__)
    return sorted(
        entry.name[: -len(".txt")]
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(".txt")
    )


def load_template(name_or_path: str) -> str:
    """Return a template's text.

    A bare name (letters, digits, ``_``, ``-``; e.g. ``"policy"``) loads the built-in
    ``prompts/<name>.txt``; anything else is read as a file path (UTF-8).

    Raises:
        FileNotFoundError: no such built-in or file; the message lists the built-in names.
    """
    if _BARE_NAME.fullmatch(name_or_path):
        resource = resources.files(__name__).joinpath(f"{name_or_path}.txt")
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
        what = f"no built-in prompt template named {name_or_path!r}"
    else:
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path.read_text(encoding="utf-8")
        what = f"prompt template file not found: {name_or_path}"
    raise FileNotFoundError(
        f"{what}; built-in templates: {', '.join(available_templates()) or '(none)'}; "
        "or pass the path of a .txt file"
    )


def placeholders(template: str) -> set[str]:
    """The set of placeholder names (``{name}`` tokens) in ``template``."""
    return set(_PLACEHOLDER.findall(template))


def render(template: str, **fields: object) -> str:
    """Replace every ``{name}`` token in ``template`` with ``str(fields[name])``.

    Values are inserted verbatim (no re-substitution, braces inside them are kept).

    Raises:
        ValueError: a placeholder has no field, or a field matches no placeholder.
    """
    wanted = placeholders(template)
    missing = sorted(wanted - fields.keys())
    unused = sorted(fields.keys() - wanted)
    if missing or unused:
        problems = []
        if missing:
            problems.append(f"missing field(s) {missing}")
        if unused:
            problems.append(f"field(s) {unused} match no placeholder")
        raise ValueError(
            f"cannot render template: {'; '.join(problems)}; "
            f"the template's placeholders are {sorted(wanted)}"
        )
    return _PLACEHOLDER.sub(lambda match: str(fields[match.group(1)]), template)


def constant_head(template: str, **fields: object) -> str:
    """The start of every rendering of ``template`` in which only ``fields`` are fixed: its text up to the first
    placeholder not in ``fields`` (all of it when there is none), with the ``fields`` it holds substituted.

    E.g. ``constant_head("Find {kind} documents for {query}", kind="noisy") == "Find noisy documents for "``.
    A field that the head does not hold is ignored (unlike :func:`render`, which refuses it).
    """
    first = next((m for m in _PLACEHOLDER.finditer(template) if m.group(1) not in fields), None)
    head = template if first is None else template[: first.start()]
    return render(head, **{name: fields[name] for name in placeholders(head)})
