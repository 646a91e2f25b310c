"""Group commit: each wait is covered by a sync that began after it, callers arriving during a
sync share the next one, a failed sync fails its waiters, and the journal's sync is of its
write-ahead log."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from bridge.core.outcomes import State
from bridge.flow.journal import Journal
from bridge.runtime.group_sync import GroupSync


class _SlowSync:
    """A sync that takes `seconds` and records when each run began and ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __call__(self) -> None:
        began = time.monotonic()
        time.sleep(self.seconds)
        with self._lock:
            self.runs.append((began, time.monotonic()))


def test_every_wait_is_covered_by_a_sync_that_began_after_it() -> None:
    sync = _SlowSync(0.05)
    group = GroupSync(sync)
    returned: list[tuple[float, float]] = []  # (asked at, returned at) per caller

    async def caller(delay: float) -> None:
        await asyncio.sleep(delay)
        asked = time.monotonic()
        await group.wait()
        returned.append((asked, time.monotonic()))

    async def main() -> None:
        await asyncio.gather(*(caller(i * 0.013) for i in range(12)))

    asyncio.run(main())
    assert len(returned) == 12
    for asked, back in returned:
        assert any(asked <= began and end <= back for began, end in sync.runs), (asked, back)


def test_callers_arriving_during_a_sync_share_the_next() -> None:
    sync = _SlowSync(0.2)
    group = GroupSync(sync)

    async def main() -> None:
        first = asyncio.ensure_future(group.wait())
        await asyncio.sleep(0.05)  # the first sync is running
        await asyncio.gather(first, *(group.wait() for _ in range(20)))

    asyncio.run(main())
    assert len(sync.runs) == 2  # 21 commits made durable by two syncs
    assert sync.runs[0][1] <= sync.runs[1][0]  # one at a time


def test_a_failed_sync_fails_its_waiters() -> None:
    def broken() -> None:
        raise OSError(5, "Input/output error")

    group = GroupSync(broken)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(*(group.wait() for _ in range(3)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, OSError) for o in outcomes)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc to name the file")
def test_the_journal_syncs_its_write_ahead_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal.db")
    version, _ = journal.record_seen("a.xml", "ab" * 32, 10)
    journal.transition(version.id, State.SUBMITTING, expect=[State.SEEN])
    synced: list[str] = []
    real = getattr(os, "fdatasync", os.fsync)

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    journal.make_durable()
    assert synced == [str(tmp_path / "journal.db-wal")]
    journal.close()
