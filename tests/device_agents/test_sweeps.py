"""The sweep LUT protocol (``sessions`` >= 2): fresh sessions per model, pooled samples, the stopping rule
after the ``sessions``-th sweep, on fake sessions and a fake clock (deterministic: no timing is asserted),
and ``bench_many`` in that mode on real ONNX Runtime."""

import itertools
import json

import pytest

from device_agents.edgenas_agent import measure, sweeps

PROTO = measure.resolve_protocol({"warmup_min_n": 3, "warmup_min_s": 0.0, "sample_target_ms": 0.0, "min_n": 30,
                                  "min_s": 0.0, "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 1.0,
                                  "sessions": 3, "session_min_n": 10, "session_min_s": 0.0,
                                  "burst": 5, "burst_warmup_n": 1})


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeSessions:
    """``open(key)`` gives a fresh session whose runs last ``speeds[key][i]`` s, ``i`` the session's index
    for that key (cycling): each session of a model has its own speed, as real sessions do. The first
    ``cold`` runs of every session take 10x as long (what the warm-up absorbs)."""

    def __init__(self, clock, speeds, cold=2):
        self.clock, self.speeds, self.cold = clock, speeds, cold
        self.opened, self.closed, self.log, self.events = [], [], [], []
        self.count = {}

    def open(self, key):
        i = self.count.get(key, 0)
        self.count[key] = i + 1
        self.opened.append(key)
        self.events.append(("open", key))
        speeds = self.speeds[key]
        dt = speeds[i % len(speeds)]
        runs = itertools.count()
        fake = self

        class Session:
            closed = False

            def timer(self, k):
                assert not self.closed, "timed after close"
                total = 0.0
                for _ in range(k):
                    total += dt * (10.0 if next(runs) < fake.cold else 1.0)
                    fake.log.append(key)
                fake.clock.t += total
                return total

            def close(self):
                self.closed = True
                fake.closed.append(key)
                fake.events.append(("close", key))

        return Session()


def test_each_model_is_timed_in_fresh_sessions_and_pooled():
    clock = FakeClock()
    # the reference's sessions differ too (1.98, 2.0, 2.02 ms): each sweep's samples divide by its own
    fs = FakeSessions(clock, {"a": [0.001, 0.00102, 0.00101], "b": [0.002], "ref": [0.00198, 0.002, 0.00202]})
    done = []
    finished = sweeps.run_sweeps(["a", "b"], fs.open, PROTO, open_reference=lambda: fs.open("ref"),
                                 on_done=done.append, clock=clock)
    a, b = sorted(finished, key=lambda t: t.key)
    # three sweeps, each a fresh session per model and the reference first, every session closed
    assert fs.opened == ["ref", "a", "b"] * 3 and sorted(fs.closed) == sorted(fs.opened)
    assert [len(d) for d in done] == [2]  # both judged (and stable) after the third sweep, not before
    # the warm-up took the cold runs of every session: all kept samples are the sessions' steady speeds
    assert set(a.samples) == {0.001, 0.00102, 0.00101} and len(a.samples) == 30 and a.sessions == 3
    res = a.result()
    assert res["median_ms"] == pytest.approx(1.01)  # the pooled median: the middle session, not one session
    assert res["sessions"] == 3 and res["k"] == 1 and res["n"] == 30
    # ratios 1/1.98, 1.02/2.0, 1.01/2.02, ten each: the pooled median is the middle one, 1/1.98
    assert res["ratio"] == pytest.approx(1 / 1.98) and res["ref_ms"] == pytest.approx(2.0)
    assert res["warmup_n"] == 3 * PROTO["warmup_min_n"]  # each session warmed up on its own
    assert b.stable is True and b.result()["median_ms"] == pytest.approx(2.0)


def test_a_model_whose_sessions_disagree_gets_more_sessions_until_the_cap():
    clock = FakeClock()
    # sessions alternate 1 ms and 3 ms: the pooled median's CI never gets within 2%
    fs = FakeSessions(clock, {"wide": [0.001, 0.003], "tight": [0.001]})
    finished = sweeps.run_sweeps(["wide", "tight"], fs.open, dict(PROTO, extra_share=100.0), clock=clock)
    tight, wide = finished  # tight finishes at the third sweep, wide later
    assert tight.key == "tight" and tight.sessions == 3 and tight.stable is True
    assert wide.key == "wide" and wide.stable is False and wide.sessions > 3
    assert wide.spent_s >= PROTO["max_s"]
    assert fs.opened.count("tight") == 3  # a finished model is not opened again
    assert "ratio" not in wide.result()  # no reference, no ratio fields


SPEEDS = {"wide": [0.001, 0.003], "mid": [0.001, 0.0012], "tight": [0.001], "ref": [0.002]}


def _budgeted(share):
    clock = FakeClock()
    fs = FakeSessions(clock, SPEEDS)
    finished = sweeps.run_sweeps(["tight", "mid", "wide"], fs.open, dict(PROTO, extra_share=share),
                                 open_reference=lambda: fs.open("ref"), clock=clock)
    return {t.key: t for t in finished}, fs, clock.t


def test_a_zero_budget_for_extra_sweeps_ends_unsettled_models_after_the_sessions():
    got, fs, _ = _budgeted(0.0)
    assert all(t.sessions == 3 for t in got.values())
    assert got["tight"].stable is True and got["mid"].stable is False and got["wide"].stable is False
    assert fs.opened.count("ref") == 3  # no fourth sweep, not even its reference session


