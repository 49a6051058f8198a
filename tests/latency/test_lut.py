"""The LUT record's checks of a STATS object (an agent's answer, a table's entry, a stored measurement) at
their limits, and its small computations (found by mutation testing: the one-field edits of
test_record_mutations.py set each field to one value of a fixed list, which missed each boundary here)."""

from __future__ import annotations

import statistics

import pytest

from edgenas.errors import InputError
from edgenas.latency.lut import MAX_MS, MAX_WINDOWS, EntryStats, future_dated

GOOD = {"n": 5, "median_ms": 2.0, "mean_ms": 2.1, "std_ms": 0.1, "cov": 0.05, "p90_ms": 2.2, "p99_ms": 2.3,
        "min_ms": 1.9, "max_ms": 2.4}


def test_a_record_built_in_code_and_one_read_from_json_get_the_same_defaults():
    assert EntryStats(**GOOD) == EntryStats.from_dict(GOOD)
    e = EntryStats.from_dict(GOOD)
    assert (e.stable, e.k, e.warmup_n, e.total_s, e.ratio) == (True, 1, 0, 0.0, None)


def test_robust_cov_is_the_spread_a_normal_sample_of_that_p90_has():
    z90 = statistics.NormalDist().inv_cdf(0.9)
    e = EntryStats.from_dict({**GOOD, "median_ms": 2.0, "p90_ms": 2.0 + z90 * 0.1 * 2.0})
    assert e.robust_cov == pytest.approx(0.1, rel=1e-12)
    assert EntryStats.from_dict({**GOOD, "p90_ms": 1.95}).robust_cov == 0.0  # a p90 below the median


def test_a_date_exactly_one_day_ahead_is_not_future_dated():
    assert not future_dated(1000.0 + 86400.0, now=1000.0)
    assert future_dated(1000.0 + 86400.5, now=1000.0)


@pytest.mark.parametrize("field", ["median_ms", "max_ms", "p99_ms", "ratio", "nominal_ms", "ref_ms"])
def test_times_and_the_reference_ratio_are_capped_at_max_ms(field):
    big = {**GOOD, "max_ms": MAX_MS, "p99_ms": MAX_MS} if field == "median_ms" else GOOD
    assert EntryStats.check({**big, field: MAX_MS}, "e")[field] == MAX_MS
    with pytest.raises(InputError) as exc:
        EntryStats.check({**big, field: MAX_MS + 1.0}, "e")
    assert exc.value.message == f"e: {field} must be at most 1e+07, got 10000001.0"


def test_counts_and_spreads_are_not_capped_and_a_spread_may_be_infinite():
    out = EntryStats.check({**GOOD, "cov": 1e9, "k": 10**9, "ratio_cov": float("inf")}, "e")
    assert (out["cov"], out["k"], out["ratio_cov"]) == (1e9, 10**9, float("inf"))


@pytest.mark.parametrize("n, ok", [(1, True), (1.0, True), (0, False), (2.5, False)])
def test_n_is_a_whole_number_from_1(n, ok):
    if ok:
        assert EntryStats.from_dict({**GOOD, "n": n}).n == 1
    else:
        with pytest.raises(InputError, match=f"^e: n must be a whole number >= 1, got {n!r}$"):
            EntryStats.check({**GOOD, "n": n}, "e")


def test_the_median_may_equal_the_largest_sample_but_not_exceed_it():
    top = {**GOOD, "median_ms": 1e5, "max_ms": 1e5, "p90_ms": 1e5, "p99_ms": 1e5}  # 1e5 + 1e-12 == 1e5
    assert EntryStats.check(top, "e")["median_ms"] == 1e5
    for bad in ({**GOOD, "median_ms": 2.5}, {**GOOD, "median_ms": 1.8}):
        with pytest.raises(InputError, match="median_ms outside"):
            EntryStats.check(bad, "e")


@pytest.mark.parametrize("edit, message", [
    ({"stable": "yes"}, "e: stable must be true or false, got 'yes'"),
    ({"k": 2.5}, "e: k must be a whole number, got 2.5"),
    ({"k": None, "warmup_n": 1.5}, "e: warmup_n must be a whole number, got 1.5"),  # after a null field
    ({"ratio": 0.0}, "e: ratio must be a finite number > 0, got 0.0"),
    ({"window_medians_ms": [1.0] * (MAX_WINDOWS + 1)}, f"e: window_medians_ms must be a list of at most {MAX_WINDOWS}"
                                                        " numbers"),
    ({"window_medians_ms": 1.0}, f"e: window_medians_ms must be a list of at most {MAX_WINDOWS} numbers"),
    ({"window_medians_ms": [1.0, -1.0]}, "e: window_medians_ms must be a finite number >= 0, got -1.0"),
    ({"window_medians_ms": [1.0], "ref_ms": 0.0}, "e: ref_ms must be a finite number > 0, got 0.0"),  # after a list
])
def test_an_optional_field_of_the_wrong_kind_is_one_input_error(edit, message):
    with pytest.raises(InputError) as exc:
        EntryStats.check({**GOOD, **edit}, "e")
    assert exc.value.message == message


def test_optional_fields_are_kept_as_given():
    out = EntryStats.check({**GOOD, "stable": False, "k": None, "warmup_n": 3.0, "ratio": 0.5,
                            "window_medians_ms": [1.0] * MAX_WINDOWS, "ref_ms": 2.0}, "e")
    assert (out["stable"], out["warmup_n"], out["ratio"], out["ref_ms"]) == (False, 3.0, 0.5, 2.0)
    assert out["window_medians_ms"] == [1.0] * MAX_WINDOWS and "k" not in out
