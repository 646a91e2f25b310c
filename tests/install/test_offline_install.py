"""The Linux offline bundle, installed with pip's network shut off, and that install used as a
clinic server would use it: from another folder, with nothing of the source tree in reach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support import paths
from support.dist import ROOT, Dist, run

FIXTURES = paths.FIXTURES
BUILD_BUNDLE = ROOT / "service" / "offline" / "build_bundle.py"


def clean_env(tmp: Path) -> dict[str, str]:
    """No settings of ours or pip's from the environment running the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("PIP_", "BKM_BRIDGE_", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(tmp), COLUMNS="120")
    return env


def offline_pip_env(tmp: Path) -> dict[str, str]:
    """pip with no configuration, no index and a proxy that refuses: any download fails."""
    blackhole = "http://127.0.0.1:9"  # the discard port: nothing listens
    return {
        **clean_env(tmp),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "http_proxy": blackhole,
        "https_proxy": blackhole,
        "HTTP_PROXY": blackhole,
        "HTTPS_PROXY": blackhole,
    }


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv made by the native bundle's install.sh, offline; returns its bin/ folder."""
    base = tmp_path_factory.mktemp("offline")
    run(
        [
            sys.executable,
            str(BUILD_BUNDLE),
            "--target",
            "native",
            "--wheel",
            str(dist.wheel),
            "--out",
            str(base / "out"),
        ]
    )
    (bundle,) = (base / "out").glob("bkm-bridge-*-offline-*.zip")
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(base / "unpacked")
    (folder,) = (base / "unpacked").iterdir()
    assert {p.name for p in folder.iterdir()} == {"wheels", "install.sh", "README.txt"}
    os.chmod(folder / "install.sh", 0o755)  # zip keeps no mode
    done = run(
        ["sh", str(folder / "install.sh"), str(base / "venv")],
        cwd=base,
        env={**offline_pip_env(base), "PYTHON": sys.executable},
    )
    assert f"Next step: {base / 'venv' / 'bin' / 'bkm-bridge'} config check" in done.stdout
    return base / "venv" / "bin"


def bkm_bridge(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "bkm-bridge"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(cwd),
    )


def as_decimals(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def test_the_version_is_the_wheels(installed: Path, dist: Dist, tmp_path: Path) -> None:
    version = dist.wheel.name.split("-")[1]
    done = bkm_bridge(installed, "--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"bkm-bridge {version}\n")


def test_the_demo_runs_start_to_payment(installed: Path, tmp_path: Path) -> None:
    done = bkm_bridge(installed, "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "utbetalt: regning 6: godkjent" in done.stdout


def test_convert_gives_the_golden_json(installed: Path, tmp_path: Path) -> None:
    done = bkm_bridge(
        installed,
        "convert",
        str(FIXTURES / "alle-felter.xml"),
        "--praksis-id",
        "1000005649",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    expected = as_decimals((FIXTURES / "alle-felter.expected.json").read_text(encoding="utf-8"))
    assert as_decimals(done.stdout) == expected


def test_watch_once_writes_the_receipts(installed: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
    done = bkm_bridge(
        installed,
        "watch",
        str(inbox),
        "--once",
        "--state-dir",
        str(tmp_path / "state"),
        "--quiet-seconds",
        "0.2",
        "--sandbox-clock",
        "2026-01-06T15:30:00+01:00",
        "--sandbox-speed",
        "60",
        cwd=tmp_path,
    )
    # delvis godkjent: two regninger avvist need someone to act, so 1 (README, "Exit codes")
    assert done.returncode == 1, done.stderr[-3000:]
    receipt = json.loads((inbox / "krav.xml.kvittering.json").read_text(encoding="utf-8"))
    assert receipt["status"] == "delvis_godkjent"
    assert (inbox / "krav.apprec.xml").read_bytes().startswith(b"<?xml")


def _site_packages(bin_dir: Path) -> Path:
    (found,) = bin_dir.parent.glob("lib/python3.*/site-packages")
    return found


def test_a_zipped_install_reads_its_data_from_the_zip(installed: Path, tmp_path: Path) -> None:
    package = _site_packages(installed) / "bridge"
    archive = tmp_path / "bridge.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in package.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(package.parent))
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import bridge; "
        "assert '.zip' in bridge.__file__, bridge.__file__; "
        "from bridge.cli.app import main; main()"
    )
    done = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            code,
            str(archive),
            "convert",
            str(FIXTURES / "alle-felter.xml"),
            "--praksis-id",
            "1000005649",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    expected = as_decimals((FIXTURES / "alle-felter.expected.json").read_text(encoding="utf-8"))
    assert as_decimals(done.stdout) == expected


@contextmanager
def moved_away(folder: Path) -> Iterator[None]:
    hidden = folder.with_name(folder.name + ".hidden")
    folder.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(folder)


@pytest.mark.parametrize(
    ("folder", "what"), [("xsd", "the XML schemas"), ("mappings", "the XML→JSON mapping tables")]
)
@pytest.mark.parametrize("command", ["validate", "convert", "watch"])
def test_missing_shipped_data_is_an_installation_problem_not_the_files(
    installed: Path, tmp_path: Path, folder: str, what: str, command: str
) -> None:
    claim = tmp_path / "krav.xml"
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
    args = {
        "validate": [str(claim)],
        "convert": [str(claim), "--praksis-id", "1"],
        "watch": [str(tmp_path), "--once", "--state-dir", str(tmp_path / "s")],
    }[command]
    target = _site_packages(installed) / "bridge" / folder
    with moved_away(target):
        done = bkm_bridge(installed, command, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("bkm-bridge: installation problem: ")
    assert what in done.stderr and str(target) in done.stderr
    assert "UNKNOWN_NAMESPACE" not in done.stderr + done.stdout
    assert not (tmp_path / "krav.xml.kvittering.json").exists()  # the claim was not touched