def test_the_budget_bounds_the_extra_sweeps_and_serves_the_least_certain_first():
    base, _, t_base = _budgeted(0.0)
    got, fs, t_total = _budgeted(0.5)
    # the extra sweeps took at most half the first three sweeps' time, plus one session that ran longer
    # than the model's previous one (a wide model alternates 1 ms and 3 ms sessions)
    longest = max(t.last_session_s for t in got.values())
    assert t_base < t_total <= 1.5 * t_base + longest
    assert got["tight"].sessions == 3 and got["tight"].stable is True  # settled models take no extra
    assert got["wide"].sessions > 3 and got["mid"].sessions > 3
    assert got["wide"].stable is False and got["mid"].stable is False
    # every extra sweep (after 3 x the reference and three models) opens the wide model (the widest
    # CI) before the mid one, though the keys came in the order tight, mid, wide; once a 3 ms session
    # of the wide model no longer fits in what is left, the cheaper mid model still gets sessions
    assert fs.opened[:4] == ["ref", "tight", "mid", "wide"] and fs.opened[12] == "ref"
    sweeps_after = [s.split() for s in " ".join(fs.opened[12:]).split("ref")[1:]]
    assert sweeps_after[0] == ["wide", "mid"]
    assert all(s == ["wide", "mid"] or s == ["mid"] for s in sweeps_after)
    assert got["wide"].ci_width() > got["mid"].ci_width() > base["tight"].ci_width()
    # a sweep whose reference session would not leave room for a model times neither: every sample
    # has its ratio to the reference session of its own sweep
    assert all(len(t.ratios) == len(t.samples) for t in got.values())


def test_the_time_cap_ends_a_slow_model_before_the_sessions_are_reached():
    clock = FakeClock()
    fs = FakeSessions(clock, {"slow": [0.2]}, cold=0)
    (slow,) = sweeps.run_sweeps(["slow"], fs.open, PROTO, clock=clock)
    assert slow.stable is False and slow.sessions < 3
    assert slow.spent_s < PROTO["max_s"] + 0.7  # at most one session's warm-up past the cap


def test_session_minimums_count_per_session():
    clock = FakeClock()
    fs = FakeSessions(clock, {"a": [0.001]})
    proto = dict(PROTO, session_min_n=4, session_min_s=0.02, min_n=1)
    (a,) = sweeps.run_sweeps(["a"], fs.open, proto, clock=clock)
    assert a.sessions == 3 and len(a.samples) == 3 * 20  # 20 ms of 1 ms runs per session beat 4 runs


def test_sessions_fields_are_checked():
    assert measure.resolve_protocol(None)["sessions"] == 1  # the agent's default: one session
    for bad in ({"sessions": 0}, {"session_min_n": 0}, {"session_min_s": -1}, {"sessions": 2.5},
                {"sessions": 3, "interleave": 4}, {"extra_share": -0.1}, {"extra_share": float("inf")}):
        with pytest.raises(measure.ProtocolError):
            measure.resolve_protocol(bad)


def test_bench_many_in_sweeps_on_onnxruntime(fast, bench_models):
    """Real sessions: each model opened once per sweep, one partial line per entry, reused after."""
    from device_agents.edgenas_agent import bench

    work, opened, closed = bench_models(4)
    items = [{"key": f"b{i}", "model": f"models/m{i}.onnx"} for i in range(4)]
    proto = dict(fast, sessions=3, session_min_n=5, session_min_s=0.0, min_n=15, max_ci_rel=1.0,
                 burst=3, burst_warmup_n=1, sample_target_ms=0.0)
    params = {"items": items, "protocol": proto, "reference": "models/ref.onnx", "partial": "partial/s.jsonl"}
    seen = []
    out = bench.bench_many(str(work), params, seen.append)
    assert sorted(out["results"]) == [f"b{i}" for i in range(4)] and sorted(out["measured"]) == sorted(out["results"])
    assert [p["done"] for p in seen] == [1, 2, 3, 4]
    # a fresh session per sweep, for every model and the reference alike: 3 sweeps, or more where a busy
    # machine left a model's samples too spread after the third (the extra sweeps; CI saw 4 under load 8)
    sweeps = opened.count("ref.onnx")
    assert sweeps >= 3 and sorted(closed) == sorted(opened)
    for i in range(4):
        st = out["results"][f"b{i}"]
        assert opened.count(f"m{i}.onnx") == st["sessions"] and 3 <= st["sessions"] <= sweeps
        assert st["stable"] is True or sweeps > 3   # an unsettled model is what makes an extra sweep
    for key, st in out["results"].items():
        assert st["k"] == 1 and st["n"] >= 15
        assert st["ratio"] > 0 and st["ref_ms"] > 0 and st["min_ms"] <= st["median_ms"] <= st["max_ms"]
        assert out["cold_start"][key]["session_ms"] > 0
    lines = [json.loads(l) for l in (work / "partial/s.jsonl").read_text().splitlines()]
    assert sorted(l["key"] for l in lines) == sorted(out["results"])
    again = bench.bench_many(str(work), params)
    assert sorted(again["reused"]) == sorted(out["results"]) and again["measured"] == []
