"""LUT files on the host: ``luts/DEVICE/SPACE-FPHASH.json``, one per (device, space, fingerprint).

Replacing a table moves the previous file to ``luts/DEVICE/history/`` first (tables are never
deleted), and the new one is written atomically, so a crash at any point leaves a valid table.

**One lookup policy for every command** (``LutStore.choose``): with the device's current fingerprint
(a command connected to it: deploy, calibrate, refresh) the table of that fingerprint, or an error;
without one (search, offline) the table of the device's *last known* fingerprint (recorded in
``.edgenas/fingerprints/DEVICE.json`` whenever edgenas talks to the device), and when that one has no table,
the newest table by its own ``created_at`` (never by file time) with a warning that deploy will not
use it. The choice says which table it is (fingerprint, age) so the CLI can print it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgenas.errors import InputError
from edgenas.io import read_json, sha256_file
from edgenas.latency.lut import Lut, future_dated, utc
from edgenas.safenames import HASH_RE, LUT_FILE_RE, NAME_RE, check_hash, check_name


def lut_filename(space: str, fingerprint_hash: str) -> str:
    return f"{space}-{fingerprint_hash[:12]}.json"


@dataclass(frozen=True)
class LutStore:
    root: Path

    def device_dir(self, device: str) -> Path:
        return Path(self.root) / check_name(device, "device name")

    def devices(self) -> list[str]:
        """The devices with a folder here, sorted; a folder no device could have (``.git``, "old tables")
        is passed over, as ``check_name`` would refuse its name."""
        root = Path(self.root)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def path_for(self, device: str, space: str, fingerprint_hash: str) -> Path:
        """Every part is checked: a device's answers never become a path outside ``luts/DEVICE/``."""
        check_name(space, "space name")
        check_hash(fingerprint_hash)
        return self.device_dir(device) / lut_filename(space, fingerprint_hash)

    def find(self, device: str, space: str, fingerprint_hash: str) -> Lut | None:
        path = self.path_for(device, space, fingerprint_hash)
        return self.load(path, device) if path.exists() else None

    @staticmethod
    def load(path: Path, device: str) -> Lut:
        """The table at ``path`` (under ``luts/DEVICE/``), refused unless it is the one that place holds:
        its device, space and fingerprint are those of its folder and name. A table of another device put
        there was used as ``device``'s, and the run recorded a path of the other device that did not exist."""
        lut = Lut.load(path)
        if lut.device != device or lut_filename(lut.space, lut.fingerprint_hash) != Path(path).name:
            raise InputError(f"LUT {path} holds device '{lut.device}', space '{lut.space}' and fingerprint "
                             f"{lut.fingerprint_hash[:12]}, which is not the table that lies there",
                             hint=f"a table of device D and space S lies in luts/D/S-FPHASH12.json; move it there "
                                  f"or re-profile: edgenas profile {device} "
                                  f"--space {Path(path).name.rsplit('-', 1)[0]}")
        return lut

    def list(self, device: str, space: str | None = None) -> list[Path]:
        d = self.device_dir(device)
        if not d.is_dir():
            return []
        pat = f"{space}-*.json" if space else "*.json"
        return sorted(p for p in d.glob(pat) if p.is_file() and LUT_FILE_RE.match(p.name)
                      and _space_of(p) == (space or _space_of(p)))

    def require_any(self, device: str, space: str) -> list[Path]:
        """``list(device, space)``, or one ``InputError`` saying to profile the device when it is empty."""
        paths = self.list(device, space)
        if not paths:
            raise InputError(f"no LUT for device '{device}' and space '{space}' in {self.root}",
                             hint=f"run: edgenas profile {device} --space {space}")
        return paths

    def latest(self, device: str, space: str) -> Lut:
        """The table ``choose`` picks without a current fingerprint (kept for older callers)."""
        return self.choose(device, space).lut

    # ------------------------------------------------------------------ the one lookup policy
    def fingerprint_record(self, device: str) -> Path:
        """Host state next to ``luts/``: ``.edgenas/fingerprints/DEVICE.json`` (the project's state dir)."""
        return Path(self.root).parent / ".edgenas" / "fingerprints" / f"{check_name(device, 'device name')}.json"

    def remember_fingerprint(self, device: str, fingerprint_hash: str) -> None:
        """Record the fingerprint the device reported just now (its *last known* one)."""
        from edgenas.io import atomic_write_json

        check_hash(fingerprint_hash)
        path = self.fingerprint_record(device)
        if self._recorded_fingerprint(path) == fingerprint_hash:
            return
        atomic_write_json(path, {"fingerprint_hash": fingerprint_hash, "seen_at": time.time()})

    def last_fingerprint(self, device: str) -> str | None:
        return self._recorded_fingerprint(self.fingerprint_record(device))

    @staticmethod
    def _recorded_fingerprint(path: Path) -> str | None:
        """The hash a fingerprint record holds; None when it is absent or damaged (a FIFO, too large,
        not JSON, not a hash)."""
        if not path.exists():
            return None
        try:
            rec = read_json(path, "fingerprint record")
        except InputError:
            return None
        fp = rec.get("fingerprint_hash") if isinstance(rec, dict) else None
        return fp if isinstance(fp, str) and HASH_RE.match(fp) else None

    def predictor(self, device: str, space: Any, note: Callable[[str], None] | None = None) -> Any:
        """A search's latency model of ``device`` for ``space`` (a space object): a ``LatencyPredictor`` of the
        table ``choose`` picks, whose ``notes`` are said through ``note`` first."""
        from edgenas.latency.predictor import LatencyPredictor

        choice = self.choose(device, space.name)
        for n in choice.notes() if note else ():
            note(n)
        return LatencyPredictor(choice.lut, space)

    def choose(self, device: str, space: str, fingerprint_hash: str | None = None,
               fingerprint: Mapping[str, Any] | None = None) -> "LutChoice":
        """The table every command uses for (device, space); see the module docstring. Given the current
        ``fingerprint`` as well, an error for a missing table says what changed since the newest one."""
        if fingerprint_hash is not None:
            lut = self.find(device, space, fingerprint_hash)
            if lut is None:
                raise InputError(f"no LUT for device '{device}', space '{space}' and the device's current "
                                 f"fingerprint {fingerprint_hash[:12]}",
                                 hint=self.why_none(device, space, fingerprint))
            return LutChoice(lut, self.path_for(device, space, fingerprint_hash), fingerprint_hash)
        known = self.last_fingerprint(device)
        if known is not None and self.path_for(device, space, known).exists():
            path = self.path_for(device, space, known)
            return LutChoice(self.load(path, device), path, known)
        paths = self.require_any(device, space)
        luts = [(self.load(p, device), p) for p in paths]
        lut, path = max(luts, key=lambda lp: (lp[0].created_at, lp[1].name))
        return LutChoice(lut, path, known)

    def newest(self, device: str, space: str) -> Lut | None:
        """The newest readable table of (device, space) by its own ``created_at``; None when there is none."""
        luts = []
        for p in self.list(device, space):
            try:
                luts.append((self.load(p, device), p.name))
            except InputError:  # a damaged table says nothing about what changed
                continue
        return max(luts, key=lambda lp: (lp[0].created_at, lp[1]))[0] if luts else None

    def why_none(self, device: str, space: str, fingerprint: Mapping[str, Any] | None) -> str:
        """A hint for a device whose current fingerprint has no table: none was ever made, edgenas's agent
        changed (an upgrade: the agent's version is part of the fingerprint), or the device did (what)."""
        run = f"run: edgenas profile {device} --space {space}"
        old = self.newest(device, space)
        if old is None:
            return f"the device has no table for this space yet; {run}"
        changed = fingerprint_changes(old.fingerprint, fingerprint) if fingerprint is not None else []
        if changed == ["software.agent_version"]:
            return ("only edgenas's device agent changed since the table was made (an edgenas upgrade: the agent's "
                    f"version is part of the fingerprint, so its tables are re-measured); {run}")
        what = f" ({', '.join(changed)})" if changed else ""
        return f"the device changed since it was profiled{what}; {run}"

    def check_writable(self, device: str) -> None:
        """Refuse (one ``InputError``, nothing written) when ``luts/``, ``luts/DEVICE/``, its ``history/`` or
        a table file in it is a symbolic link or lies outside the project: a planted link would have a save
        write the new table, or move the old one, outside the project. Commands call it before their work
        (a profile takes minutes), and ``save`` again before writing."""
        d = self.device_dir(device)
        project_root = Path(self.root).parent.resolve()
        for p in (Path(self.root), d, d / "history"):
            check_inside(p, project_root, "LUT folder")
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if LUT_FILE_RE.match(p.name):
                    check_inside(p, project_root, "LUT file")

    def save(self, lut: Lut, *, keep_previous: bool = True) -> Path:
        """Keep the previous table with the same name in ``history/`` (unless ``keep_previous`` is false: a
        calibration refit, which changes nothing the measurement database cannot fit again), then write
        atomically. Saving the very table the file holds changes nothing (a ``lut pull`` of an unchanged
        table put a copy of it in the history every time)."""
        path = self.path_for(lut.device, lut.space, lut.fingerprint_hash)
        data = lut.to_dict()
        Lut.from_dict(data)  # validate before touching anything
        self.check_writable(lut.device)
        if path.exists() and _holds(path, data):
            return path
        if path.exists() and keep_previous:
            hist = path.parent / "history"
            hist.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
            # named by content too: two tables replaced within one second both stay in the history
            target = hist / f"{path.stem}-{stamp}-{sha256_file(path)[:12]}.json"
            os.link(path, target) if not target.exists() else None
        return lut.save(path)


