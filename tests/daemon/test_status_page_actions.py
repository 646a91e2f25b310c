"""Mirth-style operations on the status page, in headless Chromium: search and filter, a
file's history with its reason, retry one file and retry all, each re-queued through the
journal so the pipeline takes it exactly once; and a POST that does not come from the page's
own form is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.chromium import CHROMIUM, Chromium
from support.daemon import receipt_of
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.core.outcomes import State
from bridge.daemon.runner import Runner, RunOptions
from bridge.flow.assembly import open_watch_journal
from bridge.flow.journal import Journal, JournalError
from bridge.sandbox import start_sandbox

SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium: apt-get install -y chromium",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: Callable[[], Any], admin: str | None = None, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        if admin:
            httpx.post(f"{admin}/clock", json={"advance_seconds": 30}, timeout=10)
        time.sleep(0.2)
    raise AssertionError("timed out")


def park_failed(journal: Journal, version_id: int) -> None:
    """Put the failed version's next automatic retry an hour away (as after many failures:
    retry_max is ten minutes), so that only the operator's retry moves it in this test. While
    KUHR still fails, a retry already under way ends failed again; then it is parked again."""
    stable_since = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        version = journal.get(version_id)
        if version.state is State.FAILED and version.due_at > time.time() + 600:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since > 4.0:  # longer than one attempt takes
                return
        else:
            stable_since = None
            if version.state is State.FAILED:
                with contextlib.suppress(JournalError):
                    journal.transition(
                        version_id, State.FAILED, expect={State.FAILED}, due_at=time.time() + 3600
                    )
        time.sleep(0.2)
    raise AssertionError("the failed version did not stay failed")


@pytest.fixture
def bridge(tmp_path: Path):
    """A running bridge with its status page: one file rejected locally, one failed because
    KUHR answered 503 to everything (the fault is cleared once it has failed)."""
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as sandbox:
        admin = sandbox.info["admin_url"]
        httpx.post(f"{admin}/faults", json={"error_rate": 1.0, "error_statuses": [503]}, timeout=10)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        port = free_port()
        settings = load_settings(
            None,
            {
                "kuhr.sandbox_state_dir": tmp_path / "sandbox",
                "watch.state_dir": tmp_path / "state",
                "watch.quiet_seconds": 0.2,
                "watch.http_port": port,
            },
        )
        runner = Runner(settings, RunOptions(folders=(inbox,)))
        runner.start()
        try:
            shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav.xml")
            (inbox / "ødelagt.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
            wait_until(lambda: (receipt_of(inbox / "krav.xml") or {}).get("status")
                       == "feilet_midlertidig")  # fmt: skip
            wait_until(lambda: receipt_of(inbox / "ødelagt.xml"))
            journal = open_watch_journal(settings)
            park_failed(journal, journal.latest_for_path(str(inbox / "krav.xml")).id)
            httpx.post(f"{admin}/faults", json={}, timeout=10)
            yield {
                "url": f"http://127.0.0.1:{port}",
                "inbox": inbox,
                "admin": admin,
                "journal": journal,
            }
        finally:
            runner.stop()


def test_search_history_and_retry_one_then_all_in_chromium(bridge: dict[str, Any]) -> None:
    url, inbox, admin, journal = bridge["url"], bridge["inbox"], bridge["admin"], bridge["journal"]
    krav = journal.latest_for_path(str(inbox / "krav.xml"))
    broken = journal.latest_for_path(str(inbox / "ødelagt.xml"))
    assert (krav.state.value, broken.state.value) == ("failed", "rejected")
    with Chromium() as browser:
        browser.open(url + "/")
        failed = browser.text("#rejected-files")
        assert "krav.xml" in failed and "ødelagt.xml" in failed and "XML_MALFORMED" in failed
        assert "Retry all failed and rejected (2)" in browser.text("#retry-all")

        # Search: by name, then by state, with the page's own form.
        browser.evaluate("document.querySelector('#search input[name=q]').value = 'delagt'")
        browser.click("#search button")
        assert browser.url().endswith("/?q=delagt&state=")
        assert "Search results" in browser.text("#recent")
        found = browser.text("#recent tbody")
        assert "ødelagt.xml" in found and "krav.xml" not in found
        browser.open(url + "/?state=failed")
        found = browser.text("#recent tbody")
        assert "krav.xml" in found and "ødelagt.xml" not in found

        # The file's history and reason, one click from the list.
        browser.click(f'#recent a[href="/file/{krav.id}"]')
        assert browser.text("#file-name") == "krav.xml"
        history = browser.text(f"#version-{krav.id}")
        assert "failed" in history and "feilet_midlertidig" in history
        assert "Reason:" in history and "503" in history

        # Retry this one: re-queued, sent once, controlled.
        browser.click(f"#retry-{krav.id}")
        assert browser.url().endswith(f"/file/{krav.id}?retried=1")
        assert "Re-queued" in browser.text("#notice")
        wait_until(lambda: (receipt_of(inbox / "krav.xml") or {}).get("status")
                   == "delvis_godkjent", admin)  # fmt: skip
        browser.open(f"{url}/file/{krav.id}")
        assert "operator: status page" in browser.text(f"#version-{krav.id}")
        assert not browser.evaluate(f"!!document.querySelector('#retry-{krav.id}')")

        # Retry all: only the rejected file is left; it goes through the pipeline again.
        browser.open(url + "/")
        assert "Retry all failed and rejected (1)" in browser.text("#retry-all")
        browser.click("#retry-all")
        assert "1 file version(s) re-queued." in browser.text("#notice")
        dom = browser.evaluate("document.documentElement.outerHTML")
    rejected_again = wait_until(
        lambda: [e for e in journal.events(broken.id) if e.state.value == "rejected"][1:]
    )
    assert len(rejected_again) == 1
    events = [(e.state.value, e.note) for e in journal.events(broken.id)]
    assert ("seen", "operator: status page, retry all") in events

    stats = httpx.get(f"{admin}/stats", timeout=10).json()
    assert stats["submissions_accepted"] == 1  # krav.xml, exactly once
    assert set(stats["by_guid"].values()) == {1}
    for patient_id in PATIENT_IDS:
        assert patient_id not in dom


def test_a_post_not_from_the_page_is_refused(bridge: dict[str, Any]) -> None:
    url, inbox, journal = bridge["url"], bridge["inbox"], bridge["journal"]
    krav = journal.latest_for_path(str(inbox / "krav.xml"))
    page = httpx.get(url + "/", timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    target = f"{url}/retry/{krav.id}"
    refused = [
        httpx.post(target, data={}, timeout=10),  # no form token
        httpx.post(target, data={"csrf": "guess"}, timeout=10),
        httpx.post(target, data={"csrf": token}, headers={"Origin": "http://evil.test"}),
        httpx.post(target, data={"csrf": token}, headers={"Host": "rebound.test:80"}),
        httpx.post(target, data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}),
        httpx.post(f"{url}/retry", data={}, timeout=10),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert journal.get(krav.id).state.value == "failed"
    assert httpx.get(f"{url}/retry/{krav.id}", timeout=10).status_code == 405

    accepted = httpx.post(target, data={"csrf": token}, headers={"Origin": url}, timeout=10)
    assert accepted.status_code == 303
    assert accepted.headers["location"] == f"/file/{krav.id}?retried=1"
    again = httpx.post(target, data={"csrf": token}, timeout=10)
    assert again.headers["location"] == f"/file/{krav.id}?retried=0"  # already re-queued
