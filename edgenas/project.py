"""Where a project keeps its files.

A project is a folder holding ``profiles/`` (device profiles, fleet inventory), ``luts/`` (latency
tables, one per device, space and fingerprint), ``known_hosts`` (SSH host keys the user trusted),
``measurements/`` and ``runs/``; host-side state (agent builds, the per-block ONNX export cache, the
``local`` device's work dir) lives in ``.edgenas/``. The root is ``$EDGENAS_PROJECT`` or the current
directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Project:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def default(cls) -> "Project":
        return cls(Path(os.environ.get("EDGENAS_PROJECT") or Path.cwd()).resolve())

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    @property
    def luts_dir(self) -> Path:
        return self.root / "luts"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def measurements_dir(self) -> Path:
        return self.root / "measurements"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def state_dir(self) -> Path:
        """Host-side caches and the local device's work dir (ignored by git)."""
        return self.root / ".edgenas"

    @property
    def block_cache(self) -> Path:
        return self.state_dir / "blocks"

    @property
    def local_workdir(self) -> Path:
        return self.local_workdir_of("local")

    def local_workdir_of(self, device: str) -> Path:
        """The agent's work dir of a device on this machine (``transport = "local"``): one folder per
        device, so two such devices never see each other's tables or measurements."""
        from edgenas.safenames import NAME_RE

        if not NAME_RE.match(device):
            raise ValueError(f"not a device name: {device!r}")
        return self.state_dir / "devices" / device
