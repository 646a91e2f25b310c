"""Group commit for the journal's one durable step: many commits, one sync of the disk.

Before each POST the pipeline's `submitting` commit must survive a power loss. A sync per
commit, made inside it, held the journal's write lock for the length of a disk flush, so
that the other processes sharing the journal waited too, and it blocked the event loop that
made it. `GroupSync.wait` instead lets each caller wait, off the event loop, for one sync
that began after its commit. Callers that arrive while a sync runs share the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class GroupSync:
    """`await wait()` after a commit: returns once `sync` (e.g. `Journal.make_durable`) has
    run from start to end after that commit; raises what `sync` raised."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync
        self._asked = 0  # waits begun so far
        self._covered = 0  # waits whose commits the last finished sync covered
        self._running: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        ticket = self._asked = self._asked + 1
        while self._covered < ticket:
            if self._running is None:
                self._running = asyncio.ensure_future(self._run())
            # Shielded: a caller that is cancelled leaves the sync to the others waiting on it.
            await asyncio.shield(self._running)

    async def _run(self) -> None:
        covers = self._asked  # every wait begun before this sync starts
        try:
            await asyncio.to_thread(self._sync)  # a disk flush: the GIL is free meanwhile
        finally:
            self._running = None
        self._covered = max(self._covered, covers)
