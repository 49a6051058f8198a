"""Fleet-wide LUT refresh and status, in parallel, one result per device.

For each device (bounded concurrency; every remote call has the profile's timeouts):

1. fingerprint changed (or no LUT yet) -> rebuild the LUT;
2. otherwise re-time a handful of sentinel entries against the speed reference. A LUT is two things:
   the cost of each block relative to the reference (its *shape*, ``ratio``) and the device's nominal
   speed (``reference.ms``). They drift for different reasons and are checked apart:

   * **shape drift**: the median over sentinels of |new ratio - old ratio| / old ratio. Larger than
     ``max(floor, 3 x CoV)`` (floor ``DRIFT_FLOOR`` unless given; the CoV the sentinels had when the
     table was built; capped at ``DRIFT_CAP``) in two passes in a row -> rebuild. Ratios do not move
     when the device is merely busy, so a loaded device is not rebuilt (a rebuild would bake the load
     in);
   * **speed drift**: the reference's time now vs ``reference.ms``. Beyond ``SPEED_TOLERANCE`` a single
     sighting is only reported (a busy device looks slower for a while); when the previous check of
     the same table saw a change of the same sign too, the table is *rescaled*: ``reference.ms`` takes
     the mean of the two sightings, the shape is kept, nothing is re-timed;

   tables without ratios (made before the speed reference, or imported) fall back to raw times;
3. otherwise keep the table and record that it was verified (``luts/DEVICE/verified.jsonl``, which also
   carries each check's speed change).

A failing device never stops the others: its row says ``failed`` with the reason, and its previous
LUT is untouched (profiling only replaces a table with a complete, validated one). The result of the
last refresh is kept in ``.edgenas/fleet/last-refresh.json`` for ``--only-failed``.
"""

from __future__ import annotations

import dataclasses
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

#: the smallest shape drift that rebuilds a table (3 x the CoV is used when larger). Re-checking an
#: unchanged table on our shared 2-core VM moved the sentinels' ratios by up to 20% for a minute at a
#: time (bench/drift_check.py; its CoV-based threshold was 11-50% there); a Jetson with fixed clocks
#: repeats within a few percent. ``--drift-floor`` raises it for a fleet of noisy machines.
DRIFT_FLOOR = 0.05
DRIFT_COV_FACTOR = 3.0
DRIFT_CAP = 0.5
SPEED_TOLERANCE = 0.2
N_SENTINELS = 5


@dataclass(frozen=True)
class DeviceRefresh:
    device: str
    status: str  # refreshed | rescaled | verified | failed
    reason: str
    space: str
    fingerprint_hash: str | None = None
    drift: float | None = None
    threshold: float | None = None
    lut_path: str | None = None
    wall_s: float = 0.0
    #: the reference's time now / the table's nominal ``reference.ms`` - 1 (None without a reference)
    speed_change: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DriftCheck:
    """What re-timing the sentinels found."""

    drift: float  # median relative change of the sentinels (of their ratios when ``basis`` is "ratio")
    threshold: float
    basis: str  # "ratio" | "ms"
    changes: dict[str, float]
    speed_change: float | None = None  # reference time now / table's nominal - 1
    reference_ms: float | None = None  # the reference's time now
    raw_drift: float = 0.0  # the same median on raw times, first pass (for diagnosis; load moves it)
    passes: int = 1  # 2 when a first pass found drift and a second was timed to confirm it
    cov: float = 0.0  # the sentinels' median CoV when the table was built

    @property
    def drifted(self) -> bool:
        return self.drift > self.threshold


def sentinel_keys(lut: Lut, n: int = N_SENTINELS) -> list[str]:
    """``n`` stable entries spread over the table's latency range (deterministic)."""
    stable = sorted((e.median_ms, k) for k, e in lut.entries.items() if e.stable) or \
        sorted((e.median_ms, k) for k, e in lut.entries.items())
    idx = np.unique(np.linspace(0, len(stable) - 1, min(n, len(stable))).round().astype(int))
    return [stable[i][1] for i in idx]


