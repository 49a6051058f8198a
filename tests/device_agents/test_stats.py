import numpy as np
import pytest
from scipy import stats as sps

from device_agents.edgenas_agent import stats


def test_summary_matches_numpy_on_known_samples():
    rng = np.random.default_rng(3)
    xs = rng.lognormal(mean=-7.0, sigma=0.3, size=257)  # seconds
    s = stats.summarize(list(xs), k=4, warmup_n=11, stable=True, total_s=1.5)
    ms = xs * 1000.0
    assert s["n"] == 257 and s["k"] == 4 and s["warmup_n"] == 11 and s["stable"] is True
    assert s["median_ms"] == pytest.approx(np.median(ms), rel=1e-12)
    assert s["mean_ms"] == pytest.approx(ms.mean(), rel=1e-12)
    assert s["std_ms"] == pytest.approx(ms.std(ddof=1), rel=1e-10)
    assert s["cov"] == pytest.approx(ms.std(ddof=1) / ms.mean(), rel=1e-10)
    assert s["p90_ms"] == pytest.approx(np.percentile(ms, 90), rel=1e-12)
    assert s["p99_ms"] == pytest.approx(np.percentile(ms, 99), rel=1e-12)
    assert s["min_ms"] == ms.min() and s["max_ms"] == ms.max()


def test_small_known_sample():
    s = stats.summarize([0.001, 0.002, 0.003, 0.004], k=1, warmup_n=0, stable=False, total_s=0.0)
    assert s["median_ms"] == pytest.approx(2.5)
    assert s["p90_ms"] == pytest.approx(3.7)
    assert s["std_ms"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s["ci_rel"] is None  # no distribution-free 95% CI with 4 samples


@pytest.mark.parametrize("n", [6, 7, 10, 20, 50, 100, 333, 1000])
def test_median_ci_rank_is_the_exact_binomial_one(n):
    # largest r with P(B <= r-1) <= 2.5%, B ~ Binomial(n, 1/2)
    expected = max(r for r in range(1, n // 2 + 2) if sps.binom.cdf(r - 1, n, 0.5) <= 0.025)
    assert stats._median_ci_rank(n, 0.95) == expected


def test_median_ci_known_table_value_and_large_n():
    xs = list(range(1, 101))
    assert stats.median_ci(xs) == (40, 61)  # classic table: n=100 -> ranks 40 and 61
    r = stats._median_ci_rank(5000, 0.95)
    assert abs(r - (2500 - 1.96 * np.sqrt(5000) / 2)) < 2
    assert stats.median_ci([1, 2, 3, 4, 5]) is None


def test_ci_rel_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small = sorted(rng.normal(10, 1, 30))
    large = sorted(rng.normal(10, 1, 3000))
    assert stats.ci_rel(large) < stats.ci_rel(small)
