"""The parts of ``fleet.calibrate`` that need no device, on made-up tables and spaces: which architectures
``lut calibrate --measure`` times, and a stored measurement in the units of a table's predictions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edgenas.fleet.calibrate import diverse_archs, nominal_now, stored_measurements


class _Space:
    """Architectures are numbers drawn from the generator; ``sampled`` counts them."""

    def __init__(self):
        self.sampled = 0

    def sample(self, rng):
        self.sampled += 1
        return float(rng.random())


class _Predictor:
    """The raw prediction of an architecture is the architecture."""

    @staticmethod
    def predict_raw_many(archs):
        return np.array(archs)


def test_diverse_archs_are_spread_over_the_predicted_range_of_a_seeded_sample():
    space = _Space()
    picked = diverse_archs(space, _Predictor(), 3, seed=4)
    rng = np.random.default_rng(4)
    pool = sorted(float(rng.random()) for _ in range(200))  # at least 200 drawn
    assert space.sampled == 200
    # positions 0, 99.5 and 199 of the sorted pool, rounded half to even: the fastest, the middle, the slowest
    assert picked == [pool[0], pool[100], pool[199]]
    space = _Space()
    assert len(diverse_archs(space, _Predictor(), 20, seed=4)) == 20 and space.sampled == 400  # 20 per pick
    assert diverse_archs(_Space(), _Predictor(), 1, seed=4) == [pool[0]]


def test_a_stored_measurement_counts_at_the_tables_nominal_speed_now():
    lut = SimpleNamespace(normalised=True, reference={"ms": 2.0, "sha256": "ab" * 32})
    # timed against the reference: its ratio x the table's reference time today (a refresh may have rescaled it)
    assert nominal_now({"ratio": 1.5, "nominal_ms": 9.0, "median_ms": 7.0}, lut) == 3.0
    # timed before the table existed (no nominal time then) against the reference the table has: the same. These
    # counted at raw speed, so a few-shot device's first calibration mixed raw and nominal times
    assert nominal_now({"ratio": 1.5, "ref_sha256": "ab" * 32, "median_ms": 7.0}, lut) == 3.0
    # no ratio, or a ratio to another reference (or to one not known): as stored
    assert nominal_now({"ratio": None, "nominal_ms": 9.0, "median_ms": 7.0}, lut) == 9.0
    assert nominal_now({"ratio": 1.5, "ref_sha256": "cd" * 32, "median_ms": 7.0}, lut) == 7.0
    assert nominal_now({"ratio": 1.5, "median_ms": 7.0}, lut) == 7.0
    assert nominal_now({"median_ms": 7.0}, lut) == 7.0
    # a table without a reference time (not normalised): the stored nominal time
    assert nominal_now({"ratio": 1.5, "nominal_ms": 9.0, "median_ms": 7.0}, SimpleNamespace(normalised=False)) == 9.0


def test_a_calibration_is_fitted_on_the_stored_measurements_of_its_runtime():
    asked = []

    class Store:
        def list(self, **where):
            asked.append(where)
            return [SimpleNamespace(id=1, runtime="onnxruntime"), SimpleNamespace(id=2, runtime="torch")]

    assert [m.id for m in stored_measurements(Store(), "dev", "mbv3-tiny", "ab12", "torch")] == [2]
    assert asked == [{"device": "dev", "space": "mbv3-tiny", "fingerprint_hash": "ab12"}]


def test_a_fit_reports_the_share_of_predictions_within_10_percent_before_and_after(monkeypatch):
    from edgenas.fleet.calibrate import fit_to_measurements
    from edgenas.latency import calibration, predictor

    class Predictor:  # the raw sum is the architecture's "raw"; the fitted table scales it by its factor
        def __init__(self, lut, space):
            self.factor = getattr(lut, "factor", None)

        def predict_raw_many(self, archs):
            return np.array([a["raw"] for a in archs])

        def predict_many(self, archs):
            return np.array([a["raw"] * self.factor for a in archs])

    fitted = SimpleNamespace(factor=0.95)
    monkeypatch.setattr(predictor, "LatencyPredictor", Predictor)
    monkeypatch.setattr(calibration, "fit_calibration",
                        lambda raw, measured: SimpleNamespace(params={"a": -0.05, "b": 1.0}, residual=0.25))
    lut = SimpleNamespace(normalised=False, with_calibration=lambda cal: fitted)
    space = SimpleNamespace(from_dict=lambda d: d)
    ms = [SimpleNamespace(arch={"raw": raw}, stats={"median_ms": 10.0}) for raw in (11.0, 12.0, 10.0, 9.5)]
    fit = fit_to_measurements(lut, space, ms)
    assert fit.lut is fitted and fit.n_points == 4 and fit.params == {"a": -0.05, "b": 1.0} and fit.residual == 0.25
    # raw: off by 10% (counted), 20%, 0% and 5%; calibrated (x 0.95): 4.5%, 14%, 5% and 9.75%
    assert fit.within10_raw == 0.75 and fit.within10_calibrated == 0.75


def test_a_measurement_of_an_architecture_not_of_its_space_is_named():
    """``lut calibrate`` over a measurement whose record was edited said only "r=99 is not one of 24, 28, 32"."""
    import pytest

    from edgenas.errors import InputError
    from edgenas.spaces import get_space
    from edgenas.store.base import measured_archs

    space = get_space("mbv3-tiny")
    good = space.to_dict(space.sample(np.random.default_rng(0)))
    ms = [SimpleNamespace(id="m-good", device="pi", space="mbv3-tiny", arch=good),
          SimpleNamespace(id="m-bad", device="pi", space="mbv3-tiny", arch={**good, "r": 99})]
    assert measured_archs(space, ms[:1]) == [space.from_dict(good)]
    with pytest.raises(InputError) as exc:
        measured_archs(space, ms)
    assert exc.value.message.startswith("measurement m-bad (pi, mbv3-tiny): r=99 is not one of")
    assert "delete that measurement" in exc.value.hint
