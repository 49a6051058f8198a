"""Fleet status: for each device, in parallel, whether it answers and whether its LUTs are current."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from edgenas.devices.session import open_session
from edgenas.errors import EdgenasError
from edgenas.latency.store import LutStore
from edgenas.project import Project


@dataclass(frozen=True)
class DeviceStatus:
    device: str
    reachable: bool
    agent_version: str | None = None
    fingerprint_hash: str | None = None
    luts: dict[str, str] = field(default_factory=dict)  # space -> fresh | stale | missing
    last_calibration: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def device_status(project: Project, profile: Any, spaces: list[str]) -> DeviceStatus:
    store = LutStore(project.luts_dir)
    try:
        with open_session(project, profile) as s:
            info = s.info(timeout_s=60)
    except EdgenasError as exc:
        return DeviceStatus(profile.name, False, error=str(exc))
    fp = info.fingerprint_hash
    try:
        store.remember_fingerprint(profile.name, fp)  # also checks the device's answer is a hex hash
    except EdgenasError as exc:
        return DeviceStatus(profile.name, False, error=f"device '{profile.name}': {exc}")
    luts, cal = {}, {}
    for sp in spaces:
        current = store.find(profile.name, sp, fp) if store.path_for(profile.name, sp, fp).exists() else None
        luts[sp] = "fresh" if current else ("stale" if store.list(profile.name, sp) else "missing")
        if current and current.calibration:
            cal[sp] = {"n_points": current.calibration.n_points, "fitted_at": current.calibration.fitted_at}
    return DeviceStatus(profile.name, True, info.agent_version or None, fp, luts, cal)


def fleet_status(project: Project, profiles: list[Any], spaces: list[str], *, concurrency: int = 8
                 ) -> list[DeviceStatus]:
    if not profiles:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(profiles))) as pool:
        return list(pool.map(lambda p: device_status(project, p, spaces), profiles))
