"""The lock on a device's table for a space: a profile (or fleet refresh) holds it for its whole run, a
calibration refit (``deploy``, ``lut calibrate``) while it rewrites the table (``edgenas.locks``: an OS file
lock, released when its holder exits however it exits)."""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, ContextManager, Iterator

from edgenas.errors import OutputError
from edgenas.locks import file_lock
from edgenas.project import Project
from edgenas.safenames import check_name


def profile_lock(project: Project, device: str, space_name: str, *, what: str | None = None) -> Any:
    """The OS lock one profile of (device, space) holds for its whole run (``edgenas.locks``); a
    calibration holds it while it rewrites the table (``what`` names it in the message)."""
    name = check_name(device, "device name")
    locks = project.state_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return file_lock(locks / f"profile-{name}-{space_name}.lock", what or f"the profile of '{name}' for '{space_name}'",
                     hint="another `edgenas profile` (or fleet refresh, or calibration) of this device and space is "
                          "running; wait for it to finish")


#: how long a refit waits for the table's lock: another refit holds it for milliseconds, a profile for minutes
LOCK_WAIT_S = 3.0


@contextmanager
def table_lock(project: Project, device: str, space_name: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """The profile's lock of (device, space), waited for up to ``wait_s`` (two deploys that finish together
    both refit); past that, the holder's ``OutputError`` (a profile or fleet refresh is running)."""
    with waited_lock(lambda: profile_lock(project, device, space_name,
                                          what=f"the LUT of '{device}' for '{space_name}'"), wait_s):
        yield


@contextmanager
def waited_lock(make: Callable[[], ContextManager[Any]], wait_s: float) -> Iterator[None]:
    """Enter ``make()``, an ``edgenas.locks`` lock (which refuses at once when held), trying again every 50 ms
    for up to ``wait_s``; past that, the holder's ``OutputError``."""
    deadline = time.monotonic() + wait_s
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(make())
                break
            except OutputError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        yield
