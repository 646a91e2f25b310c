"""A real EPJ's file through the whole pipeline, against the sandbox over loopback: the claim
KUHR receives carries the meaning (GUID in its one spelling), the receipt names each deviation
with its line, and the archived original is the file byte for byte (its signature still
verifies)."""

from __future__ import annotations

import base64
import hashlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from support.paths import FIXTURES
from support.pipeline import receipt, run, settle

from bridge.core.problems import STAFF_TEXT
from bridge.flow.journal import Journal
from bridge.flow.pipeline import Pipeline
from bridge.sandbox import start_sandbox

EPJ_2023 = FIXTURES / "real-world" / "epj-2023.xml"
PRAKSIS = "1004326178"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture
def sandbox(tmp_path: Path):
    clock = datetime.fromisoformat("2023-03-20T12:00:00+01:00")
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=clock, speed=120) as running:
        yield running


def test_a_real_epj_file_is_sent_as_meant_and_archived_byte_for_byte(
    tmp_path: Path, sandbox: Any
) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    shutil.copyfile(EPJ_2023, inbox / EPJ_2023.name)

    async def body(pipeline: Pipeline, _journal: Journal) -> None:
        pipeline.offer(inbox / EPJ_2023.name, inbox)
        await settle(pipeline)

    run(
        sandbox,
        tmp_path,
        body,
        praksis_id=PRAKSIS,
        archive_dir=archive,
        receipts_dir=tmp_path / "receipts",
    )

    stats = httpx.get(sandbox.info["admin_url"] + "/stats", timeout=10).json()
    assert stats["submissions_received"] == 1
    assert "04db7c38-3a4c-43ca-92eb-e2564857bc97" in stats["by_guid"]  # not {04DB…}

    kvittering = receipt(tmp_path / "receipts" / EPJ_2023.name)
    variants = [p for p in kvittering["problemer"] if p["kode"] == "LEGACY_VARIANT"]
    assert len(variants) == 8
    assert all(p["alvorlighet"] == "advarsel" and p["linje"] for p in variants)
    original = EPJ_2023.read_bytes()
    guid_line = original.count(b"\n", 0, original.index(b"<Guid>{")) + 1
    (guid,) = [p for p in variants if p["linje"] == guid_line]
    assert guid["sti"].endswith("/Guid") and "written in braces" in guid["detalj"]
    assert all(p["melding"] == STAFF_TEXT["LEGACY_VARIANT"] for p in variants)  # Norwegian

    archived = (archive / EPJ_2023.name).read_bytes()
    assert archived == original
    root = etree.fromstring(archived)
    digest = root.findtext(f".//{{{DS}}}DigestValue")
    assert _enveloped_digest(root) == digest


def _enveloped_digest(root: etree._Element) -> str:
    """What an enveloped-signature reference (URI="", c14n 1.0, SHA-256) covers."""
    signature = root.find(f"{{{DS}}}Signature")
    assert signature is not None
    before = signature.getprevious()
    before.tail = (before.tail or "") + (signature.tail or "")
    signature.tail = None
    root.remove(signature)
    canonical = etree.tostring(root, method="c14n")
    return base64.b64encode(hashlib.sha256(canonical).digest()).decode()
