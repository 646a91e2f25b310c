"""`bkm-bridge migrate` against a sandbox over loopback: zip members and bad files in one run,
the report's totals equal to the receipts', a second run that sends nothing, duplicates, and a
run stopped halfway that the next run completes without sending anything twice.

The sandbox runs standalone in the test (its own state dir), as a remote KUHR would, so its
counts of accepted submissions per regning guid outlive the runs."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support.migrate import (
    PATIENT_IDS,
    SEED_CLOCK,
    claim_guid,
    claim_xml,
    read_csv,
    receipts_under,
    settings_for,
    stats,
    write_claims,
    write_zip,
)
from support.paths import FIXTURES

from bridge.migrate.migration import Migration
from bridge.migrate.options import MigrateOptions
from bridge.sandbox import start_sandbox

SEED_GUIDS = {
    "f0bcd358-0676-49c7-94f8-c055c4b21332",
    "b7184d58-0ed4-4277-a60c-720b1daf69f7",
    "32b24c0b-facd-4f5e-aff9-9849ae477db5",
}


@pytest.fixture
def sandbox(tmp_path: Path):
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK, speed=120) as running:
        yield running


def archive(tmp_path: Path) -> Path:
    """Six claims, the documentation's workflow claim, a copy, bad files and two zips."""
    root = tmp_path / "arkiv"
    write_claims(root / "2024", range(6))
    (root / "2025").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", root / "2025" / "seed.xml")
    shutil.copyfile(root / "2024" / "krav-0001.xml", root / "2024" / "krav-0001b.xml")
    (root / "2025" / "brutt.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
    (root / "2025" / "tom.xml").write_bytes(b"")
    (root / "2025" / "faktura.xml").write_text('<?xml version="1.0"?><Faktura/>')
    write_zip(
        root / "gamle.zip",
        {
            "2019/krav-0010.xml": claim_xml(10),
            "2019/krav-0011.xml": claim_xml(11),
            "2019/ugyldig.xml": b"<BehandlerKrav><Enkeltregning>",
        },
    )
    (root / "skadet.zip").write_bytes(b"PK\x03\x04 not a zip at all")
    return root


# One process, or two sending processes with a share of the archive each (bridge.migrate.senders).
SENDERS = pytest.mark.parametrize("senders", [1, 2], ids=["one-process", "two-senders"])


@SENDERS
def test_one_run_over_an_archive_with_zips_and_bad_files_and_the_report_adds_up(
    tmp_path: Path, sandbox, senders: int
) -> None:
    root = archive(tmp_path)
    receipts = tmp_path / "kvitteringer"
    report = tmp_path / "rapport.csv"
    options = MigrateOptions(
        paths=(root,),
        receipts_dir=receipts,
        report=report,
        follow=True,
        workers=1,
        senders=senders,
    )
    result = Migration(settings_for(tmp_path), options).run()

    summary = result.summary
    assert result.exit_code == 1  # bad files
    assert summary["files"] == 15
    outcomes = summary["outcomes"]
    assert outcomes["avvist_lokalt"] == 4  # brutt.xml, tom.xml, ugyldig.xml, skadet.zip
    assert outcomes["duplikat"] == 1 and outcomes["ignorert"] == 1
    assert outcomes.get("venter", 0) == outcomes.get("sendt", 0) == 0  # all controlled
    assert sum(outcomes.values()) == 15
    assert summary["problems"] == {"FILE_EMPTY": 1, "FILE_UNREADABLE": 1, "XML_MALFORMED": 2}
    assert {"470", "766"} <= set(summary["merknader"])  # the workflow claim's rejections

    # Every file sent once: eight claims, the workflow claim's three regninger.
    counted = stats(sandbox)
    assert counted["submissions_accepted"] == 9
    expected = {claim_guid(n) for n in [*range(6), 10, 11]} | SEED_GUIDS
    assert counted["by_guid"] == dict.fromkeys(expected, 1)

    # The report's totals are the receipts' totals (the ignored file has no receipt).
    found = receipts_under(receipts)
    assert Counter(r["status"] for r in found.values()) == Counter(
        {k: v for k, v in outcomes.items() if k != "ignorert"}
    )
    merknader = Counter(
        str(m["nummer"])
        for r in found.values()
        for m in [*(m for g in r["regninger"] for m in g["merknader"]), *r["merknader"]]
    )
    assert merknader == Counter(summary["merknader"])
    assert (
        sum(r["status"] == "avvist" for g in found.values() for r in g["regninger"])
        == (summary["rejected_regninger"])
    )
    rows = read_csv(report)
    assert len(rows) == 15
    for row in rows:
        if row["outcome"] == "ignorert":
            assert row["receipt"] == ""
            continue
        receipt = found[Path(row["receipt"]).relative_to(receipts)]
        assert receipt["status"] == row["outcome"]
        assert (receipt["behandlerkravmeldingId"] or "") == row["behandlerkravmeldingId"]

    # Zip members: journal keys ZIP!MEMBER, receipts mirrored under the zip's name.
    member = next(r for r in rows if r["file"].endswith("!2019/krav-0010.xml"))
    assert member["file"] == f"{root / 'gamle.zip'}!2019/krav-0010.xml"
    mirrored = receipts / "gamle.zip" / "2019" / "krav-0010.xml.kvittering.json"
    assert Path(member["receipt"]) == mirrored
    assert found[Path("skadet.zip.kvittering.json")]["problemer"][0]["kode"] == "FILE_UNREADABLE"
    assert not any(p.name.endswith(".kvittering.json") for p in root.rglob("*"))
    seed = found[Path("2025/seed.xml.kvittering.json")]
    assert seed["status"] == "delvis_godkjent"
    text = report.read_text(encoding="utf-8") + report.with_name("rapport.html").read_text()
    for patient_id in PATIENT_IDS:
        assert patient_id not in text

    # A second run over the same archive sends nothing and reports the same outcomes.
    again = Migration(settings_for(tmp_path), options).run()
    assert stats(sandbox)["submissions_received"] == counted["submissions_received"]
    assert again.summary["new_versions"] == 0
    assert again.summary["outcomes"] == outcomes


def test_without_follow_the_run_ends_at_mottatt_and_a_follow_run_completes_it(
    tmp_path: Path, sandbox
) -> None:
    root = tmp_path / "inn"
    write_claims(root, range(20, 26))
    receipts = tmp_path / "kvitteringer"
    first = Migration(
        settings_for(tmp_path), MigrateOptions(paths=(root,), receipts_dir=receipts, workers=1)
    ).run()
    assert first.exit_code == 0
    assert first.summary["outcomes"] == {"sendt": 6}
    assert {r["status"] for r in receipts_under(receipts).values()} == {"sendt"}

    follow = Migration(
        settings_for(tmp_path),
        MigrateOptions(paths=(root,), receipts_dir=receipts, workers=1, follow=True),
    ).run()
    assert "sendt" not in follow.summary["outcomes"]
    statuses = Counter(r["status"] for r in receipts_under(receipts).values())
    assert statuses == Counter(follow.summary["outcomes"]) and sum(statuses.values()) == 6
    assert stats(sandbox)["submissions_accepted"] == 6


@SENDERS
def test_a_stopped_run_is_completed_by_the_next_without_sending_twice(
    tmp_path: Path, sandbox, senders: int
) -> None:
    root = tmp_path / "inn"
    write_claims(root, range(30, 60))
    receipts = tmp_path / "kvitteringer"
    report = tmp_path / "r.csv"
    options = MigrateOptions(
        paths=(root,),
        receipts_dir=receipts,
        report=report,
        workers=1,
        rate=15.0,
        concurrency=2,
        senders=senders,
    )
    migration = Migration(settings_for(tmp_path), options)

    def stop_after_some() -> None:
        deadline = time.monotonic() + 60
        while stats(sandbox)["submissions_accepted"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        migration.stop()

    stopper = threading.Thread(target=stop_after_some)
    stopper.start()
    first = migration.run()
    stopper.join()
    assert first.interrupted and first.exit_code == 130
    sent_first = first.summary["outcomes"].get("sendt", 0)
    assert 5 <= sent_first < 30
    assert first.summary["files"] == 30  # every file is in the report, unsent ones too
    assert first.summary["unfinished"] == 30 - sent_first
    assert stats(sandbox)["submissions_accepted"] == sent_first

    second = Migration(settings_for(tmp_path), options).run()
    assert second.exit_code == 0
    assert second.summary["outcomes"] == {"sendt": 30}
    counted = stats(sandbox)
    assert counted["by_guid"] == {claim_guid(n): 1 for n in range(30, 60)}
    assert counted["submissions_received"] == 30


def test_receipts_go_beside_the_originals_by_default(tmp_path: Path, sandbox) -> None:
    root = tmp_path / "inn"
    write_claims(root / "2024", range(70, 73))
    result = Migration(settings_for(tmp_path), MigrateOptions(paths=(root,), workers=1)).run()
    assert result.summary["outcomes"] == {"sendt": 3}
    beside = receipts_under(root)
    assert sorted(p.as_posix() for p in beside) == [
        f"2024/krav-{n:04d}.xml.kvittering.json" for n in range(70, 73)
    ]
    assert {r["status"] for r in beside.values()} == {"sendt"}


def test_a_claim_left_submitting_is_found_at_kuhr_not_sent_again(tmp_path: Path, sandbox) -> None:
    """A crash after the POST and before its answer was recorded leaves `submitting`. The
    sandbox keeps simulated time (here January 2026), not the bridge's clock, and the claim
    must be found by its guids all the same, not refused as a duplicate of itself."""
    root = tmp_path / "inn"
    write_claims(root, range(80, 84))
    options = MigrateOptions(paths=(root,), receipts_dir=tmp_path / "kvitteringer", workers=1)
    assert Migration(settings_for(tmp_path), options).run().exit_code == 0
    journal = tmp_path / "state" / "migrate-sandbox.db"
    with sqlite3.connect(journal) as db:
        version_id, kuhr_id = db.execute(
            "SELECT id, behandlerkravmelding_id FROM versions ORDER BY id LIMIT 1"
        ).fetchone()
        db.execute(
            "UPDATE versions SET state = 'submitting', behandlerkravmelding_id = NULL WHERE id = ?",
            (version_id,),
        )
    received = stats(sandbox)["submissions_received"]

    again = Migration(settings_for(tmp_path), options).run()
    assert again.exit_code == 0
    assert again.summary["outcomes"] == {"sendt": 4}
    assert stats(sandbox)["submissions_received"] == received  # nothing was sent again
    with sqlite3.connect(journal) as db:
        found = db.execute(
            "SELECT state, behandlerkravmelding_id FROM versions WHERE id = ?", (version_id,)
        ).fetchone()
    assert found == ("submitted", kuhr_id)
