"""The package's architecture, computed from its code: the import graph of `bridge` has no
cycle, every import goes to the same or a lower layer, the sandbox stands apart, and no module
takes another's private names. Function-local imports count as much as module-level ones."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bridge

# Lowest first. A module may import its own layer and the layers before it. "entry" holds the
# two ways in from outside: `python -m bridge` and the module a Windows service runs.
LAYERS = ["root", "runtime", "core", "kuhr", "files", "flow", "daemon", "migrate", "cli", "entry"]
ENTRY_POINTS = {"bridge.__main__", "bridge.winservice"}
# The sandbox is a separate program in the same package: beside the layers, it may use only
# generic helpers of the runtime layer.
SANDBOX_MAY_USE = {"bridge.runtime.childproc", "bridge.runtime.listen", "bridge.runtime.logs"}
PACKAGE = Path(bridge.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The bridge modules `name` imports, at any depth of its code (TYPE_CHECKING blocks
    included: a type-level dependency is a dependency too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> str:
    if name in ENTRY_POINTS:
        return "entry"
    parts = name.split(".")
    if len(parts) == 1 or parts[1] not in [*LAYERS, "sandbox"]:
        return "root"  # bridge, bridge.config, bridge.paths, bridge.errors, data packages …
    return parts[1]


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages(bridge.__path__, "bridge."):
        if info.name in ("bridge.daemon.winservice", "bridge.winservice"):
            continue  # pywin32: Windows only (its stand-in is tested in tests/daemon)
        importlib.import_module(info.name)
    assert len(MODULES) > 80


def test_the_import_graph_has_no_cycle() -> None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " → ".join([*visiting, node])
        visiting.append(node)
        for target in sorted(GRAPH[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for name in sorted(GRAPH):
        visit(name)


def _upward_imports() -> list[str]:
    wrong = []
    for name, targets in GRAPH.items():
        source = _layer(name)
        if source == "sandbox":
            continue
        for target in targets:
            layer = _layer(target)
            if layer == "sandbox":
                ok = LAYERS.index(source) >= LAYERS.index("flow")  # only those that start one
            else:
                ok = LAYERS.index(layer) <= LAYERS.index(source)
            if not ok:
                wrong.append(f"{name} ({source}) → {target} ({layer})")
    return wrong


def test_no_module_imports_a_higher_layer() -> None:
    assert _upward_imports() == []


def test_the_sandbox_shares_nothing_but_generic_helpers() -> None:
    used = {
        target
        for name, targets in GRAPH.items()
        if _layer(name) == "sandbox"
        for target in targets
        if _layer(target) != "sandbox"
    }
    assert used <= SANDBOX_MAY_USE


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("bridge.sandbox")))
def test_no_module_takes_another_modules_private_names(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridge")
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__version__"
    ]
    assert private == []


@pytest.mark.parametrize("layer", LAYERS[1:-1])
def test_each_subpackage_names_its_face(layer: str) -> None:
    """Its `__init__` says what it is for and names (in `__all__`) every module of it."""
    face = importlib.import_module(f"bridge.{layer}")
    modules = {
        path.stem if path.name != "__init__.py" else path.parent.name
        for path in (PACKAGE / layer).glob("*/__init__.py")
        if any(path.parent.glob("[!_]*.py"))  # a subpackage with code, not a data folder
    } | {path.stem for path in (PACKAGE / layer).glob("[!_]*.py")}
    assert set(face.__all__) >= modules
    assert face.__doc__ and len(face.__doc__) > 80


def test_tests_share_helpers_only_through_support() -> None:
    """A test module imported by another runs only when both are collected together, so shared
    helpers live in tests/support/ (imported as `support.…`), never in a test module."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.relative_to(tests)}: {name}"
                for name in names
                if name.split(".")[0].startswith(("test_", "conftest"))
            ]
    assert not offenders
