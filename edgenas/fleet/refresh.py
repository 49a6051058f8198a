"""Fleet-wide LUT refresh and status, in parallel, one result per device.

For each device (bounded concurrency; every remote call has the profile's timeouts):

1. fingerprint changed (or no LUT yet) -> rebuild the LUT;
2. otherwise re-time a handful of sentinel entries; drift larger than ``max(5%, 3 x CoV)`` -> rebuild.
   The drift of the table is the median over sentinels of |new - old| / old; the CoV is the median
   CoV the sentinels had when the table was built (a noisy table needs a larger change to count),
   capped at ``DRIFT_CAP`` (heavy-tailed timing noise gives CoVs near 1, which must not hide a table
   that is off by a factor of two or more);
3. otherwise keep the table and record that it was verified (``luts/DEVICE/verified.jsonl``).

A failing device never stops the others: its row says ``failed`` with the reason, and its previous
LUT is untouched (profiling only replaces a table with a complete, validated one). The result of the
last refresh is kept in ``.edgenas/fleet/last-refresh.json`` for ``--only-failed``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgenas.errors import EdgenasError, InputError
from edgenas.io import atomic_write_json
from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project

Progress = Callable[[str, int, int], None]

DRIFT_FLOOR = 0.05
DRIFT_COV_FACTOR = 3.0
DRIFT_CAP = 0.5
N_SENTINELS = 5


@dataclass(frozen=True)
class DeviceRefresh:
    device: str
    status: str  # refreshed | verified | failed
    reason: str
    space: str
    fingerprint_hash: str | None = None
    drift: float | None = None
    threshold: float | None = None
    lut_path: str | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sentinel_keys(lut: Lut, n: int = N_SENTINELS) -> list[str]:
    """``n`` stable entries spread over the table's latency range (deterministic)."""
    stable = sorted((e.median_ms, k) for k, e in lut.entries.items() if e.stable) or \
        sorted((e.median_ms, k) for k, e in lut.entries.items())
    idx = np.unique(np.linspace(0, len(stable) - 1, min(n, len(stable))).round().astype(int))
    return [stable[i][1] for i in idx]


def measure_drift(session: Any, project: Project, lut: Lut, protocol: dict[str, Any] | None = None
                  ) -> tuple[float, float, dict[str, float]]:
    """Re-time the sentinels; returns (drift, threshold, per-key relative change)."""
    from edgenas.fleet.profiler import LUT_PROTOCOL, export_blocks
    from edgenas.spaces import get_space

    space = get_space(lut.space)
    keys = sentinel_keys(lut)
    paths, _ = export_blocks(project, space, keys)
    items = [{"key": k, "model": session.push(paths[k])} for k in keys]
    partial = f"partial/sentinels-{lut.space}-{lut.fingerprint_hash[:12]}-{time.time_ns()}.jsonl"
    out = session.call("bench_many", dict(session.runtime_params(lut.runtime), items=items,
                                          protocol=dict(LUT_PROTOCOL, **(protocol or {})), partial=partial))
    changes = {k: abs(float(out["results"][k]["median_ms"]) - lut.entries[k].median_ms)
               / max(lut.entries[k].median_ms, 1e-9) for k in keys}
    drift = float(np.median(list(changes.values())))
    cov = float(np.median([lut.entries[k].cov for k in keys]))
    return drift, min(max(DRIFT_FLOOR, DRIFT_COV_FACTOR * cov), DRIFT_CAP), changes


