"""The LUT record's checks of a STATS object (an agent's answer, a table's entry, a stored measurement) and
of a whole table (its reference, its largest cost, its calibration's parameters) at their limits, and its
small computations (found by mutation testing: the one-field edits of test_record_mutations.py set each
field to one value of a fixed list, which missed each boundary here)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest

from edgenas.errors import InputError
from edgenas.latency.lut import MAX_MS, MAX_TOTAL_S, MAX_WINDOWS, Calibration, EntryStats, Lut, future_dated
from edgenas.limits import MAX_INT

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


def test_spreads_are_not_capped_and_a_spread_may_be_infinite():
    out = EntryStats.check({**GOOD, "cov": 1e9, "k": 10**9, "ratio_cov": float("inf")}, "e")
    assert (out["cov"], out["k"], out["ratio_cov"]) == (1e9, 10**9, float("inf"))


@pytest.mark.parametrize("field", ["n", "k", "warmup_n", "ref_k", "sessions", "total_s"])
def test_counts_and_the_total_time_are_capped(field):
    """A device's n = k = 1e300 was stored as 301 digits, and total_s = 1e308 as it came."""
    cap = MAX_INT if field != "total_s" else MAX_TOTAL_S
    assert EntryStats.check({**GOOD, field: cap}, "e")[field] == cap
    with pytest.raises(InputError) as exc:
        EntryStats.check({**GOOD, field: 1e300}, "e")
    assert exc.value.message == f"e: {field} must be at most {cap:g}, got 1e+300"


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
    ({"ref_sha256": "AB" * 32}, f"e: ref_sha256 must be a SHA-256 (64 hex digits), got '{'AB' * 32}'"),
    ({"ref_sha256": "ab" * 32 + "\n"}, "e: ref_sha256 must be a SHA-256 (64 hex digits), got "),
    ({"ref_sha256": 5}, "e: ref_sha256 must be a SHA-256 (64 hex digits), got 5"),
])
def test_an_optional_field_of_the_wrong_kind_is_one_input_error(edit, message):
    with pytest.raises(InputError) as exc:
        EntryStats.check({**GOOD, **edit}, "e")
    assert exc.value.message.startswith(message) and (message.endswith(" got ") or exc.value.message == message)


def test_optional_fields_are_kept_as_given():
    out = EntryStats.check({**GOOD, "stable": False, "k": None, "warmup_n": 3.0, "ratio": 0.5,
                            "window_medians_ms": [1.0] * MAX_WINDOWS, "ref_ms": 2.0, "ref_sha256": "0a" * 32}, "e")
    assert (out["stable"], out["warmup_n"], out["ratio"], out["ref_ms"]) == (False, 3.0, 0.5, 2.0)
    assert out["ref_sha256"] == "0a" * 32
    assert out["window_medians_ms"] == [1.0] * MAX_WINDOWS and "k" not in out


def test_robust_cov_of_a_median_below_one_and_of_a_zero_median():
    z90 = statistics.NormalDist().inv_cdf(0.9)
    small = {**GOOD, "median_ms": 0.5, "min_ms": 0.4, "p90_ms": 0.5 + z90 * 0.2 * 0.5}
    assert EntryStats.from_dict(small).robust_cov == pytest.approx(0.2, rel=1e-12)
    zero = dict.fromkeys(("median_ms", "mean_ms", "std_ms", "cov", "p90_ms", "p99_ms", "min_ms", "max_ms"), 0.0)
    assert EntryStats.from_dict({**zero, "n": 3}).robust_cov == 0.0  # an entry timed at 0 ms: no spread, no crash


# ---- a whole table: TABLE is normalised, each entry's cost ratio x reference.ms (8 ms): 0.125 x 8 = 1 ms for the
# overhead, 0.25 x 8 = 2 ms and 0.375 x 8 = 3 ms for the entries (their raw medians say 2 ms each)

