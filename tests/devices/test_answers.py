"""Typed agent answers: parsed once, malformed ones refused with the device named; info once per session."""

import dataclasses

import pytest

from edgenas.devices.answers import BenchAnswer, DeviceInfo, engine_answer
from edgenas.devices.session import open_session
from edgenas.errors import DeviceError

GOOD = {"fingerprint": {"software": {"nvpmodel": {"mode": "MAXN"}}}, "fingerprint_hash": "ab" * 32,
        "state": {}, "runtimes": {"onnxruntime": {"version": "1.20"}, "tensorrt": None}, "agent_version": "v1",
        "workdir": "/w"}
STATS = {"n": 20, "median_ms": 1.0, "mean_ms": 1.1, "std_ms": 0.1, "cov": 0.09, "p90_ms": 1.2, "p99_ms": 1.3,
         "min_ms": 0.9, "max_ms": 1.4, "ratio": 2.0, "ref_ms": 0.5}


def test_device_info_parses_and_checks_power_mode():
    info = DeviceInfo.from_answer("jet", GOOD)
    assert info.available_runtimes() == ["onnxruntime"] and info.power_mode() == "MAXN"
    assert info.power_mode_mismatch("MAXN") is None
    assert info.power_mode_mismatch("15W") == {"expected": "15W", "actual": "MAXN"}
    assert info.to_dict() == GOOD


@pytest.mark.parametrize("mode, expected, mismatch", [
    ("15W", "5W", True), ("25W", "5W", True), ("MAXN_SUPER", "MAXN", True),  # a part matched: no warning
    ("MODE_15W_2CORE", "15W", True), ("15W", "7W", True),
    ("MAXN", "maxn", False), ("MODE_15W_2CORE", " MODE_15W_2CORE ", False), ("15W", "0", False),  # its number
    ("15W", "2", True),
])
def test_the_power_mode_is_compared_whole_or_by_number(mode, expected, mismatch):
    fp = {"software": {"nvpmodel": {"mode": mode, "id": 0}}}
    info = DeviceInfo.from_answer("jet", {**GOOD, "fingerprint": fp})
    assert (info.power_mode_mismatch(expected) is not None) is mismatch


@pytest.mark.parametrize("bad, needle", [
    ({**GOOD, "fingerprint_hash": "../../etc"}, "not 64 hex digits"),
    ({**GOOD, "fingerprint_hash": None}, "not 64 hex digits"),
    ({**GOOD, "fingerprint_hash": "ab" * 32 + "\n"}, "not 64 hex digits"),  # `$` would let a newline through
    ({**GOOD, "fingerprint_hash": "/" + "a" * 63}, "not 64 hex digits"),  # names LUT files: hex only
    ({**GOOD, "fingerprint_hash": "a" * 63}, "not 64 hex digits"),
    ({**GOOD, "fingerprint_hash": "f" * 1000}, f"hash '{'f' * 80}' is not"),  # echoed cut to 80
    ({**GOOD, "runtimes": ["onnxruntime"]}, "malformed 'runtimes'"),
    ([1, 2], "not an object"),
])
def test_malformed_info_is_a_device_error(bad, needle):
    with pytest.raises(DeviceError, match=needle) as exc:
        DeviceInfo.from_answer("jet", bad)
    assert exc.value.device == "jet"


def test_bench_answer_validates_stats():
    ans = BenchAnswer.from_answer("jet", {"stats": STATS, "cold_start": {"first_ms": 3.0}})
    assert ans.median_ms == 1.0 and ans.stats.ratio == 2.0 and ans.raw_stats["ref_ms"] == 0.5
    with pytest.raises(DeviceError, match="device 'jet': the agent sent bad bench statistics: median_ms"):
        BenchAnswer.from_answer("jet", {"stats": {**STATS, "median_ms": 9.0}})


def test_info_is_asked_once_per_session_and_runtime(project):
    with open_session(project, "local") as s:
        calls = []
        real = s.client.call
        s.client.call = lambda method, *a, **kw: (calls.append(method), real(method, *a, **kw))[1]
        first = s.info()
        assert s.info() is first and len(first.fingerprint_hash) == 64
        assert s.info("torch").fingerprint_hash != first.fingerprint_hash  # runtime settings are in it
        assert calls == ["info", "info"]


def test_bench_answer_keeps_known_fields_checked_and_drops_the_rest():
    sent = {**STATS, "k": 4, "ci_rel": None, "ratio_cov": float("inf"), "window_medians_ms": [1.0, 1.1],
            "sessions": 3, "junk": "A" * 100_000, "nested": {"x": [1, 2]}}
    ans = BenchAnswer.from_answer("jet", {"stats": sent, "cold_start": {"session_ms": 12.5, "first_run_ms": 3}})
    assert set(ans.raw_stats) == set(STATS) | {"k", "ratio_cov", "window_medians_ms", "sessions"}
    assert ans.raw_stats["k"] == 4 and ans.stats.k == 4 and ans.raw_stats["window_medians_ms"] == [1.0, 1.1]
    assert ans.cold_start == {"session_ms": 12.5, "first_run_ms": 3}


