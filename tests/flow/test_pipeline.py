"""The pipeline's exactly-once edges, against a real sandbox over loopback.

A crash is simulated by putting the journal where a killed process would have left it (state
`submitting`, the claim on record) and starting a fresh pipeline on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.migrate import write_claims
from support.paths import FIXTURES
from support.pipeline import receipt, run, settle

from bridge.core.convert import ConvertContext
from bridge.core.model import Behandlerkravmelding, dump_json, load_json
from bridge.core.outcomes import State
from bridge.files.reading import convert_file
from bridge.flow.journal import Journal
from bridge.flow.pipeline import Pipeline
from bridge.sandbox import start_sandbox

SEED = FIXTURES / "seed-arbeidsflyt.xml"
PRAKSIS = "1004326178"


@pytest.fixture
def sandbox(tmp_path: Path):
    clock = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
    # ×120: a control result in about 0.1–0.2 s instead of 10–20 s.
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=clock, speed=120) as running:
        yield running


def stats(sandbox) -> dict[str, Any]:
    return httpx.get(sandbox.info["admin_url"] + "/stats", timeout=10).json()


def left_submitting(tmp_path: Path, claim_path: Path, *, landed_id: str | None = None) -> int:
    """The journal as a process killed mid-POST leaves it: `submitting`, claim on record."""
    result = convert_file(claim_path, ConvertContext(praksis_id=PRAKSIS))
    assert result.melding is not None
    claim = dump_json(result.melding, indent=None)
    journal = Journal(tmp_path / "state" / "journal.db")
    data = claim_path.read_bytes()
    version, _ = journal.record_seen(str(claim_path), hashlib.sha256(data).hexdigest(), len(data))
    journal.transition(
        version.id,
        State.CONVERTED,
        praksis_id=PRAKSIS,
        detail={"claim": claim, "root": str(claim_path.parent)},
    )
    journal.transition(
        version.id,
        State.SUBMITTING,
        submit_started_at=time.time() - 5,
        claim_digest=hashlib.sha256(claim.encode()).hexdigest(),
    )
    journal.close()
    return version.id


def post_directly(sandbox, tmp_path: Path, claim_path: Path) -> str:
    """Send the claim with the client alone (the POST that landed before the crash)."""
    result = convert_file(claim_path, ConvertContext(praksis_id=PRAKSIS))
    assert result.melding is not None
    melding: Behandlerkravmelding = result.melding

    async def body(pipeline: Pipeline, _journal: Journal) -> str:
        answer = await pipeline.kuhr.send_inn(melding)
        assert answer.behandlerkravmeldingId
        return answer.behandlerkravmeldingId

    return run(sandbox, tmp_path / "direct", body)


def test_crash_after_the_post_landed_is_found_not_resent(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim = inbox / "krav.xml"
    shutil.copyfile(SEED, claim)
    landed = post_directly(sandbox, tmp_path, claim)
    version_id = left_submitting(tmp_path, claim)

    async def body(pipeline: Pipeline, journal: Journal) -> None:
        await settle(pipeline)
        version = journal.get(version_id)
        assert version.state is State.CONTROLLED
        assert version.behandlerkravmelding_id == landed

    run(sandbox, tmp_path, body)
    assert stats(sandbox)["submissions_accepted"] == 1
    assert receipt(claim)["behandlerkravmeldingId"] == landed


def test_crash_before_the_post_landed_sends_once(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim = inbox / "krav.xml"
    shutil.copyfile(SEED, claim)
    version_id = left_submitting(tmp_path, claim)

    async def body(pipeline: Pipeline, journal: Journal) -> None:
        await settle(pipeline)
        assert journal.get(version_id).state is State.CONTROLLED

    run(sandbox, tmp_path, body)
    assert stats(sandbox)["submissions_accepted"] == 1
    assert set(stats(sandbox)["by_guid"].values()) == {1}


def test_a_duplikat_krav_answer_means_already_there(tmp_path: Path, sandbox) -> None:
    """The claim reached KUHR through another way (an earlier run whose journal is gone)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim = inbox / "krav.xml"
    shutil.copyfile(SEED, claim)
    landed = post_directly(sandbox, tmp_path, claim)

    async def body(pipeline: Pipeline, journal: Journal) -> None:
        version = pipeline.offer(claim, inbox)
        await settle(pipeline)
        found = journal.get(version.id)
        assert found.state is State.CONTROLLED
        assert found.behandlerkravmelding_id == landed

    run(sandbox, tmp_path, body, praksis_id=PRAKSIS)
    assert stats(sandbox)["submissions_accepted"] == 1


