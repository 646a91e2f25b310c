"""GUID-only kreditering and korrigering of betalt egenandel through `watch` → sandbox →
receipt: the documented messages that name the original regning by its GUID alone ("Hvis GUID
er benyttet på opprinnelig regning er det ikke nødvendig å ta med klassene Behandling og
Pasient") are sent as such and answered godkjent, each in its own receipt and AppRec."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from support.daemon import receipt_of
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.core.convert import ConvertContext
from bridge.core.model import dump_json
from bridge.daemon.runner import Runner, RunOptions
from bridge.files.reading import convert_file
from bridge.sandbox import start_sandbox

CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PRAKSIS = "1004326178"


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=CLOCK, speed=120) as running:
        yield running


def test_guid_only_kreditering_and_korrigering_go_through_watch(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = load_settings(
        None,
        {
            "kuhr.sandbox_state_dir": tmp_path / "sandbox",
            "watch.state_dir": tmp_path / "state",
            "watch.quiet_seconds": 0.2,
            "watch.praksis_id": PRAKSIS,
        },
    )
    # In order: each refers to what the one before left at KUHR (`--once` waits for control).
    steps = [
        ("original.xml", "seed-arbeidsflyt-rettet.xml"),
        ("kreditering.xml", "sandbox/kreditering-med-guid.xml"),
        ("egenandel.xml", "sandbox/egenandel-ikke-betalt.xml"),
        ("korrigering.xml", "sandbox/korrigering-betalt-egenandel-med-guid.xml"),
    ]
    for name, fixture in steps:
        shutil.copyfile(FIXTURES / fixture, inbox / name)
        assert Runner(settings, RunOptions(folders=(inbox,))).run_once() == 0, name
        receipt = receipt_of(inbox / name)
        assert receipt is not None, name
        assert receipt["status"] == "godkjent", (name, receipt)
        assert [r["status"] for r in receipt["regninger"]] == ["godkjent"], name
        apprec = (inbox / Path(name).with_suffix(".apprec.xml")).read_text(encoding="utf-8")
        assert '<Status V="1"' in apprec, name
    for name in ("kreditering.xml", "korrigering.xml"):  # sent by GUID alone, without belop
        result = convert_file(inbox / name, ConvertContext(praksis_id=PRAKSIS))
        assert result.melding is not None, name
        [regning] = json.loads(dump_json(result.melding, indent=None))["behandlerkrav"]["regninger"]
        assert regning["guid"] and not {"pasient", "behandling", "belop"} & set(regning), regning
