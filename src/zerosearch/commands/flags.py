"""Command-line flags made from settings dataclasses: TRL's ``HfArgumentParser`` shape, for argparse.

A settings field declared with :func:`zerosearch.settings.setting` (or copied with ``same_as``) becomes a
flag: ``--max-turn-tokens`` for ``max_turn_tokens``, with the field's default, its help
(``metadata["help"]``, ``{default}`` filled in), its choices, and an argument type from its range (an
integer >= 1 is :func:`~zerosearch.commands.argtypes.positive_int`, so a bad value is refused while parsing,
naming the flag). A boolean that defaults to True is a ``--no-...`` switch (``metadata["flag"]``).
:func:`settings_from_flags` reads the parsed values back into the dataclass. Only the standard library is
imported.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from zerosearch.commands.argtypes import non_negative_float, non_negative_int, positive_float, positive_int

__all__ = ["add_setting_flags", "flag_name", "settings_from_flags"]

# (field type, low end of its range) -> the argparse type that refuses what the range refuses
_TYPES: dict[tuple[str, Any], Any] = {
    ("int", 1): positive_int, ("int", 0): non_negative_int, ("float", 0.0): non_negative_float,
}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _type_name(f: dataclasses.Field) -> str:
    """``int``, ``float``, ``str`` or ``bool`` of a field annotated ``int`` or ``int | None`` (as text under
    ``from __future__ import annotations``)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return text.replace(" | None", "").replace("Optional[", "").rstrip("]")


def flag_name(cls: type, name: str) -> str:
    """The flag of field ``name`` of ``cls``: ``metadata["flag"]`` or ``--`` and the name with dashes."""
    return _fields(cls)[name].metadata.get("flag") or "--" + name.replace("_", "-")


def add_setting_flags(parser: argparse.ArgumentParser | Any, cls: type, *names: str) -> None:
    """Add one flag per field ``names`` of dataclass ``cls``, in that order (the order ``--help`` lists them).

    The flag's default is the field's; ``metadata`` may set ``help`` (``{default}`` is replaced by the
    default), ``metavar``, ``type`` (an argparse type, for a text setting), ``flag`` (another spelling) and
    ``above`` (an exclusive lower bound for a float: :func:`positive_float`).
    """
    fields = _fields(cls)
    for name in names:
        f = fields[name]
        meta = f.metadata
        default = None if f.default is dataclasses.MISSING else f.default
        kind = _type_name(f)
        help_text = meta.get("help", "").replace("{default}", str(default))
        if kind == "bool":
            if default is not True:
                raise TypeError(f"{cls.__name__}.{name}: a boolean flag is a --no-... switch for a True default")
            parser.add_argument(flag_name(cls, name), dest=name, action="store_false", help=help_text)
            continue
        options: dict[str, Any] = {"default": default, "help": help_text}
        if meta.get("choices") is not None:
            options["choices"] = list(meta["choices"])
        argtype = meta.get("type") or (positive_float if kind == "float" and meta.get("above") == 0
                                       else _TYPES.get((kind, meta.get("low"))))
        if argtype is not None:
            options["type"] = argtype
        elif kind in ("int", "float"):
            options["type"] = int if kind == "int" else float
        if meta.get("metavar"):
            options["metavar"] = meta["metavar"]
        parser.add_argument(flag_name(cls, name), **options)


def settings_from_flags(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """An instance of ``cls`` from the parsed flags: every field whose flag the parser has (its ``dest`` is the
    field's name), then ``fixed``; fields without a flag keep their defaults. The dataclass checks the values."""
    values = {name: getattr(args, name) for name in _fields(cls) if hasattr(args, name)}
    return cls(**{**values, **fixed})
