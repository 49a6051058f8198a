"""The lock a calibration refit takes on a device's table: the profile's lock of (device, space), waited
for briefly (another refit holds it for milliseconds), refused past the wait (a profile holds it for
minutes)."""

from __future__ import annotations

import threading

import pytest

from edgenas.errors import OutputError
from edgenas.fleet import table_lock as table_lock_module
from edgenas.fleet.table_lock import profile_lock, table_lock, waited_lock


def _hold(project, until: threading.Event, held: threading.Event) -> threading.Thread:
    def run() -> None:
        with profile_lock(project, "local", "mbv3-tiny"):
            held.set()
            until.wait(10)

    t = threading.Thread(target=run)
    t.start()
    assert held.wait(10)
    return t


def test_a_refit_waits_for_a_short_holder(project):
    release, held = threading.Event(), threading.Event()
    t = _hold(project, release, held)
    threading.Timer(0.3, release.set).start()
    with table_lock(project, "local", "mbv3-tiny", wait_s=10.0):
        after_release = release.is_set()  # it got the lock only once the holder let go
    t.join()
    assert after_release


def test_a_refit_is_refused_past_its_wait(project):
    release, held = threading.Event(), threading.Event()
    t = _hold(project, release, held)
    try:
        with pytest.raises(OutputError, match="the LUT of 'local' for 'mbv3-tiny' is in use"):
            with table_lock(project, "local", "mbv3-tiny", wait_s=0.2):
                pass
    finally:
        release.set()
        t.join()
    with table_lock(project, "local", "mbv3-tiny", wait_s=0.0):  # free again
        pass


class _Clock:
    """Stands in for ``time`` in ``edgenas.fleet.table_lock``: ``sleep`` only moves the clock on, and records."""

    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert len(self.sleeps) < 1000, "a wait that never ends"
        self.sleeps.append(s)
        self.now += s


def _refused(tries: list[int]):
    tries.append(1)
    assert len(tries) < 1000, "a wait that never sleeps"
    raise OutputError("held")


def test_a_waited_lock_tries_again_every_50_ms_until_its_wait_is_over(monkeypatch):
    clock, tries = _Clock(), []
    monkeypatch.setattr(table_lock_module, "time", clock)
    with pytest.raises(OutputError, match="held"):
        with waited_lock(lambda: _refused(tries), 0.5):
            pass
    assert set(clock.sleeps) == {0.05} and 10 <= len(clock.sleeps) <= 11  # 0.5 s / 50 ms, give or take a float
    assert len(tries) == len(clock.sleeps) + 1


def test_no_wait_is_refused_at_once(monkeypatch):
    clock, tries = _Clock(), []
    monkeypatch.setattr(table_lock_module, "time", clock)
    with pytest.raises(OutputError, match="held"):
        with waited_lock(lambda: _refused(tries), 0.0):
            pass
    assert clock.sleeps == [] and len(tries) == 1


def test_a_refit_waits_three_seconds_by_default(project, monkeypatch):
    release, held = threading.Event(), threading.Event()
    t = _hold(project, release, held)
    clock = _Clock()
    monkeypatch.setattr(table_lock_module, "time", clock)
    try:
        with pytest.raises(OutputError, match="is in use"):
            with table_lock(project, "local", "mbv3-tiny"):
                pass
    finally:
        release.set()
        t.join()
    assert sum(clock.sleeps) == pytest.approx(3.0, abs=0.06)
