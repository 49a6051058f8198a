"""Latency budgets on two devices that each can be met alone but not by one architecture together.

A new search under them ran 0 evaluations with ``random`` and ended "exhausted", saying that "every architecture
that meets the latency budget has been drawn"; the other strategies spent their budget on infeasible candidates
(``gp`` over 8 minutes for 20 on nb201) and DARTS trained to the end. Now a new run is refused before anything is
made, with the budget each device would need; where that cannot be told (a space too large to list, latencies no
bound covers) the search runs and says at its end that nothing met the budgets together.

The devices are two LUTs the test writes over nb201, ``b``'s block costs ``a``'s turned around: the fastest
cell on one is slow on the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InfeasibleError, JointInfeasibleError
from edgenas.latency.lut import Calibration
from edgenas.latency.predictor import LatencyPredictor
from edgenas.search import DeviceTarget, Problem
from edgenas.search.joint import _bound_excludes, _Device, check_joint
from edgenas.spaces import get_space
from tests.latency.test_predictor import _stats, make_lut

#: budgets each device meets alone (the fastest cells take 86.81 ms on a, 49.35 ms on b), not together
A_MS, B_MS = 100.0, 57.0
STRATEGIES = ("random", "evolution", "nsga2", "hgm", "tpe", "gp", "cmaes", "woa", "ri-iwoa", "optuna-nsga2",
              "llm-evolution", "sh", "hyperband", "darts")


def luts(space, calibration=None):
    """LUTs ``a`` and ``b``: ``b``'s entries are ``a``'s turned around (2.01 ms minus each)."""
    a = dataclasses.replace(make_lut(space, calibration=calibration), device="a")
    b = dataclasses.replace(a, device="b", entries={k: _stats(2.01 - e.median_ms) for k, e in a.entries.items()})
    return a, b


def predictors(space, calibration=None):
    return tuple(LatencyPredictor(lut, space) for lut in luts(space, calibration))


def every_latency(space, models):
    sizes = space.gene_sizes()
    genes = np.indices(sizes).reshape(len(sizes), -1).T
    return [m.predict_many(genes) for m in models]


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project holding the two LUTs, no database yet (``$EDGENAS_DB`` unset), as the current folder."""
    from edgenas.latency.store import LutStore

    root = tmp_path / "proj"
    root.mkdir()
    store = LutStore(root / "luts")
    for lut in luts(get_space("nb201")):
        store.save(lut)
    monkeypatch.setenv("EDGENAS_PROJECT", str(root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    monkeypatch.chdir(root)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def args(strategy, *budgets):
    """A search over nb201 on a and b with ``budgets`` (one per device), sized as ``strategy`` takes it."""
    out = ["search", "--space", "nb201", "--strategy", strategy, "--out", "run"]
    for device, ms in zip(("a", "b"), budgets):
        out += ["--device", device, "--max-latency-ms", str(ms)]
    if strategy in ("sh", "hyperband"):
        return out + ["--ladder", "params", "--ladder", "compression", "--budget", "9"]
    if strategy == "darts":
        return out + ["--epochs", "1"]
    return out + ["--evaluator", "params", "--budget", "3"]


def test_the_budgets_are_each_feasible_and_not_together():
    space = get_space("nb201")
    a, b = predictors(space)
    assert a.min_latency()[0] < A_MS and b.min_latency()[0] < B_MS
    la, lb = every_latency(space, (a, b))
    assert not ((la <= A_MS) & (lb <= B_MS)).any()
    # what the refusal's hint names: the least each budget needs with the other kept, and it is met then
    assert lb[la <= A_MS].min() == pytest.approx(79.7456, abs=1e-3)
    assert la[lb <= B_MS].min() == pytest.approx(123.0111, abs=1e-3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_new_search_under_budgets_no_architecture_meets_together_is_refused_leaving_nothing(cli, proj, strategy):
    before = snapshot(proj)
    res = cli(*args(strategy, A_MS, B_MS))
    assert res.code == 4, res.err
    assert ("no architecture of space 'nb201' meets the latency budgets of 'a' (100 ms) and 'b' (57 ms) together, "
            "though each device alone can meet its own (none of its 15,625 architectures does: the fastest on 'a' "
            "takes 92.83 ms on 'b', the fastest on 'b' takes 130.3 ms on 'a') (loosen a budget (--max-latency-ms): "
            "'a' to at least 123.02 ms, or 'b' to at least 79.746 ms)") in " ".join(res.err.split())
    assert "Traceback" not in res.err and "drawn" not in res.err and res.out == ""
    assert snapshot(proj) == before  # no run folder, no database, nothing else


@pytest.mark.parametrize("strategy", ["random", "evolution", "hyperband"])
def test_the_budgets_the_hint_names_run_and_find_architectures_within_both(cli, proj, strategy):
    """Each budget loosened to what the refusal said, the other as it was: the search runs; random and
    hyperband, which draw only from what meets both, find a cell within both (evolution, 3 evaluations, need not:
    few cells meet both)."""
    import json

    for a_ms, b_ms in ((123.02, B_MS), (A_MS, 79.746)):
        res = cli(*args(strategy, a_ms, b_ms), "--json")
        assert res.code == 0, res.err
        s = json.loads(res.out)
        assert s["evaluations"] >= 3 and "together" not in res.err
        if strategy != "evolution":
            assert s["best"] is not None and s["latency_ms"]["a"] <= a_ms and s["latency_ms"]["b"] <= b_ms
        (proj / "run").rename(proj / f"run-{strategy}-{a_ms}")


def test_a_quantile_budget_on_both_says_to_raise_the_quantile(cli, proj):
    res = cli("search", "--space", "nb201", "--device", "a", "--device", "b", "--max-latency-quantile", "0.05",
              "--strategy", "random", "--budget", "3", "--out", "run")
    assert res.code == 4 and "meets the latency budgets of 'a' (" in res.err, res.err
    assert "(raise --max-latency-quantile" in " ".join(res.err.split()) and not (proj / "run").exists()


def test_one_device_says_what_it_said_before(cli, proj):
    """A budget below the device's fastest cell: the message of one device; a budget it meets: the run, and
    random ending when every cell within it has been drawn, said as before."""
    import json

    res = cli(*args("random", 80.0))
    assert res.code == 4 and not (proj / "run").exists()
    assert ("device 'a': no architecture of space 'nb201' meets 80 ms; the fastest the space allows is "
            "86.81373135883594 ms (raise the budget to at least 86.814 ms)") in " ".join(res.err.split())
    a, _ = predictors(get_space("nb201"))
    (la,) = every_latency(get_space("nb201"), (a,))
    n = int((la <= 87.5).sum())
    assert 0 < n < 20
    res = cli(*[x if x != "3" else "20" for x in args("random", 87.5)], "--json")
    assert res.code == 0 and json.loads(res.out)["evaluations"] == n
    assert (f"the search stopped after {n} of 20 evaluations, all distinct: random draws are without replacement, "
            "and every architecture that meets the latency budget has been drawn") in " ".join(res.err.split())
    assert "together" not in res.err


def test_more_devices_hint_the_budget_each_needs_with_the_others_and_not_one_that_cannot_help():
    """Three devices, a and b at odds, c loose: c's budget is not what excludes them, so the hint names a's and
    b's only; a is refused at its own minimum as before."""
    space = get_space("nb201")
    a, b = predictors(space)
    c = LatencyPredictor(dataclasses.replace(make_lut(space), device="c"), space)
    targets = [DeviceTarget("a", a, A_MS), DeviceTarget("b", b, B_MS), DeviceTarget("c", c, 1000.0)]
    with pytest.raises(JointInfeasibleError) as err:
        check_joint(space, targets)
    assert err.value.exit_code == 4 and isinstance(err.value, InfeasibleError)
    assert set(err.value.needed) == {"a", "b"} and err.value.budgets == {"a": A_MS, "b": B_MS, "c": 1000.0}
    assert "'a' (100 ms), 'b' (57 ms) and 'c' (1000 ms)" in err.value.message
    assert err.value.hint.endswith("each with the others as they are")
    assert check_joint(space, targets[:1] + targets[2:]) is None  # a and c agree
    assert check_joint(space, [DeviceTarget("a", a, A_MS), DeviceTarget("b", b, None)]) is None  # one budget


def test_a_space_too_large_to_list_is_refused_where_the_luts_bound_proves_it():
    """mbv3-small (too many networks to list): a lower bound over the two LUTs' weighted block costs proves
    that none meets both budgets."""
    space = get_space("mbv3-small")
    a, b = predictors(space)
    ma, mb = a.min_latency()[0], b.min_latency()[0]
    with pytest.raises(JointInfeasibleError, match="a lower bound over the LUTs' block costs shows it"):
        check_joint(space, [DeviceTarget("a", a, ma * 1.2), DeviceTarget("b", b, mb * 1.2)])
    assert check_joint(space, [DeviceTarget("a", a, ma * 6), DeviceTarget("b", b, mb * 6)]) is None


@pytest.mark.parametrize("name", ["mbv3-tiny", "nb201"])
@pytest.mark.parametrize("calibrated", [False, True])
def test_the_bound_never_refuses_budgets_an_architecture_meets(name, calibrated):
    """Against every network of a listed space, over a grid of budget pairs (a calibrated table as well): the
    bound refuses none that a network meets, and most that none does."""
    space = get_space(name)
    cal = Calibration("loglinear", {"a": 0.3, "b": 0.8}, 3) if calibrated else None
    a, b = predictors(space, cal)
    la, lb = every_latency(space, (a, b))
    proved = missed = 0
    for fa in np.linspace(1.0, 1.8, 9):
        for fb in np.linspace(1.0, 1.8, 9):
            ba, bb = la.min() * fa, lb.min() * fb
            devices = [_Device("a", a, ba, la.min(), None), _Device("b", b, bb, lb.min(), None)]
            excluded = _bound_excludes(space, devices)
            if ((la <= ba) & (lb <= bb)).any():
                assert not excluded, (fa, fb)
            else:
                proved, missed = proved + excluded, missed + (not excluded)
    assert proved > 4 * missed and proved > 10


class Blocks:
    """A block-sum latency that is not a LUT (no bound applies): ``sign`` -1 turns the costs around."""

    def __init__(self, space, sign):
        rng = np.random.default_rng(0)
        self.space = space
        self.cost = {k: 1.0 + sign * float(rng.uniform(-0.9, 0.9)) for k in space.key_vocab()}

    def predict_many(self, archs):
        return np.array([sum(self.cost[k] for k in self.space.block_keys(x)) for x in archs])

    def min_latency(self):
        return self.space.min_latency(self.cost)


def test_where_it_cannot_be_told_the_search_runs_warned_and_ends_saying_nothing_met_them_together(tmp_path, capsys):
    """mbv3-small under latencies no bound covers: a warning before, and at the end the note says that no
    architecture met the budgets together, not that every one within them was drawn."""
    from edgenas.cli.cmd_search import _exhausted_note
    from edgenas.evaluate import make_evaluator
    from edgenas.search import SearchConfig, run_search
    from edgenas.search.summary import summary

    space = get_space("mbv3-small")
    a, b = Blocks(space, 1), Blocks(space, -1)
    budgets = {"a": a.min_latency()[0] * 1.3, "b": b.min_latency()[0] * 1.3}
    targets = [DeviceTarget(n, m, budgets[n]) for n, m in (("a", a), ("b", b))]
    said = check_joint(space, targets)
    assert said.startswith("warning: the latency budgets of 'a' (") and "may not be met together" in said
    problem = Problem(space, make_evaluator("params", space), targets)
    config = SearchConfig(space=space.name, strategy="random", budget_evals=5, seed=0,
                          devices=tuple(budgets.items()))
    result = run_search(config, problem, tmp_path / "r")
    assert result.stopped == "exhausted" and result.n_evaluations == 0
    note = _exhausted_note(problem, config, summary(problem, result), False)
    assert note.startswith("warning: the search stopped after 0 of 5 evaluations: no architecture that meets the "
                           f"latency budgets of 'a' ({budgets['a']:.4g} ms) and 'b' ({budgets['b']:.4g} ms) "
                           "together was found in 2000 samples and a repair; loosen a budget"), note
    assert "drawn" not in note
    from edgenas.cli.cmd_search import _print

    # evolution drawing as before (its first population without replacement ends as random does): it evaluates
    # what it proposes, none within both
    config = dataclasses.replace(config, strategy="evolution", budget_evals=3,
                                 strategy_options={"sampling": "novel-first"})
    result = run_search(config, problem, tmp_path / "e")
    assert result.n_evaluations == 3 and result.best is None
    capsys.readouterr()
    _print(problem, config, result, False)
    said = " ".join(capsys.readouterr().out.split())
    assert (f"no architecture found that meets the latency budgets of 'a' ({budgets['a']:.4g} ms) and 'b' "
            f"({budgets['b']:.4g} ms) together; loosen a budget, or raise the number of evaluations") in said, said