@pytest.mark.parametrize("change, needle", [
    ({"k": "abc"}, "k must be a finite number"),           # was int('abc'): a ValueError, not a device error
    ({"k": 2.5}, "k must be a whole number"),
    ({"warmup_n": [1]}, "warmup_n must be a finite number"),
    ({"total_s": float("nan")}, "total_s must be a finite number"),
    ({"stable": "yes"}, "stable must be true or false"),
    ({"ref_ms": 0}, "ref_ms must be a finite number > 0"),
    ({"ratio_cov": -1}, "ratio_cov must be a finite number >= 0"),
    ({"window_medians_ms": [1.0] * 1001}, "at most 1000 numbers"),
    ({"window_medians_ms": [1.0, "x"]}, "window_medians_ms must be a finite number"),
    ({"n": 0.5}, "n must be a whole number >= 1"),
])
def test_bench_answer_refuses_a_bad_optional_field(change, needle):
    with pytest.raises(DeviceError, match=needle) as exc:
        BenchAnswer.from_answer("jet", {"stats": {**STATS, **change}})
    assert exc.value.device == "jet"


@pytest.mark.parametrize("cold", [{"session_ms": "x"}, {"session_ms": -1.0}, {"Bad Key": 1.0},
                                  {"session_ms": float("inf")}, {f"f{i}": 1.0 for i in range(17)},
                                  {"session_ms\n": 1.0}, {" session_ms": 1.0}, {"/etc": 1.0}, {"k" * 65: 1.0}])
def test_bench_answer_refuses_a_malformed_cold_start(cold):
    with pytest.raises(DeviceError, match="malformed cold start"):
        BenchAnswer.from_answer("jet", {"stats": STATS, "cold_start": cold})


def test_a_cold_start_of_16_fields_zeros_and_64_character_names_is_kept():
    cold = {"k" * 64: 0, "first_run_ms": 0.5, **{f"f{i}": 1.0 for i in range(14)}}
    assert BenchAnswer.from_answer("jet", {"stats": STATS, "cold_start": cold}).cold_start == cold


def test_a_malformed_cold_start_is_echoed_cut_to_40_characters():
    with pytest.raises(DeviceError) as exc:
        BenchAnswer.from_answer("jet", {"stats": STATS, "cold_start": {"K" * 100: "v" * 100}})
    assert f"('{'K' * 38}…: '{'v' * 38}…)" in str(exc.value)


@pytest.mark.parametrize("answer, needle", [
    ([1, 2], "bench answer is not an object"),
    ({"stats": {**STATS, "median_ms": 0.0, "mean_ms": 0.0, "min_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0,
                "max_ms": 0.0, "std_ms": 0.0, "cov": 0.0}}, "times the model at 0 ms"),
])
def test_a_bench_answer_that_is_not_an_object_or_times_nothing_is_refused(answer, needle):
    with pytest.raises(DeviceError, match=needle) as exc:
        BenchAnswer.from_answer("jet", answer)
    assert exc.value.device == "jet"


def test_answers_are_frozen_records():
    ans = BenchAnswer.from_answer("jet", {"stats": STATS, "cold_start": {"first_ms": 3.0}})
    assert ans.to_dict() == {"stats": ans.raw_stats, "cold_start": {"first_ms": 3.0}, "session": {}, "state": {},
                             "protocol": {}}
    for record, name in ((ans, "cold_start"), (DeviceInfo.from_answer("jet", GOOD), "fingerprint_hash")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, None)


SHA = "cd" * 32


@pytest.mark.parametrize("answer", [
    {"engine": "../../etc/passwd.plan", "sha256": SHA, "build_s": 1.0},
    {"engine": "/abs/e.plan", "sha256": SHA, "build_s": 1.0},
    {"engine": "engines/x.plan\n", "sha256": SHA, "build_s": 1.0},
    {"engine": "engines/x.plan", "sha256": "zz", "build_s": 1.0},
    {"engine": "engines/x.plan", "sha256": " " * 64, "build_s": 1.0},
    {"engine": "engines/x.plan", "sha256": SHA, "build_s": -1.0},
    {"engine": "engines/ x.plan", "sha256": SHA, "build_s": 1.0},
    {"engine": "engines//x.plan", "sha256": SHA, "build_s": 1.0},
    {"engine": f"engines/{'e' * 201}.plan", "sha256": SHA, "build_s": 1.0},
    {"engine": "engines/x.plan", "sha256": SHA, "build_s": "slow"},
    ["engines/x.plan"],
])
def test_engine_answer_refuses_paths_outside_engines_and_malformed_fields(answer):
    with pytest.raises(DeviceError, match="build_engine answer is malformed"):
        engine_answer("jet", answer)


