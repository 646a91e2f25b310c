"""The pre-control inside the watcher, end to end on the seed's workflow against a standalone
sandbox over loopback: the takst table is synced from the sandbox's open data endpoints, the
claim is checked on the sandbox's clock, and the receipt shows the pre-control's findings
beside KUHR's later merknader."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from support.daemon import wait_for_receipt
from support.paths import FIXTURES
from typer.testing import CliRunner

from bridge.cli.precheck import register
from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import RunningSandbox, start_sandbox
from bridge.sandbox.keys import KeyMaterial, generate_keys

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")


@pytest.fixture(scope="module")
def keys() -> KeyMaterial:
    return generate_keys()


@pytest.fixture
def sandbox(keys: KeyMaterial, tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(keys=keys, state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BKM_BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def sync_takster(sandbox: RunningSandbox, state: Path) -> None:
    """`bkm-bridge takster sync` against the sandbox, into the watcher's state folder."""
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        ["takster", "sync", "--sandbox-state-dir", str(sandbox.info_path.parent)],
        env={"BKM_BRIDGE_WATCH__STATE_DIR": str(state)},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    assert (state / "opendata" / "takster-sandbox.json").is_file()


def run_watcher(sandbox: RunningSandbox, tmp_path: Path, **settings: Any) -> Runner:
    loaded = load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": sandbox.info_path.parent,
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            **settings,
        },
    )
    runner = Runner(loaded, RunOptions(folders=(tmp_path / "inbox",)))
    runner.start()
    return runner