def refresh_device(project: Project, profile: Any, space: str, *, protocol: dict[str, Any] | None = None
                   ) -> DeviceRefresh:
    from edgenas.fleet.profiler import profile_device
    from edgenas.fleet.session import open_session

    t0 = time.perf_counter()
    try:
        store = LutStore(project.luts_dir)
        with open_session(project, profile) as s:
            fp_hash = str(s.call("info", s.runtime_params(), timeout_s=120)["fingerprint_hash"])
            lut = store.find(s.device, space, fp_hash)
            if lut is None:
                had_any = bool(store.list(s.device, space))
                reason = "fingerprint changed" if had_any else "no LUT yet"
                drift = threshold = None
            else:
                drift, threshold, _ = measure_drift(s, project, lut, protocol)
                if drift <= threshold:
                    _record_verified(project, s.device, lut, drift, threshold)
                    return DeviceRefresh(s.device, "verified", f"drift {drift:.1%} <= {threshold:.1%}", space,
                                         fp_hash, drift, threshold, str(store.path_for(s.device, space, fp_hash)),
                                         time.perf_counter() - t0)
                reason = f"drift {drift:.1%} > {threshold:.1%}"
        res = profile_device(project, profile, space, force=lut is not None, protocol=protocol)
        return DeviceRefresh(res.device, "refreshed", reason, space, res.fingerprint_hash, drift, threshold,
                             str(res.lut_path), time.perf_counter() - t0)
    except EdgenasError as exc:
        return DeviceRefresh(profile.name, "failed", str(exc), space, wall_s=time.perf_counter() - t0)
    except Exception as exc:  # a bug on one device must not take the others down
        return DeviceRefresh(profile.name, "failed", f"internal error {type(exc).__name__}: {exc}", space,
                             wall_s=time.perf_counter() - t0)


def _record_verified(project: Project, device: str, lut: Lut, drift: float, threshold: float) -> None:
    path = project.luts_dir / device / "verified.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "space": lut.space, "fingerprint_hash": lut.fingerprint_hash,
                       "drift": drift, "threshold": threshold})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def last_refresh_path(project: Project):
    return project.state_dir / "fleet" / "last-refresh.json"


def refresh_fleet(project: Project, profiles: list[Any], space: str, *, concurrency: int = 4,
                  only_failed: bool = False, protocol: dict[str, Any] | None = None,
                  progress: Progress | None = None) -> list[DeviceRefresh]:
    if concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    if only_failed:
        last = _read_last(project)
        failed = {r["device"] for r in last if r.get("status") == "failed" and r.get("space") == space}
        profiles = [p for p in profiles if p.name in failed]
    results: list[DeviceRefresh] = []
    if profiles:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(profiles))) as pool:
            futures = [pool.submit(refresh_device, project, p, space, protocol=protocol) for p in profiles]
            for i, fut in enumerate(futures):
                results.append(fut.result())
                if progress:
                    progress("refresh devices", i + 1, len(futures))
    merged = {r["device"]: r for r in _read_last(project) if r.get("space") == space}
    merged.update({r.device: r.to_dict() for r in results})
    others = [r for r in _read_last(project) if r.get("space") != space]
    atomic_write_json(last_refresh_path(project), others + list(merged.values()))
    return results


def _read_last(project: Project) -> list[dict[str, Any]]:
    path = last_refresh_path(project)
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, list) else []
    except (OSError, json.JSONDecodeError):
        return []


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
    from edgenas.fleet.session import open_session

    store = LutStore(project.luts_dir)
    try:
        with open_session(project, profile) as s:
            info = s.call("info", s.runtime_params(), timeout_s=60)
    except EdgenasError as exc:
        return DeviceStatus(profile.name, False, error=str(exc))
    fp = str(info["fingerprint_hash"])
    luts, cal = {}, {}
    for sp in spaces:
        current = store.find(profile.name, sp, fp) if store.path_for(profile.name, sp, fp).exists() else None
        luts[sp] = "fresh" if current else ("stale" if store.list(profile.name, sp) else "missing")
        if current and current.calibration:
            cal[sp] = {"n_points": current.calibration.n_points, "fitted_at": current.calibration.fitted_at}
    return DeviceStatus(profile.name, True, str(info.get("agent_version")), fp, luts, cal)


def fleet_status(project: Project, profiles: list[Any], spaces: list[str], *, concurrency: int = 8
                 ) -> list[DeviceStatus]:
    if not profiles:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(profiles))) as pool:
        return list(pool.map(lambda p: device_status(project, p, spaces), profiles))
