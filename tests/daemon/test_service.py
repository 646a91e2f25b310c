"""Running unattended: the runner's start/stop contract, the Windows service adapter against a
stand-in for the pywin32 modules, `bkm-bridge service …`, the systemd unit and the sd_notify
readiness/watchdog protocol.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.paths import FIXTURES, ROOT
from typer.testing import CliRunner

from bridge.cli import app as cli
from bridge.config import ConfigError, load_settings
from bridge.daemon.runner import Runner, RunOptions
from bridge.daemon.systemd import render_unit
from bridge.runtime.logs import reset_logging

UNIT_FILE = ROOT / "service" / "bkm-bridge.service"


def write_config(tmp_path: Path, *, folder: Path | None = None, state: bool = True) -> Path:
    """A service's settings file: embedded sandbox, one folder, its own state folder."""
    inbox = folder or tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    lines = ["[watch]", f'folders = ["{inbox.as_posix()}"]', "quiet_seconds = 0.2"]
    if state:
        lines.append(f'state_dir = "{(tmp_path / "state").as_posix()}"')
    config = tmp_path / "bkm-bridge.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    yield
    reset_logging()


# --------------------------------------------------------------------------- the runner


def test_runner_start_returns_once_running_and_stop_is_quick_and_idempotent(
    tmp_path: Path,
) -> None:
    settings = load_settings(write_config(tmp_path))
    runner = Runner(settings, RunOptions(folders=tuple(settings.watch.folders)))
    runner.stop()  # before start: nothing to stop, no error
    assert not runner.responsive(0.5)
    runner.start()
    try:
        assert runner.started.is_set()
        assert runner.responsive(2.0)
        assert runner.journal is not None and runner.watcher is not None
        assert runner.exit_code is None and runner.error is None
    finally:
        began = time.monotonic()
        runner.stop()
        stopped_in = time.monotonic() - began
    assert stopped_in < 10
    assert runner.exit_code == 0 and runner.error is None
    assert not runner.responsive(0.5)
    runner.stop()  # again: still fine
    # Everything was released: a new runner takes the same folder and journal.
    again = Runner(settings, RunOptions(folders=tuple(settings.watch.folders)))
    again.start()
    again.stop()
    assert again.exit_code == 0


def test_runner_start_raises_what_went_wrong_and_leaves_nothing_behind(tmp_path: Path) -> None:
    settings = load_settings(
        write_config(tmp_path), {"kuhr.sandbox_state_dir": tmp_path / "no-sandbox-here"}
    )
    runner = Runner(settings, RunOptions(folders=tuple(settings.watch.folders)))
    with pytest.raises(ConfigError, match=r"no sandbox\.json"):
        runner.start()
    assert not runner.responsive(0.5)
    runner.stop()
    fine = load_settings(write_config(tmp_path))
    healthy = Runner(fine, RunOptions(folders=tuple(fine.watch.folders)))
    healthy.start()
    healthy.stop()
    assert healthy.exit_code == 0


# --------------------------------------------------------------------------- pywin32 stand-in


class WinError(Exception):
    """pywintypes.error: (winerror, funcname, strerror)."""

    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


