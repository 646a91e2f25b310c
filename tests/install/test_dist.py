"""What the sdist and the wheel hold: every file the program reads, all that the tests need."""

from __future__ import annotations

import importlib.util
import os
import sysconfig
import tarfile
import tomllib
from pathlib import Path

from support.dist import ROOT, Dist

import bridge
from bridge.paths import shipped_folder

# Top-level folders of the sdist whose every file the wheel installs (as bridge/…).
SHIPPED_AS = {"bridge/": "bridge/", "xsd/": "bridge/xsd/", "mappings/": "bridge/mappings/"}


def _source_files(dist: Dist) -> dict[str, str]:
    """sdist path → wheel path, for every file the installed package must hold."""
    wanted = {}
    for name in dist.sdist_names():
        for folder, target in SHIPPED_AS.items():
            if name.startswith(folder) and not name.endswith("/") and "__pycache__" not in name:
                wanted[name] = target + name[len(folder) :]
    return wanted


def test_the_wheel_installs_every_file_of_the_package_and_its_data(dist: Dist) -> None:
    wheel = dist.wheel_names()
    wanted = _source_files(dist)
    assert {"xsd/bkm-2006-12-20.xsd", "mappings/bkm-2006-12-20.csv"} <= set(wanted)
    missing = sorted(source for source, target in wanted.items() if target not in wheel)
    assert missing == []
    for data in (
        "bridge/daemon/templates/status.html",
        "bridge/demo/seed-arbeidsflyt.xml",
        "bridge/data/takster-snapshot.json",
        "bridge/xsd/msghead-v1_2.xsd",
    ):
        assert data in wheel
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel)


def test_the_sdist_holds_what_building_and_testing_need(dist: Dist) -> None:
    names = dist.sdist_names()
    for required in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "MANIFEST.in",
        "tests/fixtures/seed-arbeidsflyt.xml",
        "tests/install/conftest.py",
        "service/offline/build_bundle.py",
        "service/offline/install.ps1",
        "docs/receipts.md",
        "bench/bench_convert.py",
    ):
        assert required in names, required
    fixtures = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tests").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert fixtures - names == set()
    with tarfile.open(dist.sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        pyproject = archive.extractfile(f"{top}/pyproject.toml")
        assert pyproject is not None
        listed = set(tomllib.load(pyproject)["tool"]["setuptools"]["packages"])
    # Every folder of the package with an __init__.py is named in pyproject, and only those.
    packages = {
        ("bridge/" + n[len("bridge/") :]).rsplit("/", 1)[0].replace("/", ".")
        for n in names
        if n.startswith("bridge/") and n.endswith("/__init__.py")
    }
    assert listed == packages | {"bridge.xsd", "bridge.mappings"}


def test_the_suite_runs_against_the_package_that_is_installed() -> None:
    """In CI (BKM_BRIDGE_WHEEL set) the code under test is the installed wheel, not a source
    tree; in a checkout it is the editable install, whose data is the repository's."""
    package = Path(bridge.__file__).resolve().parent
    if os.environ.get("BKM_BRIDGE_WHEEL"):
        assert package == Path(sysconfig.get_paths()["purelib"]).resolve() / "bridge"
        assert shipped_folder("xsd") == package / "xsd"
        assert not package.is_relative_to(ROOT)
    else:
        assert shipped_folder("xsd") == ROOT / "xsd"
        assert shipped_folder("mappings") == ROOT / "mappings"
    spec = importlib.util.find_spec("bridge.xsd")
    assert spec is not None and spec.origin is not None
