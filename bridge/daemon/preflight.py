"""Can this setup run? The local half of `bkm-bridge config check`: the folders a watcher
reads and writes (exist, readable, writable, its folder lock can be taken), the state and log
folders, the HTTP port, and the takst table's age. Each check is a `Check` (ok | warn | fail,
what was found, what to do); nothing here talks to KUHR (bridge.cli.kuhr does that part).

Every probe leaves nothing behind: a test file is removed at once, the folder lock is released
(with a running bridge holding it, that is a warning, not a failure: it is what a lock is for).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from bridge.config import Settings
from bridge.daemon.watcher import FolderLockedError, probe_folder_lock
from bridge.paths import state_dir
from bridge.runtime.listen import listening_socket

Level = Literal["ok", "warn", "fail"]
# A takst table older than this is a warning: Helfo changes takster at least every July.
TAKSTER_MAX_AGE_DAYS = 35


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.level == "fail"


def local_checks(settings: Settings, *, now: datetime) -> list[Check]:
    """Every local check of a watcher's setup, in the order `config check` prints them."""
    w = settings.watch
    checks: list[Check] = []
    if not w.folders:
        checks.append(
            Check(
                "watch folders",
                "warn",
                "none configured",
                "set [watch] folders (or give the folders to `bkm-bridge watch`)",
            )
        )
    for folder in w.folders:
        checks.append(folder_check(f"watch folder {folder}", folder, lock=w.lock_folders))
    state = state_dir(w.state_dir)
    checks.append(folder_check(f"state folder {state}", state, create=True))
    for label, folder in (
        ("receipts folder", w.receipts_dir),
        ("archive folder", w.archive_dir),
        ("error folder", w.error_dir),
    ):
        if folder is not None:
            checks.append(folder_check(f"{label} {folder}", folder, create=True))
    log_file = settings.logging.log_file
    if log_file is not None:
        checks.append(log_check(log_file))
    checks.append(port_check(w.http_host, w.http_port))
    checks.append(takster_check(settings, now=now))
    return checks


def folder_check(name: str, folder: Path, *, create: bool = False, lock: bool = False) -> Check:
    """Exists (or can be made, with `create`), is a folder, can be listed and written, and
    (with `lock`) its watcher lock can be taken."""
    if not folder.exists():
        if not create:
            return Check(name, "fail", "does not exist", f"create {folder}, or fix the setting")
        parent = _existing_ancestor(folder)
        found = folder_check(name, parent) if parent is not None else None
        if found is None or found.failed:
            why = found.detail if found is not None else "no part of the path exists"
            return Check(name, "fail", f"cannot be created: {parent} {why}", _access_fix(folder))
        return Check(name, "ok", f"does not exist yet; the bridge creates it in {parent}")
    if not folder.is_dir():
        return Check(name, "fail", "is not a folder", f"point the setting at a folder: {folder}")
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except OSError as exc:
        return Check(name, "fail", f"cannot be read ({_why(exc)})", _access_fix(folder))
    try:
        fd, probe = tempfile.mkstemp(prefix=".bkm-bridge-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return Check(name, "fail", f"cannot be written ({_why(exc)})", _access_fix(folder))
    if lock:
        try:
            probe_folder_lock(str(folder))
        except FolderLockedError as exc:
            return Check(name, "warn", str(exc), "stop the other bridge before starting this one")
        except OSError as exc:
            why = f"its lock cannot be taken ({_why(exc)})"
            return Check(name, "fail", why, _access_fix(folder))
        return Check(name, "ok", "readable, writable, lock free")
    return Check(name, "ok", "readable, writable")


def _existing_ancestor(path: Path) -> Path | None:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return None


def log_check(log_file: Path) -> Check:
    name = f"log file {log_file}"
    if log_file.is_dir():
        return Check(name, "fail", "is a folder", "set [logging] log_file to a file's path")
    folder = log_file.parent
    found = folder_check(name, folder, create=True)
    if found.failed:
        return Check(name, "fail", f"its folder {folder} {found.detail}", found.fix)
    if log_file.exists() and not os.access(log_file, os.W_OK):
        return Check(name, "fail", "cannot be written", _access_fix(log_file))
    return Check(name, "ok", "its folder is writable")


def port_check(host: str, port: int) -> Check:
    name = "HTTP port"
    if not port:
        return Check(name, "ok", "off ([watch] http_port = 0: no status page, health or metrics)")
    try:
        listening_socket(host, port).close()
    except OSError as exc:
        return Check(
            name,
            "warn",
            f"{host}:{port} is taken ({_why(exc)}); a running bridge holds it, or another program",
            "stop the other program, or choose another [watch] http_port (--http-port)",
        )
    return Check(name, "ok", f"{host}:{port} is free")


def takster_check(settings: Settings, *, now: datetime) -> Check:
    """How old the pre-control's takst table is (the bundled snapshot on the sandbox)."""
    from bridge.core.takster import CacheError
    from bridge.files.takstcache import cache_file, default_cache_dir, load_table

    name = "takst table"
    p = settings.precheck
    if p.mode == "off":
        return Check(name, "ok", "not used (precheck.mode = off)")
    environment = settings.kuhr.environment.value
    path = cache_file(p.cache_dir or default_cache_dir(settings.watch.state_dir), environment)
    sync = "bkm-bridge takster sync"
    try:
        table = load_table(path, snapshot=environment == "sandbox")
    except CacheError as exc:
        return Check(name, "fail", str(exc), f"run `{sync}`")
    text = table.describe(now).removeprefix("takst table: ")
    fetched = table.fetched_at()
    if fetched is None:
        return Check(name, "warn", text, f"run `{sync}` (then daily, e.g. a scheduled task)")
    age = (now - fetched).days
    if table.snapshot and environment != "sandbox":
        return Check(name, "warn", text, f"run `{sync}`")
    if age > TAKSTER_MAX_AGE_DAYS and not table.snapshot:
        return Check(
            name,
            "warn",
            f"{text}: older than {TAKSTER_MAX_AGE_DAYS} days",
            f"run `{sync}` (then daily, e.g. a scheduled task)",
        )
    return Check(name, "ok", text)


def watch_lines(settings: Settings) -> list[str]:
    """The watch settings a watcher would run with, one `name: value` line each."""
    w = settings.watch
    folders = ", ".join(str(f) for f in w.folders) or "(none: give them to `bkm-bridge watch`)"
    http = f"{w.http_host}:{w.http_port}" if w.http_port else "off"
    return [
        f"folders: {folders}",
        f"state_dir: {state_dir(w.state_dir)}",
        f"recursive: {w.recursive} · include {', '.join(w.include)}"
        + (f" · exclude {', '.join(w.exclude)}" if w.exclude else ""),
        f"completion: {w.completion} · quiet_seconds {w.quiet_seconds:g} · rescan_seconds "
        f"{w.rescan_seconds:g} · polling {w.polling} · done_files {w.done_files}",
        f"receipts: {w.receipts_dir or 'beside the originals'} · archive_dir "
        f"{w.archive_dir or '-'} · error_dir {w.error_dir or '-'}",
        f"follow: {w.follow} · praksis_id {w.praksis_id or '(looked up at KUHR)'}",
        f"http: {http}",
        f"log_file: {settings.logging.log_file or '(console only)'}",
    ]


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _access_fix(path: Path) -> str:
    return (
        f"give the account the bridge runs as read and write access to {path} "
        "(on Windows: the service account, e.g. NT SERVICE\\bkm-bridge)"
    )
