"""``JsonlStore``: an append-only journal, one measurement per line (readable, greppable, diffable).

Writers take an exclusive ``flock`` on the file, check the id is new, append one line and ``fsync``
before releasing it, so threads and processes can share the file. A crash in the middle of a write
leaves at most one incomplete last line; readers ignore it and the next writer removes it (it never
held a complete record). Any other malformed line is an error naming the file and the line.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edgenas.errors import InputError
from edgenas.limits import TooDeep, loads_json
from edgenas.store.base import MeasurementStore, duplicate, matches
from edgenas.store.record import Measurement


class JsonlStore(MeasurementStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def _parse(self, data: bytes) -> tuple[list[Measurement], int]:
        """Records, and the byte length of the complete part (a torn last line excluded)."""
        out: list[Measurement] = []
        complete = data.rfind(b"\n") + 1
        tail = data[complete:]
        lines = data[:complete].split(b"\n")[:-1]
        if tail.strip():
            try:  # a whole record whose newline is missing is still a record
                loads_json(tail)
                lines.append(tail)
                complete = len(data)
            except ValueError:  # bad JSON, bad UTF-8, a value no record holds, too deep (limits.UnreadableValue)
                pass  # torn write from a crash: ignored
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = loads_json(line)
            except TooDeep:  # deeper than json.loads reads; from_dict refuses what is less deep
                raise InputError(f"{self.path}: line {no} is nested too deeply",
                                 hint="fix or remove that line") from None
            except ValueError as exc:  # bad JSON, bad UTF-8, a value no record holds (limits.UnreadableValue)
                raise InputError(f"{self.path}: line {no} is not valid JSON ({exc})",
                                 hint="fix or remove that line") from None
            out.append(Measurement.from_dict(obj, where=f"{self.path} line {no}"))
        return out, complete

    def add(self, m: Measurement) -> None:
        line = (m.to_json() + "\n").encode("utf-8")
        with open(self.path, "r+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                data = fh.read()
                records, complete = self._parse(data)
                if any(r.id == m.id for r in records):
                    raise duplicate(m)
                if complete < len(data):  # drop a torn tail left by a crashed writer
                    fh.truncate(complete)
                elif data and not data.endswith(b"\n"):
                    line = b"\n" + line
                fh.seek(0, os.SEEK_END)
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def list(self, device=None, space=None, fingerprint_hash=None) -> list[Measurement]:
        with open(self.path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                data = fh.read()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        records, _ = self._parse(data)
        return [m for m in records if matches(m, device, space, fingerprint_hash)]

    def __repr__(self) -> str:
        return f"JsonlStore({str(self.path)!r})"
