"""The embedded sandbox of the bridge's commands, served from a child process: it serves, it
stops when asked, it ends with a bridge that was killed, and the bridge reads its clock once
per burst."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psutil
import pytest

from bridge.flow.precheck import sandbox_clock
from bridge.sandbox.child import SandboxProcess
from bridge.sandbox.clock import parse_iso


def test_it_serves_the_api_from_another_process_and_stops_when_asked() -> None:
    start = parse_iso("2026-03-02T09:00")
    with SandboxProcess(clock=start, speed=60.0) as child:
        info = child.info
        assert child.running
        clock = httpx.get(f"{info['admin_url']}/clock", timeout=10).json()
        assert datetime.fromisoformat(clock["now"]) >= start
        assert clock["speed"] == 60.0
        assert httpx.get(info["jwks_url"], timeout=10).status_code == 401  # the API wants a token
        served_by = {c.pid for c in psutil.Process().children() if _listens(c, info["api_url"])}
        assert served_by and os.getpid() not in served_by
    assert not child.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{info['admin_url']}/clock", timeout=2)


def _listens(process: psutil.Process, url: str) -> bool:
    port = httpx.URL(url).port
    try:
        return any(c.laddr.port == port for c in process.net_connections(kind="tcp"))
    except psutil.Error:
        return False


def test_the_sandbox_process_ends_when_its_bridge_is_killed(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import json, sys, time
        from bridge.sandbox.child import SandboxProcess
        child = SandboxProcess()
        print(json.dumps({"pid": child._process.pid, "url": child.info["admin_url"]}), flush=True)
        time.sleep(600)
        """
    )
    bridge = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        started = json.loads(bridge.stdout.readline())  # type: ignore[union-attr]
        assert httpx.get(f"{started['url']}/clock", timeout=10).status_code == 200
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(10)
        deadline = time.monotonic() + 15
        while psutil.pid_exists(started["pid"]) and time.monotonic() < deadline:
            try:
                if psutil.Process(started["pid"]).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        else:
            if psutil.pid_exists(started["pid"]):
                pytest.fail("the sandbox process outlived the killed bridge")
    finally:
        if bridge.poll() is None:
            bridge.kill()


def test_a_sandbox_that_cannot_start_says_why() -> None:
    from bridge.sandbox.child import SandboxChildError

    with pytest.raises(SandboxChildError, match="speed must be zero or positive"):
        SandboxProcess(speed=-1.0)


# ----------------------------------------------------------------------------- its clock


class _ClockServer(ThreadingHTTPServer):
    """A stand-in admin API that counts its clock reads (and answers each a little late)."""

    reads = 0


class _ClockHandler(BaseHTTPRequestHandler):
    server: _ClockServer

    def do_GET(self) -> None:
        self.server.reads += 1
        time.sleep(0.05)
        body = json.dumps({"now": "2026-01-06T15:30:00+01:00", "speed": 1.0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def clock_server() -> Iterator[_ClockServer]:
    server = _ClockServer(("127.0.0.1", 0), _ClockHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_burst_of_claims_shares_one_clock_read(clock_server: _ClockServer) -> None:
    url = f"http://127.0.0.1:{clock_server.server_address[1]}/admin"
    now = sandbox_clock(url, reread_seconds=5.0)

    async def burst() -> list[datetime]:
        return await asyncio.gather(*(now() for _ in range(50)))

    times = asyncio.run(burst())
    assert clock_server.reads == 1
    assert min(times) >= datetime.fromisoformat("2026-01-06T15:30:00+01:00")
    assert max(times) - min(times) < timedelta(seconds=5)  # extrapolated from the one read


def test_the_clock_is_read_again_after_the_reread_interval(clock_server: _ClockServer) -> None:
    url = f"http://127.0.0.1:{clock_server.server_address[1]}/admin"
    # Seconds, not tenths: on a loaded machine the first read alone can take a tenth.
    now = sandbox_clock(url, reread_seconds=2.0)

    async def twice() -> None:
        await now()
        await now()
        await asyncio.sleep(2.2)
        await now()

    asyncio.run(twice())
    assert clock_server.reads == 2
