"""What the device jobs share to measure (``fleet.measure``), on made-up answers: the table's speed
reference record, a measurement at the nominal speed, and a ``bench_many`` answer checked."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from edgenas.errors import BadAnswerError
from edgenas.fleet.measure import (
    LUT_PROTOCOL, REFERENCE_DESCRIPTION, bench_many_results, lut_protocol_for, nominal_ms, nominal_reference,
    runs_per_sample)


def _stats(ms: float, **more) -> dict:
    return dict(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms, min_ms=ms, max_ms=ms,
                **more)


def test_the_reference_record_is_the_median_reference_time_of_a_profile_where_every_result_has_a_ratio(tmp_path):
    ref = tmp_path / "reference.onnx"
    ref.write_bytes(b"conv")
    results = [{"ref_ms": 2.0, "ratio": 0.5}, {"ref_ms": 5.0, "ratio": 1.0}, {"ref_ms": 3.0, "ratio": 2.0}]
    assert nominal_reference(results, ref) == {"sha256": hashlib.sha256(b"conv").hexdigest(), "ms": 3.0,
                                               "model": REFERENCE_DESCRIPTION}
    # one result without a reference time or a ratio (an older agent, a runtime timed alone): no record
    for partial in ({"ref_ms": 4.0}, {"ratio": 1.0}, {"ref_ms": 4.0, "ratio": None}, {"ref_ms": 0, "ratio": 1.0}):
        assert nominal_reference(results + [partial], ref) is None, partial


def test_a_measurement_at_nominal_speed_is_its_ratio_times_the_tables_reference_time():
    lut = SimpleNamespace(normalised=True, reference={"sha256": "abc", "ms": 2.0})
    assert nominal_ms({"ratio": 1.5}, lut, "abc") == 3.0
    assert nominal_ms({"ratio": 1.5}, lut, "def") is None  # timed against another reference model
    assert nominal_ms({"ratio": None}, lut, "abc") is None and nominal_ms({}, lut, "abc") is None
    assert nominal_ms({"ratio": 1.5}, SimpleNamespace(normalised=False, reference={"sha256": "abc", "ms": 2.0}),
                      "abc") is None
    assert nominal_ms({"ratio": 1.5}, None, "abc") is None


def test_a_bench_many_answer_keeps_the_asked_keys_and_counts_the_reused_ones_it_answered():
    out = {"results": {"a": _stats(1.0, junk=1), "b": _stats(2.0), "d": _stats(4.0), "x": _stats(3.0)},
           "reused": ["a", "c", "d", "x"]}
    got, reused = bench_many_results("dev", out, ["a", "b", "c", "d", "a"])
    assert sorted(got) == ["a", "b", "d"] and "junk" not in got["a"] and got["b"]["median_ms"] == 2.0
    assert reused == 2  # "a" once and "d": "b" was timed now, "c" was not answered, "x" was not asked for
    assert bench_many_results("dev", {"results": {}}, ["a"]) == ({}, 0)  # no 'reused' list: none reused


@pytest.mark.parametrize("out", [None, [], {"reused": []}, {"results": [], "reused": []},
                                 {"results": {}, "reused": {}}])
def test_a_malformed_bench_many_answer_is_one_device_error(out):
    with pytest.raises(BadAnswerError, match="bench_many answer is malformed"):
        bench_many_results("dev", out, ["a"])


def test_bad_statistics_of_an_asked_key_are_one_device_error_naming_it():
    out = {"results": {"a": _stats(1.0), "b": dict(_stats(1.0), n=0)}, "reused": []}
    with pytest.raises(BadAnswerError, match="bad statistics for entry b: n must be a whole number"):
        bench_many_results("dev", out, ["a", "b"])
    assert bench_many_results("dev", out, ["a"])[0].keys() == {"a"}  # a key not asked for is not checked


def test_runtimes_whose_calls_overlap_get_samples_of_10_runs_with_a_longer_warm_up_and_cap():
    # the figures of the protocol's comment: 30 samples of 10 runs over at least 3 sessions of 10, a warm-up of
    # 100 calls, a cap of 0.5 s
    want = dict(LUT_PROTOCOL, runs_per_sample=10, warmup_min_n=100, min_n=30, session_min_n=10, max_s=0.5)
    assert lut_protocol_for({"runtime": "tensorrt"}) == want
    assert lut_protocol_for({"runtime": "torch", "provider": "cuda"}) == want


def test_a_tables_runs_per_sample_is_read_up_to_the_most_the_agent_accepts():
    assert runs_per_sample({"runs_per_sample": 100000}) == 100000
    assert runs_per_sample({"runs_per_sample": 100001}) == 1


def test_the_hint_for_an_odd_suffix_does_not_guess_torchscript_from_a_file_it_cannot_read(tmp_path, monkeypatch):
    from edgenas.errors import InputError
    from edgenas.fleet import measure

    model = tmp_path / "model.bin"
    model.write_bytes(b"PK\x03\x04 a zip archive")
    with pytest.raises(InputError) as exc:
        measure.check_model_suffix("onnxruntime", model)
    assert exc.value.hint == "it looks like TorchScript: rename it to model.pt and measure it with --runtime torch"

    def unreadable(path, what):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(measure, "open_regular", unreadable)  # as root, a mode of 000 would still be read
    with pytest.raises(InputError) as exc:
        measure.check_model_suffix("onnxruntime", model)
    assert exc.value.hint == "if it is an ONNX model, rename it to model.onnx"
