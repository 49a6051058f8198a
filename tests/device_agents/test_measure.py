import random
import statistics
import time

import pytest

from device_agents.edgenas_agent import measure


def busy(n: int = 300):
    def op():
        s = 0
        for i in range(n):
            s += i
        return s

    return op


def test_stable_fast_op_gets_k_gt_1_and_is_stable():
    # shared CI machines are noisy: the CI of the median (not the CoV) is what makes this stable
    r = measure.measure(busy(), {"max_s": 5.0, "max_ci_rel": 0.1})
    assert r["k"] > 1  # ~10 us per run, samples must be >= 1 ms
    assert r["stable"] is True
    assert r["n"] >= 20 and r["total_s"] >= 0.2
    assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]


def test_k_makes_one_sample_last_the_target():
    """k is calibrated so that k back-to-back runs last sample_target_ms. On a virtual clock, since on
    a shared VM a slow spell during calibration and a fast one after (seen: 2.7x) breaks any ratio."""
    now = [0.0]

    def timer(k):  # 7 us per run, exactly
        now[0] += k * 7e-6
        return k * 7e-6

    r = measure.measure(timer=timer, protocol={"max_s": 5.0, "sample_target_ms": 1.0}, clock=lambda: now[0])
    assert r["k"] == 143  # ceil(1 ms / 7 us)
    assert r["median_ms"] == pytest.approx(0.007)
    assert 1.0 <= r["median_ms"] * r["k"] < 1.01 and r["stable"] is True


def test_very_noisy_op_is_flagged_unstable_within_the_cap():
    rng = random.Random(1)

    def noisy():
        time.sleep(rng.uniform(0.0005, 0.006))  # spread over a 12x range: no median settles in 0.6 s

    r = measure.measure(noisy, {"max_s": 0.6, "min_n": 10, "min_s": 0.05, "warmup_min_n": 2,
                                "warmup_min_s": 0.0})
    assert r["ci_rel"] > 0.02
    assert r["stable"] is False
    assert r["total_s"] <= 0.6 + 0.1  # the cap holds (one sample may overrun it)
    assert r["cov"] > 0.05


def test_fixed_n_takes_exactly_n_single_runs():
    calls = []
    r = measure.measure(lambda: calls.append(1), {"fixed_n": 37, "warmup_min_n": 5, "warmup_min_s": 0.0})
    assert r["n"] == 37 and r["k"] == 1
    assert r["warmup_n"] == 5
    assert len(calls) == 37 + 5


def test_warmup_honours_count_and_time():
    r = measure.measure(busy(50), {"warmup_min_n": 3, "warmup_min_s": 0.2, "max_s": 2.0})
    assert r["warmup_n"] > 1000  # 0.2 s of a ~2 us op is far more than 3 runs
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.002)

    r = measure.measure(slow, {"warmup_min_n": 15, "warmup_min_s": 0.0, "min_n": 5, "min_s": 0.0,
                               "max_cov": 1.0, "max_s": 2.0})
    assert r["warmup_n"] == 15 and r["k"] == 1  # 2 ms runs need no batching


def test_window_mode_reports_median_of_window_medians():
    rng = random.Random(7)
    now = [0.0]  # virtual time: the test does not depend on how busy the machine is

    def timer(k):
        dt = k * 0.001 * (1.0 + 0.01 * rng.random())
        now[0] += dt
        return dt

    r = measure.measure(timer=timer, protocol={"windows": 3, "min_n": 10, "min_s": 0.01, "max_s": 1.0},
                        winner=True, clock=lambda: now[0])
    meds = r["window_medians_ms"]
    assert len(meds) == 3
    assert r["median_ms"] == pytest.approx(statistics.median(meds))
    assert r["n"] >= 30


def test_winner_defaults_are_longer_than_lut_defaults():
    lut, win = measure.resolve_protocol(None), measure.resolve_protocol(None, winner=True)
    assert win["min_n"] > lut["min_n"] and win["max_s"] > lut["max_s"] and win["windows"] > 1


@pytest.mark.parametrize("bad", [{"nope": 1}, {"min_n": 0}, {"max_s": -1}, {"fixed_n": 2.5}, {"max_cov": "x"}])
def test_bad_protocol_is_rejected(bad):
    with pytest.raises(measure.ProtocolError):
        measure.resolve_protocol(bad)


def test_reference_ratio_cancels_speed_drift():
    """A machine whose speed swings by 2x: raw times wander, the ratio to the reference does not."""
    from device_agents.edgenas_agent import measure as m

    now = [0.0]

    def clock():
        return now[0]

    def speed():  # slow and fast phases, each 0.05 s of virtual time
        return 1.0 if int(now[0] / 0.05) % 2 == 0 else 2.0

    def make(base_s):
        def timer(k):
            dt = k * base_s * speed()
            now[0] += dt
            return dt
        return timer

    proto = {"warmup_min_n": 5, "warmup_min_s": 0.01, "min_n": 20, "min_s": 0.2, "max_s": 2.0,
             "sample_target_ms": 1.0, "max_cov": 0.02, "max_ci_rel": 0.005}
    plain = m.measure(timer=make(0.0003), protocol=proto, clock=clock)
    assert plain["cov"] > 0.2  # the drift shows in raw times
    now[0] = 0.0
    with_ref = m.measure(timer=make(0.0003), protocol=proto, clock=clock, ref_timer=make(0.0001))
    assert with_ref["ratio"] == pytest.approx(3.0, rel=0.02)
    # a sample pair that straddles a phase change is an outlier; the median's CI stays tight
    assert with_ref["ratio_ci_rel"] < 0.01 and with_ref["stable"] is True
    assert with_ref["ref_ms"] > 0


def test_reference_ratio_in_window_mode():
    out = measure.measure(busy(4000), {"windows": 3, "min_n": 5, "min_s": 0.02, "max_s": 1.5,
                                       "max_ci_rel": 0.2, "max_cov": 0.3},
                          ref_timer=measure.loop_timer(busy(1000)))
    assert 2.5 < out["ratio"] < 6.0
    assert len(out["window_medians_ms"]) == 3


def test_ref_every_times_the_reference_less_often_and_ref_k_skips_its_warmup():
    """Issue 17: the reference after every N-th sample only; a pre-calibrated reference is not re-warmed."""
    calls = {"model": 0, "ref": 0}

    def make(name, base_s):
        def timer(k):
            calls[name] += k
            return k * base_s
        return timer

    proto = {"warmup_min_n": 3, "warmup_min_s": 0.0, "sample_target_ms": 0.0, "min_n": 40, "min_s": 0.0,
             "max_s": 5.0, "ref_every": 10}
    out = measure.measure(timer=make("model", 0.0003), protocol=proto, ref_timer=make("ref", 0.0001), ref_k=1)
    assert out["k"] == 1 and out["ratio"] == pytest.approx(3.0)
    assert calls["ref"] == -(-out["n"] // 10)  # one reference sample per 10 model samples, no warm-up
    calls["ref"] = 0
    every = measure.measure(timer=make("model", 0.0003), protocol=dict(proto, ref_every=1),
                            ref_timer=make("ref", 0.0001))
    assert calls["ref"] > every["n"]  # every sample, plus the reference's own warm-up
    with pytest.raises(measure.ProtocolError):
        measure.resolve_protocol({"ref_every": 0})
