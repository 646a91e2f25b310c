"""What a migration is asked to do (`MigrateOptions`) and why it cannot start
(`MigrationError`); shared by the run and its sending processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bridge.errors import UsageError
from bridge.files.discovery import DateRange


@dataclass(frozen=True)
class MigrateOptions:
    paths: tuple[Path, ...]
    dry_run: bool = False
    out_dir: Path | None = None  # dry run: NAME.json per file here
    receipts_dir: Path | None = None  # None: beside the originals (not possible for zips)
    report: Path | None = None
    concurrency: int = 8  # submissions in flight
    rate: float | None = None  # submissions per second (None: as fast as KUHR answers)
    dates: DateRange = field(default_factory=DateRange)
    follow: bool = False  # wait for the control results
    workers: int | None = None  # conversion processes (None: one per core)
    senders: int | None = None  # sending processes (None: one per core for a large archive)
    praksis_id: str | None = None
    allow_mismatch: bool | None = None  # None: [watch] allow_mismatch
    max_attempts: int = 3  # transient failures per file and run before it is left failed
    state_dir: Path | None = None  # None: [watch] state_dir, else the per-user state folder
    sandbox_clock: datetime | None = None  # an embedded sandbox's start time
    sandbox_speed: float | None = None  # an embedded sandbox's speed (None: [kuhr])


class MigrationError(UsageError):
    """The run cannot start (bad arguments, KUHR or the journal unavailable)."""
