"""Typed agent answers: parsed once, malformed ones refused with the device named; info once per session."""

import pytest

from edgenas.devices.answers import BenchAnswer, DeviceInfo
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


@pytest.mark.parametrize("bad, needle", [
    ({**GOOD, "fingerprint_hash": "../../etc"}, "not 64 hex digits"),
    ({**GOOD, "fingerprint_hash": None}, "not 64 hex digits"),
    ({**GOOD, "fingerprint_hash": "ab" * 32 + "\n"}, "not 64 hex digits"),  # `$` would let a newline through
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
