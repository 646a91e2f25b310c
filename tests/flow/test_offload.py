"""The watcher's offload: a small claim's steps stay on the event loop's thread (no handoff),
a large claim's go to a thread, so the loop keeps answering while it is converted."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from bridge.flow.options import INLINE_MAX_BYTES, INLINE_MAX_REGNINGER, inline_when_small


def _where(*_args: object) -> int:
    return threading.get_ident()


def test_small_steps_run_inline_and_large_ones_in_a_thread() -> None:
    async def main() -> None:
        here = threading.get_ident()
        assert await inline_when_small(_where, b"<BehandlerKrav/>", None) == here
        assert await inline_when_small(_where, "/inbox/krav.xml") == here
        assert await inline_when_small(_where, b"x" * (INLINE_MAX_BYTES + 1), None) != here
        few = SimpleNamespace(behandlerkrav=SimpleNamespace(regninger=[1, 2, 3]))
        many = SimpleNamespace(
            behandlerkrav=SimpleNamespace(regninger=list(range(INLINE_MAX_REGNINGER + 1)))
        )
        assert await inline_when_small(_where, few) == here
        assert await inline_when_small(_where, many) != here

    asyncio.run(main())
