"""Calibration from LUT sums to measured latency: recovery, robustness, monotonicity, few points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.calibration import B_MAX, B_MIN, apply_calibration, fit_calibration
from edgenas.latency.lut import Calibration


def test_recovers_a_power_law_exactly():
    p = np.geomspace(2.0, 40.0, 20)
    m = 1.7 * p**1.15
    cal = fit_calibration(p, m)
    assert cal.model == "loglinear" and cal.n_points == 20
    assert cal.params["b"] == pytest.approx(1.15, abs=1e-3)
    assert np.exp(cal.params["a"]) == pytest.approx(1.7, rel=5e-3)
    np.testing.assert_allclose(apply_calibration(cal, p), m, rtol=2e-3)
    assert cal.residual < 2e-3


def test_one_outlier_does_not_move_the_fit():
    rng = np.random.default_rng(0)
    p = np.geomspace(1.0, 30.0, 12)
    m = 1.25 * p * np.exp(rng.normal(0, 0.01, p.size))
    m_bad = m.copy()
    m_bad[5] *= 5.0  # e.g. a measurement taken while the board was throttling
    clean, dirty = fit_calibration(p, m), fit_calibration(p, m_bad)
    assert dirty.params["b"] == pytest.approx(clean.params["b"], abs=0.03)
    np.testing.assert_allclose(apply_calibration(dirty, p), 1.25 * p, rtol=0.04)
    # least squares on the same data is pulled far off: the robustness is real
    b_ls = np.polyfit(np.log(p), np.log(m_bad), 1)[0]
    assert abs(b_ls - 1.0) > 3 * abs(dirty.params["b"] - 1.0)


def test_monotone_even_for_anti_correlated_data():
    p = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    cal = fit_calibration(p, 1.0 / p)  # nonsense data cannot make the correction decreasing
    assert B_MIN <= cal.params["b"] <= B_MAX
    grid = np.geomspace(0.1, 100, 200)
    assert np.all(np.diff(apply_calibration(cal, grid)) > 0)


def test_few_noisy_points_stay_close_to_a_ratio():
    p = np.array([5.0, 5.5, 6.0])
    m = np.array([6.0, 7.5, 6.4])  # a slope fitted freely on these would be wild
    cal = fit_calibration(p, m)
    assert abs(cal.params["b"] - 1.0) < 0.25


def test_one_point_is_a_pure_ratio():
    cal = fit_calibration([4.0], [5.0])
    assert cal.n_points == 1 and cal.params["b"] == 1.0
    np.testing.assert_allclose(apply_calibration(cal, [4.0, 8.0, 1.0]), [5.0, 10.0, 1.25])
    assert cal.residual == pytest.approx(0.0, abs=1e-12)


def test_two_points_fit_only_the_offset():
    cal = fit_calibration([2.0, 10.0], [3.0, 30.0])  # ratios 1.5 and 3
    assert cal.params["b"] == 1.0
    assert np.exp(cal.params["a"]) == pytest.approx(np.sqrt(1.5 * 3.0))


def test_zero_points_is_an_error():
    with pytest.raises(InputError, match="no measurements"):
        fit_calibration([], [])


@pytest.mark.parametrize("p,m,what", [
    ([1.0, np.nan], [1.0, 2.0], "predicted"),
    ([1.0, 2.0], [1.0, -2.0], "measured"),
    ([1.0, 0.0], [1.0, 2.0], "predicted"),
    ([1.0, 2.0], [1.0, np.inf], "measured"),
])
def test_bad_values_are_input_errors(p, m, what):
    with pytest.raises(InputError, match=what):
        fit_calibration(p, m)


def test_length_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="2 predictions but 3 measurements"):
        fit_calibration([1.0, 2.0], [1.0, 2.0, 3.0])


def test_identity_without_calibration_and_round_trip_of_the_record():
    raw = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(apply_calibration(None, raw), raw)
    cal = fit_calibration([1.0, 2.0, 4.0, 8.0], [1.1, 2.3, 4.4, 9.1])
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(InputError, match="unknown calibration model"):
        apply_calibration(Calibration(model="spline", params={}, n_points=1), raw)


def test_an_edited_calibration_or_lut_record_is_one_input_error():
    from edgenas.latency.lut import EntryStats, Lut

    e = EntryStats(n=5, median_ms=1.0, mean_ms=1.0, std_ms=0.0, cov=0.0, p90_ms=1.0, p99_ms=1.0, min_ms=1.0,
                   max_ms=1.0)
    good = Lut(device="d", space="mbv3-tiny", fingerprint={}, fingerprint_hash="ab" * 32, runtime="onnxruntime",
               precision="fp32", threads=1, protocol={}, overhead=e, entries={"k": e},
               calibration=Calibration(model="loglinear", params={"a": 0.1, "b": 1.0}, n_points=3)).to_dict()
    assert Lut.from_dict(good).threads == 1
    cal = good["calibration"]
    # each was a TypeError, ValueError or OverflowError out of int()/float() (an internal error)
    for broken in ({**good, "threads": "x"}, {**good, "threads": None}, {**good, "threads": float("inf")},
                   {**good, "threads": [1]}, {**good, "created_at": "x"}, {**good, "created_at": {}},
                   {**good, "calibration": {**cal, "n_points": float("inf")}},
                   {**good, "calibration": {**cal, "params": {"a": "x", "b": 1.0}}},
                   {**good, "calibration": {**cal, "params": {"a": float("nan"), "b": 1.0}}},
                   {**good, "calibration": [1]}):
        with pytest.raises(InputError):
            Lut.from_dict(broken)
    # finite but absurd: refused where it is read (it loaded, and the first prediction said it)
    with pytest.raises(InputError, match="outside what a fit writes"):
        Lut.from_dict({**good, "calibration": {**cal, "params": {"a": 1e308, "b": 1.0}}})
    # a valid correction of absurd sums (an edited table's): never an infinite or a 0 ms latency
    for a, raw, needle in ((20.0, 1e300, "infinite latency"), (-20.0, 1e-300, "latency of 0 ms")):
        with pytest.raises(InputError, match=needle):
            apply_calibration(Calibration("loglinear", {"a": a, "b": 1.5}, 3), np.array([1.0, raw]))


def test_a_calibration_the_predictor_would_refuse_is_refused_where_the_table_is_read():
    """A table pulled from a device (or edited) with a calibration of another model or a slope <= 0 was
    stored, passed ``lut show``, and failed only in a later search with a line that named neither the device
    nor the file. A fit dated in the future is no such damage (the host clock was ahead): it is read, with a
    warning (``lut pull`` does not take it for newer: test_local_loop.py); a date < 0, past the year 9999 or not
    finite is not."""
    import time

    from edgenas.latency.lut import EntryStats, Lut

    e = EntryStats(n=5, median_ms=1.0, mean_ms=1.0, std_ms=0.0, cov=0.0, p90_ms=1.0, p99_ms=1.0, min_ms=1.0,
                   max_ms=1.0)
    good = Lut(device="d", space="mbv3-tiny", fingerprint={}, fingerprint_hash="ab" * 32, runtime="onnxruntime",
               precision="fp32", threads=1, protocol={}, overhead=e, entries={"k": e},
               calibration=Calibration(model="loglinear", params={"a": 0.1, "b": 1.0}, n_points=3)).to_dict()
    cal = good["calibration"]
    for changed, needle in (({"model": "bogus"}, "unknown calibration model 'bogus'"),
                            ({"params": {"a": 1.0, "b": -2.0}}, "calibration slope b=-2 is not > 0"),
                            ({"params": {"a": 1.0, "b": 0.0}}, "calibration slope b=0 is not > 0"),
                            ({"params": {"a": 1.0}}, "calibration: params 'a' and 'b' must be finite"),
                            ({"params": {"a": 0.0, "b": 1e5}}, "calibration a=0, b=100000 is outside what a fit"),
                            ({"params": {"a": -800.0, "b": 1.0}}, "calibration a=-800, b=1 is outside what a fit"),
                            ({"fitted_at": -1.0}, "fitted_at must be a time from 0 to 253402300799"),
                            ({"fitted_at": math.inf}, "fitted_at must be a time from 0 to 253402300799"),
                            ({"fitted_at": 1e300}, "fitted_at must be a time from 0 to 253402300799")):
        with pytest.raises(InputError, match=f"LUT luts/x.json: {needle}"):
            Lut.from_dict({**good, "calibration": {**cal, **changed}}, where="LUT luts/x.json")
    assert Lut.from_dict({**good, "calibration": {**cal, "fitted_at": time.time() + 60}}).calibration is not None
    ahead = Lut.from_dict({**good, "calibration": {**cal, "fitted_at": time.time() + 10 * 86400}})
    assert ahead.calibration.params == cal["params"]
    assert [w.split(" is dated ")[0] for w in ahead.clock_warnings()] == ["the calibration of LUT d/mbv3-tiny"]
    # the hint rebuilds this table (it said `edgenas lut calibrate DEVICE`, which loads the table and fails alike)
    with pytest.raises(InputError) as exc:
        Lut.from_dict({**good, "calibration": {**cal, "model": "bogus"}})
    assert exc.value.hint == "rebuild the table: edgenas profile d --space mbv3-tiny --force"


def reference_fit(p, m) -> tuple[float, float, float]:
    """The estimator of the module docstring in plain Python (statistics, itertools), for an independent
    check of ``fit_calibration``'s numbers: (a, b, residual)."""
    import itertools
    import statistics

    x, y, n = [math.log(v) for v in p], [math.log(v) for v in m], len(p)
    b = 1.0
    if n >= 3:
        b_ts = statistics.median((y[j] - y[i]) / (x[j] - x[i]) for i, j in itertools.combinations(range(n), 2))
        r = [yi - b_ts * xi for xi, yi in zip(x, y)]
        mid = statistics.median(r)
        # the mean absolute deviation times sqrt(pi/2) (1.2533, as the module rounds it) estimates a normal
        # spread; n - 2 degrees of freedom
        s = max(1.2533 * sum(abs(v - mid) for v in r) / (n - 2), 0.01)
        mean = sum(x) / n
        data_prec, prior_prec = sum((v - mean) ** 2 for v in x) / s**2, 1.0 / 0.2**2
        b = min(max((data_prec * b_ts + prior_prec * 1.0) / (data_prec + prior_prec), 0.5), 1.5)
    a = statistics.median(yi - b * xi for xi, yi in zip(x, y))
    residual = statistics.median(abs(math.exp(a + b * xi) / mi - 1.0) for xi, mi in zip(x, m))
    return a, b, residual


