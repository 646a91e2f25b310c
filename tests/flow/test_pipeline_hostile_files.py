"""A FIFO or a link to a device swapped in where a claim was is refused without waiting on it
or reading it without end: the pipeline's reads open only regular files, without blocking."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from support.migrate import claim_xml
from support.pipeline import receipt, run, settle

from bridge.core.outcomes import State
from bridge.flow.journal import Journal
from bridge.flow.pipeline import Pipeline
from bridge.sandbox import start_sandbox

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX filesystem semantics"),
    pytest.mark.timeout(120),  # a read that waits on the FIFO never returns
]


@pytest.fixture
def sandbox(tmp_path: Path):
    clock = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=clock, speed=120) as running:
        yield running


def test_a_fifo_or_device_in_a_claims_place_is_rejected_not_read(tmp_path: Path, sandbox) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    fifo, zero, swapped = inbox / "fifo.xml", inbox / "zero.xml", inbox / "swapped.xml"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    swapped.write_bytes(claim_xml(1))

    async def body(pipeline: Pipeline, journal: Journal) -> None:
        pipeline.offer(fifo, inbox)
        pipeline.offer(zero, inbox)
        version = pipeline.offer(swapped, inbox)  # seen as a regular file …
        swapped.unlink()
        os.mkfifo(swapped)  # … and a FIFO by the time it is read for conversion
        await settle(pipeline)
        assert journal.get(version.id).state is State.REJECTED

    run(sandbox, tmp_path, body, praksis_id="1004326178")
    for path, kind in ((fifo, "FIFO"), (zero, "device"), (swapped, "FIFO")):
        got = receipt(path)
        assert got["status"] == "avvist_lokalt", path.name
        assert got["problemer"][0]["kode"] == "FILE_UNREADABLE", path.name
        assert kind in got["problemer"][0]["detalj"], (path.name, got["problemer"])
