"""The Windows service: a thin pywin32 adapter over `bridge.daemon.runner.Runner`.

Windows only (pywin32 is installed there through an environment marker). The Service Control
Manager starts `python.exe -m bridge.winservice --config FILE`; `main()` hands the process to
the SCM, which calls `BridgeService.SvcRun` (start the runner, report RUNNING, wait) and
`SvcStop` (stop the runner within the SCM's time limit). Start, stop and fatal errors go to
the Windows Event Log (Application log, source "bkm-bridge"); everything else goes to the
rotating log file. `install()`, `remove()`, `start()`, `stop()` and `status()` are what
`bkm-bridge service …` calls. Everything that is not pywin32 plumbing (settings, logging,
the runner itself) lives elsewhere and is tested on Linux.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import servicemanager
import win32event
import win32service
import win32serviceutil

from bridge.daemon.runner import Runner
from bridge.daemon.service import service_runner
from bridge.errors import BridgeError
from bridge.runtime.redaction import redact_text

SERVICE_NAME = "bkm-bridge"
DISPLAY_NAME = "bkm-bridge (BKM claims to Helfo KUHR)"
DESCRIPTION = (
    "Sends the behandlerkravmeldinger the EPJ writes as legacy BKM XML to Helfo's KUHR Krav "
    "API and writes the answers back as receipts beside them."
)
# The least-privileged account that still has its own identity: a virtual service account.
DEFAULT_ACCOUNT = rf"NT SERVICE\{SERVICE_NAME}"
START_TIMEOUT_SECONDS = 60.0
START_WAIT_HINT_MS = 70_000
STOP_TIMEOUT_SECONDS = 15.0  # the runner's own stop; the SCM is told to wait a little longer
STOP_WAIT_HINT_MS = 20_000
POLL_MS = 1000
# Recovery: restart after 1 min, again after 1 min, then every 5 min; reset after a day.
FAILURE_ACTIONS = {
    "ResetPeriod": 24 * 3600,
    "RebootMsg": None,
    "Command": None,
    "Actions": [
        (win32service.SC_ACTION_RESTART, 60_000),
        (win32service.SC_ACTION_RESTART, 60_000),
        (win32service.SC_ACTION_RESTART, 300_000),
    ],
}
ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_EXISTS = 1073
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
STATE_WORDS = {
    win32service.SERVICE_STOPPED: "stopped",
    win32service.SERVICE_START_PENDING: "starting",
    win32service.SERVICE_STOP_PENDING: "stopping",
    win32service.SERVICE_RUNNING: "running",
    win32service.SERVICE_CONTINUE_PENDING: "continuing",
    win32service.SERVICE_PAUSE_PENDING: "pausing",
    win32service.SERVICE_PAUSED: "paused",
}


class ServiceFailed(RuntimeError):
    """Raised out of SvcRun so the SCM records a failure and applies the recovery actions."""


class ServiceCommandError(BridgeError, RuntimeError):
    """An install/remove/start/stop/status request failed; the message says what to do."""


def _default_runner(config_file: Path | None) -> Runner:

    return service_runner(config_file)


class BridgeService(win32serviceutil.ServiceFramework):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = DISPLAY_NAME
    _svc_description_ = DESCRIPTION

    # Set by main() from the service's command line before the SCM takes over.
    config_file: Path | None = None
    make_runner: Callable[[Path | None], Any] = staticmethod(_default_runner)

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self._stop_requested = win32event.CreateEvent(None, 0, 0, None)
        self.runner: Any = None

    def SvcRun(self) -> None:
        self.ReportServiceStatus(win32service.SERVICE_START_PENDING, waitHint=START_WAIT_HINT_MS)
        try:
            self.runner = self.make_runner(self.config_file)
            self.runner.start(timeout=START_TIMEOUT_SECONDS)
        except Exception as exc:
            reason = _reason(exc)
            servicemanager.LogErrorMsg(f"{SERVICE_NAME} could not start: {reason}")
            if self.runner is not None:
                self.runner.stop(STOP_TIMEOUT_SECONDS)
            raise ServiceFailed(reason) from None
        servicemanager.LogMsg(
            servicemanager.EVENTLOG_INFORMATION_TYPE,
            servicemanager.PYS_SERVICE_STARTED,
            (self._svc_name_, f" (settings: {self.config_file})"),
        )
        self.ReportServiceStatus(win32service.SERVICE_RUNNING)
        while True:
            signalled = win32event.WaitForSingleObject(self._stop_requested, POLL_MS)
            if signalled == win32event.WAIT_OBJECT_0:
                break
            if _ended(self.runner):
                reason = _reason(self.runner.error) if self.runner.error else "it stopped"
                servicemanager.LogErrorMsg(f"{SERVICE_NAME} stopped unexpectedly: {reason}")
                raise ServiceFailed(reason)
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
        self.runner.stop(STOP_TIMEOUT_SECONDS)
        if not _ended(self.runner):
            servicemanager.LogWarningMsg(
                f"{SERVICE_NAME}: work still in flight after {STOP_TIMEOUT_SECONDS:.0f} s; "
                "it resumes from the journal at the next start"
            )
        servicemanager.LogMsg(
            servicemanager.EVENTLOG_INFORMATION_TYPE,
            servicemanager.PYS_SERVICE_STOPPED,
            (self._svc_name_, ""),
        )

    def SvcStop(self) -> None:
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
        win32event.SetEvent(self._stop_requested)

    def SvcShutdown(self) -> None:
        self.SvcStop()


def _ended(runner: Any) -> bool:
    return runner.error is not None or runner.exit_code is not None


def _reason(exc: BaseException) -> str:

    text = str(exc).strip()
    return redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


# --------------------------------------------------------------------------- hosting


def main(argv: list[str] | None = None) -> int:
    """The service process: `python -m bridge.winservice --config FILE`, started by the SCM."""
    parser = argparse.ArgumentParser(prog="python -m bridge.winservice")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    BridgeService.config_file = args.config
    servicemanager.Initialize(SERVICE_NAME, servicemanager.__file__)
    servicemanager.PrepareToHostSingle(BridgeService)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except win32service.error as exc:
        if getattr(exc, "winerror", None) == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            print(
                "This is the bkm-bridge service process; Windows starts it. Use "
                "`bkm-bridge service start`, or `bkm-bridge watch` to run in this console.",
                file=sys.stderr,
            )
            return 2
        raise
    return 0


def service_command_line(config_file: Path, python: str | None = None) -> str:
    """What the SCM runs: this interpreter with the module and the absolute settings path."""
    python = python or sys.executable
    return f'"{python}" -m bridge.winservice --config "{config_file}"'


# --------------------------------------------------------------------------- managing


def install(
    config_file: Path,
    *,
    account: str | None = DEFAULT_ACCOUNT,
    password: str | None = None,
    delayed: bool = False,
    python: str | None = None,
) -> None:
    """Create the service: automatic start, restart on failure, its settings file."""
    command = service_command_line(config_file, python)
    with _scm(win32service.SC_MANAGER_ALL_ACCESS) as scm:
        try:
            handle = win32service.CreateService(
                scm,
                SERVICE_NAME,
                DISPLAY_NAME,
                win32service.SERVICE_ALL_ACCESS,
                win32service.SERVICE_WIN32_OWN_PROCESS,
                win32service.SERVICE_AUTO_START,
                win32service.SERVICE_ERROR_NORMAL,
                command,
                None,
                0,
                None,
                account,
                password,
            )
        except win32service.error as exc:
            raise _command_error("install", exc) from None
        try:
            win32service.ChangeServiceConfig2(
                handle, win32service.SERVICE_CONFIG_DESCRIPTION, DESCRIPTION
            )
            win32service.ChangeServiceConfig2(
                handle, win32service.SERVICE_CONFIG_FAILURE_ACTIONS, FAILURE_ACTIONS
            )
            # Also recover when the service stops with an error, not only when it crashes.
            win32service.ChangeServiceConfig2(
                handle, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True
            )
            if delayed:
                win32service.ChangeServiceConfig2(
                    handle, win32service.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, True
                )
        finally:
            win32service.CloseServiceHandle(handle)
    _register_event_source()


def _register_event_source() -> None:
    """Let Event Viewer render our messages with servicemanager's message table."""
    try:
        import win32evtlogutil

        win32evtlogutil.AddSourceToRegistry(SERVICE_NAME, servicemanager.__file__, "Application")
    except Exception as exc:  # the service still works; its events show as raw text
        print(f"note: could not register the Event Log source: {exc}", file=sys.stderr)