def test_unreadable_and_vanished_files_get_receipts(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    unreadable = inbox / "not-a-file.xml"
    unreadable.mkdir()  # reading it fails with an OSError, even for root
    vanishing = inbox / "vanishing.xml"
    shutil.copyfile(SEED, vanishing)

    async def body(pipeline: Pipeline, journal: Journal) -> None:
        pipeline.offer(unreadable, inbox)
        version = pipeline.offer(vanishing, inbox)
        vanishing.unlink()  # deleted after it was seen, before it was read for conversion
        await settle(pipeline)
        assert journal.get(version.id).state is State.REJECTED

    run(sandbox, tmp_path, body, praksis_id=PRAKSIS)
    for path, words in ((unreadable, "could not be read"), (vanishing, "deleted before")):
        got = receipt(path)
        assert got["status"] == "avvist_lokalt"
        assert got["problemer"][0]["kode"] == "FILE_UNREADABLE"
        assert words in got["problemer"][0]["detalj"]
    assert stats(sandbox)["submissions_received"] == 0


def test_receipts_folder_and_archive_and_error_folders(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    good = inbox / "sub" / "good.xml"
    bad = inbox / "bad.xml"
    shutil.copyfile(SEED, good)
    bad.write_bytes(b"<BehandlerKrav>")
    receipts, archive, errors = tmp_path / "receipts", tmp_path / "archive", tmp_path / "errors"

    async def body(pipeline: Pipeline, _journal: Journal) -> None:
        pipeline.offer(good, inbox)
        pipeline.offer(bad, inbox)
        await settle(pipeline)

    run(
        sandbox,
        tmp_path,
        body,
        praksis_id=PRAKSIS,
        receipts_dir=receipts,
        archive_dir=archive,
        error_dir=errors,
    )
    assert (archive / "sub" / "good.xml").is_file() and not good.exists()
    assert (errors / "bad.xml").is_file() and not bad.exists()
    kvittering = load_json((receipts / "sub" / "good.xml.kvittering.json").read_text())
    assert kvittering["status"] == "delvis_godkjent"
    assert (receipts / "sub" / "good.apprec.xml").is_file()
    assert (receipts / "bad.xml.kvittering.json").is_file()
    assert not list(inbox.rglob("*.kvittering.json"))


def test_transient_failure_is_retried_and_retry_requeues(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim = inbox / "krav.xml"
    shutil.copyfile(SEED, claim)
    admin = sandbox.info["admin_url"]
    httpx.post(f"{admin}/faults", json={"error_rate": 1.0}, timeout=10)  # KUHR is down

    async def failing(pipeline: Pipeline, journal: Journal) -> int:
        version = pipeline.offer(claim, inbox)
        await asyncio.wait_for(pipeline.run_until_settled(max_transient_attempts=1), 60)
        assert journal.get(version.id).state is State.FAILED
        assert receipt(claim)["status"] == "feilet_midlertidig"
        return version.id

    # Automatic praksis lookup needs KUHR, so the failure comes before anything is sent.
    version_id = run(sandbox, tmp_path, failing, retry_base=0.05, retry_max=0.1)
    httpx.post(f"{admin}/faults", json={}, timeout=10)
    journal = Journal(tmp_path / "state" / "journal.db")
    journal.requeue(version_id, note="operator retry")
    journal.close()

    async def recovering(pipeline: Pipeline, journal: Journal) -> None:
        await settle(pipeline)
        assert journal.get(version_id).state is State.CONTROLLED

    run(sandbox, tmp_path, recovering)
    assert stats(sandbox)["submissions_accepted"] == 1
    assert receipt(claim)["status"] == "delvis_godkjent"


def test_receipts_that_could_not_be_written_are_written_on_the_next_run(
    tmp_path: Path, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A receipts folder that cannot be written (here: a file stands where it should be) or a
    process killed between a final state and its receipts: the claim is done at KUHR, and the
    next run still writes its receipts and archives the original, without sending again."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claim, other = inbox / "krav.xml", inbox / "annet.xml"
    shutil.copyfile(SEED, claim)
    write_claims(inbox, range(1), name="annet.xml")
    receipts, archive = tmp_path / "receipts", tmp_path / "archive"
    receipts.write_text("not a folder")
    options = {"praksis_id": PRAKSIS, "receipts_dir": receipts, "archive_dir": archive}

    async def blocked(pipeline: Pipeline, journal: Journal) -> None:
        versions = [pipeline.offer(path, inbox) for path in (claim, other)]
        await settle(pipeline)
        assert {journal.get(v.id).state for v in versions if v} == {State.CONTROLLED}
        assert len(journal.receipts_owed()) == 2

    run(sandbox, tmp_path, blocked, **options)
    assert claim.is_file() and not archive.exists()  # not archived without its receipts

    # Still blocked at the next start: one attempt, one error line, both still owed.
    caplog.clear()

    async def still_blocked(pipeline: Pipeline, journal: Journal) -> None:
        await settle(pipeline)
        assert len(journal.receipts_owed()) == 2

    with caplog.at_level(logging.ERROR, logger="bridge.pipeline"):
        run(sandbox, tmp_path, still_blocked, **options)
    assert len([r for r in caplog.records if "cannot write receipts" in r.getMessage()]) == 1

    receipts.unlink()

    async def next_run(pipeline: Pipeline, journal: Journal) -> None:
        await settle(pipeline)
        assert journal.receipts_owed() == []

    run(sandbox, tmp_path, next_run, **options)
    kvittering = load_json((receipts / "krav.xml.kvittering.json").read_text())
    assert kvittering["status"] == "delvis_godkjent"
    assert (receipts / "krav.apprec.xml").is_file()
    assert (archive / "krav.xml").is_file() and not claim.exists()
    assert (archive / "annet.xml").is_file() and (receipts / "annet.xml.kvittering.json").is_file()
    assert stats(sandbox)["submissions_accepted"] == 2


def test_claims_kuhr_already_has_are_found_with_each_detail_read_once(
    tmp_path: Path, sandbox
) -> None:
    """The journal is lost (or an archive is migrated twice): every claim is sent again, KUHR
    answers DUPLIKAT_KRAV, and each must be found in KUHR's overview. KUHR has no look-up by
    guid, and the claims look alike in the overview (same praksis, count and sum), so without
    memory of what was read this costs a detail request per candidate per claim (n²)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claims = write_claims(inbox, range(24))
    landed = {path.name: post_directly(sandbox, tmp_path / path.stem, path) for path in claims}
    before = stats(sandbox)

    async def body(pipeline: Pipeline, journal: Journal) -> dict[str, str | None]:
        versions = {path.name: pipeline.offer(path, inbox) for path in claims}
        await settle(pipeline)
        found = {name: journal.get(v.id) for name, v in versions.items() if v is not None}
        assert {v.state for v in found.values()} == {State.SUBMITTED}
        return {name: v.behandlerkravmelding_id for name, v in found.items()}

    found = run(sandbox, tmp_path, body, praksis_id=PRAKSIS, track=False)
    assert found == landed
    after = stats(sandbox)
    assert after["submissions_accepted"] == len(claims)
    assert after["submissions_rejected"] - before["submissions_rejected"] == len(claims)
    # Each melding KUHR holds (the claims, and the resends it refused) is read at most once.
    assert after["details_requests"] - before["details_requests"] <= after["meldinger_stored"]
    assert after["overview_requests"] - before["overview_requests"] <= 8  # one per worker
