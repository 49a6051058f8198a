"""``runs_per_sample``: samples of several back-to-back runs, for runtimes whose calls overlap on the device.

A fake timer models such a runtime: ``k`` back-to-back calls cost ``k * c`` plus one wait ``w`` for the
device at the end (what a CUDA-event timer sees when each call only launches work). One call at a time
measures ``c + w``; in runs of ``R`` the sample is ``c + w / R``, the cost a block pays inside a network.
Deterministic (fake clock); no real timing is asserted."""

import pytest

from device_agents.edgenas_agent import interleave, measure, sweeps

C, W = 100e-6, 50e-6


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def overlapping(clock, c=C, w=W):
    def timer(k):
        dt = k * c + w
        clock.t += dt
        return dt
    return timer


BASE = {"warmup_min_n": 3, "warmup_min_s": 0.0, "sample_target_ms": 0.0, "min_n": 20, "min_s": 0.0,
        "max_s": 5.0}


@pytest.mark.parametrize("runs", [1, 10])
def test_measure_takes_samples_of_runs_per_sample_runs(runs):
    clock = Clock()
    r = measure.measure(timer=overlapping(clock), protocol=dict(BASE, runs_per_sample=runs), clock=clock)
    assert r["k"] == runs
    assert r["median_ms"] == pytest.approx((C + W / runs) * 1e3)


def test_the_reference_is_timed_in_runs_too():
    clock = Clock()
    ref = overlapping(clock, c=200e-6, w=W)
    r = measure.measure(timer=overlapping(clock), protocol=dict(BASE, runs_per_sample=10), clock=clock,
                        ref_timer=ref)
    assert r["ref_k"] == 10
    assert r["ref_ms"] == pytest.approx((200e-6 + W / 10) * 1e3)
    assert r["ratio"] == pytest.approx((C + W / 10) / (200e-6 + W / 10))


def test_sample_target_may_ask_for_more_runs_than_runs_per_sample():
    clock = Clock()
    r = measure.measure(timer=overlapping(clock), protocol=dict(BASE, runs_per_sample=2, sample_target_ms=1.0),
                        clock=clock)
    assert r["k"] >= 9  # 1 ms of 100-150 us runs


def test_fixed_n_takes_samples_of_runs():
    clock = Clock()
    r = measure.measure(timer=overlapping(clock), protocol=dict(BASE, fixed_n=50, runs_per_sample=5), clock=clock)
    assert r["n"] == 50 and r["k"] == 5
    assert r["median_ms"] == pytest.approx((C + W / 5) * 1e3)


def test_sweeps_take_samples_of_runs():
    clock = Clock()
    proto = measure.resolve_protocol(dict(BASE, min_n=30, sessions=3, session_min_n=10, session_min_s=0.0,
                                          runs_per_sample=10))

    class Session:
        def __init__(self):
            self.timer = overlapping(clock)

        def close(self):
            pass

    done = sweeps.run_sweeps(["a", "b"], lambda key: Session(), proto, clock=clock)
    for track in done:
        result = track.result(10)
        assert result["k"] == 10 and result["sessions"] == 3 and result["n"] == 30
        assert result["median_ms"] == pytest.approx((C + W / 10) * 1e3)


def test_interleaved_turns_take_samples_of_runs():
    clock = Clock()
    proto = measure.resolve_protocol(dict(BASE, interleave=2, burst=5, burst_warmup_n=1, runs_per_sample=4))
    tracks = [interleave.Track(key, overlapping(clock)) for key in ("a", "b")]
    done = interleave.run_group(tracks, proto, clock=clock)
    assert {t.key for t in done} == {"a", "b"}
    assert done[0].result(4)["median_ms"] == pytest.approx((C + W / 4) * 1e3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None, 10 ** 6])
def test_a_bad_runs_per_sample_is_refused(bad):
    with pytest.raises(measure.ProtocolError, match="runs_per_sample"):
        measure.resolve_protocol({"runs_per_sample": bad})


def test_default_is_one_run_per_sample():
    assert measure.resolve_protocol()["runs_per_sample"] == 1
    assert measure.resolve_protocol(winner=True)["runs_per_sample"] == 1
