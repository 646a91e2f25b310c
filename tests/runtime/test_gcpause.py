"""The GC pause around conversions: nested and concurrent uses share one pause, the collector
is back on when the last ends (also after an exception), and a collector switched off by
someone else stays off."""

from __future__ import annotations

import gc
import threading

import pytest

from bridge.runtime.gcpause import gc_paused


@pytest.fixture(autouse=True)
def collector_on():
    gc.enable()
    yield
    gc.enable()


def test_nested_pauses_switch_the_collector_back_on_only_at_the_end() -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_exception_inside_still_switches_it_back_on() -> None:
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("bad claim")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_threads_share_one_pause() -> None:
    inside = threading.Event()
    release = threading.Event()

    def convert_slowly() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=convert_slowly)
    worker.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread is still converting
    release.set()
    worker.join(10)
    assert gc.isenabled()
