"""Every one-field edit of a LUT, a few-shot model or a measurement record (each field set to null, a
string, a negative, a huge number, NaN, infinity, a list, an object, true, ..., or deleted) is either
one ``InputError`` (when it is read, or at the first prediction) or a record that predicts finite,
positive latencies: never a TypeError, OverflowError or RuntimeWarning, never a NaN latency.

These records are files a user can edit and a device can send; the mutations found int()/float() of
unchecked fields (threads, created_at, calibration counts), a calibration predicting infinite
latencies and a few-shot model dividing by a zero scale. (The table-corrected few-shot record is
covered the same way by hand: about 2,500 edits, none bad, but a minute of CPU.)
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot_model import FewShotLatency, FewShotModel, arch_descriptors
from edgenas.latency.lut import Calibration, EntryStats, Lut
from edgenas.latency.predictor import LatencyPredictor
from edgenas.spaces import get_space
from edgenas.store.record import Measurement
from tests.mutations import DELETE, one_field_edits

SPACE = get_space("mbv3-tiny")
VALUES = [None, "x", -1, 0, 1e308, float("nan"), float("inf"), [], {}, True, [1.0, 2.0], [[1.0]], 3]


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms, min_ms=ms,
                      max_ms=ms)


def _lut(device: str, scale: float, rng: np.random.Generator) -> Lut:
    return Lut(device=device, space=SPACE.name, fingerprint={"m": device}, fingerprint_hash=device * 64,
               runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=_stats(0.1),
               entries={k: _stats(float(scale * (0.05 + rng.random()))) for k in SPACE.key_vocab()},
               calibration=Calibration(model="loglinear", params={"a": 0.1, "b": 1.0}, n_points=5))


@pytest.fixture(scope="module")
def world():
    from edgenas.fleet.fewshot import _fit

    rng = np.random.default_rng(0)
    luts = [_lut("a", 1.0, rng), _lut("b", 2.5, rng)]
    refs = [(t.device, t.fingerprint_hash, LatencyPredictor(t, SPACE)) for t in luts]
    archs = [SPACE.from_genes(g) for g in SPACE.sample_genes(rng, 12)]
    y = refs[0][2].predict_many(archs) * 1.3 + refs[1][2].predict_many(archs) * 0.2
    reg, _ = _fit(SPACE, archs, y, refs)
    model = FewShotModel(device="new", space=SPACE.name, fingerprint_hash="ef" * 32, runtime="onnxruntime",
                         references=tuple((r[0], r[1]) for r in refs),
                         descriptor_names=tuple(arch_descriptors(SPACE, archs[:1])[1]), ensemble=reg.to_dict(),
                         n_points=len(y))
    m = Measurement(device="new", space=SPACE.name, arch=SPACE.to_dict(archs[0]), artifact_sha256="cd" * 32,
                    runtime="onnxruntime", precision="fp32", fingerprint_hash="ef" * 32,
                    stats=_stats(1.5).to_dict(), cold_start={"session_ms": 3.0}, predicted_ms=1.4)
    test_archs = [SPACE.from_genes(g) for g in SPACE.sample_genes(rng, 50)]
    return luts, refs, model, m, test_archs


def _edits(good: dict):
    return one_field_edits(good, VALUES + [DELETE])


def _bad_edits(good: dict, use) -> list[str]:
    bad = []
    for p, v, d in _edits(good):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            try:
                out = np.asarray(use(d), dtype=float)
            except InputError:
                continue
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                bad.append(f"{p} = {v!r}: {type(exc).__name__}: {str(exc)[:80]}")
                continue
        if not (np.all(np.isfinite(out)) and np.all(out > 0)):
            bad.append(f"{p} = {v!r}: latencies {out[:3]}")
    return bad


def test_lut_edits(world):
    luts, _, _, _, archs = world
    good = json.loads(json.dumps(luts[0].to_dict()))
    assert len(list(_edits(good))) > 300
    assert _bad_edits(good, lambda d: LatencyPredictor(Lut.from_dict(d), SPACE).predict_many(archs)) == []


def test_lut_timed_in_runs_edits(world):
    """A table of a runtime whose calls overlap on the device: runs_per_sample and the sync entry."""
    import dataclasses

    luts, _, _, _, archs = world
    lut = dataclasses.replace(luts[0], protocol={"runs_per_sample": 10}, sync=_stats(0.13))
    good = json.loads(json.dumps(lut.to_dict()))
    assert LatencyPredictor(Lut.from_dict(good), SPACE).overhead_ms == pytest.approx(0.13)
    assert len([e for e in _edits(good) if e[0][0] == "sync"]) > 100
    assert _bad_edits(good, lambda d: LatencyPredictor(Lut.from_dict(d), SPACE).predict_many(archs)) == []


def test_fewshot_model_edits(world):
    _, refs, model, _, archs = world
    good = json.loads(json.dumps(model.to_dict()))
    assert len(list(_edits(good))) > 300

    def use(d):
        return FewShotLatency(FewShotModel.from_dict(d), SPACE, [r[2] for r in refs]).predict_many(archs)

    assert _bad_edits(good, use) == []


def test_measurement_edits(world):
    _, _, _, m, _ = world
    good = json.loads(m.to_json())

    def use(d):
        got = Measurement.from_dict(d)
        json.loads(got.to_json())
        return [got.measured_ms, got.entry_stats.median_ms] + ([got.predicted_ms] if got.predicted_ms else [])

    assert _bad_edits(good, use) == [] and math.isclose(Measurement.from_dict(good).measured_ms, 1.5)
