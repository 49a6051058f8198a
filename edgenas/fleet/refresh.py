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
     the mean of the two sightings, the shape is kept, nothing is re-timed (under the table's lock, and
     only if no profile or calibration replaced the table during the check);

   tables without ratios (made before the speed reference, or imported) fall back to raw times;
3. otherwise keep the table and record that it was verified (``luts/DEVICE/verified.jsonl``, which also
   carries each check's speed change).

A failing device never stops the others: its row says ``failed`` with the reason, and its previous
LUT is untouched (profiling only replaces a table with a complete, validated one). The result of the
last refresh is kept in ``.edgenas/fleet/last-refresh.json`` for ``--only-failed``.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Iterable

from edgenas.devices.session import Session, open_session
from edgenas.errors import EdgenasError, InputError, OutputError
from edgenas.fleet.drift import (
    DRIFT_CAP, DRIFT_FLOOR, SPEED_TOLERANCE, DriftCheck, last_verified, measure_drift, record_verified, same_sign_off)
from edgenas.fleet.measure import Progress, keep_on_device
from edgenas.fleet.profiler import profile_device
from edgenas.fleet.table_lock import table_lock, waited_lock
from edgenas.io import atomic_write_json, read_json
from edgenas.latency.calibration import rescaled_calibration
from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore, fingerprint_changes
from edgenas.locks import file_lock
from edgenas.project import Project
from edgenas.textsafe import counted, one_line


class RefreshStatus(enum.StrEnum):
    REFRESHED = "refreshed"  # the LUT was rebuilt (fingerprint changed, no LUT yet, or shape drift)
    RESCALED = "rescaled"    # the shape held; the nominal speed was rescaled after a persistent change
    VERIFIED = "verified"    # the table was kept
    FAILED = "failed"        # the device could not be refreshed; its previous LUT is untouched


@dataclass(frozen=True)
class DeviceRefresh:
    device: str
    status: RefreshStatus
    reason: str
    space: str
    fingerprint_hash: str | None = None
    drift: float | None = None
    threshold: float | None = None
    lut_path: str | None = None
    wall_s: float = 0.0
    #: the reference's time now / the table's nominal ``reference.ms`` - 1 (None without a reference)
    speed_change: float | None = None
    #: the table (rebuilt or kept) was timed in another power mode than the profile expects, or in none reported
    power_mode_note: str | None = None

    def __post_init__(self) -> None:  # a device's error text can be megabytes: the row and its file keep a line
        object.__setattr__(self, "reason", one_line(self.reason))

    @property
    def failed(self) -> bool:
        return self.status is RefreshStatus.FAILED

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, status=str(self.status))


def refresh_device(project: Project, profile: Any, space: str, *, protocol: dict[str, Any] | None = None,
                   drift_floor: float = DRIFT_FLOOR) -> DeviceRefresh:
    t0 = time.perf_counter()
    try:
        store = LutStore(project.luts_dir)
        with open_session(project, profile) as s:
            info = s.info()
            fp_hash = info.fingerprint_hash
            store.remember_fingerprint(s.device, fp_hash)
            lut = store.find(s.device, space, fp_hash)
            check = None
            if lut is None:
                old = store.newest(s.device, space)
                changed = fingerprint_changes(old.fingerprint, info.fingerprint) if old is not None else []
                reason = ("no LUT yet" if not store.list(s.device, space) else
                          f"fingerprint changed ({', '.join(changed)})" if changed else "fingerprint changed")
            else:
                check = measure_drift(s, project, lut, protocol, floor=drift_floor)
                shape = f"{'shape ' if check.basis == 'ratio' else ''}drift {check.drift:.1%}"
                if not check.drifted:  # the table's mode is the device's now (the fingerprint holds it)
                    return _keep(project, s, store, lut, check, shape, t0,
                                 info.power_mode_note(s.profile.power_mode))
                reason = f"{shape} > {check.threshold:.1%}"
        res = profile_device(project, profile, space, force=lut is not None, protocol=protocol)
        if res.recalibrated:
            reason += f"; calibrated on {counted(res.recalibrated.n_points, 'stored measurement')}"
        return DeviceRefresh(res.device, RefreshStatus.REFRESHED, reason, space, res.fingerprint_hash,
                             check.drift if check else None, check.threshold if check else None,
                             str(res.lut_path), time.perf_counter() - t0,
                             check.speed_change if check else None, res.power_mode_note)
    except EdgenasError as exc:
        return DeviceRefresh(profile.name, RefreshStatus.FAILED, str(exc), space, wall_s=time.perf_counter() - t0)
    except Exception as exc:  # a bug on one device must not take the others down
        return DeviceRefresh(profile.name, RefreshStatus.FAILED, f"internal error {type(exc).__name__}: {exc}",
                             space, wall_s=time.perf_counter() - t0)


