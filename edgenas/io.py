"""Atomic file writes, hashing and strict JSON/TOML reading with clear errors.

The atomic write and the hashes are ``exporters._io``'s (stdlib, shipped to devices too); the agent
keeps its own copy because it imports nothing of the host.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import stat
import tomllib
from collections import Counter
from pathlib import Path
from typing import IO, Any

from edgenas.errors import InputError
from edgenas.limits import MAX_JSON_BYTES, over_limit, read_table_bytes
from exporters._io import atomic_write_bytes, sha256_bytes, sha256_file  # one copy for the host (and the device)

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "open_log_for_append", "read_csv",
           "read_json", "read_log_bytes", "read_toml", "sha256_bytes", "sha256_file"]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, compact: bool = False) -> Path:
    """``obj`` as JSON, indented, or without any whitespace (``compact``, for large records)."""
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def _no_bom(data: bytes, what: str, path: Path) -> None:
    """A JSON or TOML file that starts with a UTF-8 byte-order mark (Windows editors write one) is refused
    with that said: the parsers' own errors were "Invalid statement (at line 1, column 1)" (tomllib) and
    "Unexpected UTF-8 BOM (decode using utf-8-sig)" (json). (A CSV table's BOM is skipped: spreadsheets
    export one, and it is no column name.)"""
    if data.startswith(b"\xef\xbb\xbf"):
        raise InputError(f"{what} {path} starts with a byte-order mark (BOM)",
                         hint="save it as UTF-8 without a BOM (the encoding 'UTF-8', not 'UTF-8 with BOM')")


def read_json(path: str | os.PathLike, what: str = "JSON file", *, limit: int | None = None) -> Any:
    """Read JSON; a missing, oversized, too deeply nested or malformed file is one ``InputError``."""
    from edgenas.limits import MAX_JSON_BYTES, loads_json_limited, read_bytes_limited

    path = Path(path)
    data = read_bytes_limited(path, what, limit or MAX_JSON_BYTES)
    _no_bom(data, what, path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"cannot read {what} {path}: not UTF-8 text") from None
    return loads_json_limited(text, f"{what} {path}", unique_keys=True)


def read_toml(path: str | os.PathLike, what: str = "TOML file") -> dict[str, Any]:
    from edgenas.limits import check_depth, read_bytes_limited

    path = Path(path)
    data = read_bytes_limited(path, what)
    _no_bom(data, what, path)
    try:
        return check_depth(tomllib.loads(data.decode("utf-8")), f"{what} {path}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed {what} {path}: {exc}", hint="fix the TOML syntax") from None
    except RecursionError:
        raise InputError(f"malformed {what} {path}: nested too deeply") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's limit on int parsing)
        raise InputError(f"{what} {path}: a number too large to read", hint="this is not an edgenas record") from None


def read_csv(path: str | os.PathLike, what: str) -> tuple[list[str], list[list[str]], str]:
    """A CSV table's header, its rows (lists of strings; a blank line is an empty one, so that a row's line
    number is its index + 2) and the SHA-256 of its bytes.

    Read through ``limits.read_table_bytes`` (a regular file of at most ``EDGENAS_MAX_INPUT_MB``); a file
    that is not UTF-8 CSV, or whose column names are not unique and non-empty, is one ``InputError``. An
    empty file gives an empty header: which columns a table needs is the caller's to say."""
    path = Path(path)
    data = read_table_bytes(path, what)
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")  # a BOM (spreadsheet exports) is not a column name
        del data
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None) or []
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{what} {path} is not a UTF-8 CSV file ({exc.__class__.__name__}: {str(exc)[:120]})",
                         hint="check the --table path") from None
    if len(set(header)) != len(header) or any(not c.strip() for c in header):
        twice = next((c for c, n in Counter(header).items() if n > 1), "")
        raise InputError(f"{what} {path}: column names must be unique and non-empty"
                         + (f" ({twice[:80]!r} appears twice)" if twice.strip() else ""),
                         hint="rename or remove the repeated or empty column")
    return header, rows, digest


_LOG_DAMAGED = "the folder is damaged; move the file aside"
#: an append-only log may hold far more than a record: a million evaluations are about 1 GB
MAX_LOG_BYTES = 32 * MAX_JSON_BYTES


def _link_error(path: Path, exc: OSError, *, reading: bool = False) -> Exception:
    """The error of opening a log. ``reading``: opened to read (``read_log_tail``), where a refused permission is
    the input's (``report RUN`` of a log this user may not read was told "cannot write the log", exit 6)."""
    if exc.errno == errno.ELOOP:
        return InputError(f"{path} is a symbolic link; a log is a file of its own folder",
                          hint="replace the link with the file itself, or use another folder")
    if reading and exc.errno in (errno.EACCES, errno.EPERM):
        return InputError(f"cannot read the log {path}: permission denied",
                          hint="give this user read permission on it, or run as the user who wrote it")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        from edgenas.outdirs import disk_error  # the file is fine: its permissions or its disk are not

        return disk_error(exc, f"the log {path}")
    return InputError(f"cannot open {path}: {exc.strerror or exc}", hint=_LOG_DAMAGED)


def read_log_bytes(path: Path) -> bytes | None:
    """The bytes of an append-only log (``evaluations.jsonl``, a device's ``verified.jsonl``); None when
    there is none. A link, a device file (``/dev/zero`` never ends) or a file over ``MAX_LOG_BYTES`` is
    one ``InputError`` before anything is read."""
    got = read_log_tail(path, 0)
    return None if got is None else got[0]


def read_log_tail(path: Path, offset: int) -> tuple[bytes, os.stat_result] | None:
    """The bytes of the log at ``path`` from byte ``offset`` on (none when it is shorter), and its ``stat``
    (which file it is: a reader that remembers where it stopped goes on from there only in the same file);
    checked as ``read_log_bytes`` checks it, the size limit on the whole file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _link_error(path, exc, reading=True) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked before fdopen, which refuses a folder with a bare IsADirectoryError
        os.close(fd)
        raise InputError(f"{path} is not a regular file", hint=_LOG_DAMAGED)
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > MAX_LOG_BYTES:
            raise InputError(f"{path} is {over_limit(st.st_size, MAX_LOG_BYTES)} for logs",
                             hint="check the folder; EDGENAS_MAX_INPUT_MB raises the limit (logs get 32 times it)")
        if offset:
            fh.seek(offset)
        return fh.read(), st


class _LogFile(io.TextIOWrapper):
    """A text log whose file is cut to ``whole`` bytes before its first write (``open_log_for_append``)."""

    whole: int | None = None

    def write(self, s: str) -> int:
        if self.whole is not None:
            self.flush()
            os.ftruncate(self.fileno(), self.whole)
            self.whole = None
        return super().write(s)


def open_log_for_append(path: Path, *, whole: int | None = None) -> IO[str]:
    """``path`` opened to append lines, created if missing; never through a link (a planted
    ``evaluations.jsonl -> /elsewhere`` would have the search write outside its folder). ``whole``: the
    length of the file's complete lines, when a torn last line (kill -9) follows; it is cut off just before
    the first write, so a resume refused before anything is written leaves the file as it was."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise _link_error(path, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path} is not a regular file", hint=_LOG_DAMAGED)
    log = _LogFile(io.BufferedWriter(io.FileIO(fd, "a")), encoding="utf-8")
    log.whole = whole
    return log
