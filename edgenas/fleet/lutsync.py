"""Copy LUTs the agent holds on a device into the project's ``luts/`` (hash-checked, validated)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgenas.errors import DeviceError, InputError
from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project


def pull_luts(project: Project, device: str, *, name: str | None = None) -> list[dict[str, Any]]:
    from edgenas.devices.session import open_session

    store = LutStore(project.luts_dir)
    pulled = []
    with open_session(project, device) as s:
        names = [e["name"] for e in s.call("lut.list", {}, timeout_s=60)]
        if name is not None:
            if name not in names:
                raise InputError(f"device '{s.device}' holds no LUT named '{name}'",
                                 hint=f"it holds: {', '.join(names) or 'none'}")
            names = [name]
        for n in names:
            meta = s.call("lut.get", {"name": n}, timeout_s=60)
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / n
                got = s.transport.get_file(meta["path"], local)
                if got != meta["sha256"]:
                    raise DeviceError(s.device, f"LUT {n} arrived corrupted", hint="retry the pull")
                lut = Lut.load(local)
            path = store.save(lut)
            pulled.append({"name": n, "path": str(path), "sha256": got})
    return pulled
