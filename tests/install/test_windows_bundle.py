"""The Windows offline bundle (win_amd64, CPython 3.11–3.13), built here and checked by its
contents: Windows cannot run in this suite, so the test reads every wheel's requirements as
Windows would evaluate them and looks for a wheel pip there would take."""

from __future__ import annotations

import email.parser
import re
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from support.dist import ROOT, Dist, run

PYTHONS = ((3, 11), (3, 12), (3, 13))


@pytest.fixture(scope="module")
def bundle(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("windows")
    run(
        [
            sys.executable,
            str(ROOT / "service" / "offline" / "build_bundle.py"),
            "--target",
            "win_amd64",
            "--wheel",
            str(dist.wheel),
            "--out",
            str(out),
        ]
    )
    (archive,) = out.glob("*.zip")
    version = dist.wheel.name.split("-")[1]
    assert archive.name == f"bkm-bridge-{version}-offline-win_amd64.zip"
    return zipfile.ZipFile(archive)


def _wheels(bundle: zipfile.ZipFile) -> dict[str, bytes]:
    return {Path(n).name: bundle.read(n) for n in bundle.namelist() if n.endswith(".whl")}


def _windows(python: tuple[int, int]) -> tuple[dict[str, str], set[Tag]]:
    env = dict(default_environment())
    env.update(
        sys_platform="win32",
        os_name="nt",
        platform_system="Windows",
        platform_machine="AMD64",
        python_version="{}.{}".format(*python),
        python_full_version="{}.{}.0".format(*python),
    )
    tags = {
        *cpython_tags(python, platforms=["win_amd64"]),
        *compatible_tags(python, platforms=["win_amd64"]),
    }
    return env, tags


def _requires_dist(wheel: bytes) -> list[Requirement]:
    import io

    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.BytesParser().parsebytes(archive.read(name))
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: "cp{}{}".format(*p))
def test_every_distribution_windows_needs_is_in_the_bundle(
    bundle: zipfile.ZipFile, python: tuple[int, int]
) -> None:
    env, tags = _windows(python)
    usable: dict[str, tuple[object, bytes]] = {}
    for filename, content in _wheels(bundle).items():
        name, version, _, wheel_tags = parse_wheel_filename(filename)
        if wheel_tags & tags:
            assert name not in usable, f"two usable wheels of {name} for {python}"
            usable[name] = (version, content)
    needed, todo = set(), [Requirement("bkm-bridge")]
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in usable, f"{requirement} is needed on Windows {python} and missing"
        version, content = usable[name]
        assert requirement.specifier.contains(version, prereleases=True), requirement  # type: ignore[arg-type]
        if name not in needed:
            needed.add(name)
            todo.extend(_requires_dist(content))
    # The Windows-only ones pip skips when it resolves on Linux, and the compiled ones.
    assert {"pywin32", "colorama", "lxml", "pydantic-core", "bkm-bridge"} <= needed


def test_the_install_scripts_install_exactly_this_bundle(
    bundle: zipfile.ZipFile, dist: Dist
) -> None:
    version = dist.wheel.name.split("-")[1]
    top = f"bkm-bridge-{version}-offline-win_amd64/"
    names = set(bundle.namelist())
    assert {top + "install.ps1", top + "install.cmd", top + "README.txt"} <= names
    assert top + "wheels/" + dist.wheel.name in names
    script = bundle.read(top + "install.ps1").decode("utf-8")
    assert "\r\n" in script and "\n" not in script.replace("\r\n", "")  # Windows line ends
    install = [line for line in script.splitlines() if "pip install" in line]
    assert len(install) == 1
    assert "--no-index" in install[0] and '--find-links "$wheels"' in install[0]
    assert f'"bkm-bridge=={version}"' in install[0]
    assert '$wheels = Join-Path $here "wheels"' in script
    assert re.search(r'\$supported = "3\.11 3\.12 3\.13"\.Split', script)
    assert "config check" in script  # the next step it prints
    cmd = bundle.read(top + "install.cmd").decode("utf-8")
    assert '-File "%~dp0install.ps1" %*' in cmd
