"""OS file locks for things one process at a time may write: a search run folder, a device's profile.

Two ``search --out X`` at once used to overwrite each other's ``request.json``. ``run_lock`` takes an
exclusive, non-blocking ``fcntl.flock`` on a lock file for the whole command; a second writer is refused
at once, before it writes anything, with the holder's pid. The kernel drops the lock when the holder
exits, even on ``kill -9``, so a stale lock file never blocks anyone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgenas.errors import OutputError

LOCK_NAME = ".edgenas.lock"


@contextmanager
def file_lock(lock_path: str | os.PathLike, what: str, hint: str | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) or raise ``OutputError`` at once."""
    path = Path(lock_path)
    try:  # never through a link: the pid written below must not land in a file the link points at
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"lock file {path} is a symbolic link",
                              hint="remove it (edgenas makes its own lock file there)") from None
        from edgenas.outdirs import disk_error

        raise disk_error(exc, f"lock file {path}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError(f"lock file {path} is not a regular file",
                              hint="remove it (edgenas makes its own lock file there)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise OutputError(f"{what} is in use by another edgenas process (pid {holder})",
                              hint=hint or "wait for it to finish, or use another folder") from None
        was = _contents(fd)
        try:  # who holds it, for the message above (best effort)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        try:
            yield path
        finally:
            _restore(fd, was)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _contents(fd: int) -> tuple[bytes, os.stat_result] | None:
    """A lock file's bytes and times before its holder wrote its pid; None for one just created (empty)."""
    st = os.fstat(fd)
    if st.st_size == 0 or st.st_size > 64:  # a pid is a few digits: anything else is not worth keeping
        return None
    try:
        return os.pread(fd, 64, 0), st
    except OSError:
        return None


def _restore(fd: int, was: tuple[bytes, os.stat_result] | None) -> None:
    """Put a lock file back as its holder found it, still holding the lock (a later holder's pid is never
    overwritten): the pid is only read while the lock is held, and a refused ``search --resume`` left the run
    folder changed (its lock file's pid and time) though nothing else in it was. Through the descriptor: the
    folder may be gone (a new run's folder removed on failure). Best effort, as the write was."""
    if was is None:
        return
    data, st = was
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError:
        pass


def run_lock(folder: str | os.PathLike, what: str | None = None) -> "contextmanager[Path]":  # type: ignore[valid-type]
    """Lock a run folder (``folder/.edgenas.lock``); the folder must exist."""
    folder = Path(folder)
    return file_lock(folder / LOCK_NAME, what or f"run folder {folder}")


@contextmanager
def run_read(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s run lock shared while the run in it is read for the experiment database (``runs import``,
    a warm start indexing a folder). A search writing the folder holds the lock, and its folder is refused: an
    import read a running search's log one file at a time, and its snapshot, saved after the search's own final
    record, replaced that with fewer evaluations and no best. A search started meanwhile (a resume) is refused as
    by another writer until the read ends. Nothing is created: a folder without a lock file was never locked."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # none (never locked), or one no search made (a link, unreadable): nothing to share
        fd = None
    try:
        if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                raise OutputError(f"run folder {folder} is being written by a running search (pid {holder})",
                                  hint="a search records itself in the experiment database when it ends or stops; "
                                       "read it then") from None
        yield
    finally:
        if fd is not None:
            os.close(fd)  # the shared lock goes with it


def run_lock_held(folder: str | os.PathLike) -> bool | None:
    """Whether a process holds ``folder``'s run lock (``run_lock``) now; None when that cannot be told.
    Probed with a shared, non-blocking ``flock`` on the lock file opened read-only, so nothing in the
    folder is created or written; the probe holds it for a moment only. A run recorded as running whose
    lock nobody holds was killed (``kill -9`` leaves no other trace)."""
    if not Path(folder).is_dir():
        return None  # on another machine sharing the database, moved or unmounted: this one cannot tell
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # no search ever locked it (or an older edgenas ran it)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def status_now(status: str, folder: str | os.PathLike) -> str:
    """A run's recorded ``status`` as it stands now: ``stopped`` for a ``running`` one whose folder's run lock
    nobody holds (killed: by kill -9 or SIGTERM its checkpoint still says running), else ``status`` as it is (a
    held lock, or a folder this machine cannot see). The one rule ``runs import``, the database's reader and the
    report and API apply."""
    return "stopped" if status == "running" and run_lock_held(folder) is False else status