def _keep(project: Project, session: Session, store: LutStore, lut: Lut, check: DriftCheck, shape: str,
          t0: float, power_mode_note: str | None = None) -> DeviceRefresh:
    """The table's shape held: record the check, and rescale its nominal speed if a change persisted."""
    row = dict(space=lut.space, fingerprint_hash=lut.fingerprint_hash, drift=check.drift,
               threshold=check.threshold, speed_change=check.speed_change, power_mode_note=power_mode_note,
               lut_path=str(store.path_for(session.device, lut.space, lut.fingerprint_hash)))
    speed_off = check.speed_change is not None and abs(check.speed_change) > SPEED_TOLERANCE
    previous = last_verified(project, session.device, lut)
    if speed_off and previous is not None and same_sign_off(previous, check.speed_change):
        return _rescale(project, session, store, lut, check, previous, f"{shape} <= {check.threshold:.1%}", row, t0)
    record_verified(project, session.device, lut, check)
    reason = f"{shape} <= {check.threshold:.1%}"
    if speed_off:
        reason += (f"; speed {check.speed_change:+.0%} vs nominal (not rescaled: seen once; a busy device looks "
                   "slower for a while)")
    return DeviceRefresh(session.device, RefreshStatus.VERIFIED, reason, wall_s=time.perf_counter() - t0, **row)


def _rescale(project: Project, session: Session, store: LutStore, lut: Lut, check: DriftCheck,
             previous: dict[str, Any], shape: str, row: dict[str, Any], t0: float) -> DeviceRefresh:
    """Save ``lut`` with the mean of the two sightings as its nominal speed, under the table's lock.

    The check took seconds to minutes without the lock: a ``profile --force`` or a calibration refit that
    finished meanwhile saved a newer table, which the rescaled old one used to overwrite (it survived only
    in history/). Under the lock the table is read again and rescaled only while it is still the one
    checked (a refit's new calibration is kept and rescaled too); otherwise it is kept, and the row says so."""
    old = float(lut.reference["ms"])  # type: ignore[index]
    nominal = (float(previous["reference_ms"]) + float(check.reference_ms)) / 2  # type: ignore[arg-type]
    speed = f"speed {check.speed_change:+.0%} twice in a row"
    with ExitStack() as stack:
        try:
            stack.enter_context(table_lock(project, session.device, lut.space))
        except OutputError:  # a profile holds it for minutes: the table it is making replaces this one
            return _not_rescaled(project, session, lut, check, f"{shape}; {speed}, not rescaled: a profile or "
                                 "calibration of this table is running", row, t0)
        current = store.find(session.device, lut.space, lut.fingerprint_hash)
        if current is None or not _same_timings(current, lut):
            return _not_rescaled(project, session, lut, check, f"{shape}; {speed}, not rescaled: the table "
                                 "changed during the check", row, t0)
        rescaled = dataclasses.replace(current, reference=dict(current.reference or {}, ms=nominal),
                                       created_at=time.time(),
                                       calibration=rescaled_calibration(current.calibration, nominal / old))
        path = store.save(rescaled)
    keep_on_device(session, path, rescaled)
    record_verified(project, session.device, lut, check, rescaled=True)
    return DeviceRefresh(session.device, RefreshStatus.RESCALED, f"{shape}; {speed}: nominal {old:.3f} -> "
                         f"{nominal:.3f} ms", wall_s=time.perf_counter() - t0, **row)


def _same_timings(current: Lut, checked: Lut) -> bool:
    """``current`` is the table that was checked, up to its calibration (a refit changes only that)."""
    return dataclasses.replace(current, calibration=None).to_dict() == \
        dataclasses.replace(checked, calibration=None).to_dict()


def _not_rescaled(project: Project, session: Session, lut: Lut, check: DriftCheck, reason: str,
                  row: dict[str, Any], t0: float) -> DeviceRefresh:
    """The check is recorded (of the table it checked); the table in the store is left as it is."""
    record_verified(project, session.device, lut, check)
    return DeviceRefresh(session.device, RefreshStatus.VERIFIED, reason, wall_s=time.perf_counter() - t0, **row)


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
        last = _read_last(project, strict=True)
        failed = {r["device"] for r in last if r.get("status") == RefreshStatus.FAILED and r.get("space") == space}
        profiles = [p for p in profiles if p.name in failed]
    results: list[DeviceRefresh] = []
    if profiles:
        prepare_blocks(project, space, progress, runtimes={p.runtime for p in profiles})
        with ThreadPoolExecutor(max_workers=min(concurrency, len(profiles))) as pool:
            futures = [pool.submit(refresh_device, project, p, space, protocol=protocol, drift_floor=drift_floor)
                       for p in profiles]
            for i, fut in enumerate(futures):
                results.append(fut.result())
                if progress:
                    progress("refresh devices", i + 1, len(futures))
    _record_last(project, space, results)
    return results


