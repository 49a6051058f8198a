"""LUTs between a device and the host: what the agent holds, and copying them into the project's ``luts/``
(hash-checked, validated)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgenas.errors import DeviceError, InputError
from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project


def device_luts(project: Project, device: str) -> list[dict[str, Any]]:
    """The LUTs the agent holds on ``device``: ``[{"name", "size", "sha256"}, ...]``."""
    from edgenas.devices.session import open_session

    with open_session(project, device) as s:
        answer = s.call("lut.list", {}, timeout_s=60)
    if not isinstance(answer, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                               for e in answer):
        raise DeviceError(device, "the agent's lut.list answer is not a list of named tables",
                          hint="reinstall the agent (it is replaced when its hash differs)")
    return answer


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
