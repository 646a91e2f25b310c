"""Pause Python's cyclic garbage collector around allocation-heavy, cycle-free work.

Converting a large claim allocates hundreds of thousands of small objects (lxml proxies, dicts,
pydantic models) and none of them form reference cycles; the collector's generation-2 passes
over that growing heap cost about a third of the conversion time of a 10,000-regning file.
Reference counting still frees everything; cycles made meanwhile are collected afterwards.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_depth = 0
_was_enabled = False


class _GcPause:
    """A plain class, not a @contextmanager: this wraps every conversion, and a generator
    frame per use showed in the conversion profile."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _depth, _was_enabled
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1

    def __exit__(self, *exc_info: object) -> None:
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


_PAUSE = _GcPause()


def gc_paused() -> _GcPause:
    """`with gc_paused():` the cyclic collector is off (nested uses and threads share one
    pause; it is switched back on when the last one ends)."""
    return _PAUSE
