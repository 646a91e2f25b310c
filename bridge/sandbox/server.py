"""`start_sandbox`: the sandbox served by uvicorn in a background thread of this process.

The listening socket is bound first, so the port (also for port 0) and thus every URL and
token audience is known before the app is built. `sandbox.json` is written once it serves.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn

from bridge.runtime.listen import listening_socket, stop_server, wait_started
from bridge.sandbox.app import create_app
from bridge.sandbox.clock import as_oslo
from bridge.sandbox.core import Sandbox
from bridge.sandbox.faults import ConnectionDropper
from bridge.sandbox.keys import KeyMaterial, write_private_json
from bridge.sandbox.settings import SandboxSettings

INFO_FILE = "sandbox.json"
START_TIMEOUT_SECONDS = 15.0


class SandboxStartError(RuntimeError):
    """The server did not come up (port taken, bad config …)."""


class RunningSandbox:
    """A serving sandbox: `.info` (the sandbox.json dict), `.base_url`, `.sandbox` (its state),
    `.stop()`; also a context manager."""

    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        sandbox: Sandbox,
        info_path: Path | None,
    ) -> None:
        self._server = server
        self._thread = thread
        self.sandbox = sandbox
        self.info: dict[str, Any] = sandbox.info
        self.base_url: str = self.info["base_url"]
        self.info_path = info_path

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the server thread (open connections are closed)."""
        stop_server(self._server, self._thread, timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    try:
        return listening_socket(host, port)
    except OSError as exc:
        raise SandboxStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def start_sandbox(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state_dir: Path | None = None,
    clock: datetime | None = None,
    speed: float = 1.0,
    config: Path | None = None,
    settings: SandboxSettings | None = None,
    keys: KeyMaterial | None = None,
) -> RunningSandbox:
    """Serve a sandbox on `host:port` (0 = a free port) and return once it answers.

    `settings` gives the less common knobs (seed, token lifetime, faults …); the keyword
    arguments above win over it. `keys` reuses key material (tests start many sandboxes)."""
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    base = settings or SandboxSettings()
    settings = replace(
        base,
        base_url=base.public_url or f"http://{url_host}:{bound_port}",
        clock=as_oslo(clock) if clock is not None else base.clock,
        # The keyword's default (1.0) leaves a speed given in `settings` alone.
        speed=base.speed if speed == 1.0 else speed,
        state_dir=Path(state_dir) if state_dir is not None else base.state_dir,
        config=Path(config) if config is not None else base.config,
    )
    try:
        app = create_app(settings, keys=keys)
    except Exception:
        sock.close()
        raise
    # Embedded (no access log): leave the host's logging configuration alone. Standalone: the
    # access log shows method, path and status only (no bodies, no tokens).
    logging_options: dict[str, Any] = (
        {"log_level": "info"}
        if settings.access_log
        else {"log_level": "warning", "log_config": None}
    )
    server_config = uvicorn.Config(
        ConnectionDropper(app),
        access_log=settings.access_log,
        **logging_options,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(server_config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="kuhr-sandbox", daemon=True
    )
    thread.start()
    if not wait_started(server, thread, sock, START_TIMEOUT_SECONDS):
        raise SandboxStartError("the sandbox server did not start")
    sandbox: Sandbox = app.state.sandbox
    sandbox.listen_url = f"http://{url_host}:{bound_port}"
    info_path = None
    if settings.state_dir is not None:
        info_path = settings.state_dir / INFO_FILE
        write_private_json(info_path, sandbox.info)
    return RunningSandbox(server, thread, sandbox, info_path)
