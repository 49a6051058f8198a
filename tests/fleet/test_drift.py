"""Drift checks on the real ``local`` device: shape vs speed, rescaling only when a speed change
persists, and the raw-time fallback for tables without a speed reference."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.fleet.profiler import profile_device
from edgenas.devices.profiles import LOCAL_PROFILE
from edgenas.fleet.drift import DRIFT_CAP, DRIFT_FLOOR, SPEED_TOLERANCE, drift_threshold, same_sign_off
from edgenas.fleet.refresh import last_refresh_path, refresh_device, refresh_fleet
from edgenas.latency.lut import Calibration, EntryStats, Lut
from edgenas.latency.store import LutStore

SPACE = "mbv3-tiny"
PROTO = {"warmup_min_n": 3, "warmup_min_s": 0.01, "min_n": 5, "min_s": 0.05, "max_s": 0.2}
NOISE_FLOOR = 0.4  # a short protocol on a shared machine: see tests/fleet/test_refresh.py
_MS = ("median_ms", "mean_ms", "std_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")


@pytest.fixture
def profiled(project):
    res = profile_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO)
    lut = Lut.load(res.lut_path)
    assert lut.normalised
    return res, lut


def verified_lines(project) -> list[dict]:
    return [json.loads(x) for x in (project.luts_dir / "local" / "verified.jsonl").read_text().splitlines()]


def test_speed_change_is_reported_once_then_rescaled(project, profiled):
    res, orig = profiled
    store = LutStore(project.luts_dir)
    # the table claims a device 10x faster than this one: its shape (ratios) is right. (3x was too
    # little: on a VM whose runtime sessions ran 2x apart, the reference timed 1.7x faster at the
    # refresh than at the profile, bench/RESULTS.md, issue 17)
    # calibrated with a slope below 1, as fitted on a few deploys
    fast = dataclasses.replace(orig, reference=dict(orig.reference, ms=orig.reference["ms"] * 0.1),
                               calibration=Calibration("loglinear", {"a": 0.2, "b": 0.8}, 4))
    assert store.save(fast) == res.lut_path
    before = res.lut_path.read_bytes()

    first = refresh_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO, drift_floor=NOISE_FLOOR)
    assert first.status == "verified", first.reason
    assert first.speed_change is not None and first.speed_change > 1.0
    assert "speed" in first.reason and "not rescaled" in first.reason
    assert res.lut_path.read_bytes() == before  # one sighting changes nothing

    second = refresh_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO, drift_floor=NOISE_FLOOR)
    assert second.status == "rescaled", second.reason
    assert second.speed_change > SPEED_TOLERANCE
    new = Lut.load(res.lut_path)
    lines = verified_lines(project)
    assert [x["rescaled"] for x in lines] == [False, True]
    assert new.reference["ms"] == pytest.approx((lines[0]["reference_ms"] + lines[1]["reference_ms"]) / 2)
    assert new.reference["ms"] / fast.reference["ms"] > 1.7  # far from the fake nominal speed
    assert 0.4 < new.reference["ms"] / orig.reference["ms"] < 2.5  # back near this machine's speed
    assert new.entries == fast.entries and new.fingerprint_hash == fast.fingerprint_hash  # shape kept
    # every calibrated prediction follows the nominal speed (the kept calibration moved them by its ** 0.8)
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.spaces import get_space

    space = get_space(SPACE)
    archs = [space.sample(np.random.default_rng(i)) for i in range(5)]
    factor = new.reference["ms"] / fast.reference["ms"]
    ratio = LatencyPredictor(new, space).predict_many(archs) / LatencyPredictor(fast, space).predict_many(archs)
    assert ratio == pytest.approx(np.full(5, factor), rel=1e-9) and new.calibration.params["b"] == 0.8
    assert len(list((project.luts_dir / "local" / "history").glob("*.json"))) >= 2  # the old table kept
    on_device = project.local_workdir / "luts" / res.lut_path.name
    assert Lut.load(on_device).reference["ms"] == new.reference["ms"]  # the agent's copy follows


def test_shape_drift_rebuilds(project, profiled):
    import numpy as np

    from edgenas.fleet.deploy import deploy
    from edgenas.spaces import get_space

    res, orig = profiled
    space = get_space(SPACE)  # one whole-model measurement of the device, which the rebuilt table is fitted on
    deploy(project, "local", space, space.sample(np.random.default_rng(0)), calibrate=False)
    skewed = dataclasses.replace(orig, entries={k: dataclasses.replace(e, ratio=e.ratio * 4.0)
                                                for k, e in orig.entries.items()})
    LutStore(project.luts_dir).save(skewed)
    out = refresh_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO, drift_floor=NOISE_FLOOR)
    assert out.status == "refreshed" and out.reason.startswith("shape drift"), out.reason
    assert out.drift > 0.5 and out.drift > out.threshold
    assert out.reason.endswith("; calibrated on 1 stored measurement"), out.reason
    rebuilt = Lut.load(res.lut_path)
    assert rebuilt.calibration is not None and rebuilt.calibration.n_points == 1
    ratios = sorted(rebuilt.entries[k].ratio / skewed.entries[k].ratio for k in orig.entries)
    assert ratios[len(ratios) // 2] < 0.6  # the new table is far from the skewed numbers


def test_table_without_reference_falls_back_to_raw_times(project, profiled):
    res, orig = profiled
    raw = dataclasses.replace(orig, reference=None, entries={
        k: dataclasses.replace(e, ratio=None, **{f: getattr(e, f) * 0.2 for f in _MS})
        for k, e in orig.entries.items()})
    LutStore(project.luts_dir).save(raw)
    out = refresh_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO, drift_floor=NOISE_FLOOR)
    assert out.status == "refreshed" and out.reason.startswith("drift "), out.reason
    assert out.speed_change is None and out.drift > 1.0
    assert Lut.load(res.lut_path).normalised  # rebuilt with the speed reference


@pytest.mark.parametrize("prev, now, expected", [
    ({"speed_change": 0.5, "reference_ms": 1.0}, 0.4, True),
    ({"speed_change": -0.5, "reference_ms": 1.0}, -0.3, True),
    ({"speed_change": 0.5, "reference_ms": 1.0}, -0.4, False),  # opposite signs: noise, not a trend
    ({"speed_change": 0.1, "reference_ms": 1.0}, 0.4, False),  # the previous check was within tolerance
    ({"speed_change": None, "reference_ms": None}, 0.4, False),  # previous check had no reference
    (None, 0.4, False),
])
def test_rescale_needs_two_sightings_of_the_same_sign(prev, now, expected):
    assert same_sign_off(prev, now) is expected


def _stats(median: float, p90: float, mean: float, std: float) -> EntryStats:
    return EntryStats(n=200, median_ms=median, mean_ms=mean, std_ms=std, cov=std / mean, p90_ms=p90,
                      p99_ms=p90, min_ms=median * 0.9, max_ms=50.0)


def test_a_few_stalls_do_not_lift_the_drift_threshold_to_the_cap(profiled):
    """A sentinel whose bulk spreads 3% but whose std one 50 ms stall among 4 us samples makes 0.45 of the
    mean (seen on a real profile) must not set the threshold to 50%: a table 25% off would pass."""
    _, lut = profiled
    keys = list(lut.entries)[:5]
    stalled = {k: _stats(0.004, 0.004 * 1.03, 0.0045, 0.45 * 0.0045) for k in keys}
    cov, threshold = drift_threshold(dataclasses.replace(lut, entries=stalled), keys)
    assert cov == pytest.approx(0.03 / 1.2816, rel=1e-3) and threshold == pytest.approx(3 * cov)  # 7%
    sharp = {k: _stats(0.004, 0.004 * 1.005, 0.0045, 0.45 * 0.0045) for k in keys}
    assert drift_threshold(dataclasses.replace(lut, entries=sharp), keys)[1] == DRIFT_FLOOR
    spread = {k: _stats(1.0, 1.0 + 0.1 * 1.2816, 1.0, 0.1) for k in keys}  # a normal bulk, CoV 0.1
    assert drift_threshold(dataclasses.replace(lut, entries=spread), keys) == pytest.approx((0.1, 0.3), rel=1e-4)
    wide = {k: _stats(1.0, 2.0, 1.0, 0.5) for k in keys}
    assert drift_threshold(dataclasses.replace(lut, entries=wide), keys)[1] == DRIFT_CAP


def test_drift_floor_out_of_range_is_one_clear_error(project):
    with pytest.raises(InputError, match="--drift-floor"):
        refresh_fleet(project, [LOCAL_PROFILE], SPACE, drift_floor=0.0)
    assert not last_refresh_path(project).exists()


def test_unknown_space_is_one_clear_error_before_any_device(project):
    with pytest.raises(InputError, match="unknown search space|unknown space"):
        refresh_fleet(project, [LOCAL_PROFILE], "mbv9")
    assert not last_refresh_path(project).exists() and not project.luts_dir.exists()


@pytest.mark.parametrize("meanwhile", ["profile finished", "profile running"])
def test_a_rescale_never_overwrites_a_table_saved_during_the_check(project, profiled, monkeypatch, meanwhile):
    """The check runs without the table's lock (seconds to minutes); a ``profile --force`` that saved a
    newer table meanwhile used to be overwritten by the rescaled old one (it survived only in history/)."""
    import time
    from contextlib import ExitStack

    import edgenas.fleet.refresh as refresh
    from edgenas.fleet.table_lock import profile_lock

    res, orig = profiled
    store = LutStore(project.luts_dir)
    fast = dataclasses.replace(orig, reference=dict(orig.reference, ms=orig.reference["ms"] * 0.1))
    store.save(fast)
    with open(project.luts_dir / "local" / "verified.jsonl", "w") as fh:  # the first sighting: a rescale is due
        fh.write(json.dumps({"time": time.time(), "space": SPACE, "fingerprint_hash": fast.fingerprint_hash,
                             "drift": 0.0, "threshold": NOISE_FLOOR, "basis": "ratio", "speed_change": 9.0,
                             "reference_ms": orig.reference["ms"], "nominal_ms": fast.reference["ms"],
                             "rescaled": False}) + "\n")
    newer = dataclasses.replace(orig, created_at=time.time() + 1, reference=dict(orig.reference, ms=1.25))
    real = refresh.measure_drift
    held = ExitStack()

    def check_then_profile(*args, **kwargs):
        check = real(*args, **kwargs)
        if meanwhile == "profile finished":
            store.save(newer)  # what another process's `profile --force` leaves
        else:
            held.enter_context(profile_lock(project, "local", SPACE))  # ... or holds while it runs
        return check

    monkeypatch.setattr(refresh, "measure_drift", check_then_profile)
    with held:
        row = refresh_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO, drift_floor=NOISE_FLOOR)
    assert row.status == "verified" and "twice in a row, not rescaled" in row.reason, row.reason
    expected = newer if meanwhile == "profile finished" else fast
    assert Lut.load(res.lut_path).to_dict() == expected.to_dict()
    assert ("changed during the check" if meanwhile == "profile finished" else "is running") in row.reason
    assert [x["rescaled"] for x in verified_lines(project)] == [False, False]


def test_a_rescale_keeps_a_calibration_refitted_during_the_check(project, profiled, monkeypatch):
    """A refit (``deploy``) during the check changes only the calibration: the table is still the one
    checked, so it is rescaled, with the new calibration."""
    import time

    import edgenas.fleet.refresh as refresh

    res, orig = profiled
    store = LutStore(project.luts_dir)
    fast = dataclasses.replace(orig, reference=dict(orig.reference, ms=orig.reference["ms"] * 0.1))
    store.save(fast)
    with open(project.luts_dir / "local" / "verified.jsonl", "w") as fh:
        fh.write(json.dumps({"time": time.time(), "space": SPACE, "fingerprint_hash": fast.fingerprint_hash,
                             "speed_change": 9.0, "reference_ms": orig.reference["ms"],
                             "nominal_ms": fast.reference["ms"], "rescaled": False}) + "\n")
    real = refresh.measure_drift

    def check_then_refit(*args, **kwargs):
        check = real(*args, **kwargs)
        store.save(fast.with_calibration(Calibration("loglinear", {"a": 0.1, "b": 0.9}, 5)), keep_previous=False)
        return check

    monkeypatch.setattr(refresh, "measure_drift", check_then_refit)
    row = refresh_device(project, LOCAL_PROFILE, SPACE, protocol=PROTO, drift_floor=NOISE_FLOOR)
    assert row.status == "rescaled", row.reason
    new = Lut.load(res.lut_path)
    assert new.calibration.n_points == 5 and new.calibration.params["b"] == 0.9
    assert new.reference["ms"] > fast.reference["ms"] * 1.7