def measure_drift(session: Any, project: Project, lut: Lut, protocol: dict[str, Any] | None = None, *,
                  floor: float = DRIFT_FLOOR, confirm: bool = True) -> DriftCheck:
    """Re-time the sentinels (against the table's speed reference when it has one).

    With ``confirm``, a check that finds drift re-times the sentinels once more and keeps the pass with
    the smaller drift: the table counts as drifted only when both passes say so (one busy moment on the
    device must not trigger a rebuild)."""
    from edgenas.fleet.profiler import LUT_PROTOCOL, export_blocks, reference_model
    from edgenas.io import sha256_file
    from edgenas.spaces import get_space

    space = get_space(lut.space)
    keys = sentinel_keys(lut)
    paths, _ = export_blocks(project, space, keys)
    items = [{"key": k, "model": session.push(paths[k])} for k in keys]
    params = dict(session.runtime_params(lut.runtime), items=items, protocol=dict(LUT_PROTOCOL, **(protocol or {})))
    ref_path = reference_model(project)
    if lut.normalised and lut.reference.get("sha256") == sha256_file(ref_path):  # type: ignore[union-attr]
        params["reference"] = session.push(ref_path)
    cov = float(np.median([lut.entries[k].cov for k in keys]))
    threshold = min(max(floor, DRIFT_COV_FACTOR * cov), DRIFT_CAP)
    first = dataclasses.replace(_sentinel_pass(session, lut, keys, params, threshold), cov=cov)
    if not (confirm and first.drifted):
        return first
    second = _sentinel_pass(session, lut, keys, params, threshold)
    kept = min(first, second, key=lambda c: c.drift)
    return dataclasses.replace(kept, passes=2, raw_drift=first.raw_drift, cov=cov)


def _sentinel_pass(session: Any, lut: Lut, keys: list[str], params: dict[str, Any], threshold: float
                   ) -> DriftCheck:
    partial = f"partial/sentinels-{lut.space}-{lut.fingerprint_hash[:12]}-{time.time_ns()}.jsonl"
    results = session.call("bench_many", dict(params, partial=partial))["results"]
    by_ratio = "reference" in params and all(results[k].get("ratio") and results[k].get("ref_ms") for k in keys)
    field_ = "ratio" if by_ratio else "median_ms"

    def rel(k: str, f: str) -> float:
        old = float(getattr(lut.entries[k], f))
        return abs(float(results[k][f]) - old) / max(old, 1e-12)

    changes = {k: rel(k, field_) for k in keys}
    ref_now = speed = None
    if by_ratio:
        ref_now = float(np.median([float(results[k]["ref_ms"]) for k in keys]))
        speed = ref_now / float(lut.reference["ms"]) - 1.0  # type: ignore[index]
    return DriftCheck(float(np.median(list(changes.values()))), threshold, "ratio" if by_ratio else "ms",
                      changes, speed, ref_now, float(np.median([rel(k, "median_ms") for k in keys])))


def refresh_device(project: Project, profile: Any, space: str, *, protocol: dict[str, Any] | None = None,
                   drift_floor: float = DRIFT_FLOOR) -> DeviceRefresh:
    from edgenas.fleet.profiler import profile_device
    from edgenas.fleet.session import open_session

    t0 = time.perf_counter()
    try:
        store = LutStore(project.luts_dir)
        with open_session(project, profile) as s:
            fp_hash = str(s.call("info", s.runtime_params(), timeout_s=120)["fingerprint_hash"])
            lut = store.find(s.device, space, fp_hash)
            check = None
            if lut is None:
                had_any = bool(store.list(s.device, space))
                reason = "fingerprint changed" if had_any else "no LUT yet"
            else:
                check = measure_drift(s, project, lut, protocol, floor=drift_floor)
                shape = f"{'shape ' if check.basis == 'ratio' else ''}drift {check.drift:.1%}"
                if not check.drifted:
                    return _keep(project, s, store, lut, check, shape, t0)
                reason = f"{shape} > {check.threshold:.1%}"
        res = profile_device(project, profile, space, force=lut is not None, protocol=protocol)
        return DeviceRefresh(res.device, "refreshed", reason, space, res.fingerprint_hash,
                             check.drift if check else None, check.threshold if check else None,
                             str(res.lut_path), time.perf_counter() - t0,
                             check.speed_change if check else None)
    except EdgenasError as exc:
        return DeviceRefresh(profile.name, "failed", str(exc), space, wall_s=time.perf_counter() - t0)
    except Exception as exc:  # a bug on one device must not take the others down
        return DeviceRefresh(profile.name, "failed", f"internal error {type(exc).__name__}: {exc}", space,
                             wall_s=time.perf_counter() - t0)


