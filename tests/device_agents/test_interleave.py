"""The interleaved LUT protocol: the stopping rule and the round-robin scheduler, on fake timers and a
fake clock (deterministic: no timing is asserted), and ``bench_many`` in that mode on real ONNX Runtime."""

import itertools
import json

import pytest

from device_agents.edgenas_agent import interleave, measure

PROTO = measure.resolve_protocol({"warmup_min_n": 4, "warmup_min_s": 0.0, "sample_target_ms": 0.0, "min_n": 40,
                                  "min_s": 0.0, "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 1.0,
                                  "interleave": 4, "burst": 10, "burst_warmup_n": 2})


def test_verdict_waits_for_min_n_then_stops_on_a_tight_median():
    tight = [0.001] * 39
    assert interleave.verdict(tight, [], 0.1, PROTO) is None  # 39 < min_n, under the cap
    assert interleave.verdict(tight + [0.001], [], 0.1, PROTO) is True


def test_verdict_needs_min_s_as_well():
    proto = dict(PROTO, min_s=0.5)
    assert interleave.verdict([0.001] * 100, [], 0.4, proto) is None
    assert interleave.verdict([0.001] * 100, [], 0.5, proto) is True


def test_verdict_caps_a_wide_spread_at_the_entry_time_cap():
    wide = [0.001, 0.003] * 50  # median's CI spans both values: never within 2%; CoV ~ 0.5
    assert interleave.verdict(wide, [], 0.99, PROTO) is None
    assert interleave.verdict(wide, [], 1.0, PROTO) is False
    assert interleave.verdict([0.001] * 5, [], 1.0, PROTO) is False  # the cap holds before min_n too


def test_verdict_judges_the_ratios_too():
    tight = [0.001] * 60
    assert interleave.verdict(tight, [0.5, 1.5] * 30, 0.1, PROTO) is None
    assert interleave.verdict(tight, [0.5] * 60, 0.1, PROTO) is True


def test_verdict_accepts_a_median_ci_within_the_limit_despite_outliers():
    # 1% spread around the median plus 10% far outliers: CoV > 5%, but the median's CI is tight
    xs = [0.001 * (1 + 0.0001 * (i % 10)) for i in range(90)] + [0.01] * 10
    cov, rel = interleave.stats.spread(xs)
    assert cov > 0.05 and rel < 0.02
    assert interleave.verdict(xs, [], 0.1, PROTO) is True


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def fake_timers(clock, models, rewarm_factor=10.0):
    """name -> timer; ``models[name]`` is an iterator of per-run seconds. The first run after another
    model ran takes ``rewarm_factor`` x longer (the cache effect the re-warming runs absorb)."""
    log = []

    def make(name):
        def timer(k):
            total = 0.0
            for _ in range(k):
                dt = next(models[name])
                if log and log[-1] != name:
                    dt *= rewarm_factor
                log.append(name)
                total += dt
            clock.t += total
            return total
        return timer

    return {name: make(name) for name in models}, log


def test_run_group_round_robin_stops_each_model_on_its_own():
    clock = FakeClock()
    timers, log = fake_timers(clock, {"tight": itertools.repeat(0.001), "noisy": itertools.cycle([0.001, 0.003]),
                                      "ref": itertools.repeat(0.002)})
    tracks = [interleave.Track("tight", timers["tight"]), interleave.Track("noisy", timers["noisy"])]
    rounds = []
    finished = interleave.run_group(tracks, PROTO, ref_timer=timers["ref"], on_done=rounds.append, clock=clock)
    tight, noisy = tracks
    assert [t.key for t in finished] == ["tight", "noisy"] and [len(r) for r in rounds] == [1, 1]
    # tight: stable after the first check at min_n (4 turns of 10 samples)
    assert tight.stable is True and len(tight.samples) == 40
    # re-warming runs are not samples: every kept sample is the steady 1 ms, none the 10 ms first run
    assert set(tight.samples) == {0.001}
    assert tight.warmup_n >= PROTO["warmup_min_n"]
    # ratios divide by the median of the round's reference turn (2 ms)
    assert tight.result()["ratio"] == pytest.approx(0.5) and tight.result()["ref_ms"] == pytest.approx(2.0)
    # noisy: never within 2%, stopped by its own time cap, flagged unstable
    assert noisy.stable is False and noisy.spent_s >= PROTO["max_s"]
    assert noisy.spent_s < PROTO["max_s"] + 0.1  # at most one turn past the cap
    assert noisy.result()["stable"] is False and noisy.result()["k"] == 1
    # the models took turns: tight's runs are spread over the rounds, not in one block
    first_noisy = log.index("noisy")
    assert "tight" in log[first_noisy:]
    assert log.count("ref") > 1  # one reference turn per round


def test_run_group_without_a_reference_has_no_ratio_fields():
    clock = FakeClock()
    timers, _ = fake_timers(clock, {"a": itertools.repeat(0.001)})
    (track,) = interleave.run_group([interleave.Track("a", timers["a"])], PROTO, clock=clock)
    res = track.result()
    assert res["stable"] is True and "ratio" not in res and res["n"] == 40
    assert res["total_s"] == pytest.approx(track.spent_s)


def test_warm_up_is_bounded_by_half_the_cap():
    clock = FakeClock()
    timers, _ = fake_timers(clock, {"slow": itertools.repeat(0.2)})
    track = interleave.Track("slow", timers["slow"])
    interleave.warm_up(track, dict(PROTO, warmup_min_n=100), clock)
    assert track.warmup_n == 3  # 0.6 s >= half of the 1 s cap, long before 100 runs


def test_interleave_fields_are_checked():
    assert measure.resolve_protocol({"burst_warmup_n": 0})["burst_warmup_n"] == 0
    assert measure.resolve_protocol(None)["interleave"] == 1  # the agent's default: one model at a time
    for bad in ({"interleave": 0}, {"burst": 0}, {"burst_warmup_n": -1}, {"burst_warmup_n": 1.5}):
        with pytest.raises(measure.ProtocolError):
            measure.resolve_protocol(bad)


def test_bench_many_interleaved_on_onnxruntime(fast, bench_models):
    """Real sessions: every entry measured once, single-run samples, one partial line each, reused after."""
    from device_agents.edgenas_agent import bench

    work, opened, closed = bench_models(5)
    items = [{"key": f"b{i}", "model": f"models/m{i}.onnx"} for i in range(5)]
    proto = dict(fast, interleave=3, burst=5, burst_warmup_n=1, sample_target_ms=0.0)
    seen = []
    params = {"items": items, "protocol": proto, "reference": "models/ref.onnx", "partial": "partial/i.jsonl"}
    out = bench.bench_many(str(work), params, seen.append)
    assert sorted(out["results"]) == [f"b{i}" for i in range(5)] and sorted(out["measured"]) == sorted(out["results"])
    assert [p["done"] for p in seen] == [1, 2, 3, 4, 5]
    assert opened.count("ref.onnx") == 1 and len(opened) == 6
    assert sorted(closed) == sorted(opened)  # every session closed, the reference's too
    for st in out["results"].values():
        assert st["k"] == 1 and st["n"] % 5 == 0 and st["n"] >= fast["min_n"]
        assert st["ratio"] > 0 and st["ref_ms"] > 0 and st["min_ms"] <= st["median_ms"] <= st["max_ms"]
    lines = [json.loads(l) for l in (work / "partial/i.jsonl").read_text().splitlines()]
    assert sorted(l["key"] for l in lines) == sorted(out["results"])
    again = bench.bench_many(str(work), params)
    assert sorted(again["reused"]) == sorted(out["results"]) and again["measured"] == []
