"""Fleet status: for each device, in parallel, whether it answers and whether its LUTs are current."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from edgenas.devices.session import open_session
from edgenas.errors import EdgenasError, InputError
from edgenas.latency.store import LutStore
from edgenas.project import Project
from edgenas.textsafe import one_line


@dataclass(frozen=True)
class DeviceStatus:
    device: str
    reachable: bool
    agent_version: str | None = None
    fingerprint_hash: str | None = None
    luts: dict[str, str] = field(default_factory=dict)  # space -> fresh | stale | missing
    last_calibration: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    #: the device is not in the power mode its profile expects, or reports none
    power_mode_note: str | None = None

    def __post_init__(self) -> None:  # a device's error text can be megabytes: a row keeps one line of it
        object.__setattr__(self, "error", one_line(self.error))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def device_status(project: Project, profile: Any, spaces: list[str]) -> DeviceStatus:
    from edgenas.spaces import get_space

    store = LutStore(project.luts_dir)
    try:
        with open_session(project, profile) as s:
            info = s.info()  # within the profile's call_timeout_s, as every other call
    except EdgenasError as exc:
        return DeviceStatus(profile.name, False, error=str(exc))
    except Exception as exc:  # a bug on one device must not take the others' rows down (as refresh_device)
        return DeviceStatus(profile.name, False, error=f"internal error {type(exc).__name__}: {exc}")
    fp = info.fingerprint_hash
    try:
        store.remember_fingerprint(profile.name, fp)  # also checks the device's answer is a hex hash
    except EdgenasError as exc:
        return DeviceStatus(profile.name, False, error=f"device '{profile.name}': {exc}")
    luts, cal = {}, {}
    for sp in spaces:  # keyed as the caller spelled them; looked up by the space's own name (not an alias)
        name = get_space(sp).name
        try:
            current = store.find(profile.name, name, fp)
        except InputError:  # one damaged table is this device's row, not the whole command's error
            luts[sp] = "damaged"
            continue
        luts[sp] = "fresh" if current else ("stale" if store.list(profile.name, name) else "missing")
        if current and current.calibration:
            cal[sp] = {"n_points": current.calibration.n_points, "fitted_at": current.calibration.fitted_at}
    return DeviceStatus(profile.name, True, info.agent_version or None, fp, luts, cal,
                        power_mode_note=info.power_mode_note(getattr(profile, "power_mode", None)))


def fleet_status(project: Project, profiles: list[Any], spaces: list[str], *, concurrency: int = 8
                 ) -> list[DeviceStatus]:
    """One row per device. The spaces are checked (an unknown one is one ``InputError``) before any
    device is contacted or anything is written, as ``refresh_fleet`` does."""
    from edgenas.spaces import get_space

    for sp in spaces:
        get_space(sp)
    if not profiles:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(profiles))) as pool:
        return list(pool.map(lambda p: device_status(project, p, spaces), profiles))
