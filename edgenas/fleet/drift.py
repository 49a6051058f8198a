"""Drift of a device's LUT: re-time a few sentinel entries and compare (what ``fleet refresh`` checks).

A LUT is two things: the cost of each block relative to the speed reference (its *shape*, ``ratio``)
and the device's nominal speed (``reference.ms``). ``measure_drift`` re-times ``N_SENTINELS`` stable
entries spread over the table's latency range and reports both: the median relative change of their
ratios (raw times for tables without ratios) against a threshold of ``max(floor, 3 x CoV)`` capped at
``DRIFT_CAP``, and the reference's time now against the nominal one. The CoV is the sentinels' median
robust one (``EntryStats.robust_cov``, the bulk of their samples): a few stalls while the table was
built must not lift the threshold to the cap. Each check of a table is recorded in
``luts/DEVICE/verified.jsonl`` (``record_verified``), so the next check can tell a persistent speed
change from a busy moment (``last_verified``, ``same_sign_off``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Collection

import numpy as np

from edgenas.devices.session import Session
from edgenas.errors import DeviceError, InputError
from edgenas.fleet.measure import (
    bench_many_results, export_blocks, lut_protocol_for, reference_model, runs_per_sample)
from edgenas.io import sha256_file
from edgenas.latency.lut import MAX_MS, Lut
from edgenas.limits import is_finite, loads_json
from edgenas.project import Project
from edgenas.spaces import get_space

#: the smallest shape drift that rebuilds a table (3 x the CoV is used when larger). Re-checking an
#: unchanged table on our shared 2-core VM moved the sentinels' ratios by up to 20% for a minute at a
#: time (bench/drift_check.py; its CoV-based threshold was 11-50% there); a Jetson with fixed clocks
#: repeats within a few percent. ``--drift-floor`` raises it for a fleet of noisy machines.
DRIFT_FLOOR = 0.05
DRIFT_COV_FACTOR = 3.0
DRIFT_CAP = 0.5
SPEED_TOLERANCE = 0.2
#: two sightings of a speed change rescale a table only when their reference times are within this factor of
#: each other (their mean becomes the nominal speed); runtime sessions on our shared VM timed up to 2x apart
SIGHTINGS_AGREE = 3.0
N_SENTINELS = 5


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
    cov: float = 0.0  # the sentinels' median robust CoV when the table was built

    @property
    def drifted(self) -> bool:
        return self.drift > self.threshold


def sentinel_keys(lut: Lut, n: int = N_SENTINELS, vocab: Collection[str] | None = None) -> list[str]:
    """``n`` stable entries spread over the table's latency range (deterministic); with ``vocab`` (the
    space's block keys), only its entries. A table's keys are file data, and a drift check builds and
    times each sentinel's block: a key the space never makes (a conv of 100,000 channels, say) was built."""
    entries = {k: e for k, e in lut.entries.items() if vocab is None or k in vocab}
    stable = sorted((e.median_ms, k) for k, e in entries.items() if e.stable) or \
        sorted((e.median_ms, k) for k, e in entries.items())
    idx = np.unique(np.linspace(0, len(stable) - 1, min(n, len(stable))).round().astype(int))
    return [stable[i][1] for i in idx]


def drift_threshold(lut: Lut, keys: list[str], floor: float = DRIFT_FLOOR) -> tuple[float, float]:
    """The sentinels' median robust CoV when the table was built, and the shape drift above which the
    table counts as drifted: ``max(floor, DRIFT_COV_FACTOR x CoV)`` capped at ``DRIFT_CAP``."""
    cov = float(np.median([lut.entries[k].robust_cov for k in keys]))
    return cov, min(max(floor, DRIFT_COV_FACTOR * cov), DRIFT_CAP)