@pytest.mark.parametrize("p, m", [
    ([5.0, 5.5, 6.0], [6.0, 7.5, 6.4]),  # three points: the smallest slope fit, noisy
    ([2.0, 3.0, 5.0, 9.0], [2.0, 4.4, 6.0, 16.0]),  # noisy: the data and the prior weigh alike
    ([1.0, 2.0, 4.0, 8.0, 16.0], [1.3, 2.9, 5.1, 11.8, 25.0]),  # a real slope above 1, shrunk
    (list(np.geomspace(2.0, 40.0, 9)), list(1.7 * np.geomspace(2.0, 40.0, 9) ** 1.15)),  # exact: the floor's pull
    ([1.0, 2.0, 4.0, 8.0, 16.0], [4.0, 2.0, 1.0, 0.5, 0.25]),  # clipped to B_MIN
    ([1.0, 4.0], [3.0, 5.0]),
])
def test_the_fitted_numbers_are_the_documented_estimator(p, m):
    """Each constant of the fit (the prior's spread, the noise floor, the degrees of freedom, the pairs the
    median slope is taken over, the 3-point threshold) moves these numbers; a check of recovery only did not
    see them (mutation survivors)."""
    cal = fit_calibration(p, m)
    a, b, residual = reference_fit(p, m)
    assert cal.n_points == len(p)
    assert cal.params["b"] == pytest.approx(b, abs=1e-9)
    assert cal.params["a"] == pytest.approx(a, abs=1e-9)
    assert cal.residual == pytest.approx(residual, abs=1e-9)


