"""The constraints file of the lowest versions names every runtime dependency at the lower
bound pyproject.toml gives it, so that a run of the suite with it tests what the package
allows (see the file's header for the run)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version
from support.dist import ROOT

CONSTRAINTS = Path(__file__).with_name("lowest-versions.txt")


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[Requirement(name).name.lower()] = version
    return pins


def test_every_runtime_dependency_is_pinned_at_its_lower_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _pins()
    wrong = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # another platform's (pywin32)
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert lower, f"{text}: no lower bound"
        pinned = pins.get(requirement.name.lower())
        if pinned is None or Version(pinned) != Version(lower[0]):
            wrong[requirement.name] = (lower[0], pinned)
    assert wrong == {}