def remove() -> None:
    with _scm(win32service.SC_MANAGER_ALL_ACCESS) as scm:
        try:
            handle = win32service.OpenService(scm, SERVICE_NAME, win32service.SERVICE_ALL_ACCESS)
        except win32service.error as exc:
            raise _command_error("remove", exc) from None
        try:
            win32service.DeleteService(handle)
        except win32service.error as exc:
            raise _command_error("remove", exc) from None
        finally:
            win32service.CloseServiceHandle(handle)
    try:
        import win32evtlogutil

        win32evtlogutil.RemoveSourceFromRegistry(SERVICE_NAME, "Application")
    except Exception:  # never registered, or already gone
        pass


def start(wait_seconds: int = 0) -> str:
    return _change(
        "start", win32serviceutil.StartService, win32service.SERVICE_RUNNING, wait_seconds
    )


def stop(wait_seconds: int = 0) -> str:
    return _change("stop", win32serviceutil.StopService, win32service.SERVICE_STOPPED, wait_seconds)


def _change(what: str, request: Callable[[str], Any], reached: int, wait_seconds: int) -> str:
    """Ask the SCM to start or stop the service, wait up to `wait_seconds` for the state it
    should reach, and say the state it is in. Stopping a service that is not running is fine."""
    try:
        request(SERVICE_NAME)
        if wait_seconds:
            win32serviceutil.WaitForServiceStatus(SERVICE_NAME, reached, wait_seconds)
    except win32service.error as exc:
        if not (what == "stop" and getattr(exc, "winerror", None) == ERROR_SERVICE_NOT_ACTIVE):
            raise _command_error(what, exc) from None
    return status()