def test_engine_answer_keeps_a_good_answer():
    good = {"engine": f"engines/{SHA}-fp16.plan", "sha256": SHA, "build_s": 12, "extra": "dropped"}
    assert engine_answer("jet", good) == {"engine": good["engine"], "sha256": SHA, "build_s": 12.0}
    longest = {"engine": f"engines/{'e' * 200}.plan", "sha256": SHA, "build_s": 0}  # >= 0 s
    assert engine_answer("jet", longest) == {**longest, "build_s": 0.0}


def test_power_mode_note_and_what_a_device_cannot_measure():
    info = DeviceInfo.from_answer("jet", GOOD)
    assert info.power_mode_note(None) is None and info.power_mode_note("MAXN") is None
    assert info.power_mode_note("15W") == "power mode is MAXN, the profile expects 15W"
    bare = DeviceInfo.from_answer("pc", {**GOOD, "fingerprint": {}})
    assert "reports none" in bare.power_mode_note("MAXN") and bare.power_mode_note(None) is None
    ort = {"onnxruntime": {"version": "1.20", "providers": ["CPUExecutionProvider"]}, "tensorrt": None}
    info = DeviceInfo.from_answer("pc", {**GOOD, "runtimes": ort})
    assert info.unmeasurable({"runtime": "onnxruntime"}) is None
    assert "CUDAExecutionProvider is not available" in info.unmeasurable({"runtime": "onnxruntime",
                                                                           "provider": "cuda"})
    bare_ort = DeviceInfo.from_answer("pc", {**GOOD, "runtimes": {"onnxruntime": {"providers": []}}})
    assert bare_ort.unmeasurable({"runtime": "onnxruntime", "provider": "tensorrt"}).endswith("onnxruntime has: none")
    assert "runtime 'tensorrt' is not available; the device has: onnxruntime" in info.unmeasurable(
        {"runtime": "tensorrt"})


def test_a_power_mode_the_agent_could_not_read_is_none():
    """A failed ``nvpmodel -q`` ("nvpmodel: command failed") is ``{}`` in the fingerprint: that empty object was
    taken for the mode, so a profile expecting MAXN got no note that the device reports none."""
    info = DeviceInfo.from_answer("jet", {**GOOD, "fingerprint": {"performance": {"nvpmodel": {}}}})
    assert info.power_mode() is None and "reports none" in info.power_mode_note("MAXN")
    named = DeviceInfo.from_answer("jet", {**GOOD, "fingerprint": {"performance": {"nvpmodel": "15W"}}})
    assert named.power_mode() == "15W" and named.power_mode_note("15w") is None
    assert named.power_mode_mismatch("0") == {"expected": "0", "actual": "15W"}  # no id to match


def test_a_power_mode_note_keeps_a_line_of_the_devices_mode():
    """The note quoted the device's mode whole: 8,000,000 characters made fleet refresh's record of the last
    refresh (shared by every device) larger than it can be read, and --only-failed forgot the failures."""
    mode = "\x1b[31m" + "é" * 10**6
    long = DeviceInfo.from_answer("jet", {**GOOD, "fingerprint": {"performance": {"nvpmodel": mode}}})
    note = long.power_mode_note("MAXN")
    assert note.startswith("power mode is \\x1b[31méé") and note.endswith("the profile expects MAXN")
    assert len(note) < 200 and "\x1b" not in note


def test_a_tensorrt_11_device_cannot_build_fp16_from_an_fp32_graph():
    trt = {"onnxruntime": {"version": "1.20"}, "tensorrt": {"version": "11.0.1"}}
    info = DeviceInfo.from_answer("thor", {**GOOD, "runtimes": trt})
    assert "cannot be built" in info.unmeasurable({"runtime": "tensorrt", "precision": "fp16"})
    assert info.unmeasurable({"runtime": "tensorrt", "precision": "fp32"}) is None
    old = DeviceInfo.from_answer("orin", {**GOOD, "runtimes": {**trt, "tensorrt": {"version": "10.3.0"}}})
    assert old.unmeasurable({"runtime": "tensorrt", "precision": "fp16"}) is None
    # a device's version of 4,400 digits: int() refuses more than 4,300 (a ValueError); no such TensorRT
    odd = DeviceInfo.from_answer("odd", {**GOOD, "runtimes": {**trt, "tensorrt": {"version": "1" * 4400 + ".0"}}})
    assert odd.unmeasurable({"runtime": "tensorrt", "precision": "fp16"}) is None
