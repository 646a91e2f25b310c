"""The sweep against a real sandbox over loopback: claims the pipeline followed to their final
state, then changed at KUHR (a rebehandling, a payment); and what a sweep costs, counted by
the sandbox itself (its overview and details requests)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.migrate import write_claims
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.core.model import load_json
from bridge.core.outcomes import State
from bridge.flow import sweep
from bridge.flow.delivery import Delivery
from bridge.flow.journal import Journal
from bridge.flow.options import NEVER, PipelineOptions
from bridge.flow.pipeline import Pipeline
from bridge.flow.sweep import LAST_SWEEP_MARK, Sweeper, sweep_periodically
from bridge.kuhr.client import AsyncKuhrClient, KuhrUnavailable
from bridge.kuhr.target import client_options, resolve_target, token_provider_for
from bridge.sandbox import start_sandbox

SEED = FIXTURES / "seed-arbeidsflyt.xml"
PRAKSIS = "1004326178"


@pytest.fixture
def sandbox(tmp_path: Path):
    # The morning after the claims: KUHR's 16:00 vedtak run is hours of the sandbox's time
    # away, so nothing but what a test does changes while it runs.
    clock = datetime.fromisoformat("2026-01-07T08:00:00+01:00")
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=clock, speed=120) as running:
        yield running


def admin(sandbox, path: str, body: dict[str, Any] | None = None) -> Any:
    url = f"{sandbox.info['admin_url']}/{path}"
    response = httpx.post(url, json=body, timeout=10) if body is not None else httpx.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def reads(sandbox) -> tuple[int, int]:
    """(overview requests, details requests) the sandbox has answered so far."""
    stats = admin(sandbox, "stats")
    return stats["overview_requests"], stats["details_requests"]


def receipt(path: Path) -> dict[str, Any]:
    return load_json(Path(f"{path}.kvittering.json").read_text(encoding="utf-8"))


def apprec(path: Path) -> str:
    return path.with_suffix(".apprec.xml").read_text(encoding="utf-8")


def apprec_id(path: Path) -> str:
    found = re.search(r"<Id>([^<]+)</Id>", apprec(path))
    assert found is not None
    return found.group(1)


def run(sandbox, tmp_path: Path, body, settings_extra: dict[str, Any] | None = None, **options):
    """Run `body(pipeline, sweeper, journal)` with a fresh pipeline and sweeper."""
    settings = load_settings(
        None, {"kuhr.sandbox_state_dir": tmp_path / "sandbox", **(settings_extra or {})}
    )
    target = resolve_target(settings, sandbox.info)

    async def main() -> Any:
        tokens = token_provider_for(target, settings)
        async with AsyncKuhrClient(
            target.api_url, tokens, **client_options(settings, target)
        ) as kuhr:
            journal = Journal(tmp_path / "state" / "journal.db")
            fast = {"poll_first": 0.05, "poll_max": 0.2, "praksis_id": PRAKSIS, **options}
            pipeline = Pipeline(journal, kuhr, PipelineOptions(**fast))
            follow = fast.get("follow", "control")
            sweeper = Sweeper(journal, kuhr, pipeline.delivery, follow=follow)
            try:
                return await body(pipeline, sweeper, journal)
            finally:
                await pipeline.drain_inflight()
                journal.close()

    return asyncio.run(main())


async def settle(pipeline: Pipeline) -> None:
    await asyncio.wait_for(pipeline.run_until_settled(), timeout=60)


@pytest.mark.parametrize("page_size", [500, 3])  # 3: the journal read in pages of 3 claims
def test_a_rebehandling_reaches_the_receipt_and_apprec_of_a_final_claim(
    tmp_path: Path, sandbox, monkeypatch, page_size: int
) -> None:
    monkeypatch.setattr(sweep, "PAGE_SIZE", page_size)
    inbox = tmp_path / "inbox"
    claim = inbox / "krav.xml"
    others = write_claims(inbox, range(3))
    shutil.copyfile(SEED, claim)

    async def body(pipeline: Pipeline, sweeper: Sweeper, journal: Journal) -> None:
        versions = [pipeline.offer(path, inbox) for path in (claim, *others)]
        await settle(pipeline)
        admin(sandbox, "clock", {"speed": 0})  # nothing moves at KUHR unless the test says so
        for version in versions:
            assert version is not None
            assert journal.get(version.id).state is State.CONTROLLED
        before = receipt(claim)
        assert before["status"] == "delvis_godkjent" and before["rebehandlinger"] == []
        old_apprec = apprec_id(claim)
        assert '<Status V="3"' in apprec(claim)

        # Nothing changed at KUHR: one overview read, no details.
        start = reads(sandbox)
        result = await sweeper.sweep()
        assert (result.checked, result.changed, result.rewritten) == (4, 0, 0)
        assert reads(sandbox) == (start[0] + 1, start[1])
        # What KUHR said is kept per claim (a journal that never swept compared its details).
        assert all(journal.get(v.id).detail.kuhr_fingerprint for v in versions if v)

        # KUHR re-runs the control and approves every regning; its control takes seconds.
        melding_id = before["behandlerkravmeldingId"]
        admin(sandbox, "rebehandling", {"behandlerkravmeldingId": melding_id})
        admin(sandbox, "clock", {"advance_seconds": 120})
        start = reads(sandbox)
        result = await sweeper.sweep()
        assert (result.checked, result.changed, result.rewritten) == (4, 1, 1)
        assert result.praksiser == {PRAKSIS: 1}
        assert reads(sandbox) == (start[0] + 1, start[1] + 1)  # details of the changed one only

        after = receipt(claim)
        assert after["status"] == "godkjent"
        assert [r["status"] for r in after["regninger"]] == ["godkjent"] * 3
        assert all(r.get("rebehandlet") for r in after["regninger"] if r["regningsnummer"] != "5")
        [rebehandling] = after["rebehandlinger"]
        assert rebehandling["kontrollstatus"] == "ferdig_kontrollert"
        assert after["kontrollresultat"] == "godkjent"
        assert '<Status V="1"' in apprec(claim) and apprec_id(claim) != old_apprec
        version = journal.by_kuhr_id(melding_id)
        assert version is not None and version.due_at >= NEVER
        assert version.state is State.CONTROLLED
        assert any("rebehandling" in (e.note or "") for e in journal.events(version.id))
        for path in others:  # untouched
            assert receipt(path)["rebehandlinger"] == []

        # Said once: the next sweep reads the overview only.
        start = reads(sandbox)
        result = await sweeper.sweep()
        assert (result.changed, result.rewritten) == (0, 0)
        assert reads(sandbox) == (start[0] + 1, start[1])
        assert journal.mark(LAST_SWEEP_MARK) is not None

    run(sandbox, tmp_path, body)


def test_a_rebehandling_still_in_control_is_followed_until_it_is_done(
    tmp_path: Path, sandbox
) -> None:
    inbox = tmp_path / "inbox"
    claim = inbox / "krav.xml"
    inbox.mkdir()
    shutil.copyfile(SEED, claim)

    async def body(pipeline: Pipeline, sweeper: Sweeper, journal: Journal) -> None:
        version = pipeline.offer(claim, inbox)
        assert version is not None
        await settle(pipeline)
        admin(sandbox, "clock", {"speed": 0})
        melding_id = receipt(claim)["behandlerkravmeldingId"]
        admin(sandbox, "rebehandling", {"behandlerkravmeldingId": melding_id})
        result = await sweeper.sweep()  # the new row is there, its control is not finished
        assert (result.changed, result.rewritten) == (1, 1)
        followed = journal.get(version.id)
        assert followed.state is State.CONTROLLED and followed.due_at < NEVER
        assert receipt(claim)["rebehandlinger"][0]["kontrollstatus"] != "ferdig_kontrollert"
        admin(sandbox, "clock", {"speed": 120})
        await asyncio.wait_for(_until_final(pipeline, journal, version.id), timeout=30)
        assert receipt(claim)["status"] == "godkjent"
        assert '<Status V="1"' in apprec(claim)

    run(sandbox, tmp_path, body)


async def _until_final(pipeline: Pipeline, journal: Journal, version_id: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    try:
        while journal.get(version_id).due_at < NEVER:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def test_a_payment_after_the_control_reaches_the_receipt(tmp_path: Path, sandbox) -> None:
    """`follow = "control"` stops at the control result; the payment comes with a sweep."""
    inbox = tmp_path / "inbox"
    [path] = write_claims(inbox, range(1))

    async def body(pipeline: Pipeline, sweeper: Sweeper, journal: Journal) -> None:
        pipeline.offer(path, inbox)
        await settle(pipeline)
        admin(sandbox, "clock", {"speed": 0})
        assert receipt(path)["vedtak"] is None
        admin(sandbox, "clock", {"advance_seconds": 7 * 24 * 3600})  # 16:00, then paid
        result = await sweeper.sweep()
        assert (result.changed, result.rewritten, result.details_reads) == (1, 1, 1)
        paid = receipt(path)
        assert paid["status"] == "utbetalt"
        assert paid["vedtak"]["utbetaling"]["kontonr"]

    run(sandbox, tmp_path, body)


def test_a_sweep_without_final_claims_reads_nothing(tmp_path: Path, sandbox) -> None:
    async def body(_pipeline: Pipeline, sweeper: Sweeper, _journal: Journal) -> None:
        start = reads(sandbox)
        result = await sweeper.sweep()
        assert (result.checked, result.overview_reads) == (0, 0)
        assert reads(sandbox) == start

    run(sandbox, tmp_path, body)


def test_a_claim_missing_from_the_overview_is_counted_and_left_alone(
    tmp_path: Path, sandbox
) -> None:
    inbox = tmp_path / "inbox"
    [path] = write_claims(inbox, range(1))

    async def body(pipeline: Pipeline, sweeper: Sweeper, journal: Journal) -> None:
        version = pipeline.offer(path, inbox)
        assert version is not None
        await settle(pipeline)
        before = journal.get(version.id)
        admin(sandbox, "reset", {})  # KUHR forgets it (as a praksis moved to another actor)
        result = await sweeper.sweep()
        assert (result.checked, result.missing, result.details_reads) == (1, 1, 0)
        assert journal.get(version.id).detail == before.detail

    run(sandbox, tmp_path, body)


def test_receipts_of_an_archived_original_are_rewritten_in_the_archive(
    tmp_path: Path, sandbox
) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    claim = inbox / "krav.xml"
    inbox.mkdir()
    shutil.copyfile(SEED, claim)

    async def body(pipeline: Pipeline, sweeper: Sweeper, _journal: Journal) -> None:
        pipeline.offer(claim, inbox)
        await settle(pipeline)
        admin(sandbox, "clock", {"speed": 0})
        archived = archive / "krav.xml"
        assert archived.is_file() and not claim.exists()
        melding_id = receipt(archived)["behandlerkravmeldingId"]
        admin(sandbox, "rebehandling", {"behandlerkravmeldingId": melding_id})
        admin(sandbox, "clock", {"advance_seconds": 120})
        result = await sweeper.sweep()
        assert result.rewritten == 1
        assert receipt(archived)["kontrollresultat"] == "godkjent"
        assert '<Status V="1"' in apprec(archived)
        assert sorted(p.name for p in inbox.iterdir()) == []  # nothing left behind

    run(sandbox, tmp_path, body, archive_dir=archive)


def test_kuhr_unavailable_changes_nothing_and_the_next_sweep_tries_again(
    tmp_path: Path, sandbox
) -> None:
    inbox = tmp_path / "inbox"
    [path] = write_claims(inbox, range(1))

    async def body(pipeline: Pipeline, sweeper: Sweeper, journal: Journal) -> None:
        version = pipeline.offer(path, inbox)
        assert version is not None
        await settle(pipeline)
        before = journal.get(version.id)
        admin(sandbox, "faults", {"error_rate": 1.0, "error_statuses": [503]})
        with pytest.raises(KuhrUnavailable):
            await sweeper.sweep()
        assert journal.mark(LAST_SWEEP_MARK) is None  # not counted as a sweep
        assert journal.get(version.id).detail == before.detail
        admin(sandbox, "faults", {})
        assert (await sweeper.sweep()).checked == 1
        assert journal.mark(LAST_SWEEP_MARK) is not None

    run(sandbox, tmp_path, body, settings_extra={"kuhr.max_attempts": 1})


def test_the_schedule_counts_from_the_last_sweep_the_journal_remembers(
    tmp_path: Path, sandbox
) -> None:
    """A daemon restarted often still sweeps on schedule: never at every start, never not at
    all."""

    async def for_a_moment(sweeper: Sweeper, interval: float) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sweep_periodically(sweeper, interval, stop))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    async def body(_pipeline: Pipeline, sweeper: Sweeper, journal: Journal) -> None:
        await for_a_moment(sweeper, 3600)  # never swept: at once
        first = journal.mark(LAST_SWEEP_MARK)
        assert first is not None
        await for_a_moment(sweeper, 3600)  # swept a moment ago: not again
        assert journal.mark(LAST_SWEEP_MARK) == first
        journal.set_mark(LAST_SWEEP_MARK, first - 3600)  # an hour ago: due
        await for_a_moment(sweeper, 3600)
        later = journal.mark(LAST_SWEEP_MARK)
        assert later is not None and later > first
        await for_a_moment(sweeper, 0.1)  # every 0.1 s: several in 0.3 s
        assert (journal.mark(LAST_SWEEP_MARK) or 0) > later

    run(sandbox, tmp_path, body)


def test_a_malformed_overview_entry_leaves_its_claim_alone_and_the_others_are_swept(
    tmp_path: Path,
) -> None:
    """KUHR's answer served through httpx's transport swap (the sandbox writes no malformed
    entry): the docs' own example time `2026-01-0615:30:29+01:00` in one claim's row."""
    row = {
        "behandlerkravmeldingId": "a",
        "meldingsstatus": "ferdig_behandlet",
        "kontrollstatus": "ferdig_kontrollert",
        "utbetalingsstatus": "ikke_sendt_til_utbetaling",
        "praksisId": PRAKSIS,
        "mottattidspunkt": "2026-01-06T15:45:57+01:00",
        "sumKravbelop": 64,
        "antallRegninger": 1,
    }
    bad = {**row, "behandlerkravmeldingId": "b", "mottattidspunkt": "2026-01-0615:30:29+01:00"}
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path}?{request.url.query.decode()}")
        return httpx.Response(200, json={"behandlerkravmeldinger": [row, bad]})

    class Tokens:
        async def auth_headers(self, method: str, url: str) -> dict[str, str]:
            return {"Authorization": "Bearer t"}

        def invalidate(self, token: str | None = None) -> None:
            pass

    journal = Journal(tmp_path / "journal.db")
    for melding_id in ("a", "b"):
        version, _ = journal.record_seen(f"/inbox/{melding_id}.xml", melding_id * 64, 1)
        details = json.dumps({"behandlerkravmeldinger": [{**row, "behandlerkravmeldingId": "a"}]})
        journal.transition(
            version.id,
            State.CONTROLLED,
            behandlerkravmelding_id=melding_id,
            due_at=NEVER,
            detail={"details": details.replace('"a"', f'"{melding_id}"')},
        )

    async def main() -> sweep.SweepResult:
        transport = httpx.MockTransport(handler)
        async with AsyncKuhrClient("http://kuhr.test", Tokens(), transport=transport) as kuhr:
            delivery = Delivery(journal, PipelineOptions(), clock=time.time)
            return await Sweeper(journal, kuhr, delivery).sweep()

    try:
        result = asyncio.run(main())
    finally:
        journal.close()
    assert (result.checked, result.changed, result.missing, result.unreadable) == (2, 0, 1, 1)
    # The overview once, from the day before the oldest claim was received; no details.
    assert asked == ["/data/behandlerkravmelding?fomMottattdato=2026-01-05"]
