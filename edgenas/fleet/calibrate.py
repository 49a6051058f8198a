"""Calibrate a device's LUT from whole-model measurements (``edgenas lut calibrate``, and ``deploy``
after each measurement it stores).

Optionally measures N diverse architectures first (spread over the predicted-latency range: N
quantiles of a large seeded sample), then fits the LUT-sum -> measured correction on every stored
measurement for this (device, space, fingerprint, runtime) and saves it with the LUT (the timings
unchanged, so without a history copy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from edgenas.errors import EdgenasError, InputError
from edgenas.fleet.table_lock import table_lock
from edgenas.project import Project

#: whole models one `lut calibrate --measure` times (a few seconds each; more is a profile's job)
MAX_MEASURE = 1000

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CalibrationResult:
    device: str
    space: str
    n_points: int
    measured_now: int
    params: dict[str, float]
    residual: float
    within10_raw: float
    within10_calibrated: float
    lut_path: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def diverse_archs(space: Any, predictor: Any, n: int, seed: int) -> list[Any]:
    """``n`` architectures spread evenly over the predicted-latency range of a seeded sample."""
    rng = np.random.default_rng(seed)
    pool = [space.sample(rng) for _ in range(max(20 * n, 200))]
    lat = predictor.predict_raw_many(pool)
    order = np.argsort(lat)
    picks = np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))
    return [pool[order[i]] for i in picks]


def calibrate_device(project: Project, device: str, space_name: str, *, measure: int = 0, seed: int = 0,
                     progress: Progress | None = None) -> CalibrationResult:
    from edgenas.devices.profiles import load_profile
    from edgenas.devices.session import open_session
    from edgenas.export import default_export_dir, export_arch
    from edgenas.fleet.measure import current_lut, measure_model, measurement_stats, model_file, reference_model
    from edgenas.io import sha256_file
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space
    from edgenas.store import Measurement, open_store

    from edgenas.limits import check_count, check_seed
    from edgenas.store.db import database_exists

    check_count(measure, "--measure", 0, MAX_MEASURE)  # before anything (the measurement database) is created
    check_seed(seed)
    space = get_space(space_name)
    profile = load_profile(project, device)
    # what can be checked without the device is, so that bad input starts no agent and writes nothing
    LutStore(project.luts_dir).require_any(profile.name, space.name)
    if measure == 0 and not database_exists(project):  # checked without creating it: nothing changes on disk
        raise InputError(f"no measurements of '{space.name}' on '{profile.name}' yet",
                         hint=f"run: edgenas lut calibrate {profile.name} --space {space.name} --measure 10")
    with open_session(project, profile) as s:
        info = s.info()
        fp_hash = info.fingerprint_hash
        lut = current_lut(project, s.device, space.name, fp_hash, fingerprint=info.fingerprint)
        store = open_store(project)  # only now: a failed start creates no database
        pred = LatencyPredictor(lut, space)
        archs = diverse_archs(space, pred, measure, seed) if measure > 0 else []
        rt = s.runtime_params()
        ref_path = reference_model(project, rt["runtime"])
        ref_sha = sha256_file(ref_path)
        for i, arch in enumerate(archs):
            exp = export_arch(space, arch, default_export_dir(project, space, arch))
            timed = model_file(rt["runtime"], space, arch, exp)
            out = measure_model(s, timed, reference=ref_path)
            # the raw sum and the prediction of the table as calibrated then, as deploy records them (the
            # report's predicted vs measured)
            raw, predicted = float(pred.predict_raw_many([arch])[0]), float(pred.predict_many([arch])[0])
            stats, _ = measurement_stats(out.raw_stats, lut, ref_sha)
            store.add(Measurement(
                device=s.device, space=space.name, arch=space.to_dict(arch), artifact_sha256=sha256_file(timed),
                runtime=rt["runtime"], precision=rt["precision"], fingerprint_hash=fp_hash,
                stats=stats, cold_start=dict(out.cold_start),
                state=dict(out.state), predicted_raw_ms=raw, predicted_ms=predicted,
                lut_fingerprint=lut.fingerprint_hash))
            if progress:
                progress(f"measure architectures on {s.device}", i + 1, len(archs))
    res = refit_calibration(project, s.device, space, fp_hash, rt["runtime"], store)
    return replace(res, measured_now=len(archs))


def nominal_now(stats: dict[str, Any], lut: Any) -> float:
    """A stored measurement in the units of ``lut``'s predictions: at the table's nominal speed now.

    A measurement timed against the table's speed reference stored ``nominal_ms`` (its ratio to the
    reference x the table's reference time then), or, taken before the table existed, the reference's SHA-256
    (``ref_sha256``); a ``fleet refresh`` may since have rescaled the table's reference time, so the ratio is
    taken times today's. Without a ratio to this table's reference, the stored nominal or raw median."""
    ratio = stats.get("ratio")
    if lut.normalised and ratio and (stats.get("nominal_ms") is not None
                                     or stats.get("ref_sha256") == lut.reference.get("sha256")):
        return float(ratio) * float(lut.reference["ms"])
    return float(stats.get("nominal_ms") or stats["median_ms"])


def stored_measurements(store: Any, device: str, space_name: str, fp_hash: str, runtime: str) -> list[Any]:
    """Every stored whole-model measurement of the (device, space) table of fingerprint ``fp_hash`` on
    ``runtime``: what a calibration is fitted on."""
    return [m for m in store.list(device=device, space=space_name, fingerprint_hash=fp_hash) if m.runtime == runtime]


@dataclass(frozen=True)
class Fit:
    """A table with the correction fitted on stored measurements, and how well it and the raw sums fit."""

    lut: Any
    n_points: int
    params: dict[str, float]
    residual: float
    within10_raw: float
    within10_calibrated: float

    def result(self, device: str, space: str, lut_path: str) -> CalibrationResult:
        """The record of this fit once its table is saved at ``lut_path`` (what deploy, ``lut calibrate``
        and a profile report)."""
        return CalibrationResult(device, space, self.n_points, 0, self.params, self.residual, self.within10_raw,
                                 self.within10_calibrated, lut_path)


def fit_to_measurements(lut: Any, space: Any, ms: list[Any]) -> Fit:
    """``lut`` with the log-linear LUT-sum -> measured correction fitted on the measurements ``ms``."""
    from edgenas.latency.calibration import fit_calibration
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.store.base import measured_archs

    archs = measured_archs(space, ms)
    measured = np.array([nominal_now(m.stats, lut) for m in ms])
    raw = LatencyPredictor(lut, space).predict_raw_many(archs)
    cal = fit_calibration(raw, measured)
    fitted = lut.with_calibration(cal)
    calibrated = LatencyPredictor(fitted, space).predict_many(archs)

    def within10(p: np.ndarray) -> float:
        return float(np.mean(np.abs(p - measured) / measured <= 0.10))

    return Fit(fitted, len(ms), dict(cal.params), cal.residual, within10(raw), within10(calibrated))


def fit_new_table(project: Project, lut: Any, space: Any) -> tuple[Fit | None, str | None]:
    """A table a profile has just built, fitted on the device's stored measurements of its fingerprint and
    runtime (none stored: ``(None, None)``), so a rebuilt table is not used raw until the next deploy or
    ``lut calibrate``: the measurements count at the new table's nominal speed (``nominal_now``), and on an
    H200 a table fitted on one round of deployments put the same models measured again after two more
    builds within ±10%, 6 of 6 for every table, against 2-5 of 6 raw (bench/RESULTS.md). A database that
    cannot be read is ``(None, why)``: the profile keeps its table."""
    from edgenas.store import open_store
    from edgenas.store.db import database_exists

    if not database_exists(project):  # checked without creating one
        return None, None
    try:
        ms = stored_measurements(open_store(project), lut.device, space.name, lut.fingerprint_hash, lut.runtime)
        return (fit_to_measurements(lut, space, ms) if ms else None), None
    except EdgenasError as exc:
        return None, exc.message


def refit_calibration(project: Project, device: str, space: Any, fp_hash: str, runtime: str,
                      store: Any) -> CalibrationResult:
    """Fit the correction of the (device, space) table of fingerprint ``fp_hash`` on every stored
    measurement of that fingerprint and runtime, and save the table with it (no copy in history/: the
    timings are unchanged): ``lut calibrate`` after its measurements, ``deploy`` after each one.

    The table is read and rewritten under the profile's lock of (device, space), so a profile that
    finishes meanwhile is never overwritten by the table it replaced; while one runs this raises
    ``OutputError`` after ``LOCK_WAIT_S`` and changes nothing."""
    from edgenas.fleet.measure import current_lut
    from edgenas.latency.store import LutStore

    ms = stored_measurements(store, device, space.name, fp_hash, runtime)
    if not ms:
        raise InputError(f"no measurements of '{space.name}' on '{device}' with the current fingerprint",
                         hint=f"run: edgenas lut calibrate {device} --space {space.name} --measure 10")
    with table_lock(project, device, space.name):
        fit = fit_to_measurements(current_lut(project, device, space.name, fp_hash, remember=False), space, ms)
        # the timings are the same, only the fit changes (and is fitted again from the database at will):
        # no history copy, or a device deployed to a thousand times would keep a thousand tables
        path = LutStore(project.luts_dir).save(fit.lut, keep_previous=False)
    return fit.result(device, space.name, str(path))
