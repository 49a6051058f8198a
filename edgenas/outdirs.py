"""Output folders: checked before anything is written, created only for good, and never left empty.

``check_out_dir`` refuses an ``--out`` that is a file, lies under a file or sits in a folder we cannot
write. ``new_out_dir`` creates the folder (and missing parents) and, if the block fails, removes the
folders it created as long as they are empty again, so a failed command leaves nothing behind.
``disk_error`` turns an ``OSError`` from writing (disk full, file too large, read-only, permission)
into one clear ``OutputError``; ``escaped_error`` says what an ``OSError`` no caller translated was.
"""

from __future__ import annotations

import errno
import os
import resource  # here, not when needed: out of file descriptors, its .so cannot be loaded
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgenas.errors import EdgenasError, InputError, OutputError

#: the process (or the system) has no file descriptor left: ``ulimit -n``, not the input nor a bug
FD_ERRNOS = {errno.EMFILE, errno.ENFILE}
#: write failures that are the user's environment, not a bug
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
               errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, *FD_ERRNOS}
FD_HINT = "raise the limit on open files (ulimit -n), or close other programs"


def out_of_fds(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` of ``FD_ERRNOS`` behind ``exc`` (itself, what it was raised from or during, or its
    ``fd_cause``: kept through a ``raise ... from None``), if any: a reader that turned every ``OSError`` into
    "cannot read ..." (exit 2, a 400) blamed the input."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in FD_ERRNOS:
            return exc
        if isinstance(getattr(exc, "fd_cause", None), OSError):
            return exc.fd_cause  # type: ignore[union-attr]
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def fds_exhausted(share: float = 0.75) -> OSError | None:
    """For a library error that names no errno (SQLite's "unable to open database file"): an ``FD_ERRNOS``
    error if a file cannot be opened now, or if ``share`` of the process's limit of open files is in use (the
    failure happened a moment ago; other requests of a busy server may have closed a few since: checking for
    a free one alone called half of them a permissions problem). Else None."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        used = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    except OSError as exc:
        return exc if exc.errno in FD_ERRNOS else None
    if soft != resource.RLIM_INFINITY and used >= share * soft:
        return OSError(errno.EMFILE, f"Too many open files ({used} of {soft} in use)")
    return None


def fd_error(exc: OSError) -> OutputError:
    """One ``OutputError`` (exit 6) for running out of file descriptors."""
    named = exc.filename and not isinstance(exc.filename, int)
    return OutputError("too many open files" + (f" (opening {exc.filename})" if named else ""), hint=FD_HINT)


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    from edgenas.safenames import check_utf8_path

    p = Path(path)
    check_utf8_path(p, flag)
    try:  # a lookup that fails (a name too long) is this output's: said here, not taken for an input's
        if p.exists() and not p.is_dir():
            raise OutputError(f"{flag} {p} is an existing file, not a folder", hint="choose a folder path")
        a = p
        while not a.exists() and a != a.parent:
            if a.is_symlink():  # to nothing, or a loop: absent to exists(), mkdir would say a bare "File exists"
                what = f"{flag} {a}" if a == p else f"{flag} {p}: {a}"
                raise OutputError(f"{what} is a symbolic link to a missing target or a link loop",
                                  hint="remove or fix the link, or choose another folder")
            a = a.parent
        if not a.is_dir():
            raise OutputError(f"{flag} {p} lies under {a}, which is a file", hint="choose a folder path")
    except OSError as exc:
        raise disk_error(exc, f"{flag} folder {p}") from None
    if not os.access(a, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {p}: folder {a} is not writable", hint="choose a folder you can write to")
    return p


def check_out_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A file to write: its folder (made if missing) must not lie under a file, a dangling link or an
    unwritable folder (``mkdir`` said only "File exists" of a --out under a file)."""
    p = Path(path)
    a = p.parent
    try:
        while not a.exists() and not a.is_symlink() and a != a.parent:
            a = a.parent
        if a.exists() and not a.is_dir():
            raise OutputError(f"{flag} {p} lies under {a}, which is a file", hint="choose a path in a folder")
    except OSError as exc:
        raise disk_error(exc, f"{flag} {p}") from None
    check_out_dir(p.parent, flag)
    return p


def _remedy(exc: OSError) -> str:
    """What to do about a write failure of ``DISK_ERRNOS``: only a full disk is cured by freeing space (a
    folder named like the file a run writes was told to free some space)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space"
    if exc.errno in FD_ERRNOS:
        return FD_HINT
    if exc.errno == errno.EISDIR:
        return "a folder stands where the file goes: move it away"
    if exc.errno == errno.ENOTDIR:
        return "a file stands where a folder goes: move it away"
    return "check the path and its permissions"


def disk_error(exc: OSError, what: str, hint: str | None = None, *, then: str | None = None) -> OutputError:
    """One ``OutputError`` for a failed write; ``hint`` replaces the remedy, ``then`` follows it (e.g. how
    to resume)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    reason = "the disk is full (or the file size limit was reached)" if full else (exc.strerror or str(exc))
    named = exc.filename and not isinstance(exc.filename, int)  # an int is a file descriptor, no name
    return OutputError(f"cannot write {what}: {reason}" + (f" ({exc.filename})" if named else ""),
                       hint=hint or f"{_remedy(exc)}, then {then or 'run it again'}")


def escaped_error(exc: OSError) -> EdgenasError:
    """The user error for an ``OSError`` of ``DISK_ERRNOS`` that no caller translated (``cli.main``). A name
    longer than the file system allows (ENAMETOOLONG) is an input's: outputs are looked at before anything is
    written (``check_out_dir``, ``check_out_file``), which say so themselves, so the lookup that escaped was of
    a path given to be read (``measure local`` of a 256-character name said "cannot write", exit 6); so is a
    permission-denied one whose path cannot be looked up now (``lookup_denied``). Else the disk's or the
    environment's."""
    if exc.errno in FD_ERRNOS:
        return fd_error(exc)
    named = exc.filename and not isinstance(exc.filename, int)
    if exc.errno == errno.ENAMETOOLONG and named:
        return InputError(f"cannot read {exc.filename}: {exc.strerror or 'File name too long'}",
                          hint="check the path: it, or a name in it, is longer than the file system allows")
    if exc.errno in (errno.EACCES, errno.EPERM) and named and lookup_denied(exc.filename):
        return InputError(f"cannot read {exc.filename}: permission denied (a folder on its path may not be "
                          "searched by this user)",
                          hint="check the path; give this user read and search permission (r and x) on each folder "
                               "on it, or copy the file somewhere it can read")
    return disk_error(exc, exc.filename or "a file")


def lookup_denied(path: str | os.PathLike) -> bool:
    """Whether even looking ``path`` up is refused for want of permission: a folder on its path this user may not
    search (no x). A lookup (``exists``, ``is_dir``, ``is_symlink``) of an input in such a folder escaped as a
    ``PermissionError`` and was told "cannot write" (exit 6); outputs are looked at before anything is written
    (``check_out_dir``, ``check_out_file``), which say so themselves. A path that can be looked up was refused
    something else (a write): that stays the disk's."""
    try:
        os.lstat(path)
    except PermissionError:
        return True
    except (OSError, ValueError):
        return False
    return False


@contextmanager
def new_out_dir(path: str | os.PathLike, flag: str = "--out", leftovers: tuple[str, ...] = ()) -> Iterator[Path]:
    """Create ``path`` for a command's output; on failure remove what was created if empty again, or holding
    only files named in ``leftovers`` (a search's released run lock: a full disk left a folder of just it)."""
    p = check_out_dir(path, flag)
    created: list[Path] = []
    a = p
    while not a.exists() and a != a.parent:
        created.append(a)
        a = a.parent
    try:
        for d in reversed(created):
            d.mkdir()
    except OSError as exc:
        _remove_empty(created)
        raise disk_error(exc, f"{flag} folder {p}") from None
    try:
        yield p
    except BaseException:
        if created and leftovers:
            try:
                if {e.name for e in os.scandir(p)} <= set(leftovers):
                    for name in leftovers:
                        (p / name).unlink(missing_ok=True)
            except OSError:
                pass
        _remove_empty(created)
        raise


def _remove_empty(created: list[Path]) -> None:
    for d in created:  # deepest first
        try:
            d.rmdir()
        except FileNotFoundError:  # never made: the mkdir of it or of a folder above it failed
            continue
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:  # never made either (--out x/NAME: x was left behind)
                continue
            return
