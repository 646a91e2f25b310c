"""Build an offline bundle: one zip with the bkm-bridge wheel, every dependency's wheel for a
target platform, and an install script that installs from the bundle only (`--no-index`).

For clinic servers on Norsk Helsenett that have no internet access. Run it on a machine that
has, from a checkout or an unpacked sdist:

    python service/offline/build_bundle.py --target win_amd64 --out dist/
    python service/offline/build_bundle.py --target native --out dist/

`win_amd64` holds wheels for CPython 3.11, 3.12 and 3.13 (each `--python` given); `native` is
the platform and Python this script runs on. pip does the resolving and downloading (`pip
download --platform …`, `pip wheel` for the native target). One thing pip does not do for a
foreign platform: it evaluates environment markers (`sys_platform == "win32"`) against the
machine it runs on, so Windows-only requirements (pywin32, colorama) are skipped. The bundle
is therefore completed in rounds: every wheel's requirements are evaluated for the target,
and what is required there but missing is downloaded by pip, until nothing is missing.
"""

from __future__ import annotations

import argparse
import email.parser
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1]  # the checkout (or unpacked sdist) holding pyproject.toml
WINDOWS_PYTHONS = ("3.11", "3.12", "3.13")
MAX_ROUNDS = 10


@dataclass(frozen=True)
class Target:
    """A platform and the Pythons a bundle serves there."""

    name: str  # in the bundle's file name
    platform: str | None  # a pip --platform tag; None for the machine this runs on
    pythons: tuple[str, ...]
    script: str  # the install script that goes into the bundle

    def tags(self, python: str) -> set[Tag]:
        """The wheel tags pip accepts on this target with this Python."""
        if self.platform is None:
            return set(sys_tags())
        version = tuple(int(part) for part in python.split("."))
        platforms = [self.platform]
        return {
            *cpython_tags(version, platforms=platforms),
            *compatible_tags(version, platforms=platforms),
        }

    def environment(self, python: str) -> dict[str, str]:
        """PEP 508 marker values on this target with this Python."""
        env = dict(default_environment())
        env.update(python_version=python, python_full_version=f"{python}.0")
        if self.platform and self.platform.startswith("win"):
            env.update(
                sys_platform="win32",
                os_name="nt",
                platform_system="Windows",
                platform_machine="AMD64",
                platform_release="10",
                platform_version="10.0",
            )
        return env


def native_target() -> Target:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    tag = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    script = "install.ps1" if os.name == "nt" else "install.sh"
    return Target(f"{tag}-cp{python.replace('.', '')}", None, (python,), script)


def windows_target(pythons: tuple[str, ...]) -> Target:
    return Target("win_amd64", "win_amd64", pythons, "install.ps1")


def build(target: Target, out: Path, wheel: Path | None = None) -> Path:
    """Build the bundle for `target` into `out`; returns the zip's path."""
    with tempfile.TemporaryDirectory(prefix="bkm-bridge-bundle-") as tmp:
        own = wheel or _build_own_wheel(Path(tmp) / "own")
        version = parse_wheel_filename(own.name)[1]
        root = Path(tmp) / f"bkm-bridge-{version}-offline-{target.name}"
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        shutil.copy2(own, wheels / own.name)
        for python in target.pythons:
            _fetch(target, python, [str(wheels / own.name)], wheels)
            for _ in range(MAX_ROUNDS):
                missing = missing_requirements(
                    wheels, target.environment(python), target.tags(python)
                )
                if not missing:
                    break
                _fetch(target, python, [_without_marker(r) for r in missing], wheels)
            else:
                raise SystemExit(f"{target.name} {python}: still missing {missing}")
        _write_scripts(root, target, version)
        out.mkdir(parents=True, exist_ok=True)
        archive = out / f"{root.name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(root.rglob("*")):
                bundle.write(path, path.relative_to(root.parent))
        return archive


def missing_requirements(
    wheels: Path, environment: dict[str, str], supported: set[Tag]
) -> list[Requirement]:
    """Requirements that apply in `environment`, starting from bkm-bridge's, that no wheel
    in `wheels` satisfies: by name, version, and a tag in `supported`."""
    available: dict[str, list[tuple[Version, Path]]] = {}
    for path in wheels.glob("*.whl"):
        name, version, _build, tags = parse_wheel_filename(path.name)
        if tags & supported:
            available.setdefault(name, []).append((version, path))
    missing: list[Requirement] = []
    seen: set[tuple[str, str]] = set()
    todo = [(Requirement("bkm-bridge"), "")]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        matches = [p for v, p in available.get(name, []) if requirement.specifier.contains(v, True)]
        if not matches:
            missing.append(requirement)
            continue
        for wanted in ("", *sorted(requirement.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            todo.extend((Requirement(r), wanted) for r in _requires(matches[0]))
    return missing


def _without_marker(requirement: Requirement) -> str:
    """The requirement as pip should take it: the marker was already evaluated for the target."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}{requirement.specifier}"


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.BytesParser().parsebytes(archive.read(metadata))
    return message.get_all("Requires-Dist") or []


def _build_own_wheel(folder: Path) -> Path:
    _pip("wheel", "--no-deps", "--wheel-dir", str(folder), str(SOURCE))
    return next(folder.glob("bkm_bridge-*.whl"))


def _fetch(target: Target, python: str, requirements: list[str], wheels: Path) -> None:
    if target.platform is None:  # this machine: pip may build a wheel from an sdist
        _pip("wheel", "--wheel-dir", str(wheels), "--find-links", str(wheels), *requirements)
        return
    tag = python.replace(".", "")
    _pip(
        "download",
        "--only-binary=:all:",
        "--platform", target.platform,
        "--python-version", python,
        "--implementation", "cp",
        "--abi", f"cp{tag}",
        "--abi", "abi3",
        "--abi", "none",
        "--dest", str(wheels),
        "--find-links", str(wheels),
        *requirements,
    )  # fmt: skip


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)


def _write_scripts(root: Path, target: Target, version: Version) -> None:
    values = {
        "@VERSION@": str(version),
        "@PYTHONS@": " ".join(target.pythons),
        "@TARGET@": target.name,
    }
    names = [target.script, "README.txt"]
    if target.script == "install.ps1":
        names.append("install.cmd")
    for name in names:
        text = (HERE / name).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        newline = "\r\n" if name.endswith((".ps1", ".cmd")) else "\n"
        (root / name).write_text(text, encoding="utf-8", newline=newline)
    if target.script == "install.sh":
        (root / "install.sh").chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("native", "win_amd64"), default="native")
    parser.add_argument(
        "--python", action="append", help=f"win_amd64 only; default {' '.join(WINDOWS_PYTHONS)}"
    )
    parser.add_argument("--out", type=Path, default=SOURCE / "dist")
    parser.add_argument("--wheel", type=Path, help="a bkm-bridge wheel built before")
    args = parser.parse_args(argv)
    if args.target == "native":
        if args.python:
            parser.error(f"--python is for win_amd64; native is {platform.python_version()}")
        target = native_target()
    else:
        target = windows_target(tuple(args.python or WINDOWS_PYTHONS))
    print(build(target, args.out, args.wheel))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