def measure_drift(session: Session, project: Project, lut: Lut, protocol: dict[str, Any] | None = None, *,
                  floor: float = DRIFT_FLOOR, confirm: bool = True) -> DriftCheck:
    """Re-time the sentinels (against the table's speed reference when it has one).

    With ``confirm``, a check that finds drift re-times the sentinels once more and keeps the pass with
    the smaller drift: the table counts as drifted only when both passes say so (one busy moment on the
    device must not trigger a rebuild)."""
    space = get_space(lut.space)
    keys = sentinel_keys(lut, vocab=set(space.key_vocab()))
    if not keys:
        raise InputError(f"the {lut.space} table of '{lut.device}' holds none of the space's block keys",
                         hint=f"re-profile: edgenas profile {lut.device} --space {lut.space}")
    paths, _ = export_blocks(project, space, keys, runtime=lut.runtime)
    items = [{"key": k, "model": m} for k, m in zip(keys, session.push_many([paths[k] for k in keys]))]
    params = dict(session.runtime_params(lut.runtime), items=items)
    # timed as the table was: in runs where its entries were (a table's protocol is file data, checked)
    params["protocol"] = {**lut_protocol_for(params), "runs_per_sample": runs_per_sample(lut.protocol),
                          **(protocol or {})}
    ref_path = reference_model(project, lut.runtime)
    if lut.normalised and lut.reference.get("sha256") == sha256_file(ref_path):  # type: ignore[union-attr]
        params["reference"] = session.push(ref_path)
    cov, threshold = drift_threshold(lut, keys, floor)
    first = dataclasses.replace(_sentinel_pass(session, lut, keys, params, threshold), cov=cov)
    if not (confirm and first.drifted):
        return first
    second = _sentinel_pass(session, lut, keys, params, threshold)
    kept = min(first, second, key=lambda c: c.drift)
    return dataclasses.replace(kept, passes=2, raw_drift=first.raw_drift, cov=cov)


def _sentinel_pass(session: Session, lut: Lut, keys: list[str], params: dict[str, Any], threshold: float
                   ) -> DriftCheck:
    partial = f"partial/sentinels-{lut.space}-{lut.fingerprint_hash[:12]}-{time.time_ns()}.jsonl"
    try:  # a new name each pass (a drift check never reuses a timing), so the file is removed after it
        results, _ = bench_many_results(session.device, session.call("bench_many", dict(params, partial=partial)),
                                        keys)
    finally:
        session.forget(partial)
    missing = [k for k in keys if k not in results]
    if missing:
        raise DeviceError(session.device, f"the agent returned no result for {len(missing)} sentinel blocks "
                                          f"(first: {missing[0]})", hint="retry the refresh")
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


def _verified_path(project: Project, device: str):
    return project.luts_dir / device / "verified.jsonl"


def record_verified(project: Project, device: str, lut: Lut, check: DriftCheck, rescaled: bool = False) -> None:
    path = _verified_path(project, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "space": lut.space, "fingerprint_hash": lut.fingerprint_hash,
                       "drift": check.drift, "threshold": check.threshold, "basis": check.basis,
                       "speed_change": check.speed_change, "reference_ms": check.reference_ms,
                       "nominal_ms": (lut.reference or {}).get("ms"), "rescaled": rescaled})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def last_verified(project: Project, device: str, lut: Lut) -> dict[str, Any] | None:
    """The previous check of this very table (same space, fingerprint and nominal speed), if any."""
    try:
        lines = _verified_path(project, device).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            rec = loads_json(line)
        except ValueError:  # JSONDecodeError, a value no record holds or too deep (limits.UnreadableValue)
            continue
        if isinstance(rec, dict) and rec.get("space") == lut.space \
                and rec.get("fingerprint_hash") == lut.fingerprint_hash:
            same_table = rec.get("nominal_ms") == (lut.reference or {}).get("ms") and not rec.get("rescaled")
            return rec if same_table else None
    return None


def same_sign_off(previous: dict[str, Any] | None, speed_change: float | None) -> bool:
    """True when the previous check also saw the speed off by more than the tolerance, the same way, and by
    about as much (its reference time within ``SIGHTINGS_AGREE`` x of today's).

    Its line is file data, and a rescale averages its reference time into the table's nominal speed. A line
    is no sighting without a time a check measures (a number in (0, MAX_MS], not a bool), or when its
    ``speed_change`` is not what its ``reference_ms`` and ``nominal_ms`` give (``reference_ms / nominal_ms - 1``,
    as ``record_verified`` writes it): an edited reference time of 1e6 ms against a real 0.0016 ms rescaled
    the table to 5e5 ms."""
    if previous is None or speed_change is None or not is_finite(previous.get("speed_change")):
        return False
    ref, nominal = previous.get("reference_ms"), previous.get("nominal_ms")
    if not (is_finite(ref) and 0 < ref <= MAX_MS and is_finite(nominal) and 0 < nominal <= MAX_MS):
        return False
    prev = float(previous["speed_change"])
    if not math.isclose(prev, ref / nominal - 1.0, rel_tol=1e-9, abs_tol=1e-12):
        return False
    now = 1.0 + speed_change  # today's reference time over the nominal one
    agree = now > 0 and 1 / SIGHTINGS_AGREE <= (1.0 + prev) / now <= SIGHTINGS_AGREE
    return abs(prev) > SPEED_TOLERANCE and (prev > 0) == (speed_change > 0) and agree
