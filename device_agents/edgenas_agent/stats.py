"""Summary statistics of latency samples and the order-statistics confidence interval of the median.

Pure functions on lists of floats (seconds in, milliseconds out), standard library only, so the host
and the tests can check them against numpy. Conventions (documented in PROTOCOL.md):

- ``std_ms`` is the sample standard deviation (``ddof=1``; 0 for a single sample);
- percentiles interpolate linearly between order statistics (numpy's default ``linear`` method);
- the 95% CI of the median is distribution-free: ``[x_(r), x_(n-r+1)]`` with the largest ``r`` whose
  binomial(n, 1/2) tail ``P(B <= r-1)`` is at most 2.5%; below 6 samples no such interval exists.
"""

from __future__ import annotations

import functools
import math
from typing import Dict, Optional, Sequence, Tuple

_EXACT_CI_MAX_N = 1000  # beyond this the normal approximation of the binomial is used


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile of already sorted data, ``q`` in [0, 100]."""
    if not sorted_xs:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_xs) - 1) * (q / 100.0)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_xs) - 1)
    frac = pos - lo
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac


def median(xs: Sequence[float]) -> float:
    return percentile(sorted(xs), 50.0)


@functools.lru_cache(maxsize=4096)
def _median_ci_rank(n: int, confidence: float) -> Optional[int]:
    """1-based rank ``r`` of the lower CI bound, or None when ``n`` is too small."""
    tail = (1.0 - confidence) / 2.0
    if n > _EXACT_CI_MAX_N:
        z = 1.959963984540054 if abs(confidence - 0.95) < 1e-9 else _z(confidence)
        r = int(math.floor(n / 2.0 - z * math.sqrt(n) / 2.0))
        return max(r, 1)
    log_half_n = n * math.log(0.5)
    cdf = 0.0
    r = None
    for i in range(0, n // 2 + 1):  # cdf = P(B <= i)
        cdf += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
        if cdf > tail:
            break
        r = i + 1  # P(B <= r-1) <= tail
    return r


def _z(confidence: float) -> float:
    """Two-sided normal quantile by bisection (only used for non-default confidences)."""
    target = (1.0 + confidence) / 2.0
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def median_ci(sorted_xs: Sequence[float], confidence: float = 0.95) -> Optional[Tuple[float, float]]:
    """Distribution-free confidence interval of the median of sorted data (None if n < 6 at 95%)."""
    n = len(sorted_xs)
    r = _median_ci_rank(n, confidence)
    if r is None or r < 1:
        return None
    return sorted_xs[r - 1], sorted_xs[n - r]


def ci_rel(sorted_xs: Sequence[float], confidence: float = 0.95) -> Optional[float]:
    """Half-width of the median's CI relative to the median; None when it is undefined."""
    ci = median_ci(sorted_xs, confidence)
    if ci is None:
        return None
    med = percentile(sorted_xs, 50.0)
    if med <= 0:
        return None
    return (ci[1] - ci[0]) / 2.0 / med


def mean_std(xs: Sequence[float]) -> Tuple[float, float]:
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, 0.0
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var)


def spread(xs: Sequence[float]) -> Tuple[float, Optional[float]]:
    """(CoV, CI-of-median relative half-width) of the samples."""
    mean, std = mean_std(xs)
    cov = std / mean if mean > 0 else float("inf")
    return cov, ci_rel(sorted(xs))


def summarize(samples_s: Sequence[float], *, k: int, warmup_n: int, stable: bool, total_s: float,
              median_s: Optional[float] = None) -> Dict[str, object]:
    """STATS in milliseconds. ``median_s`` overrides the median (window mode: median of medians)."""
    if not samples_s:
        raise ValueError("no samples to summarize")
    ms = sorted(x * 1000.0 for x in samples_s)
    mean, std = mean_std(ms)
    med = percentile(ms, 50.0) if median_s is None else median_s * 1000.0
    rel = ci_rel(ms)
    return {
        "n": len(ms),
        "k": int(k),
        "warmup_n": int(warmup_n),
        "median_ms": med,
        "mean_ms": mean,
        "std_ms": std,
        "cov": std / mean if mean > 0 else 0.0,
        "ci_rel": rel,
        "p90_ms": percentile(ms, 90.0),
        "p99_ms": percentile(ms, 99.0),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "stable": bool(stable),
        "total_s": float(total_s),
    }