def status() -> str:
    """'running', 'stopped', … or 'not installed'."""
    try:
        state = win32serviceutil.QueryServiceStatus(SERVICE_NAME)[1]
    except win32service.error as exc:
        if getattr(exc, "winerror", None) == ERROR_SERVICE_DOES_NOT_EXIST:
            return "not installed"
        raise _command_error("query", exc) from None
    return STATE_WORDS.get(state, f"state {state}")


class _scm:
    def __init__(self, access: int) -> None:
        self._access = access
        self._handle: Any = None

    def __enter__(self) -> Any:
        try:
            self._handle = win32service.OpenSCManager(None, None, self._access)
        except win32service.error as exc:
            raise _command_error("open the Service Control Manager to", exc) from None
        return self._handle

    def __exit__(self, *exc_info: object) -> None:
        win32service.CloseServiceHandle(self._handle)


def _command_error(what: str, exc: Any) -> ServiceCommandError:
    code = getattr(exc, "winerror", None)
    text = getattr(exc, "strerror", None) or str(exc)
    hint = {
        ERROR_ACCESS_DENIED: "run the command from an elevated prompt (Run as administrator)",
        ERROR_SERVICE_DOES_NOT_EXIST: "the service is not installed: `bkm-bridge service install`",
        ERROR_SERVICE_EXISTS: "it is installed already: `bkm-bridge service remove` first",
    }.get(code)
    message = f"could not {what} the {SERVICE_NAME} service: {text} (error {code})"
    return ServiceCommandError(message + (f"; {hint}" if hint else ""))


if __name__ == "__main__":
    sys.exit(main())