def fingerprint_changes(old: Mapping[str, Any], new: Mapping[str, Any], *, most: int = 6) -> list[str]:
    """The dotted names of the fingerprint fields that differ (``software.agent_version``,
    ``performance.nvpmodel``), at most ``most`` of them (then ``...``). Names are checked: they come from a
    device, so an odd one is shown as ``?``."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        elif a != b:
            out.append(prefix if _FIELD_RE.fullmatch(prefix) else "?")

    walk(old, new, "")
    return out if len(out) <= most else [*out[:most], "..."]


_FIELD_RE = re.compile(r"[A-Za-z0-9_.\-]{1,120}")


def _holds(path: Path, data: dict) -> bool:
    """Whether the table file at ``path`` holds exactly ``data`` (as JSON; an unreadable file does not)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(data))
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class LutChoice:
    """The table chosen for a command, and what the device last reported."""

    lut: Lut
    path: Path
    last_known: str | None  # the device's last known fingerprint hash (None: never recorded)

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.lut.created_at)

    @property
    def current(self) -> bool:
        """False when the device last reported another fingerprint than the table's."""
        return self.last_known is None or self.last_known == self.lut.fingerprint_hash

    def describe(self) -> str:
        made = f"made {_age(self.age_s)} ago" if self.lut.created_at > 0 else "made at an unknown time"  # imported
        if future_dated(self.lut.created_at):  # its age would read 0 s
            made = f"dated {utc(self.lut.created_at)}, in the future"
        return f"LUT for {self.lut.device}: {self.path.name} (fingerprint {self.lut.fingerprint_hash[:12]}, {made})"

    def notes(self) -> list[str]:
        """What a command that predicts with this table says first (``warning: `` lines in yellow): which table,
        a device that last reported another fingerprint, dates in the future."""
        return ([self.describe()] + (["warning: " + self.warning] if self.warning else [])
                + ["warning: " + w for w in self.lut.clock_warnings()])

    @property
    def warning(self) -> str | None:
        if self.current:
            return None
        return (f"device '{self.lut.device}' last reported fingerprint {self.last_known[:12]}, which has no "  # type: ignore[index]
                f"'{self.lut.space}' table: using {self.lut.fingerprint_hash[:12]}; deploy will not predict with "
                f"it (run: edgenas profile {self.lut.device} --space {self.lut.space})")

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "fingerprint_hash": self.lut.fingerprint_hash, "age_s": round(self.age_s, 1),
                "last_known_fingerprint": self.last_known, "current": self.current}


def _age(s: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.1f} {unit}"
    return f"{s:.0f} s"


def check_inside(path: Path, project_root: Path, what: str) -> None:
    """``path`` (which need not exist) is no symbolic link and resolves inside ``project_root`` (a link loop
    resolves nowhere); else one ``InputError`` naming it as ``what``. LUT files and few-shot records share it."""
    try:
        outside = path.is_symlink() or (path.exists() and not path.resolve().is_relative_to(project_root))
    except (OSError, RuntimeError):  # a link loop
        outside = True
    if outside:
        raise InputError(f"the {what} {path} is a symbolic link or lies outside the project {project_root}",
                         hint="replace the link with a real folder or file inside the project; nothing was written")


def _space_of(path: Path) -> str:
    return path.stem.rsplit("-", 1)[0]
