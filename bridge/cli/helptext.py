"""Readable `--help`: the type column in words a clinic's IT person reads (PATH..., TEXT,
INTEGER, YYYY-MM-DD), not Python's (`<list[Path]>`, `<str>`, `<%Y-%m-%d>`), and nothing
for on/off flags.

Typer labels each parameter with its Python annotation in `_TyperParameter.display_type`
(0.29, the lowest version pyproject allows; older ones print `<path>` and `%Y-%m-%d` there);
`install()` replaces that label once, when the app is built (bridge.cli.app). Where the hook is
missing it does nothing.
"""

from __future__ import annotations

import re
from typing import Any

# Python's names → the words in the type column.
_WORDS = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "NUMBER",
    "int range": "INTEGER",
    "float range": "NUMBER",
    "Path": "PATH",
    "path": "PATH",
    "file": "FILE",
    "dir": "FOLDER",
    "datetime": "DATE",
}
# strftime codes → the one date notation of the help texts (YYYY-MM-DD, THH:MM:SS, ±HHMM).
_DATE_CODES = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%H": "HH", "%M": "MM", "%S": "SS"}
_DATE_CODES["%z"] = "±HH:MM"


def readable(label: str) -> str:
    """`<list[Path]>` → `PATH...`, `<str>` → `TEXT`, `<%Y-%m-%d>` → `YYYY-MM-DD`; a choice
    (`<sandbox|dev|prod>`) stays as it is."""
    inner = label[1:-1] if label.startswith("<") and label.endswith(">") else label
    many = ""
    if inner.startswith("list[") and inner.endswith("]"):
        inner, many = inner[5:-1], "..."
    if "%" in inner:
        formats = inner.split("|")
        shortest = min(formats, key=len)  # the date alone: the others add a time of day
        text = re.sub(r"%[YmdHMSz]", lambda m: _DATE_CODES[m.group(0)], shortest)
        return text + ("[THH:MM:SS]" if len(formats) > 1 else "") + many
    if inner in _WORDS:
        return _WORDS[inner] + many
    return f"<{inner}>{many}" if "|" in inner else inner.upper() + many


def install() -> None:
    try:
        from typer.core import _TyperParameter
    except ImportError:  # an older typer: click's metavars, already readable
        return
    original = getattr(_TyperParameter, "display_type", None)
    if original is None or getattr(original, "_bkm_readable", False):
        return

    def display_type(self: Any, ctx: Any) -> str:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return ""  # --once, --json …: the name says it all
        metavar = getattr(self, "metavar", None)
        text = metavar or readable(original(self, ctx))
        if getattr(self, "param_type_name", "") == "argument":
            text = text.removesuffix("...")  # the argument's name already ends in "..."
        return text

    display_type._bkm_readable = True  # type: ignore[attr-defined]
    _TyperParameter.display_type = display_type  # type: ignore[method-assign]
