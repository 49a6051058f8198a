"""The lock a calibration refit takes on a device's table: the profile's lock of (device, space), waited
for briefly (another refit holds it for milliseconds), refused past the wait (a profile holds it for
minutes)."""

from __future__ import annotations

import threading

import pytest

from edgenas.errors import OutputError
from edgenas.fleet.table_lock import profile_lock, table_lock


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
