"""LUT files on the host: ``luts/DEVICE/SPACE-FPHASH.json``, one per (device, space, fingerprint).

Replacing a table moves the previous file to ``luts/DEVICE/history/`` first (tables are never
deleted), and the new one is written atomically, so a crash at any point leaves a valid table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgenas.errors import InputError
from edgenas.io import sha256_file
from edgenas.latency.lut import Lut
from edgenas.safenames import check_hash, check_name


def lut_filename(space: str, fingerprint_hash: str) -> str:
    return f"{space}-{fingerprint_hash[:12]}.json"


@dataclass(frozen=True)
class LutStore:
    root: Path

    def device_dir(self, device: str) -> Path:
        return Path(self.root) / check_name(device, "device name")

    def path_for(self, device: str, space: str, fingerprint_hash: str) -> Path:
        """Every part is checked: a device's answers never become a path outside ``luts/DEVICE/``."""
        check_name(space, "space name")
        check_hash(fingerprint_hash)
        return self.device_dir(device) / lut_filename(space, fingerprint_hash)

    def find(self, device: str, space: str, fingerprint_hash: str) -> Lut | None:
        path = self.path_for(device, space, fingerprint_hash)
        return Lut.load(path) if path.exists() else None

    def list(self, device: str, space: str | None = None) -> list[Path]:
        d = self.device_dir(device)
        if not d.is_dir():
            return []
        pat = f"{space}-*.json" if space else "*.json"
        return sorted(p for p in d.glob(pat) if p.is_file() and _space_of(p) == (space or _space_of(p)))

    def latest(self, device: str, space: str) -> Lut:
        """The newest table for (device, space), whatever its fingerprint; clear error if none."""
        paths = self.list(device, space)
        if not paths:
            raise InputError(f"no LUT for device '{device}' and space '{space}' in {self.root}",
                             hint=f"run: edgenas profile {device} --space {space}")
        paths.sort(key=lambda p: p.stat().st_mtime)
        return Lut.load(paths[-1])

    def save(self, lut: Lut) -> Path:
        """Keep the previous table with the same name in ``history/``, then write atomically."""
        path = self.path_for(lut.device, lut.space, lut.fingerprint_hash)
        Lut.from_dict(lut.to_dict())  # validate before touching anything
        if path.exists():
            hist = path.parent / "history"
            hist.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
            # named by content too: two tables replaced within one second both stay in the history
            target = hist / f"{path.stem}-{stamp}-{sha256_file(path)[:12]}.json"
            os.link(path, target) if not target.exists() else None
        return lut.save(path)


def _space_of(path: Path) -> str:
    return path.stem.rsplit("-", 1)[0]
