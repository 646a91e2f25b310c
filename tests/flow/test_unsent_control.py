"""A claim KUHR never sends to control (kontrollstatus ikke_sendt_til_kontroll) is followed
for a bounded time, then no longer polled, and its receipt says in Norwegian what to do; a
sandbox that holds every melding back from control plays KUHR over loopback."""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.paths import FIXTURES
from support.pipeline import receipt, run

from bridge.core.outcomes import STATUS_SENTENCES, State
from bridge.flow.journal import Journal
from bridge.flow.options import NEVER
from bridge.flow.pipeline import Pipeline
from bridge.sandbox import SandboxSettings, start_sandbox

SEED = FIXTURES / "seed-arbeidsflyt-rettet.xml"


@pytest.fixture
def sandbox(tmp_path: Path):
    clock = datetime.fromisoformat("2026-01-06T15:50:00+01:00")
    settings = SandboxSettings(seed=7, unsent_control_share=1.0)
    with start_sandbox(
        state_dir=tmp_path / "sandbox", clock=clock, speed=120, settings=settings
    ) as running:
        yield running


def test_polling_a_claim_not_sent_to_control_ends_with_a_receipt_saying_what_to_do(
    tmp_path: Path, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim = inbox / "krav.xml"
    shutil.copyfile(SEED, claim)

    async def waiting(pipeline: Pipeline, journal: Journal) -> int:
        version = pipeline.offer(claim, inbox)
        # Within the bound, the claim is followed on: it never settles.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pipeline.run_until_settled(), timeout=2)
        assert journal.get(version.id).detail.polls >= 2
        return version.id

    version_id = run(sandbox, tmp_path, waiting, unsent_control_max=3600.0)
    first = receipt(claim)

    async def bounded(pipeline: Pipeline, journal: Journal) -> dict[str, Any]:
        await asyncio.wait_for(pipeline.run_until_settled(), timeout=30)  # must end now
        done = journal.get(version_id)
        return {"state": done.state, "due": done.due_at, "polls": done.detail.polls}

    out = run(sandbox, tmp_path, bounded, unsent_control_max=1.0)
    out["waiting"] = first

    assert out["waiting"]["status"] == "ikke_sendt_til_kontroll"
    assert out["waiting"]["melding"] == STATUS_SENTENCES["ikke_sendt_til_kontroll"]
    # Not final in KUHR's terms (still submitted), but no longer polled.
    assert out["state"] is State.SUBMITTED and out["due"] >= NEVER
    final = receipt(claim)
    assert final["status"] == "ikke_sendt_til_kontroll"
    assert final["kontrollstatus"] == "ikke_sendt_til_kontroll"
    assert final["meldingsstatus"] == "klar_til_behandling"
    assert final["melding"].startswith("Helfo har mottatt kravet (sendt ")
    assert "Sjekk kravet i tjenesteportalen for helseaktører" in final["melding"]
    assert "Ikke send filen på nytt" in final["melding"]
    assert "unsent_control_max" not in final["melding"]  # operator advice stays in the log
    assert [r["status"] for r in final["regninger"]] == ["behandles"]
    assert not list(inbox.glob("*.apprec.xml"))  # no final answer from KUHR's control
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "the bridge stops polling it" in logged
    assert f"bkm-bridge status {final['behandlerkravmeldingId']}" in logged
    # Polling has stopped: more time passing brings no more status reads.
    polls = out["polls"]

    async def later(pipeline: Pipeline, journal: Journal) -> int:
        await asyncio.sleep(0.5)
        await asyncio.wait_for(pipeline.run_until_settled(), timeout=10)
        return journal.versions([State.SUBMITTED])[0].detail.polls

    assert run(sandbox, tmp_path, later, unsent_control_max=1.0) == polls
    assert (
        httpx.get(sandbox.info["admin_url"] + "/stats", timeout=10).json()["submissions_accepted"]
        == 1
    )