def test_the_median_slope_of_points_on_a_line_is_the_least_squares_slope():
    from edgenas.latency.calibration import theil_sen_slope

    x = np.array([0.3, 1.1, 1.7, 2.9, 3.4])
    y = 0.25 + 1.3 * x
    (slope, _), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
    assert theil_sen_slope(x, y) == pytest.approx(slope, rel=1e-12)
    # off the line: the median of the three pairwise slopes (1, 2 and 1.5), not least squares' 1.5 either way
    assert theil_sen_slope(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0])) == pytest.approx(1.5)
    assert theil_sen_slope(np.array([0.0, 1.0, 3.0]), np.array([0.0, 1.0, 5.0])) == pytest.approx(5 / 3)
    assert theil_sen_slope(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])) is None


def test_a_rescaled_calibration_is_the_refit_on_rescaled_sums_and_measurements():
    """``fleet refresh`` rescales a table's nominal speed by ``factor``: the stored calibration must then be
    what fitting the same measurements, all ``factor`` times, gives (the docstring's claim, checked)."""
    from edgenas.latency.calibration import rescaled_calibration

    p = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    m = np.array([1.3, 2.9, 5.1, 11.8, 25.0])
    cal = fit_calibration(p, m)
    assert cal.params["b"] != pytest.approx(1.0, abs=0.02)  # else the rescale would not move a
    for factor in (1.5, 0.4):
        refit = fit_calibration(p * factor, m * factor)
        moved = rescaled_calibration(cal, factor)
        assert moved.params["b"] == pytest.approx(refit.params["b"], abs=1e-9)
        assert moved.params["a"] == pytest.approx(refit.params["a"], abs=1e-9)
        assert (moved.model, moved.n_points, moved.fitted_at) == (cal.model, cal.n_points, cal.fitted_at)
    assert rescaled_calibration(None, 1.5) is None
    with pytest.raises(InputError, match="not > 0"):  # an edited record is refused, not rescaled
        rescaled_calibration(Calibration("loglinear", {"a": 0.0, "b": -1.0}, 3), 1.5)


def test_sums_below_one_ms_and_zero_are_corrected_as_documented():
    """``e^a * raw^b`` for every positive sum (also below 1 ms, where a clamp at 1 would flatten them), and 0
    for a sum of 0 (an empty architecture), which is no underflow to refuse."""
    cal = Calibration("loglinear", {"a": 0.2, "b": 1.3}, 5)
    raw = np.array([0.0, 0.05, 0.5, 3.0])
    expected = [0.0] + [math.exp(0.2) * v**1.3 for v in raw[1:]]
    np.testing.assert_allclose(apply_calibration(cal, raw), expected, rtol=1e-12)
