"""Plot data of the device and fleet pages: LUT heat maps, calibration, drift history, fleet rows.

``lut_heatmap`` lays an elastic-MobileNetV3 LUT out as kernel x expand per stage and input resolution:
a cell is the mean cost (ms, as the predictor uses it) of the stage's block slots with that kernel and
expand ratio, and it is marked unstable when any of those entries was flagged ``stable: false``.
Spaces without that structure get the entries sorted by cost (``lut_entries``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgenas.limits import is_finite
from edgenas.report.source import DataSource

#: the latest time a drift check's line may carry (9999-01-01 UTC): the drift plot's axis is dates, which end
#: with the year 9999 (a NaN time or one of 1e300 was an internal error of ``report --device``)
LAST_TIME_S = 253370764800.0


@dataclass(frozen=True)
class HeatPanel:
    stage: int                        # 1-based
    resolution: int
    kernels: list[int]
    expands: list[int]
    ms: list[list[float]]             # [kernel][expand]
    unstable: list[list[int]]         # [kernel][expand]: number of unstable entries in the cell
    keys: list[list[list[str]]]


@dataclass(frozen=True)
class LutHeatmap:
    device: str
    space: str
    fingerprint: str
    resolutions: list[int]
    stages: int
    panels: list[HeatPanel]
    n_unstable: int
    n_entries: int


@dataclass(frozen=True)
class CalibrationData:
    device: str
    space: str
    raw_ms: list[float]               # LUT sum of each measured architecture (current table)
    measured_ms: list[float]          # at nominal speed
    fit_x: list[float]
    fit_y: list[float]                # the table's calibration over the range (empty without one)
    params: dict[str, float]
    residual: float | None


@dataclass(frozen=True)
class DriftData:
    device: str
    times: list[float]                # unix seconds
    drift: list[float]                # fractions
    threshold: list[float]
    speed_change: list[float | None]
    rescaled: list[bool]
    spaces: list[str]


@dataclass(frozen=True)
class FleetRow:
    device: str
    reachable: str                    # yes | no | unknown (from the last refresh, or a live probe)
    fingerprint: str
    lut_age_h: float | None
    last_drift: float | None
    last_threshold: float | None
    calibration_error: float | None   # median relative residual of the calibration fit
    spaces: list[str]
    stale_runs: str                   # runs whose choice no longer fits the device's table (edgenas runs stale)
    note: str = ""


def lut_heatmap(lut: Any) -> LutHeatmap | None:
    from edgenas.spaces import get_space

    space = get_space(lut.space)
    cfg = getattr(space, "config", None)
    if cfg is None or not hasattr(space, "_keys_at"):
        return None
    panels = []
    for r in cfg.resolutions:
        _, slots = space._keys_at(r)
        for s in range(cfg.n_stages):
            stage_slots = slots[s * cfg.max_depth:(s + 1) * cfg.max_depth]
            ms, bad, keys = [], [], []
            for ki in range(len(cfg.ks_choices)):
                ms.append([]), bad.append([]), keys.append([])
                for ei in range(len(cfg.e_choices)):
                    ks = [sl[ki][ei] for sl in stage_slots]
                    ents = [lut.entries[k] for k in ks if k in lut.entries]
                    ms[-1].append(float(np.mean([lut.value_ms(e) for e in ents])) if ents else math.nan)
                    bad[-1].append(sum(not e.stable for e in ents))
                    keys[-1].append(ks)
            panels.append(HeatPanel(s + 1, r, list(cfg.ks_choices), list(cfg.e_choices), ms, bad, keys))
    return LutHeatmap(lut.device, lut.space, lut.fingerprint_hash, list(cfg.resolutions), cfg.n_stages, panels,
                      len(lut.unstable_keys), len(lut.entries))


def lut_entries(lut: Any) -> list[tuple[str, float, bool]]:
    """(key, cost ms, stable) of every entry, slowest first."""
    return sorted(((k, lut.value_ms(e), e.stable) for k, e in lut.entries.items()), key=lambda t: -t[1])


def calibration_data(lut: Any, source: DataSource) -> CalibrationData:
    from edgenas.errors import InputError
    from edgenas.latency.calibration import apply_calibration
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.spaces import get_space

    space = get_space(lut.space)
    ms = [m for m in source.measurements(device=lut.device, space=lut.space)
          if m.fingerprint_hash == lut.fingerprint_hash]
    raw: list[float] = []
    meas: list[float] = []
    if ms:
        try:
            pred = LatencyPredictor(lut, space)
            raw = [float(v) for v in pred.predict_raw_many([space.from_dict(m.arch) for m in ms])]
        except InputError:
            raw = [float(m.predicted_raw_ms or math.nan) for m in ms]
        meas = [float(m.stats.get("nominal_ms") or m.stats["median_ms"]) for m in ms]
    cal = lut.calibration
    fx: list[float] = []
    fy: list[float] = []
    if cal is not None and raw:
        lo, hi = min(raw), max(raw)
        fx = list(np.linspace(lo * 0.95, hi * 1.05, 50))
        fy = [float(v) for v in apply_calibration(cal, fx)]
    return CalibrationData(lut.device, lut.space, raw, meas, [float(v) for v in fx], fy,
                           dict(cal.params) if cal else {}, cal.residual if cal else None)


def drift_data(device: str, source: DataSource) -> DriftData:
    """The device's drift checks (``verified.jsonl``: file data). A line without a finite drift and a time from
    1970 to ``LAST_TIME_S`` is left out; a threshold or speed change that is not a finite number reads as none."""
    rows = [r for r in source.verified(device) if is_finite(r.get("time")) and 0 <= r["time"] <= LAST_TIME_S
            and is_finite(r.get("drift"))]
    return DriftData(device, [float(r["time"]) for r in rows], [float(r["drift"]) for r in rows],
                     [float(r["threshold"]) if is_finite(r.get("threshold")) else 0.0 for r in rows],
                     [float(r["speed_change"]) if is_finite(r.get("speed_change")) else None for r in rows],
                     [bool(r.get("rescaled")) for r in rows], [str(r.get("space", "")) for r in rows])


def _stale(source: DataSource, device: str) -> str:
    n = source.stale_runs(device)
    return "n/a (no experiment database)" if n is None else str(n)


def fleet_rows(source: DataSource, devices: list[str] | None = None, *, now: float | None = None,
               probe: dict[str, Any] | None = None) -> list[FleetRow]:
    """One row per device. Reachability comes from ``probe`` (device -> ``DeviceStatus``) when given,
    else from the last ``fleet refresh`` (a failed device is 'no')."""
    now = time.time() if now is None else now
    last = {r.get("device"): r for r in source.last_refresh()}
    names = devices if devices is not None else source.devices()
    out = []
    for d in names:
        luts = source.luts(d) if d in source.devices() else []
        checks = drift_data(d, source) if luts else None
        if probe and d in probe:
            st = probe[d]
            reach, note = ("yes" if st.reachable else "no"), (st.error or "")
        elif d in last:
            ok = last[d].get("status") != "failed"
            reach, note = ("yes" if ok else "no"), ("" if ok else str(last[d].get("reason", "")))
        else:
            reach, note = "unknown", "not probed (edgenas fleet refresh, or report --fleet --probe)"
        newest = luts[0] if luts else None
        errs = [t.calibration.residual for t in luts if t.calibration is not None]
        out.append(FleetRow(
            d, reach, newest.fingerprint_hash[:12] if newest else "-",
            (now - newest.created_at) / 3600 if newest else None,
            checks.drift[-1] if checks and checks.drift else None,
            checks.threshold[-1] if checks and checks.threshold else None,
            float(max(errs)) if errs else None, sorted({t.space for t in luts}),
            _stale(source, d), note))
    return out
