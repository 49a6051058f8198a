"""Calibration: a monotone correction from LUT sums to measured whole-model latency.

A sum of per-block latencies misses what happens between blocks (fusion across block borders, memory
traffic, scheduling), so whole-model measurements of deployed winners are used to correct it. With
only a handful of measurements the correction must stay sensible, so it is deliberately simple:

    log(measured) = a + b * log(predicted)          (model "loglinear": measured = e^a * predicted^b)

* 1-2 points: only the offset ``a`` is fitted (``b = 1``): a pure ratio, the median of the ratios;
* 3+ points: the slope comes from a Theil-Sen fit (median of pairwise slopes, robust to outliers),
  shrunk toward 1 by a Gaussian prior ``b ~ N(1, PRIOR_SD^2)`` weighted against the slope's
  precision ``Sxx / s^2`` (``s`` the residual spread per degree of freedom, floored), then clipped to
  ``[B_MIN, B_MAX]``; the offset is the median residual. An exact power law is recovered (to the
  floor's tiny pull toward 1); noisy or few points stay close to a ratio.

``b > 0`` always, so the correction is strictly increasing: it never reorders architectures and the
space's latency minimiser stays the minimiser.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.lut import CALIBRATION_MODEL, CALIBRATION_SLOPES, Calibration

MODEL = CALIBRATION_MODEL
PRIOR_SD = 0.2  # prior spread of the slope around 1
B_MIN, B_MAX = CALIBRATION_SLOPES
NOISE_FLOOR = 0.01  # smallest residual spread (log scale, ~1%) assumed when weighing the slope


def _clean(predicted, measured) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise InputError(f"calibration: {p.size} predictions but {m.size} measurements")
    if p.size == 0:
        raise InputError("calibration: no measurements to fit",
                         hint="deploy and measure at least one architecture first")
    for name, v in (("predicted", p), ("measured", m)):
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"calibration: {name} latencies must be finite and > 0; "
                             f"{int(bad.sum())} are not (first at position {i}: {v[i]!r})")
    return p, m


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """Median of the pairwise slopes; ``None`` when every ``x`` is the same."""
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    ok = np.abs(dx) > 1e-12
    if not ok.any():
        return None
    return float(np.median((y[j] - y[i])[ok] / dx[ok]))


def fit_calibration(predicted, measured) -> Calibration:
    """Fit ``log(measured) = a + b log(predicted)`` robustly with shrinkage of ``b`` toward 1."""
    p, m = _clean(predicted, measured)
    x, y = np.log(p), np.log(m)
    n = x.size
    b = 1.0
    if n >= 3:
        b_ts = theil_sen_slope(x, y)
        if b_ts is not None:
            r = y - b_ts * x
            r = r - np.median(r)
            # residual spread per degree of freedom (the line used two): the MAD would be 0 for
            # n = 3, where the Theil-Sen line passes through two of the points. An outlier inflates
            # it, which only pulls the slope harder toward 1, the safe direction.
            s = max(1.2533 * float(np.sum(np.abs(r))) / (n - 2), NOISE_FLOOR)
            sxx = float(np.sum((x - x.mean()) ** 2))
            data_prec, prior_prec = sxx / s**2, 1.0 / PRIOR_SD**2
            b = (data_prec * b_ts + prior_prec * 1.0) / (data_prec + prior_prec)
            b = float(np.clip(b, B_MIN, B_MAX))
    a = float(np.median(y - b * x))
    fitted = np.exp(a + b * x)
    residual = float(np.median(np.abs(fitted / m - 1.0)))
    return Calibration(model=MODEL, params={"a": a, "b": b}, n_points=int(n), residual=residual)


def rescaled_calibration(cal: Calibration | None, factor: float) -> Calibration | None:
    """``cal`` for the same table with its nominal speed multiplied by ``factor`` (a fleet rescale): its
    raw sums and the stored measurements at its nominal speed both scale by ``factor``, so ``log m = a +
    b log p`` becomes ``a + (1 - b) ln factor``, which is what a refit on the same measurements gives.
    Kept as it was, the table's predictions moved by ``factor ** b`` instead of ``factor``."""
    if cal is None:
        return None
    check_calibration(cal)
    a, b = cal.params["a"], cal.params["b"]
    return replace(cal, params={**cal.params, "a": a + (1.0 - b) * math.log(factor)})


def check_calibration(cal: Calibration) -> None:
    """Raise ``InputError`` unless ``cal`` is a loglinear, strictly increasing correction."""
    cal.check()


def apply_calibration(cal: Calibration | None, raw_ms) -> np.ndarray:
    """Calibrated latency for raw LUT sums (``e^a * raw^b``); ``None`` leaves them unchanged."""
    raw = np.asarray(raw_ms, dtype=float)
    if cal is None:
        return raw.copy()
    check_calibration(cal)
    a, b = cal.params["a"], cal.params["b"]
    with np.errstate(divide="ignore", over="ignore"):
        out = np.exp(a + b * np.log(np.maximum(raw, 0.0)))
    out = np.where(raw > 0, out, 0.0)
    if not np.all(np.isfinite(out[np.isfinite(raw)])):  # a fitted correction never does this; an edited one can
        raise InputError(f"the LUT's calibration (a={a:g}, b={b:g}) gives an infinite latency",
                         hint="rebuild the table: edgenas profile DEVICE --space SPACE --force")
    if np.any((raw > 0) & (out <= 0)):  # underflow: a positive sum must stay a positive latency
        raise InputError(f"the LUT's calibration (a={a:g}, b={b:g}) gives a latency of 0 ms",
                         hint="rebuild the table: edgenas profile DEVICE --space SPACE --force")
    return out
