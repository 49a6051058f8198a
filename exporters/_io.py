"""Atomic writes and hashing (stdlib only, Python 3.8 compatible; shipped to devices)."""

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import (single-threaded): os.umask has no read-only form
    os.umask(mask)
    return mask


#: the mode ``open(path, "w")`` would give a new file (mkstemp's own is 0600: reports and exports that
#: others should read came out private)
NEW_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    A reader sees either the old file or the complete new one, never a partial write; on any
    failure the temp file is removed and the old file is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        try:  # a replaced file keeps its mode; a new one gets the umask's, as open() would give it
            mode = os.stat(str(path)).st_mode & 0o7777
        except OSError:
            mode = NEW_FILE_MODE
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, str(path))
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            # named after the file being written, not its hidden temp file or nothing (a full disk's
            # write() names no file): the error the user reads says which file could not be written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(str(path), "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
