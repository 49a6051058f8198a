"""Multi-fidelity vs full-fidelity search on NAS-Bench-201 at equal cost: prints JSON.

Fidelities from the table: ``cifar10_valid_12ep`` (12 epochs, cost 1) and ``cifar10_valid`` (200
epochs, cost 200/12). Every method optimises validation accuracy and is scored by the CIFAR-10 *test*
accuracy (``cifar10_test``, 200 epochs, from nb201_hw.csv) of the architecture it returns (the
NAS-Bench-201 protocol). Budget: ``--full-evals`` 200-epoch evaluations' worth of cost. Baselines
(same run): random search and regularised evolution with ``--full-evals`` 200-epoch evaluations.
Multi-fidelity: successive halving (eta 3 and 10) and Hyperband (eta 3), each with the largest
number of candidates whose planned cost fits the budget. Median and IQR over ``--seeds`` seeds.

Usage: python bench/multifidelity_nb201.py --valid ../shared/data/nb201/nb201_valid.csv --seeds 30
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgenas.evaluate import make_evaluator
from edgenas.search import Problem, make_strategy
from edgenas.search.ladder import parse_ladder
from edgenas.search.multifidelity import MFConfig, run_multifidelity
from edgenas.spaces import get_space

HIGH = 200 / 12


def full_fidelity(name, space, valid_ev, test_of, evals, seed, opts):
    s = make_strategy(name, space, np.random.default_rng(seed), **opts)
    best, best_v, n = None, -np.inf, 0
    from edgenas.search.base import Result

    while n < evals:
        archs = s.ask(min(s.batch_hint or s.opts.get("population") or 1, evals - n))
        if not archs:  # random search without replacement: the space is drawn
            break
        v = valid_ev.evaluate(archs)
        s.tell(archs, [Result((-float(x),)) for x in v])
        for a, x in zip(archs, v):
            if x > best_v:
                best, best_v = a, x
        n += len(archs)
    return test_of(best), evals * HIGH


def fit(mode, rungs, eta, budget):
    n = 1
    while MFConfig(space="nb201", rungs=rungs, mode=mode, candidates=n + 1, eta=eta).planned_cost() <= budget:
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--valid", required=True)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--full-evals", type=int, default=100)
    args = ap.parse_args()
    space = get_space("nb201")
    valid = str(Path(args.valid).resolve())
    low = make_evaluator("nb201-fidelity", space, table=valid, column="cifar10_valid_12ep")
    high = make_evaluator("nb201-fidelity", space, table=valid, column="cifar10_valid")
    test = make_evaluator("nb201-fidelity", space, table=valid, column="cifar10_test")

    def test_of(arch):
        return float(test.evaluate([arch])[0])

    budget = args.full_evals * HIGH
    rungs = parse_ladder([f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
                          f"nb201-fidelity:table={valid},column=cifar10_valid,cost={HIGH}"])
    problems = [Problem(space, low, [], accuracy_name="cifar10_valid_12ep"),
                Problem(space, high, [], accuracy_name="cifar10_valid")]
    mf = {f"sh-eta{eta}": ("sh", eta) for eta in (3, 10)}
    mf["hyperband-eta3"] = ("hyperband", 3)
    out: dict[str, dict] = {}
    t0 = time.perf_counter()
    for label, (mode, eta) in mf.items():
        n = fit(mode, rungs, eta, budget)
        accs, costs = [], []
        for seed in range(args.seeds):
            cfg = MFConfig(space="nb201", rungs=rungs, mode=mode, candidates=n, eta=eta, seed=seed)
            with tempfile.TemporaryDirectory() as d:
                res = run_multifidelity(cfg, problems, Path(d) / "run")
            accs.append(test_of(res.result.best_arch))
            costs.append(res.cost)
        out[label] = {"candidates": n, "accs": accs, "cost_median": float(np.median(costs))}
    for name, opts in (("random", {}), ("evolution", {"population": 20, "tournament": 10})):
        accs = [full_fidelity(name, space, high, test_of, args.full_evals, seed, opts)[0]
                for seed in range(args.seeds)]
        out[f"full-{name}"] = {"evaluations_200ep": args.full_evals, "accs": accs,
                               "cost_median": args.full_evals * HIGH}
    base = np.median(out["full-random"]["accs"])
    summary = {}
    for k, v in out.items():
        a = np.asarray(v.pop("accs"))
        summary[k] = {**v, "test_acc_median": round(float(np.median(a)), 3),
                      "test_acc_iqr": [round(float(x), 3) for x in np.percentile(a, [25, 75])],
                      "test_acc_mean": round(float(a.mean()), 3),
                      "delta_vs_full_random": round(float(np.median(a) - base), 3)}
    print(json.dumps({"bench": "multifidelity_nb201", "seeds": args.seeds, "budget_cost": budget,
                      "cost_unit": "one 12-epoch evaluation; a 200-epoch one costs 200/12",
                      "baseline": "full-random", "methods": summary,
                      "wall_s": round(time.perf_counter() - t0, 1), "python": platform.python_version()},
                     indent=2))


if __name__ == "__main__":
    main()