TABLE = {"schema": 1, "device": "dev", "space": "mbv3-tiny", "fingerprint_hash": "ab" * 32, "fingerprint": {},
         "runtime": "onnxruntime", "precision": "fp32", "threads": 2, "protocol": {}, "created_at": 1000.0,
         "overhead": {**GOOD, "ratio": 0.125}, "calibration": None, "reference": {"sha256": "c" * 64, "ms": 8.0},
         "entries": {"k1": {**GOOD, "ratio": 0.25}, "k2": {**GOOD, "ratio": 0.375}}}
CAL = {"model": "loglinear", "params": {"a": 0.1, "b": 1.0}, "n_points": 4, "fitted_at": 500.0, "residual": 0.02}


def _with(**edit) -> dict:
    return {**TABLE, **edit}


def test_a_normalised_table_costs_ratio_times_the_reference():
    lut = Lut.from_dict(TABLE)
    assert lut.normalised
    assert [lut.value_ms(lut.entries[k]) for k in ("k1", "k2")] == [2.0, 3.0] and lut.overhead_ms == 1.0
    # one ratio missing anywhere, or no reference: the raw medians (2 ms), the overhead's too
    for raw in (_with(reference=None), _with(overhead=GOOD), _with(entries={**TABLE["entries"], "k3": GOOD})):
        lut = Lut.from_dict(raw)
        assert not lut.normalised and lut.value_ms(lut.entries["k2"]) == 2.0 and lut.overhead_ms == 2.0


@pytest.mark.parametrize("ms", [0, 0.0, -1.0, math.nan, math.inf, True, "8", None, MAX_MS + 1.0])
def test_the_reference_time_is_a_finite_number_above_0_and_at_most_max_ms(ms):
    with pytest.raises(InputError, match="^LUT: (malformed 'reference' \\(needs a hex sha256 of 64 digits and ms > 0\\)"
                                         "|the reference's ms must be at most 1e\\+07, got 10000001.0)$"):
        Lut.from_dict(_with(reference={"sha256": "c" * 64, "ms": ms}))


def test_the_reference_time_may_be_below_1_ms_or_max_ms_itself():
    assert Lut.from_dict(_with(reference={"sha256": "c" * 64, "ms": 0.5})).overhead_ms == 0.0625  # 0.125 x 0.5
    top = Lut.from_dict(_with(reference={"sha256": "c" * 64, "ms": MAX_MS}))
    assert top.value_ms(top.entries["k2"]) == 0.375 * MAX_MS
    with pytest.raises(InputError, match="malformed 'reference'"):
        Lut.from_dict(_with(reference={"ms": 8.0}))  # no sha256


@pytest.mark.parametrize("sha", ["c" * 63, "c" * 65, "C" * 64, "g" * 64, "c" * 63 + "\n", "", "../" + "c" * 61])
def test_the_reference_hash_is_a_whole_lowercase_sha256(sha):
    """The reference is recognised by its hash (drift, deploy): anything but 64 hex digits is a damaged table,
    refused where it is read, not a reference that silently never matches."""
    with pytest.raises(InputError, match="^LUT: malformed 'reference' \\(needs a hex sha256 of 64 digits"):
        Lut.from_dict(_with(reference={"sha256": sha, "ms": 8.0}))
    assert Lut.from_dict(_with(reference={"sha256": "0123456789abcdef" * 4, "ms": 8.0})).normalised


@pytest.mark.parametrize("edit, field", [
    ({"threads": 2.5}, "threads"), ({"threads": 1e-9}, "threads"),
    ({"calibration": {**CAL, "n_points": 2.5}}, "n_points"), ({"calibration": {**CAL, "n_points": 0.5}}, "n_points"),
])
def test_counts_are_whole_numbers_not_cut(edit, field):
    """A table of 2.5 threads was read as 2, and 0.5 calibration points as 0: a damaged count is refused."""
    with pytest.raises(InputError, match=f"{field} must be a whole number, got"):
        Lut.from_dict(_with(**edit))
    lut = Lut.from_dict(_with(threads=4.0, calibration={**CAL, "n_points": 7.0}))  # JSON's 4.0 is 4
    assert (lut.threads, lut.calibration.n_points) == (4, 7) and type(lut.threads) is int