def test_the_receipt_shows_the_findings_beside_kuhrs_merknader(
    sandbox: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sync_takster(sandbox, tmp_path / "state")
    (tmp_path / "inbox").mkdir()
    admin = sandbox.info["admin_url"]
    runner = run_watcher(sandbox, tmp_path)  # precheck.mode: the default (warn)
    try:
        claim = tmp_path / "inbox" / "krav.xml"
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", claim)
        receipt = wait_for_receipt(claim, lambda r: r["status"] == "delvis_godkjent", admin)
    finally:
        runner.stop()

    findings = receipt["forhandskontroll"]
    assert [
        (f["regningsnummer"], f["kode"], f.get("forventetMerknad"), f["alvorlighet"])
        for f in findings
    ] == [
        ("4", "ENKEL_KONTAKT_NEAR_KONSULTASJON", "470", "advarsel"),
        ("6", "REGNING_IN_FUTURE", "766", "advarsel"),
    ]
    assert findings[0]["guid"] == "f0bcd358-0676-49c7-94f8-c055c4b21332"
    # Checked on the sandbox's clock (the seed's moment), not on this machine's.
    assert "after the moment it is checked (06.01.2026 15:3" in findings[1]["melding"]
    # KUHR's merknader for the same regninger, side by side; nothing was blocked.
    merknader = {
        r["regningsnummer"]: (r["status"], [str(m["nummer"]) for m in r["merknader"]])
        for r in receipt["regninger"]
    }
    assert merknader == {"4": ("avvist", ["470"]), "5": ("godkjent", []), "6": ("avvist", ["766"])}
    assert receipt["problemer"] == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "pre-control of krav.xml: 2 finding(s)" in logged
    # At INFO, the claim's one line names them.
    mottatt = [r.getMessage() for r in caplog.records if "mottatt by KUHR" in r.getMessage()]
    assert mottatt and mottatt[0].endswith(
        "(pre-control: 2 finding(s): ENKEL_KONTAKT_NEAR_KONSULTASJON, REGNING_IN_FUTURE)"
    ), mottatt
    assert all(
        r.levelno == logging.DEBUG for r in caplog.records if "pre-control of" in r.getMessage()
    )
    for patient_id in PATIENT_IDS:
        assert patient_id not in logged
        assert patient_id not in json.dumps(findings)


def test_block_mode_keeps_a_claim_with_findings_from_being_sent(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    sync_takster(sandbox, tmp_path / "state")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    admin = sandbox.info["admin_url"]
    runner = run_watcher(sandbox, tmp_path, **{"precheck.mode": "block"})
    try:
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
        blocked = wait_for_receipt(
            inbox / "krav.xml", lambda r: r["status"] == "avvist_lokalt", admin
        )
        shutil.copyfile(FIXTURES / "seed-arbeidsflyt-rettet.xml", inbox / "rettet.xml")
        sent = wait_for_receipt(inbox / "rettet.xml", lambda r: r["status"] == "godkjent", admin)
    finally:
        runner.stop()

    assert [p["kode"] for p in blocked["problemer"]] == [
        "ENKEL_KONTAKT_NEAR_KONSULTASJON",
        "REGNING_IN_FUTURE",
        "PRECHECK_BLOCKED",
    ]
    assert [f["alvorlighet"] for f in blocked["forhandskontroll"]] == ["feil", "feil"]
    assert [r["status"] for r in blocked["regninger"]] == ["ikke_sendt"] * 3
    assert blocked["behandlerkravmeldingId"] is None
    assert sent["forhandskontroll"] == []
    stats = httpx.get(f"{admin}/stats", timeout=10).json()
    assert stats["submissions_received"] == 1  # only the corrected claim reached the sandbox


TANNLEGE_CONFIG = """
[[actors]]
name = "lege"
pid = "15837510047"
orgnr = "999999999"

[[actors.praksiser]]
praksisId = "1004326178"
navn = "Kurbadet Helsesenter"
orgnr = "999999999"
type = "FALE"
kontonr = "12345678901"
gyldigePerioder = [{ fraOgMedDato = 2020-01-01, tilOgMedDato = 2028-07-15 }]

[[actors.praksiser]]
praksisId = "1004326999"
navn = "Tannlegene i Sentrum"
orgnr = "999999997"
type = "TANN"
kontonr = "12345678903"
gyldigePerioder = [{ fraOgMedDato = 2020-01-01, tilOgMedDato = 2028-07-15 }]
"""


def test_block_mode_sends_a_tannleges_egenandel_report_with_refusjon_0(
    keys: KeyMaterial, tmp_path: Path
) -> None:
    """Refusjon 0 is how a tannlege without direkte oppgjør reports egenandeler (the mapping
    table, behandlerkrav.regninger.belop): the pre-control in block mode lets it through, and
    KUHR (the sandbox) approves it."""
    config = tmp_path / "sandbox.toml"
    config.write_text(TANNLEGE_CONFIG, encoding="utf-8")
    with start_sandbox(
        keys=keys, state_dir=tmp_path / "sandbox", clock=SEED_CLOCK, config=config
    ) as sandbox:
        sync_takster(sandbox, tmp_path / "state")
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        admin = sandbox.info["admin_url"]
        runner = run_watcher(sandbox, tmp_path, **{"precheck.mode": "block"})
        try:
            shutil.copyfile(FIXTURES / "tannlege-egenandel.xml", inbox / "egenandel.xml")
            receipt = wait_for_receipt(
                inbox / "egenandel.xml", lambda r: r["status"] == "godkjent", admin
            )
            # Without Behandlingsform: a tannlege must give the stønadspunkt (a documented
            # rule of the praksis type, known once the praksis is chosen): not sent.
            data = (FIXTURES / "tannlege-egenandel.xml").read_bytes()
            (inbox / "uten-stonadspunkt.xml").write_bytes(
                data.replace(b'<Behandlingsform V="4h"/>', b"").replace(b"7d1e0c5a", b"7d1e0c5b")
            )
            refused = wait_for_receipt(
                inbox / "uten-stonadspunkt.xml", lambda r: r["status"] == "avvist_lokalt", admin
            )
        finally:
            runner.stop()
        stats = httpx.get(f"{admin}/stats", timeout=10).json()

    assert receipt["praksisId"] == "1004326999"
    assert receipt["forhandskontroll"] == [] and receipt["problemer"] == []
    assert [(r["regningsnummer"], r["status"]) for r in receipt["regninger"]] == [
        ("101", "godkjent")
    ]
    assert receipt["sumKravbelop"] == 0
    assert [(p["kode"], p.get("sti")) for p in refused["problemer"]] == [
        ("FIELD_REQUIRED", "behandlerkrav.regninger[0].stonadspunkt")
    ]
    assert "(praksis type TANN)" in refused["problemer"][0]["detalj"]
    assert refused["problemer"][0]["melding"].startswith("Kravet mangler en opplysning Helfo")
    assert refused["behandlerkravmeldingId"] is None
    assert stats["submissions_received"] == 1  # the refused claim never reached KUHR