#: how long a refresh waits for the last-refresh record's lock: each holder keeps it for one read and write
LAST_LOCK_WAIT_S = 30.0


def _record_last(project: Project, space: str, results: list[DeviceRefresh]) -> None:
    """Merge ``results`` into the last-refresh record, under its lock: two refreshes of different groups
    that finished together both read the old record, and the later write dropped the other's rows (and
    ``--only-failed`` then missed its failed devices)."""
    path = last_refresh_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    with waited_lock(lambda: file_lock(path.with_name("last-refresh.lock"), "the last-refresh record"),
                     LAST_LOCK_WAIT_S):
        last = _read_last(project)
        merged = {r["device"]: r for r in last if r.get("space") == space}
        merged.update({r.device: r.to_dict() for r in results})
        others = [r for r in last if r.get("space") != space]
        atomic_write_json(path, others + list(merged.values()))


def prepare_blocks(project: Project, space: str, progress: Progress | None = None,
                   runtimes: Iterable[str] = ("onnxruntime",)) -> int:
    """Export every block of ``space`` (and the reference and overhead models) for each of ``runtimes``
    into the shared block cache, in this thread, before devices are handled in parallel:
    ``torch.onnx.export`` and tracing are not thread-safe, so device threads must only ever read the cache.
    Returns how many were new."""
    from edgenas.fleet.measure import export_blocks, model_suffix, overhead_model, reference_model
    from edgenas.spaces import get_space

    sp = get_space(space)
    new = 0
    for runtime in sorted({model_suffix(r): r for r in runtimes}.values()):  # one export per file format
        new += export_blocks(project, sp, sp.key_vocab(), progress, runtime)[1]
        reference_model(project, runtime)
        overhead_model(project, runtime)
    return new


def _read_last(project: Project, *, strict: bool = False) -> list[dict[str, Any]]:
    """The last-refresh record's rows; a damaged record (not JSON, not a list, a FIFO, too large) as if there
    were none, the next refresh writing it anew; ``strict`` (``--only-failed``, which retries what it lists):
    one ``InputError``. It said "nothing to retry", and the refresh then wrote an empty record over it."""
    path = last_refresh_path(project)
    if not os.path.lexists(path):
        return []
    try:
        data = read_json(path, "last refresh record")
        if strict and not isinstance(data, list):
            raise InputError(f"last refresh record {path}: expected a list of rows")
    except InputError as exc:
        if strict:
            raise InputError(f"cannot tell which devices failed last time: {exc.message}",
                             hint="refresh without --only-failed (it writes the record anew), or restore the "
                                  "file") from None
        return []
    return last_refresh_rows(data)


def failed_last_time(project: Project) -> dict[str, list[str]]:
    """The devices each space's last refresh failed on (what ``--only-failed`` retries), names sorted; a row of a
    space this build does not know (an edited record) is left out."""
    from edgenas.spaces import space_names

    known = set(space_names())
    failed: dict[str, set[str]] = {}
    for r in _read_last(project):
        if r["status"] == RefreshStatus.FAILED and r["space"] in known:
            failed.setdefault(r["space"], set()).add(r["device"])
    return {sp: sorted(names) for sp, names in sorted(failed.items())}


def last_refresh_rows(data: Any) -> list[dict[str, Any]]:
    """The rows of a last-refresh record as ``DeviceRefresh.to_dict`` writes them (device, space and status
    text); any other row (edited, damaged) is left out, and a record that is not a list has none."""
    keys = ("device", "space", "status")
    return [r for r in data if isinstance(r, dict) and all(isinstance(r.get(k), str) for k in keys)
            ] if isinstance(data, list) else []


def stale_runs_after(project: Project, results: list[DeviceRefresh], db_url: str | None = None) -> int | None:
    """How many recorded search runs are stale on the devices this refresh rebuilt or rescaled.

    ``None`` when there is no experiment database yet (none is created here) or it cannot be read."""
    from edgenas.store.db import database_exists

    changed = sorted({r.device for r in results if r.status in ("refreshed", "rescaled")})
    if not changed:
        return 0
    if not database_exists(project, db_url):
        return None
    from edgenas.search.stale import find_stale
    from edgenas.store import open_db

    try:
        db = open_db(db_url, project)
        # a run over two changed devices is stale once (as ``runs stale`` lists it), not once per device
        return len({s.run_id for d in changed for s in find_stale(db, project, device=d)[0]})
    except EdgenasError:
        return None