def test_the_largest_cost_may_be_max_ms_but_not_more():
    """Each ratio and the reference are within bounds; their product, the cost predictions sum, is checked."""
    entries = {"k1": {**GOOD, "ratio": 0.25}, "k2": {**GOOD, "ratio": 2.0}}
    at = Lut.from_dict(_with(reference={"sha256": "c" * 64, "ms": 5e6}, entries=entries))  # 2 x 5e6 = 1e7
    assert at.value_ms(at.entries["k2"]) == MAX_MS
    for big, name in (("k2", "'k2'"), ("overhead", "'overhead'")):
        over = {**entries, "k2": {**GOOD, "ratio": 2.5}} if big == "k2" else entries
        d = _with(reference={"sha256": "c" * 64, "ms": 5e6}, entries=over,
                  overhead={**GOOD, "ratio": 3.0} if big == "overhead" else TABLE["overhead"])
        with pytest.raises(InputError) as exc:
            Lut.from_dict(d)
        cost = "1.25e+07" if big == "k2" else "1.5e+07"
        assert exc.value.message == f"LUT: entry {name} costs {cost} ms (ratio x reference), over 1e+07"
        assert exc.value.hint == "rebuild the table: edgenas profile dev --space mbv3-tiny --force"


@pytest.mark.parametrize("doc, message", [
    ([TABLE], "LUT: expected a JSON object"),
    (_with(schema=2), "LUT: unsupported schema 2 (expected 1)"),
    (_with(schema=True), "LUT: unsupported schema True (expected 1)"),  # True == 1 in Python
    (_with(schema=1.0), "LUT: unsupported schema 1.0 (expected 1)"),
    ({k: v for k, v in TABLE.items() if k != "schema"}, "LUT: unsupported schema None (expected 1)"),
    (_with(entries={}), "LUT: has no entries"),
    (_with(calibration="loglinear"), "LUT: malformed 'calibration' (an object or null)"),
    (_with(calibration=[CAL]), "LUT: malformed 'calibration' (an object or null)"),
    (_with(device="-" + "x" * 200), f"LUT: malformed 'device' {('-' + 'x' * 200)[:80]!r}"),
    (_with(entries={"-" * 100: GOOD}), f"LUT: malformed block key {'-' * 80!r}"),
])
def test_a_document_that_is_no_table_is_one_input_error(doc, message):
    with pytest.raises(InputError) as exc:
        Lut.from_dict(doc)
    assert exc.value.message == message


KNOWN_RUNTIMES = "(known: 'onnxruntime', 'tensorrt', 'torch', 'unknown (OFA published tables)')"


@pytest.mark.parametrize("edit, message", [
    ({"runtime": "bogus"}, f"LUT: unknown runtime 'bogus' {KNOWN_RUNTIMES}"),
    ({"runtime": "onnx\x1b[2Jruntime"}, f"LUT: unknown runtime 'onnx\\x1b[2Jruntime' {KNOWN_RUNTIMES}"),
    ({"runtime": "ONNXRuntime"}, f"LUT: unknown runtime 'ONNXRuntime' {KNOWN_RUNTIMES}"),
    ({"precision": "fp99"}, "LUT: unknown precision 'fp99' (known: 'fp32', 'fp16', 'int8', 'unknown')"),
    ({"precision": "fp\u202e32"}, "LUT: unknown precision 'fp\\u202e32' (known: 'fp32', 'fp16', 'int8', 'unknown')"),
    ({"threads": 10 ** 30}, f"LUT: threads must be at most 1024, got {10 ** 30}"),
    ({"threads": 1025}, "LUT: threads must be at most 1024, got 1025"),
])
def test_runtime_precision_and_threads_are_ones_edgenas_knows(edit, message):
    """Any runtime and precision were read ('bogus', 'fp99'), and with control characters shown as another
    value ('onnx\\x1b[2Jruntime' as onnxruntime by lut show); 10**30 threads too."""
    with pytest.raises(InputError) as exc:
        Lut.from_dict(_with(**edit))
    assert exc.value.message == message
    if "threads" not in edit:
        assert exc.value.hint == "rebuild the table: edgenas profile dev --space mbv3-tiny --force"


