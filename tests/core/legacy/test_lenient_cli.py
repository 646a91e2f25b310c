"""`bkm-bridge validate` / `convert` on real-world files: each deviation read with its meaning is
a warning line `FILE:LINE: LEGACY_VARIANT: … [warning]`; an ambiguous one fails the file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import paths
from typer.testing import CliRunner

from bridge.cli.app import app

REAL_WORLD = paths.FIXTURES / "real-world"


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _line(path: Path, needle: str) -> int:
    data = path.read_bytes()
    at = data.index(needle.encode("utf-8"), data.index(b"<MsgHead"))
    return data.count(b"\n", 0, at) + 1


def _warnings(stderr: str, path: Path) -> dict[int, str]:
    pattern = re.compile(rf"^{re.escape(str(path))}:(\d+): LEGACY_VARIANT: (.*) \[warning\]$")
    return {int(m[1]): m[2] for m in map(pattern.match, stderr.splitlines()) if m}


@pytest.fixture
def epj(tmp_path: Path) -> Path:
    target = tmp_path / "epj-2023.xml"
    shutil.copyfile(REAL_WORLD / "epj-2023.xml", target)
    return target


def test_validate_shows_each_warning_with_its_line(epj: Path) -> None:
    code, stdout, stderr = _cli("validate", str(epj))
    assert code == 0, stderr
    assert stdout.strip() == f"{epj}: OK"
    warnings = _warnings(stderr, epj)
    assert "is written in braces" in warnings[_line(epj, "<Guid>{")]
    assert "says 'LOM'" in warnings[_line(epj, '<Type V="LOM"')]
    assert "read from its form as HPR-nummer" in warnings[_line(epj, "<Behandlerident>")]
    assert "has the code in DN and the name in V" in warnings[_line(epj, 'V="HPR-nummer"')]
    assert len(warnings) == 8


def test_convert_prints_the_claim_as_meant_and_the_warnings(epj: Path) -> None:
    code, stdout, stderr = _cli("convert", str(epj), "--praksis-id", "1")
    assert code == 0, stderr
    regning = json.loads(stdout)["behandlerkrav"]["regninger"][0]
    assert regning["guid"] == "04db7c38-3a4c-43ca-92eb-e2564857bc97"
    assert regning["utforendeBehandler"]["identifikasjon"] == {"id": "9144889", "type": "HPR"}
    assert regning["tidspunkt"] == "2023-03-14T08:40:00+01:00"
    line = _line(epj, "<Guid>{")
    assert f"{epj}:{line}: LEGACY_VARIANT: Guid " in stderr
    assert "(at BehandlerKrav/Enkeltregning/Guid) [warning]" in stderr


def test_convert_to_a_folder_counts_the_warnings(epj: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _cli("convert", str(epj), "--praksis-id", "1", "--out", str(out))
    assert code == 0, stderr
    assert "Converted 1 of 1 file(s)" in stdout and "8 warning(s)" in stdout
    assert (out / "epj-2023.json").is_file()


def test_validate_fails_an_ambiguous_file_with_the_sentence_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "ambiguous-typeid.xml"
    shutil.copyfile(REAL_WORLD / "ambiguous-typeid.xml", bad)
    code, stdout, stderr = _cli("validate", str(bad))
    assert code == 1
    assert "OK" not in stdout
    line = _line(bad, 'V="Fødselsnummer"')
    assert f"{bad}:{line}: LEGACY_AMBIGUOUS: TypeId says V='Fødselsnummer' DN='HPR'" in stderr


def test_the_installed_command_shows_the_warning_too(epj: Path) -> None:
    """The same through a real process (`python -m bridge`, as an EPJ script calls it)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", str(epj)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=epj.parent,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert _line(epj, "<DatoTid>") in _warnings(run.stderr, epj)
