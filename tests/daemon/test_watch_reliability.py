"""The watcher survives SIGKILL at random moments: every file is submitted exactly once and
ends with its final receipt (issue 5), also while KUHR answers 5xx, times out and drops
connections.

The daemon runs as a real subprocess (`python -m bridge watch INBOX`) against a standalone
sandbox served from this process, which outlives the kills and counts accepted submissions per
regning guid. The harness itself (claims, daemon control, fault phases) is `run_reliability` in
`bench/bench_watch.py`, which also runs it at full size (`--reliability`).

Environment knobs: `BKM_RELIABILITY_FILES` (default 150; 1000 is the issue's size),
`BKM_RELIABILITY_KILLS` (default 4), `BKM_RELIABILITY_SEED` (default: random, printed and
named in every failure so a run can be repeated).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree
from support.paths import ROOT

from bridge.paths import shipped_folder

FILES = int(os.environ.get("BKM_RELIABILITY_FILES", "150"))
KILLS = int(os.environ.get("BKM_RELIABILITY_KILLS", "4"))
# The last daemon must bring every file to its final receipt within this many seconds.
SETTLE_SECONDS = max(60.0, FILES * 0.15)
APPREC = "{http://www.kith.no/xmlstds/apprec/2004-11-21}"


def _load_harness():
    spec = importlib.util.spec_from_file_location("bench_watch", ROOT / "bench" / "bench_watch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


@pytest.fixture(scope="module")
def apprec_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shipped_folder("xsd") / "apprec-v1_0.xsd")))


def _seed() -> int:
    given = os.environ.get("BKM_RELIABILITY_SEED")
    return int(given) if given else random.SystemRandom().randrange(10**6)


@pytest.mark.timeout(max(300, int(FILES * 1.5)))
@pytest.mark.parametrize("faults", [False, True], ids=["kills", "kills-and-faults"])
def test_every_file_is_sent_exactly_once_across_kills(
    tmp_path: Path, faults: bool, apprec_schema: etree.XMLSchema
) -> None:
    seed = _seed()
    print(f"BKM_RELIABILITY_SEED={seed} FILES={FILES} KILLS={KILLS} faults={faults}")
    run = harness.run_reliability(
        tmp_path,
        files=FILES,
        kills=KILLS,
        seed=seed,
        faults=faults,
        kill_window=(0.1, 1.5),
        settle_timeout=SETTLE_SECONDS,
    )
    context = f"(seed {seed}; daemon log {tmp_path / 'daemon.log'})"
    claims = {c.name: c for c in run.claims}

    # The kills interrupted unfinished work (else they would prove nothing).
    assert len(run.kills) == KILLS
    assert any(k.unfinished > 0 for k in run.kills), f"no kill interrupted work {context}"
    if faults:
        counts = run.stats["faults"]
        assert counts["errors"] > 0 and counts["dropped"] > 0, f"{counts} {context}"
        assert run.fault_periods[0] > 0, f"no slow (timeout) period {context}"

    # Exactly once, counted by KUHR (the sandbox), per regning guid: never twice, none left.
    by_guid = run.stats["by_guid"]
    sent = {c.guid: by_guid.get(c.guid, 0) for c in claims.values()}
    twice = {guid: n for guid, n in sent.items() if n > 1}
    assert twice == {}, f"regninger sent more than once: {twice} {context}"
    assert set(by_guid) == set(sent), f"the sandbox has regninger nobody wrote {context}"
    unsent = sorted(name for name, c in claims.items() if sent[c.guid] == 0)
    statuses = Counter((r or {}).get("status", "no receipt") for r in run.receipts.values())
    assert unsent == [], (
        f"{len(unsent)} of {FILES} files never sent within {SETTLE_SECONDS:.0f} s of the last "
        f"start, e.g. {unsent[:3]}; receipts {dict(statuses)}; journal "
        f"{run.journal['antall']} {context}"
    )
    assert run.stats["submissions_accepted"] == FILES, context

    # Every file has its final receipt, about its own content and regning. (Its overall status
    # moves on to sendt_til_utbetaling once the sandbox's clock passes 16:00.)
    results = Counter((r or {}).get("kontrollresultat") for r in run.receipts.values())
    assert results == {"godkjent": FILES}, f"receipts: {dict(statuses)} {context}"
    assert set(statuses) <= {"godkjent", "sendt_til_utbetaling"}, (statuses, context)
    kuhr_ids = set()
    for name, receipt in run.receipts.items():
        assert receipt is not None
        claim = claims[name]
        assert receipt["tilstand"] == "controlled", (name, context)
        assert receipt["sha256"] == hashlib.sha256(claim.data).hexdigest(), (name, context)
        assert [r["guid"] for r in receipt["regninger"]] == [claim.guid], (name, context)
        assert [r["status"] for r in receipt["regninger"]] == ["godkjent"], (name, context)
        kuhr_ids.add(receipt["behandlerkravmeldingId"])
    assert None not in kuhr_ids and len(kuhr_ids) == FILES, f"KUHR ids shared {context}"

    # ... and a valid AppRec saying OK for the message the EPJ sent.
    for name, data in run.apprecs.items():
        assert data is not None, f"{name}: no AppRec {context}"
        root = etree.fromstring(data)
        assert apprec_schema.validate(root), (name, str(apprec_schema.error_log), context)
        assert root.find(f"{APPREC}Status").get("V") == "1", (name, context)
        assert root.findtext(f"{APPREC}OriginalMsgId/{APPREC}Id") == claims[name].msg_id

    # The journal has nothing left half-done.
    states = Counter(f["tilstand"] for f in run.journal["filer"])
    assert states == {"controlled": FILES}, f"journal: {dict(states)} {context}"

    # The temp files of receipt writes the kills interrupted were removed by the next start.
    assert run.leftover_temp_files == [], context

    # The last daemon stopped gracefully on SIGTERM, and no patient id reached its log.
    assert run.final_exit_code == 0, context
    assert run.final_stop_seconds < 10, context
    leaked = [c.name for c in claims.values() if c.patient in run.daemon_log]
    assert leaked == [], f"patient ids of {leaked[:5]} in the daemon log {context}"
