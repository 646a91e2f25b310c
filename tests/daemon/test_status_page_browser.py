"""The status page in a real browser: headless Chromium (Debian's `chromium` package) renders
it from a running bridge, its DOM says what happened to the files, and its screenshot shows
the page (banner, tables, chart bars), not a blank or an error page.

CI installs Chromium with `apt-get install -y chromium`.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import html
from support.daemon import receipt_of
from support.paths import FIXTURES

from bridge.config import load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.sandbox import start_sandbox

CHROMIUM = Path("/usr/bin/chromium")
SEED_CLOCK = datetime.fromisoformat("2026-01-06T15:30:00+01:00")
PATIENT_IDS = ("47908702367", "47908500667")
WIDTH, HEIGHT = 1280, 1400
SANDBOX_BANNER = (0x97, 0x5A, 0x16)  # the page's banner colour for the sandbox
RECEIVED_BAR = (0x31, 0x82, 0xCE)  # the chart's "received" bars
FINISHED_BAR = (0x38, 0xA1, 0x69)  # the chart's "finished" bars

# Outside CI a developer without Chromium may skip this; CI installs it (.ci/run), so there a
# missing browser is a failure, never a quiet skip.
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium: apt-get install -y chromium",
)


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tempfile.mkdtemp(prefix="bkm-bridge-chromium-")
    try:
        return subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={WIDTH},{HEIGHT}", *args],
            capture_output=True, timeout=90, check=True,
        )  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels


def wait_for_receipt(
    claim: Path, predicate: Callable[[dict[str, Any]], bool], admin: str, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = receipt_of(claim)
        if receipt is not None and predicate(receipt):
            return
        httpx.post(f"{admin}/clock", json={"advance_seconds": 30}, timeout=10)
        time.sleep(0.2)
    raise AssertionError(f"no matching receipt for {claim.name}: {receipt_of(claim)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def running_bridge(tmp_path: Path):
    """A bridge with its status page, after one claim went through KUHR and one was refused."""
    with start_sandbox(state_dir=tmp_path / "sandbox", clock=SEED_CLOCK) as sandbox:
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
            admin = sandbox.info["admin_url"]
            shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", inbox / "krav-0601.xml")
            (inbox / "ødelagt.xml").write_bytes(b"<BehandlerKrav>\n  <Enkeltregning>\n")
            wait_for_receipt(inbox / "krav-0601.xml", lambda r: r["status"] == "delvis_godkjent",
                             admin)  # fmt: skip
            wait_for_receipt(inbox / "ødelagt.xml", lambda r: r["status"] == "avvist_lokalt",
                             admin)  # fmt: skip
            yield f"http://127.0.0.1:{port}/"
        finally:
            runner.stop()


def test_status_page_in_headless_chromium(running_bridge: str, tmp_path: Path) -> None:
    dom = chromium("--dump-dom", running_bridge).stdout.decode("utf-8")
    page = html.fromstring(dom)
    assert "SANDBOX" in page.findtext(".//header/h1")
    assert not page.xpath("//script")

    health = page.get_element_by_id("health")
    assert "OK" in health.text_content()
    assert {c.get("data-check") for c in health.xpath(".//span[@data-check]")} == {
        "journal", "rescan", "pipeline", "kuhr", "token"
    }  # fmt: skip

    counts = {
        row.get("data-state"): row.xpath("string(td[2])")
        for row in page.get_element_by_id("counts").xpath(".//tr[@data-state]")
    }
    assert counts == {"rejected": "1", "controlled": "1"}

    rejected = [
        [cell.text_content().strip() for cell in row.xpath("td")]
        for row in page.get_element_by_id("rejected-regninger").xpath(".//tbody/tr")
    ]
    assert [(r[0], r[1], r[2].split(" ", 1)[0]) for r in rejected] == [
        ("krav-0601.xml", "4", "470"),
        ("krav-0601.xml", "6", "766"),
    ]
    assert "datert frem i tid" in rejected[1][2]

    refused = page.get_element_by_id("rejected-files").text_content()
    assert "ødelagt.xml" in refused and "XML_MALFORMED" in refused

    recent = page.get_element_by_id("recent").text_content()
    assert "krav-0601.xml" in recent and "2 avvist, 1 godkjent" in recent

    chart = page.get_element_by_id("throughput-chart")
    assert chart.xpath(".//*[local-name()='rect'][contains(@class, 'received')]")
    assert "received (2)" in chart.text_content() and "finished (2)" in chart.text_content()

    for patient_id in PATIENT_IDS:
        assert patient_id not in dom

    shot = tmp_path / "status.png"
    chromium(f"--screenshot={shot}", running_bridge)
    width, height, pixels = read_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    colours = Counter(pixels)
    _, share = colours.most_common(1)[0]
    assert share / len(pixels) < 0.9, "the page is (nearly) one colour: nothing rendered"
    assert len(colours) > 100, "too few colours for text, tables and a chart"
    assert colours[SANDBOX_BANNER] > WIDTH * 20, "the sandbox banner is missing"
    assert colours[RECEIVED_BAR] > 100 and colours[FINISHED_BAR] > 100, "no chart bars drawn"
