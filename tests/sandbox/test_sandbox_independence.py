"""The sandbox shares no model or validation code with the bridge (DESIGN.md): its modules may
import from `bridge` only the generic helpers (logging, child processes, listening sockets).
Read from the installed package's source with `ast`, so imports inside functions count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bridge.sandbox

ALLOWED = (
    "bridge.sandbox",
    "bridge.runtime.childproc",
    "bridge.runtime.listen",
    "bridge.runtime.logs",
)
SANDBOX = Path(bridge.sandbox.__file__).parent
_MODULE_PATH = re.compile(r"bridge(\.[A-Za-z_]\w*)+")


def _allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED)


def bridge_imports(source: str) -> list[tuple[int, str]]:
    """Every module of `bridge` a piece of source imports: `import`, `from … import` at any
    depth, and module paths handed to importlib as string literals."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _MODULE_PATH.fullmatch(node.value)
        ):
            found.append((node.lineno, node.value))
    return [(line, name) for line, name in found if name == "bridge" or name.startswith("bridge.")]


def test_the_scan_sees_local_and_lazy_imports() -> None:
    source = (
        "from bridge.model import Regning\n"
        "def f():\n"
        "    import bridge.opendata\n"
        "    return importlib.import_module('bridge.convert')\n"
    )
    assert [name for _, name in bridge_imports(source)] == [
        "bridge.model",
        "bridge.opendata",
        "bridge.convert",
    ]


def test_the_sandbox_imports_only_generic_helpers_from_the_bridge() -> None:
    files = sorted(SANDBOX.rglob("*.py"))
    assert SANDBOX / "schemacheck.py" in files  # the installed sandbox, not an empty folder
    seen: set[str] = set()
    forbidden = []
    for path in files:
        for line, module in bridge_imports(path.read_text(encoding="utf-8")):
            seen.add(module)
            if not _allowed(module):
                forbidden.append(f"{path.relative_to(SANDBOX)}:{line}: {module}")
    assert forbidden == []
    assert {"bridge.runtime.listen", "bridge.runtime.childproc", "bridge.runtime.logs"} <= seen
