"""One exit-code rule for every command (bridge.cli.exits, README "Exit codes"):

0 nothing needs attention (warnings do not count); 1 a file or claim needs attention (rejected
here or by KUHR, a regning avvist, failed, unfinished); 2 not done as asked (a path that does
not exist, paths naming no claim file, bad settings). Each case runs through the CLI; KUHR is
an embedded sandbox on loopback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from support.migrate import PRAKSIS_ID, claim_xml, write_claims
from typer.testing import CliRunner

from bridge.cli import app as cli_app
from bridge.cli import kuhr, migrate, precheck
from bridge.cli.exits import ExitCode
from bridge.core.legacy.writer import write_bkm_xml
from bridge.core.model import Behandlerkrav, Regning
from bridge.core.timezone import OSLO

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("convert")(cli_app.convert)
    app.command("validate")(cli_app.validate)
    for module in (kuhr, precheck, migrate):
        module.register(app)
    return app


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BKM_BRIDGE_WATCH__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


def _run(app: typer.Typer, *args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _future_claim(path: Path) -> Path:
    """Two regninger dated in 2030: KUHR's control rejects both (merknad 766)."""
    regninger = [
        Regning.model_validate(
            {
                "guid": f"6f1c2a4e-7d3b-4c5a-9e8f-00000000000{n}",
                "regningsnummer": str(700 + n),
                "tidspunkt": datetime(2030, 3, 4, 9, n, tzinfo=OSLO),
                "pasient": {
                    "etternavn": "Hansen",
                    "fornavn": "Åse",
                    "kjonn": "2",
                    "fodselsdato": "1970-03-11",
                },
                "diagnoser": [{"kodeverk": "2.16.578.1.12.4.1.1.7170", "kode": "L73"}],
                "takster": [{"belop": Decimal("155.00"), "kode": "2ad", "antall": 1}],
                "belop": Decimal("155.00"),
            }
        )
        for n in (1, 2)
    ]
    krav = Behandlerkrav(regninger=regninger, antallRegninger=2, belop=Decimal("310.00"))
    path.write_bytes(write_bkm_xml(krav, msg_id="6f1c2a4e-7d3b-4c5a-9e8f-0000000000aa"))
    return path


# --------------------------------------------------------------------------- 2: not as asked


@pytest.mark.parametrize(
    "command",
    [
        ["validate"],
        ["convert", "--praksis-id", PRAKSIS_ID],
        ["convert", "--praksis-id", PRAKSIS_ID, "--out", "json"],
        ["precheck"],
        ["migrate", "--dry-run"],
        ["submit"],
    ],
    ids=lambda c: " ".join(c[:1] + [a for a in c[1:] if a.startswith("--o")]),
)
def test_a_path_that_does_not_exist_is_a_usage_error(
    app: typer.Typer, command: list[str], tmp_path: Path
) -> None:
    result = _run(app, *command, tmp_path / "finnes-ikke.xml")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "finnes-ikke.xml" in result.stderr and "not exist" in result.stderr
    assert "deleted before it could be read" not in result.output


@pytest.mark.parametrize(
    "command",
    [["validate"], ["convert", "--praksis-id", PRAKSIS_ID, "--out", "json"], ["precheck"]],
    ids=lambda c: c[0],
)
def test_a_folder_without_claims_is_said_and_is_a_usage_error(
    app: typer.Typer, command: list[str], tmp_path: Path
) -> None:
    (tmp_path / "tom").mkdir()
    (tmp_path / "tom" / "notat.txt").write_text("ikke et krav")
    result = _run(app, *command, tmp_path / "tom")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"no *.xml files in {tmp_path / 'tom'}: nothing was checked" in result.stderr


# --------------------------------------------------------------------------- 0 and 1: files


def test_validate_ok_is_0_and_a_broken_file_is_1(app: typer.Typer, tmp_path: Path) -> None:
    write_claims(tmp_path / "in", range(2))
    assert _run(app, "validate", tmp_path / "in").exit_code == ExitCode.OK
    (tmp_path / "in" / "broken.xml").write_bytes(b"<BehandlerKrav>\n")
    result = _run(app, "validate", tmp_path / "in")
    assert result.exit_code == ExitCode.FAILED
    assert "XML_MALFORMED" in result.stderr


def test_precheck_warnings_alone_are_0_and_errors_in_block_mode_are_1(
    app: typer.Typer, tmp_path: Path
) -> None:
    claim = tmp_path / "krav.xml"
    claim.write_bytes(claim_xml(0))  # dated 2026-01-05 08:00: in the future on 2026-01-01
    warned = _run(app, "precheck", claim, "--now", "2026-01-01T12:00:00")
    assert warned.exit_code == ExitCode.OK, warned.output
    assert "REGNING_IN_FUTURE" in warned.stdout and "[warning]" in warned.stdout
    config = tmp_path / "block.toml"
    config.write_text('[precheck]\nmode = "block"\n', encoding="utf-8")
    blocked = _run(app, "precheck", claim, "--now", "2026-01-01T12:00:00", "--config", config)
    assert blocked.exit_code == ExitCode.FAILED, blocked.output
    assert "REGNING_IN_FUTURE" in blocked.stdout and "[warning]" not in blocked.stdout


# --------------------------------------------------------------------------- 1: KUHR rejects


def test_submit_wait_where_every_regning_is_avvist_is_1(app: typer.Typer, tmp_path: Path) -> None:
    claim = _future_claim(tmp_path / "fremtid.xml")
    result = _run(app, "submit", claim, "--wait", "--praksis-id", PRAKSIS_ID)
    assert result.exit_code == ExitCode.FAILED, result.output
    assert "Control finished: 2 avvist." in result.stdout
    assert "fremtid.xml: 2 of 2 regning(er) avvist" in result.stderr
    sent = _run(app, "submit", claim, "--praksis-id", PRAKSIS_ID)  # no --wait: received is 0
    assert sent.exit_code == ExitCode.OK, sent.output


def test_migrate_follow_with_avvist_regninger_is_1(tmp_path: Path) -> None:
    """The real entry point, as a subprocess: the summary counts the rejected regninger and
    the exit code follows them, as `submit --wait` does."""
    (tmp_path / "in").mkdir()
    _future_claim(tmp_path / "in" / "fremtid.xml")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BKM_BRIDGE_")}
    env["BKM_BRIDGE_WATCH__STATE_DIR"] = str(tmp_path / "state")
    args = ["migrate", str(tmp_path / "in"), "--follow", "--praksis-id", PRAKSIS_ID, "--json"]
    args += ["--receipts", str(tmp_path / "kvitteringer"), "--workers", "1", "--quiet"]
    args += ["--report", str(tmp_path / "rapport.csv")]
    done = subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == ExitCode.FAILED, done.stderr
    assert '"avvist": 1' in done.stdout and '"rejected_regninger": 2' in done.stdout
    page = (tmp_path / "rapport.html").read_text(encoding="utf-8")  # the files to act on
    row = f"<td>{tmp_path / 'in' / 'fremtid.xml'}</td><td>avvist</td>"
    assert row + "<td>regning avvist: 701, 702; merknader 766, 766</td>" in page


# --------------------------------------------------------------------------- the table


def test_the_readme_table_is_the_enum() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- exit-codes:start -->")[1].split("<!-- exit-codes:end -->")[0]
    documented = {int(m) for m in re.findall(r"^\| `(\d+)` \|", block, flags=re.M)}
    assert documented == {int(code) for code in ExitCode}