@dataclass
class FakeWindows:
    """What the stand-in modules recorded: the SCM's services, status reports, events."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_handles: int = 0
    reports: list[tuple[int, int]] = field(default_factory=list)  # (status, waitHint)
    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    dispatcher_error: int | None = None


def fake_win32(state: FakeWindows) -> dict[str, types.ModuleType]:
    svc = types.ModuleType("win32service")
    for name, value in {
        "SERVICE_STOPPED": 1, "SERVICE_START_PENDING": 2, "SERVICE_STOP_PENDING": 3,
        "SERVICE_RUNNING": 4, "SERVICE_CONTINUE_PENDING": 5, "SERVICE_PAUSE_PENDING": 6,
        "SERVICE_PAUSED": 7, "SERVICE_WIN32_OWN_PROCESS": 0x10, "SERVICE_AUTO_START": 2,
        "SERVICE_DEMAND_START": 3, "SERVICE_ERROR_NORMAL": 1, "SC_MANAGER_ALL_ACCESS": 0xF003F,
        "SERVICE_ALL_ACCESS": 0xF01FF, "SERVICE_CONFIG_DESCRIPTION": 1,
        "SERVICE_CONFIG_FAILURE_ACTIONS": 2, "SERVICE_CONFIG_DELAYED_AUTO_START_INFO": 3,
        "SERVICE_CONFIG_FAILURE_ACTIONS_FLAG": 4, "SC_ACTION_NONE": 0, "SC_ACTION_RESTART": 1,
    }.items():  # fmt: skip
        setattr(svc, name, value)
    svc.error = WinError

    def open_handle(value: Any) -> Any:
        state.open_handles += 1
        return value

    def open_scm(machine: Any, database: Any, access: int) -> Any:
        return open_handle(("scm", access))

    def create_service(scm: Any, name: str, display: str, access: int, kind: int, start: int,
                       error_control: int, command: str, group: Any, tag: int, deps: Any,
                       account: str | None, password: str | None) -> Any:  # fmt: skip
        if name in state.services:
            raise WinError(1073, "CreateService", "The specified service already exists.")
        state.services[name] = {
            "display": display, "type": kind, "start": start, "error_control": error_control,
            "command": command, "account": account, "password": password, "config2": {},
            "state": svc.SERVICE_STOPPED,
        }  # fmt: skip
        return open_handle(("service", name))

    def open_service(scm: Any, name: str, access: int) -> Any:
        if name not in state.services:
            raise WinError(1060, "OpenService", "The specified service does not exist.")
        return open_handle(("service", name))

    def change_config2(handle: Any, level: int, value: Any) -> None:
        state.services[handle[1]]["config2"][level] = value

    def delete_service(handle: Any) -> None:
        del state.services[handle[1]]

    def close_handle(handle: Any) -> None:
        state.open_handles -= 1

    svc.OpenSCManager = open_scm
    svc.CreateService = create_service
    svc.OpenService = open_service
    svc.ChangeServiceConfig2 = change_config2
    svc.DeleteService = delete_service
    svc.CloseServiceHandle = close_handle

    util = types.ModuleType("win32serviceutil")

    class ServiceFramework:
        def __init__(self, args: Any) -> None:
            state.calls.append(("ServiceFramework", tuple(args)))

        def ReportServiceStatus(
            self,
            status: int,
            waitHint: int = 5000,
            win32ExitCode: int = 0,
            svcExitCode: int = 0,
        ) -> None:
            state.reports.append((status, waitHint))

    def installed(name: str) -> dict[str, Any]:
        if name not in state.services:
            raise WinError(1060, "OpenService", "The specified service does not exist.")
        return state.services[name]

    def start_service(name: str, args: Any = None) -> None:
        installed(name)["state"] = svc.SERVICE_RUNNING

    def stop_service(name: str) -> None:
        service = installed(name)
        if service["state"] != svc.SERVICE_RUNNING:
            raise WinError(1062, "ControlService", "The service has not been started.")
        service["state"] = svc.SERVICE_STOPPED

    def query_status(name: str) -> tuple[int, ...]:
        return (svc.SERVICE_WIN32_OWN_PROCESS, installed(name)["state"], 0, 0, 0, 0, 0)

    def wait_for_status(name: str, status: int, seconds: int) -> None:
        state.calls.append(("WaitForServiceStatus", (name, status, seconds)))

    util.ServiceFramework = ServiceFramework
    util.StartService = start_service
    util.StopService = stop_service
    util.QueryServiceStatus = query_status
    util.WaitForServiceStatus = wait_for_status

    event = types.ModuleType("win32event")
    event.WAIT_OBJECT_0 = 0
    event.WAIT_TIMEOUT = 258
    event.CreateEvent = lambda *args: threading.Event()
    event.SetEvent = lambda ev: ev.set()
    event.WaitForSingleObject = lambda ev, ms: 0 if ev.wait(ms / 1000) else 258

    manager = types.ModuleType("servicemanager")
    manager.__file__ = r"C:\Python311\Lib\site-packages\win32\servicemanager.pyd"
    manager.EVENTLOG_INFORMATION_TYPE = 4
    manager.PYS_SERVICE_STARTED = 0x40000001
    manager.PYS_SERVICE_STOPPED = 0x40000002
    manager.LogMsg = lambda kind, msg_id, inserts: state.events.append(
        ("info", f"{msg_id:#x} {' '.join(inserts)}")
    )
    manager.LogInfoMsg = lambda text: state.events.append(("info", text))
    manager.LogWarningMsg = lambda text: state.events.append(("warning", text))
    manager.LogErrorMsg = lambda text: state.events.append(("error", text))
    manager.Initialize = lambda *args: state.calls.append(("Initialize", args))
    manager.PrepareToHostSingle = lambda cls: state.calls.append(("PrepareToHostSingle", cls))

    def dispatch() -> None:
        state.calls.append(("StartServiceCtrlDispatcher", None))
        if state.dispatcher_error is not None:
            raise WinError(state.dispatcher_error, "StartServiceCtrlDispatcher", "no SCM")

    manager.StartServiceCtrlDispatcher = dispatch

    evtlog = types.ModuleType("win32evtlogutil")
    evtlog.AddSourceToRegistry = lambda *args: state.calls.append(("AddSource", args))
    evtlog.RemoveSourceFromRegistry = lambda *args: state.calls.append(("RemoveSource", args))
    return {
        "win32service": svc,
        "win32serviceutil": util,
        "win32event": event,
        "servicemanager": manager,
        "win32evtlogutil": evtlog,
    }


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeWindows, Any]]:
    """The pywin32 stand-in in sys.modules, bridge.daemon.winservice imported against it, and the
    `service` commands believing they run on Windows."""
    state = FakeWindows()
    for name, module in fake_win32(state).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "bridge.daemon.winservice", raising=False)
    import bridge.cli.service
    import bridge.daemon.winservice as winservice

    monkeypatch.setattr(bridge.cli.service, "on_windows", lambda: True)
    yield state, winservice
    sys.modules.pop("bridge.daemon.winservice", None)
    vars(sys.modules["bridge.daemon"]).pop("winservice", None)  # a later import must not find it


def bkm_bridge(*args: str) -> Any:
    """The CLI in this process (so the pywin32 stand-in is what it talks to)."""
    if not any(group.name == "service" for group in cli.app.registered_groups):
        cli._register_subsystem_commands()
    return CliRunner().invoke(cli.app, list(args))


# --------------------------------------------------------------------------- Windows commands


def test_install_creates_an_automatic_service_that_restarts_on_failure(
    tmp_path: Path, windows: tuple[FakeWindows, Any]
) -> None:
    state, winservice = windows
    config = write_config(tmp_path)
    result = bkm_bridge("service", "install", "--config", str(config))
    assert result.exit_code == 0, result.output
    service = state.services["bkm-bridge"]
    assert service["display"] == winservice.DISPLAY_NAME
    assert service["start"] == 2  # SERVICE_AUTO_START
    assert service["type"] == 0x10  # its own process
    assert service["command"] == (
        f'"{sys.executable}" -m bridge.winservice --config "{config.absolute()}"'
    )
    assert service["account"] == r"NT SERVICE\bkm-bridge" and service["password"] is None
    config2 = service["config2"]
    assert "KUHR" in config2[1]  # description
    actions = config2[2]  # failure actions
    assert [kind for kind, _ in actions["Actions"]] == [1, 1, 1]  # restart, restart, restart
    assert actions["Actions"][0][1] == 60_000 and actions["ResetPeriod"] == 86400
    assert config2[4] is True  # also on a stop with an error, not only a crash
    assert 3 not in config2  # not delayed unless asked
    assert ("AddSource", ("bkm-bridge", sys.modules["servicemanager"].__file__, "Application")) in (
        state.calls
    )
    assert state.open_handles == 0
    assert str(tmp_path / "state" / "logs" / "bkm-bridge.log") in result.output

    again = bkm_bridge("service", "install", "--config", str(config))
    assert again.exit_code == 1
    assert "installed already" in again.output


def test_install_refuses_settings_a_service_cannot_run_with(
    tmp_path: Path, windows: tuple[FakeWindows, Any]
) -> None:
    state, _ = windows
    result = bkm_bridge("service", "install", "--config", str(write_config(tmp_path, state=False)))
    assert result.exit_code == 2
    assert "state_dir is not set" in result.output
    assert state.services == {}


def test_start_status_stop_remove(tmp_path: Path, windows: tuple[FakeWindows, Any]) -> None:
    state, _ = windows
    status = bkm_bridge("service", "status")
    assert (status.exit_code, status.output.strip()) == (4, "bkm-bridge: not installed")
    assert bkm_bridge("service", "start").exit_code == 1  # not installed: says so

    assert bkm_bridge("service", "install", "--config", str(write_config(tmp_path)),
                      "--account", r"CLINIC\svc-bkm$", "--delayed").exit_code == 0  # fmt: skip
    assert state.services["bkm-bridge"]["account"] == r"CLINIC\svc-bkm$"
    assert state.services["bkm-bridge"]["config2"][3] is True  # delayed automatic start
    assert bkm_bridge("service", "status").exit_code == 3  # stopped

    started = bkm_bridge("service", "start", "--wait", "20")
    assert (started.exit_code, started.output.strip()) == (0, "bkm-bridge: running")
    assert ("WaitForServiceStatus", ("bkm-bridge", 4, 20)) in state.calls
    assert bkm_bridge("service", "status").exit_code == 0

    stopped = bkm_bridge("service", "stop")
    assert (stopped.exit_code, stopped.output.strip()) == (0, "bkm-bridge: stopped")
    assert bkm_bridge("service", "stop").exit_code == 0  # already stopped: fine

    assert bkm_bridge("service", "remove").exit_code == 0
    assert state.services == {}
    assert ("RemoveSource", ("bkm-bridge", "Application")) in state.calls
    assert bkm_bridge("service", "remove").exit_code == 1
    assert state.open_handles == 0


def test_windows_commands_elsewhere_say_so(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("this is about other platforms")
    for command in ("install", "remove", "start", "stop", "status"):
        result = bkm_bridge("service", command)
        assert result.exit_code == 2, result.output
        assert "works only on Windows" in result.output
        assert "systemd-unit" in result.output


# --------------------------------------------------------------------------- the Windows service


def run_service(winservice: Any, config: Path) -> tuple[Any, threading.Thread, list[Any]]:
    winservice.BridgeService.config_file = config
    service = winservice.BridgeService(["bkm-bridge"])
    raised: list[Any] = []

    def host() -> None:  # what pywin32's C framework does with SvcRun
        try:
            service.SvcRun()
        except Exception as exc:
            raised.append(exc)

    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    return service, thread, raised


def wait_until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_service_runs_the_bridge_and_stops_within_the_scm_limit(
    tmp_path: Path, windows: tuple[FakeWindows, Any]
) -> None:
    state, winservice = windows
    config = write_config(tmp_path)
    service, thread, raised = run_service(winservice, config)
    wait_until(lambda: (4, 5000) in state.reports or raised)  # SERVICE_RUNNING
    assert not raised, raised
    assert state.reports[0] == (2, winservice.START_WAIT_HINT_MS)  # START_PENDING first
    assert service.runner.responsive(2.0)
    assert any(kind == "info" and "bkm-bridge" in text and str(config) in text
               for kind, text in state.events)  # fmt: skip

    # It is the real bridge: a claim dropped in the folder is converted and sent.
    shutil.copyfile(FIXTURES / "seed-arbeidsflyt.xml", tmp_path / "inbox" / "krav.xml")
    receipt = tmp_path / "inbox" / "krav.xml.kvittering.json"
    wait_until(receipt.exists)

    began = time.monotonic()
    service.SvcStop()
    thread.join(winservice.STOP_WAIT_HINT_MS / 1000)
    took = time.monotonic() - began
    assert not thread.is_alive() and not raised, raised
    assert took < winservice.STOP_WAIT_HINT_MS / 1000
    assert (3, winservice.STOP_WAIT_HINT_MS) in state.reports  # STOP_PENDING with its hint
    assert service.runner.exit_code == 0
    assert state.events[-1][0] == "info" and f"{0x40000002:#x}" in state.events[-1][1]
    log_file = tmp_path / "state" / "logs" / "bkm-bridge.log"
    assert "krav.xml" in log_file.read_text(encoding="utf-8")  # logs go to the file
    for patient_id in ("47908702367", "47908500667"):
        assert patient_id not in log_file.read_text(encoding="utf-8")


def test_a_start_failure_is_an_event_log_error_and_a_service_failure(
    tmp_path: Path, windows: tuple[FakeWindows, Any]
) -> None:
    state, winservice = windows
    config = write_config(tmp_path)
    shutil.rmtree(tmp_path / "inbox")  # the share is not there
    _, thread, raised = run_service(winservice, config)
    thread.join(60)
    assert len(raised) == 1 and isinstance(raised[0], winservice.ServiceFailed)
    assert 4 not in [status for status, _ in state.reports]  # never reported RUNNING
    errors = [text for kind, text in state.events if kind == "error"]
    assert len(errors) == 1
    assert "could not start" in errors[0] and "folder to watch does not exist" in errors[0]


def test_a_bridge_that_ends_by_itself_is_reported_as_a_failure(
    tmp_path: Path, windows: tuple[FakeWindows, Any]
) -> None:
    state, winservice = windows
    service, thread, raised = run_service(winservice, write_config(tmp_path))
    wait_until(lambda: (4, 5000) in state.reports or raised)
    service.runner.stop()  # not asked by the SCM: e.g. a fatal error inside
    thread.join(30)
    assert len(raised) == 1 and isinstance(raised[0], winservice.ServiceFailed)
    assert any(kind == "error" and "stopped unexpectedly" in text for kind, text in state.events)


def test_the_service_process_hands_itself_to_the_scm(
    tmp_path: Path, windows: tuple[FakeWindows, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    state, winservice = windows
    config = write_config(tmp_path)
    assert winservice.main(["--config", str(config)]) == 0
    assert winservice.BridgeService.config_file == config
    assert ("PrepareToHostSingle", winservice.BridgeService) in state.calls
    assert state.calls[-1] == ("StartServiceCtrlDispatcher", None)

    state.dispatcher_error = 1063  # run from a console, not by the SCM
    assert winservice.main(["--config", str(config)]) == 2
    assert "bkm-bridge watch" in capsys.readouterr().err


# --------------------------------------------------------------------------- systemd


def unit_settings(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_shipped_unit_is_hardened_and_matches_what_the_command_writes() -> None:
    text = UNIT_FILE.read_text(encoding="utf-8")
    unit = unit_settings(text)
    for key, value in {
        "Type": "notify", "User": "bkm-bridge", "Group": "bkm-bridge",
        "Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "StateDirectory": "bkm-bridge",
        "LogsDirectory": "bkm-bridge", "CapabilityBoundingSet": "", "WatchdogSec": "60s",
    }.items():  # fmt: skip
        assert unit[key] == [value], key
    assert unit["ReadWritePaths"] == ["/var/lib/bkm-bridge /srv/bkm-bridge /var/log/bkm-bridge"]
    assert unit["ExecStart"] == [
        "/opt/bkm-bridge/venv/bin/python -m bridge watch --config /etc/bkm-bridge/bkm-bridge.toml"
    ]
    generated = render_unit(
        config_file=Path("/etc/bkm-bridge/bkm-bridge.toml"),
        state_dir=Path("/var/lib/bkm-bridge"),
        writable=[Path("/srv/bkm-bridge")],
        log_dir=Path("/var/log/bkm-bridge"),
        python="/opt/bkm-bridge/venv/bin/python",
    )
    assert text[text.index("[Unit]") :] == generated[generated.index("[Unit]") :]


def systemd_unit_for(tmp_path: Path) -> tuple[str, Path]:
    config = write_config(tmp_path)
    receipts = tmp_path / "kvitteringer"
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f'receipts_dir = "{receipts.as_posix()}"\n')
    result = bkm_bridge("service", "systemd-unit", "--config", str(config), "--user", "bkm")
    assert result.exit_code == 0, result.output
    return result.output, config


def test_systemd_unit_command_writes_a_unit_for_this_install(tmp_path: Path) -> None:
    text, config = systemd_unit_for(tmp_path)
    unit = unit_settings(text)
    assert unit["ExecStart"] == [f"{sys.executable} -m bridge watch --config {config.absolute()}"]
    assert unit["User"] == ["bkm"] and unit["Group"] == ["bkm"]
    assert unit["ReadWritePaths"] == [
        f"{tmp_path / 'state'} {tmp_path / 'inbox'} {tmp_path / 'kvitteringer'}"
    ]
    assert unit["WorkingDirectory"] == [str(tmp_path / "state")]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["Restart"] == ["on-failure"] and unit["Type"] == ["notify"]
    # The watched folder lives under /tmp here: a private /tmp would hide it.
    assert unit["PrivateTmp"] == ["no" if str(tmp_path).startswith("/tmp") else "yes"]
    assert "StateDirectory" not in unit  # not under /var/lib: the folder is the admin's


def test_systemd_unit_needs_settings_with_folders(tmp_path: Path) -> None:
    missing = bkm_bridge("service", "systemd-unit", "--config", str(tmp_path / "none.toml"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = tmp_path / "empty.toml"
    empty.write_text("[watch]\n", encoding="utf-8")
    result = bkm_bridge("service", "systemd-unit", "--config", str(empty))
    assert result.exit_code == 2 and "folders is empty" in result.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_generated_unit(tmp_path: Path) -> None:
    text, _ = systemd_unit_for(tmp_path)
    unit = tmp_path / "bkm-bridge.service"
    unit.write_text(text, encoding="utf-8")
    check = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert "bkm-bridge.service" not in check.stderr, check.stderr  # no warnings about it


def test_watch_tells_systemd_it_is_ready_pings_the_watchdog_and_says_when_it_stops(
    tmp_path: Path,
) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify_socket:
        notify_socket.bind(address)
        notify_socket.settimeout(60)
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "watch", str(inbox),
             "--state-dir", str(tmp_path / "state")],
            cwd=tmp_path,
            env={**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            ready = notify_socket.recv(4096).decode().split("\n")
            assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
            assert any(line.startswith("STATUS=watching 1 folder") for line in ready)
            pings = [notify_socket.recv(4096).decode() for _ in range(2)]
            assert pings == ["WATCHDOG=1", "WATCHDOG=1"]
            proc.send_signal(signal.SIGTERM)
            messages = []
            while not any("STOPPING=1" in m for m in messages):
                messages.append(notify_socket.recv(4096).decode())
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
