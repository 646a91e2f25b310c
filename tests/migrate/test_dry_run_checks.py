"""`migrate --dry-run` judges a file as the real run does: it resolves the praksis (the
praksis list, fetched once, read-only, from a standalone sandbox on loopback) and runs the
pre-control; when KUHR cannot be asked, each file that needs it says `PRAKSIS_NOT_CHECKED`,
no JSON is written for it and the run exits 1. The HTML report lists failed files with
their reasons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.migrate import SEED_CLOCK, claim_xml, cli_env, read_csv, run_migrate, write_claims

from bridge.sandbox.keys import KeyMaterial
from bridge.sandbox.server import RunningSandbox, start_sandbox

# Two praksiser for the claims' orgnr 999999999, both valid in January 2026: the automatic
# choice is ambiguous, so the real run rejects every claim (PRAKSIS_MISSING).
AMBIGUOUS = """
[[actors]]
name = "klinikk"
orgnr = "999999999"

[[actors.praksiser]]
praksisId = "2000000001"
navn = "Kurbadet Helsesenter"
orgnr = "999999999"
type = "FALE"
status = "ok"
gyldigePerioder = [{ fraOgMedDato = "2020-01-01" }]

[[actors.praksiser]]
praksisId = "2000000002"
navn = "Kurbadet Fysioterapi"
orgnr = "999999999"
type = "FYSI"
status = "ok"
gyldigePerioder = [{ fraOgMedDato = "2026-01-01" }]
"""


@pytest.fixture
def ambiguous(sandbox_keys: KeyMaterial, tmp_path: Path) -> Iterator[RunningSandbox]:
    state = tmp_path / "sandbox"
    state.mkdir()
    (state / "sandbox.toml").write_text(AMBIGUOUS, encoding="utf-8")
    with start_sandbox(
        keys=sandbox_keys, state_dir=state, config=state / "sandbox.toml", clock=SEED_CLOCK
    ) as running:
        yield running


def _stats(sandbox: RunningSandbox) -> dict:
    return httpx.get(f"{sandbox.info['admin_url']}/stats", timeout=10).json()


def test_a_dry_run_rejects_what_the_real_run_rejects_for_its_praksis(
    ambiguous: RunningSandbox, tmp_path: Path
) -> None:
    write_claims(tmp_path / "in", range(2))
    env = cli_env(tmp_path / "state", tmp_path / "sandbox")
    report = tmp_path / "dry.csv"
    dry = run_migrate(
        [str(tmp_path / "in"), "--dry-run", "--json", "--report", str(report), "--workers", "1"],
        env,
    )
    assert dry.returncode == 1, dry.stderr
    summary = json.loads(dry.stdout)
    assert summary["outcomes"] == {"avvist_lokalt": 2}
    assert summary["problems"]["PRAKSIS_MISSING"] == 2
    assert summary["checked"].startswith("praksis resolved with the praksis list from SANDBOX")
    assert _stats(ambiguous)["submissions_received"] == 0  # read-only: nothing was sent
    page = report.with_name("dry.html").read_text(encoding="utf-8")
    assert "Files that need attention" in page
    for row in read_csv(report):
        assert f"<td>{row['file']}</td><td>avvist_lokalt</td><td>PRAKSIS_MISSING" in page

    real = run_migrate(
        [str(tmp_path / "in"), "--json", "--receipts", str(tmp_path / "r"), "--workers", "1"], env
    )
    assert real.returncode == 1, real.stderr
    assert json.loads(real.stdout)["outcomes"] == {"avvist_lokalt": 2}  # the same verdict


def test_a_dry_run_runs_the_pre_control(ambiguous: RunningSandbox, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "krav.xml").write_bytes(claim_xml(0))  # 155.00 for 2ad: the table says 15
    # Dated 2026-02-01: in the future by the sandbox's clock (2026-01-06), which the dry run
    # reads as the real run does, though it needs no praksis list.
    (tmp_path / "in" / "senere.xml").write_bytes(claim_xml(13000))
    env = cli_env(tmp_path / "state", tmp_path / "sandbox")
    flags = ["--dry-run", "--json", "--praksis-id", "2000000001", "--workers", "1"]
    warned = run_migrate([str(tmp_path / "in"), *flags], env)
    assert warned.returncode == 0, warned.stderr  # precheck.mode warn: warnings, sent anyway
    summary = json.loads(warned.stdout)
    assert summary["outcomes"] == {"konvertert": 2}
    assert summary["problems"] == {"REGNING_IN_FUTURE": 1, "TAKST_AMOUNT_DIFFERS": 2}

    env["BKM_BRIDGE_PRECHECK__MODE"] = "block"
    blocked = run_migrate([str(tmp_path / "in"), *flags], env)
    assert blocked.returncode == 1, blocked.stderr
    summary = json.loads(blocked.stdout)
    assert summary["outcomes"] == {"avvist_lokalt": 2}
    assert summary["problems"] == {
        "PRECHECK_BLOCKED": 2,
        "REGNING_IN_FUTURE": 1,
        "TAKST_AMOUNT_DIFFERS": 2,
    }


def test_without_kuhr_a_dry_run_says_not_checked(sandbox_keys: KeyMaterial, tmp_path: Path) -> None:
    with start_sandbox(keys=sandbox_keys, state_dir=tmp_path / "sandbox"):
        pass  # sandbox.json stays behind, nothing listens any more: KUHR cannot be asked
    write_claims(tmp_path / "in", range(2))
    env = cli_env(tmp_path / "state", tmp_path / "sandbox")
    env["BKM_BRIDGE_KUHR__MAX_ATTEMPTS"] = "1"
    out = tmp_path / "o"
    proc = run_migrate(
        [str(tmp_path / "in"), "--dry-run", "--json", "--out", str(out), "--workers", "1"], env
    )
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["outcomes"] == {"konvertert": 2}
    assert summary["problems"]["PRAKSIS_NOT_CHECKED"] == 2
    assert summary["checked"].startswith("praksis not checked: the praksis list failed")
    assert not any(out.rglob("*.json"))  # no praksisId, so no JSON BKM
    quiet = run_migrate([str(tmp_path / "in"), "--dry-run", "--workers", "1"], env)
    assert quiet.returncode == 1
    assert "Praksis not checked: the praksis list failed" in quiet.stderr