def _keep(project: Project, session: Any, store: LutStore, lut: Lut, check: DriftCheck, shape: str,
          t0: float) -> DeviceRefresh:
    """The table's shape held: record the check, and rescale its nominal speed if a change persisted."""
    from edgenas.fleet.profiler import keep_on_device

    row = dict(space=lut.space, fingerprint_hash=lut.fingerprint_hash, drift=check.drift,
               threshold=check.threshold, speed_change=check.speed_change,
               lut_path=str(store.path_for(session.device, lut.space, lut.fingerprint_hash)))
    speed_off = check.speed_change is not None and abs(check.speed_change) > SPEED_TOLERANCE
    previous = _last_verified(project, session.device, lut)
    if speed_off and previous is not None and _same_sign_off(previous, check.speed_change):
        old = float(lut.reference["ms"])  # type: ignore[index]
        nominal = (float(previous["reference_ms"]) + float(check.reference_ms)) / 2  # type: ignore[arg-type]
        rescaled = dataclasses.replace(lut, reference=dict(lut.reference or {}, ms=nominal), created_at=time.time())
        keep_on_device(session, store.save(rescaled), rescaled)
        _record_verified(project, session.device, lut, check, rescaled=True)
        return DeviceRefresh(session.device, "rescaled",
                             f"{shape} <= {check.threshold:.1%}; speed {check.speed_change:+.0%} twice in a row: "
                             f"nominal {old:.3f} -> {nominal:.3f} ms", wall_s=time.perf_counter() - t0, **row)
    _record_verified(project, session.device, lut, check)
    reason = f"{shape} <= {check.threshold:.1%}"
    if speed_off:
        reason += (f"; speed {check.speed_change:+.0%} vs nominal (not rescaled: seen once; a busy device looks "
                   "slower for a while)")
    return DeviceRefresh(session.device, "verified", reason, wall_s=time.perf_counter() - t0, **row)


def _verified_path(project: Project, device: str):
    return project.luts_dir / device / "verified.jsonl"


def _record_verified(project: Project, device: str, lut: Lut, check: DriftCheck, rescaled: bool = False) -> None:
    path = _verified_path(project, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "space": lut.space, "fingerprint_hash": lut.fingerprint_hash,
                       "drift": check.drift, "threshold": check.threshold, "basis": check.basis,
                       "speed_change": check.speed_change, "reference_ms": check.reference_ms,
                       "nominal_ms": (lut.reference or {}).get("ms"), "rescaled": rescaled})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _last_verified(project: Project, device: str, lut: Lut) -> dict[str, Any] | None:
    """The previous check of this very table (same space, fingerprint and nominal speed), if any."""
    try:
        lines = _verified_path(project, device).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("space") == lut.space \
                and rec.get("fingerprint_hash") == lut.fingerprint_hash:
            same_table = rec.get("nominal_ms") == (lut.reference or {}).get("ms") and not rec.get("rescaled")
            return rec if same_table else None
    return None


def _same_sign_off(previous: dict[str, Any] | None, speed_change: float | None) -> bool:
    """True when the previous check also saw the speed off by more than the tolerance, the same way."""
    if previous is None or speed_change is None or not isinstance(previous.get("speed_change"), (int, float)):
        return False
    if not isinstance(previous.get("reference_ms"), (int, float)):
        return False
    prev = float(previous["speed_change"])
    return abs(prev) > SPEED_TOLERANCE and (prev > 0) == (speed_change > 0)


def last_refresh_path(project: Project):
    return project.state_dir / "fleet" / "last-refresh.json"


def refresh_fleet(project: Project, profiles: list[Any], space: str, *, concurrency: int = 4,
                  only_failed: bool = False, protocol: dict[str, Any] | None = None,
                  drift_floor: float = DRIFT_FLOOR, progress: Progress | None = None) -> list[DeviceRefresh]:
    if concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    if not 0.0 < drift_floor <= DRIFT_CAP:
        raise InputError(f"--drift-floor must be in (0, {DRIFT_CAP}], got {drift_floor}",
                         hint="a fraction: 0.1 rebuilds tables whose sentinels moved by more than 10%")
    from edgenas.spaces import get_space

    space = get_space(space).name  # unknown space: one clear error before any device is touched; aliases
    if only_failed:
        last = _read_last(project)
        failed = {r["device"] for r in last if r.get("status") == "failed" and r.get("space") == space}
        profiles = [p for p in profiles if p.name in failed]
    results: list[DeviceRefresh] = []
    if profiles:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(profiles))) as pool:
            futures = [pool.submit(refresh_device, project, p, space, protocol=protocol, drift_floor=drift_floor)
                       for p in profiles]
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


def stale_runs_after(project: Project, results: list[DeviceRefresh], db_url: str | None = None) -> int | None:
    """How many recorded search runs are stale on the devices this refresh rebuilt or rescaled.

    ``None`` when there is no experiment database yet (none is created here) or it cannot be read."""
    import os

    from edgenas.store.db import ENV_VAR, resolve_url

    changed = sorted({r.device for r in results if r.status in ("refreshed", "rescaled")})
    url = resolve_url(db_url, project)
    if not changed:
        return 0
    if not (db_url or os.environ.get(ENV_VAR)) and not (project.state_dir / "edgenas.db").exists():
        return None
    from edgenas.search.stale import find_stale
    from edgenas.store import open_db

    try:
        db = open_db(url, project)
        return sum(len(find_stale(db, project, device=d)[0]) for d in changed)
    except EdgenasError:
        return None
