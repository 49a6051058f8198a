"""What a finished run yields, against brute force on small random runs: the best feasible evaluation (a sort
over a plainly written key) and the fronts (pairwise dominance), and what best.json / pareto.json hold."""

import json
import math

import numpy as np
import pytest

from edgenas.search import DeviceTarget, Problem
from edgenas.search.base import Trial
from edgenas.search.results import summarise, write_results


def random_run(space, Lat, rng, n=24):
    """A problem with a budgeted device, an unbudgeted one and a budgeted one that is also minimised, params
    and flops; ``n`` evaluations drawn from few values (ties everywhere), some infeasible, some non-finite, some
    architectures evaluated twice."""
    lat_a, lat_c = Lat(space, seed=1), Lat(space, seed=3)
    devices = [DeviceTarget("a", lat_a, lat_a.min_latency()[0] + 2.0), DeviceTarget("b", Lat(space, seed=2)),
               DeviceTarget("c", lat_c, lat_c.min_latency()[0] + 8.0, minimise=True)]
    problem = Problem(space, None, devices, params=len, flops=len)
    archs = [space.sample(rng) for _ in range(n * 2 // 3)]
    archs += [archs[int(i)] for i in rng.integers(0, len(archs), n - len(archs))]

    def value(choices):
        return float(rng.choice(choices))

    trials = []
    for number, arch in enumerate(archs):
        acc = value([70.0, 71.0, 72.0, 72.0, 72.0, np.nan, -np.inf])
        latency = {"a": value([1.0, 2.0, 4.0]), "b": value([1.0, 3.0, 3.0, np.nan]), "c": value([4.0, 8.0])}
        objectives = {"accuracy": acc, "params": value([1.0, 2.0, np.inf, np.nan]), "flops": value([5.0, 6.0])}
        trials.append(Trial(number=number, arch=space.to_dict(arch), objectives=objectives, latency_ms=latency,
                            constraints={}, feasible=bool(rng.random() < 0.8)))
    return problem, trials


def fin(v):
    return v if math.isfinite(v) else math.inf


def kept(trials, space):
    """Feasible evaluations with a finite accuracy, the first of each architecture only."""
    out, seen = [], set()
    for t in trials:
        key = space.arch_id(space.from_dict(t.arch))
        if t.feasible and math.isfinite(t.objectives["accuracy"]) and key not in seen:
            seen.add(key)
            out.append(t)
    return out


def brute_front(trials, columns):
    """Points no other point is at least as good as in every column and better in one; sorted by values."""
    rows = [[fin(float(c(t))) for c in columns] for t in trials]

    def dom(p, q):
        return all(x <= y for x, y in zip(p, q)) and any(x < y for x, y in zip(p, q))

    front = [i for i in range(len(trials)) if not any(dom(rows[j], rows[i]) for j in range(len(trials)))]
    return [trials[i].number for i in sorted(front, key=lambda i: (rows[i], trials[i].number))]


@pytest.mark.parametrize("seed", range(40))
def test_best_and_fronts_match_brute_force(space, Lat, tmp_path, seed):
    problem, trials = random_run(space, Lat, np.random.default_rng(seed))
    ok = kept(trials, space)
    result = summarise(trials, problem, tmp_path, "budget")

    def speed(t):  # latency as a share of the budget, in ms where there is none
        return sum(fin(t.latency_ms[d]) / b for d, b in (("a", problem.devices[0].budget_ms), ("b", 1.0),
                                                         ("c", problem.devices[2].budget_ms)))

    ranked = sorted(ok, key=lambda t: (-t.objectives["accuracy"], speed(t), fin(t.objectives["params"]),
                                       fin(t.objectives["flops"]), t.number))
    assert (result.best.number if result.best else None) == (ranked[0].number if ranked else None)
    if ranked:
        assert space.arch_id(result.best_arch) == space.arch_id(space.from_dict(ranked[0].arch))
    else:
        assert result.best_arch is None

    acc = [lambda t: -t.objectives["accuracy"]]
    for d in ("a", "b", "c"):
        assert [t.number for t in result.fronts[d]] == brute_front(ok, acc + [lambda t, d=d: t.latency_ms[d]])
    objectives = acc + [lambda t: t.latency_ms["b"], lambda t: t.latency_ms["c"],
                        lambda t: t.objectives["params"], lambda t: t.objectives["flops"]]
    assert [t.number for t in result.pareto] == brute_front(ok, objectives)
    assert result.n_evaluations == len(trials) and result.trials == trials


def test_the_files_hold_the_best_and_the_fronts_with_their_reports(space, Lat, tmp_path):
    problem, trials = random_run(space, Lat, np.random.default_rng(5))
    trials = [Trial(**{**t.__dict__, "report": {"test": t.number / 2}}) if t.number % 2 else t for t in trials]
    result = summarise(trials, problem, tmp_path, "wall_time")
    write_results(result, problem, tmp_path)
    best = json.loads((tmp_path / "best.json").read_text())
    b = result.best
    for key in ("objectives", "latency_ms"):  # NaN, a value no evaluation equals, comes back as NaN
        assert best.pop(key) == pytest.approx(dict(getattr(b, key)), nan_ok=True)
    assert best == {"arch": dict(b.arch), "report": dict(b.report), "number": b.number, "evaluations": len(trials),
                    "stopped": "wall_time"}
    pareto = json.loads((tmp_path / "pareto.json").read_text(), parse_constant=float)
    assert pareto["schema"] == 1 and pareto["objectives"] == problem.objective_names
    assert {d: [p["number"] for p in front] for d, front in pareto["devices"].items()} == {
        d: [t.number for t in front] for d, front in result.fronts.items()}
    assert [p["number"] for p in pareto["front"]] == [t.number for t in result.pareto]
    points = [p for front in [pareto["front"], *pareto["devices"].values()] for p in front]
    assert {p["number"] % 2 for p in points} == {0, 1}
    for p in points:
        t = trials[p["number"]]
        assert p["accuracy"] == t.objectives["accuracy"] and p["arch"] == t.arch
        assert p["objectives"] == pytest.approx(t.objectives, nan_ok=True)
        assert p["latency_ms"] == pytest.approx(t.latency_ms, nan_ok=True)
        assert ("report" in p) == bool(t.report) and p.get("report", {}) == dict(t.report)


def test_a_run_with_nothing_feasible_writes_empty_fronts_and_no_best(space, Lat, tmp_path):
    problem, trials = random_run(space, Lat, np.random.default_rng(0))
    trials = [Trial(**{**t.__dict__, "feasible": False}) for t in trials]
    result = summarise(trials, problem, tmp_path, "budget")
    assert result.best is None and result.best_arch is None
    assert result.pareto == [] and result.fronts == {"a": [], "b": [], "c": []}
    write_results(result, problem, tmp_path)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best == {"arch": None, "objectives": None, "latency_ms": None, "report": None, "number": None,
                    "evaluations": len(trials), "stopped": "budget"}
    assert json.loads((tmp_path / "pareto.json").read_text())["devices"] == {"a": [], "b": [], "c": []}
