"""The running bridge keeps its copy of Helfo's takst tables fresh by itself.

When the pre-control is on and `[precheck] refresh_hours` > 0, a thread syncs the tables with
`bridge.files.takstcache.sync` (the code behind `bkm-bridge takster sync`) whenever the cache
file is missing or older than that: at start and then on schedule. The pre-control reloads a
changed cache file by itself. A failed sync leaves the old table as it was and is tried again
in a while; a sync by hand in between counts (the file's age is what is judged).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from bridge.config import Environment, Settings
from bridge.files.takstcache import cache_file, default_cache_dir, sync
from bridge.flow.precheck import wall_clock
from bridge.kuhr.opendata import HELFO_OPNE_DATA_URL, OpenDataClient, OpenDataError
from bridge.kuhr.proxy import sync_transport
from bridge.runtime.redaction import redact_text

log = logging.getLogger("bridge.takster")

RETRY_AFTER_FAILURE_SECONDS = 600.0
LONGEST_NAP_SECONDS = 300.0


def opne_data_url(settings: Settings, sandbox_url: str | None) -> str | None:
    """Where the tables come from: the configured URL; Helfo's for DEV and PROD; the sandbox's
    own copy for the sandbox (None: a sandbox that serves none)."""
    if settings.precheck.opne_data_url:
        return settings.precheck.opne_data_url
    if settings.kuhr.environment is not Environment.SANDBOX:
        return HELFO_OPNE_DATA_URL
    return sandbox_url


class TaksterRefresh:
    def __init__(self, settings: Settings, url: str, *, every_seconds: float) -> None:
        directory = settings.precheck.cache_dir or default_cache_dir(settings.watch.state_dir)
        self.path: Path = cache_file(directory, settings.kuhr.environment.value)
        self.url = url
        self.every = every_seconds
        self.proxy = settings.kuhr.proxy
        self.syncs = 0  # successful syncs by this thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="bkm-bridge-takster", daemon=True)
        self._failed_at: float | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def age_seconds(self) -> float | None:
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime)
        except OSError:
            return None

    def due_in(self) -> float:
        """Seconds until the next sync is due (0: now)."""
        if self._failed_at is not None:
            left = self._failed_at + min(self.every, RETRY_AFTER_FAILURE_SECONDS) - time.monotonic()
            if left > 0:
                return left
        age = self.age_seconds()
        return 0.0 if age is None else max(0.0, self.every - age)

    def _main(self) -> None:
        while not self._stop.is_set():
            if self.due_in() <= 0:
                self.refresh()
            self._stop.wait(min(max(self.due_in(), 0.05), LONGEST_NAP_SECONDS))

    def refresh(self) -> bool:
        try:
            with OpenDataClient(self.url, transport=sync_transport(self.proxy)) as client:
                report = sync(client, self.path, now=wall_clock())
        except (OpenDataError, OSError) as exc:
            self._failed_at = time.monotonic()
            log.warning(
                "takster: refreshing the takst tables from %s failed, the old copy is kept: %s",
                self.url,
                redact_text(str(exc))[:300],
            )
            return False
        self._failed_at = None
        self.syncs += 1
        log.info(
            "takster: tables refreshed from %s (%d takstkoder) into %s",
            self.url,
            sum(report.takstkoder.values()),
            self.path,
        )
        return True


def start_takster_refresh(settings: Settings, sandbox_url: str | None) -> TaksterRefresh | None:
    """The refresh thread, started; None when the pre-control or the refresh is off."""
    hours = settings.precheck.refresh_hours
    if settings.precheck.mode == "off" or hours <= 0:
        return None
    url = opne_data_url(settings, sandbox_url)
    if url is None:
        log.info("takster: this sandbox serves no open data; the tables are not refreshed")
        return None
    refresh = TaksterRefresh(settings, url, every_seconds=hours * 3600)
    refresh.start()
    return refresh