def test_every_runtime_precision_and_thread_count_a_profile_may_name_is_read():
    from edgenas.devices.runtimes import MAX_THREADS, PRECISIONS, runtime_names
    from edgenas.latency.lut import IMPORTED_RUNTIME, UNKNOWN_PRECISION

    for runtime in (*runtime_names(), IMPORTED_RUNTIME):
        for precision in (*PRECISIONS, UNKNOWN_PRECISION):
            for threads in (0, 1, MAX_THREADS):  # 0: not known (an imported table)
                lut = Lut.from_dict(_with(runtime=runtime, precision=precision, threads=threads))
                assert (lut.runtime, lut.precision, lut.threads) == (runtime, precision, threads)


def test_a_table_without_threads_or_dates_reads_them_as_0():
    d = {k: v for k, v in TABLE.items() if k not in ("threads", "created_at")}
    cal = {k: v for k, v in CAL.items() if k not in ("fitted_at", "residual")}
    lut = Lut.from_dict({**d, "calibration": cal})
    assert (lut.threads, lut.created_at, lut.calibration.fitted_at, lut.calibration.residual) == (0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("params, bad", [({"a": True, "b": 1.0}, "'a' must be a finite number, got True"),
                                         ({"a": 0.1, "b": "1.0"}, "'b' must be a finite number, got '1.0'"),
                                         ({"a": 0.1, "b": 1.0, "c": math.nan}, "'c' must be a finite number, got nan"),
                                         ({"a": 0.1, "b": math.inf}, "'b' must be a finite number, got inf")])
def test_every_calibration_parameter_is_a_finite_number(params, bad):
    with pytest.raises(InputError) as exc:
        Lut.from_dict(_with(calibration={**CAL, "params": params}))
    assert exc.value.message == f"malformed calibration in LUT: parameter {bad}"


@pytest.mark.parametrize("drop, edit, message", [
    (("params",), {}, "missing field 'params'"),  # was the KeyError's text: 'params'
    (("model", "n_points"), {}, "missing fields 'model', 'n_points'"),
    ((), {"params": [["a", 0.1], ["b", 1.0]]}, "params must be an object such as {\"a\": 0.1, \"b\": 1.0}, got "),
])
def test_a_calibration_missing_a_field_or_with_params_not_an_object_says_which(drop, edit, message):
    cal = {**{k: v for k, v in CAL.items() if k not in drop}, **edit}
    with pytest.raises(InputError) as exc:
        Lut.from_dict(_with(calibration=cal))
    assert exc.value.message.startswith(f"malformed calibration in LUT: {message}"), exc.value.message
    assert exc.value.hint == "rebuild the table: edgenas profile dev --space mbv3-tiny --force"


@pytest.mark.parametrize("t", [1e300, -1e300, -1, 253402300800, 253402300799.5])
def test_a_date_no_clock_shows_is_refused_as_the_table_s_or_its_calibration_s(t):
    """A table dated 1e300 was read ("dated ?, in the future") and chosen over every real one as the newest,
    while -1e300 was refused: every date must lie from 1970 to the end of the year 9999."""
    want = "must be a time from 0 to 253402300799 (9999-12-31 UTC) in seconds since 1970, got "
    for doc, where in ((_with(created_at=t), "LUT: created_at"),
                       (_with(calibration={**CAL, "fitted_at": t}), "malformed calibration in LUT: fitted_at")):
        with pytest.raises(InputError) as exc:
            Lut.from_dict(doc)
        assert exc.value.message.startswith(f"{where} {want}"), exc.value.message
        assert exc.value.hint == "rebuild the table: edgenas profile dev --space mbv3-tiny --force"
    last = Lut.from_dict(_with(created_at=253402300799, calibration={**CAL, "fitted_at": 253402300799}))
    assert [w.split(", in the future")[0] for w in last.clock_warnings(now=1000.0)] == [
        "LUT dev/mbv3-tiny is dated 9999-12-31 23:59 UTC", "the calibration of LUT dev/mbv3-tiny is dated 9999-12-31 "
        "23:59 UTC"]


def test_a_calibration_built_in_code_and_one_read_from_json_get_the_same_defaults():
    cal = Calibration.from_dict({k: v for k, v in CAL.items() if k != "residual"})
    assert cal == Calibration("loglinear", {"a": 0.1, "b": 1.0}, 4, fitted_at=500.0)
    assert Lut.from_dict(_with(calibration=CAL)).calibration == Calibration(**CAL)


def test_tables_and_calibrations_are_immutable_and_with_calibration_makes_a_new_table():
    lut, cal = Lut.from_dict(TABLE), Calibration(**CAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lut.threads = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cal.residual = 0.5  # type: ignore[misc]
    new = lut.with_calibration(cal)
    assert new.calibration == cal and lut.calibration is None
    assert new.to_dict() == {**lut.to_dict(), "calibration": CAL}


def test_clock_warnings_name_what_is_dated_over_a_day_ahead():
    day_on = 1000.0 + 86400.0 + 1.0  # 1970-01-02 00:16:41 UTC
    assert Lut.from_dict(TABLE).clock_warnings(now=1000.0) == []  # no calibration
    assert Lut.from_dict(_with(calibration=CAL)).clock_warnings(now=1000.0) == []
    ahead = Lut.from_dict(_with(created_at=day_on, calibration={**CAL, "fitted_at": day_on})).clock_warnings(1000.0)
    assert [w.split(", in the future")[0] for w in ahead] == [
        "LUT dev/mbv3-tiny is dated 1970-01-02 00:16 UTC", "the calibration of LUT dev/mbv3-tiny is dated 1970-01-02 "
                                                           "00:16 UTC"]
    assert len(Lut.from_dict(_with(calibration={**CAL, "fitted_at": day_on})).clock_warnings(1000.0)) == 1


def test_a_table_that_would_not_read_back_is_not_saved(tmp_path):
    lut = Lut.from_dict(TABLE)
    bad = dataclasses.replace(lut, entries={**lut.entries, "k3": dataclasses.replace(lut.entries["k1"],
                                                                                    median_ms=math.nan)})
    with pytest.raises(InputError, match="entry 'k3': median_ms must be a finite number >= 0, got nan"):
        bad.save(tmp_path / "t.json")
    assert list(tmp_path.iterdir()) == []
    assert Lut.load(lut.save(tmp_path / "t.json")) == lut


HUGE = 10 ** 400  # what JSON reads for 401 digits: an int no float holds (math.isfinite raised OverflowError)


@pytest.mark.parametrize("edit", [
    {"threads": HUGE}, {"created_at": HUGE}, {"reference": {"sha256": "c" * 64, "ms": HUGE}},
    {"overhead": {**GOOD, "median_ms": HUGE}}, {"entries": {"k1": {**GOOD, "n": HUGE}}},
    {"entries": {"k1": {**GOOD, "k": HUGE}}}, {"entries": {"k1": {**GOOD, "cov": -HUGE}}},
    {"entries": {"k1": {**GOOD, "ratio_cov": HUGE}}}, {"sync": {**GOOD, "window_medians_ms": [1.0, HUGE]}},
    {"calibration": {**CAL, "params": {"a": HUGE, "b": 1.0}}}, {"calibration": {**CAL, "n_points": HUGE}},
    {"calibration": {**CAL, "fitted_at": HUGE}},
])
def test_a_number_too_large_for_a_float_is_one_input_error(edit, tmp_path):
    """A table file (or a device's answer) with a 401-digit number was an internal OverflowError naming no file.
    The file's reader refuses such a number (limits.loads_json); the table's checks refuse it in a record
    that did not come through it."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_with(**edit)))
    with pytest.raises(InputError, match="a number too large to read") as exc:
        Lut.load(path)
    assert str(path) in exc.value.message
    with pytest.raises(InputError, match="must be a (finite number|time)|malformed 'reference' \\(needs a hex sha256"
                       ) as exc:
        Lut.from_dict(_with(**edit), where=f"LUT {path}")
    assert str(path) in exc.value.message
