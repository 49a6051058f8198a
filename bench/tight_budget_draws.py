"""Draws without replacement under tight latency budgets: each strategy's ``sampling=without-replacement`` (new
runs) against ``novel-first`` (what runs did before, and still replay), in the same run. Prints JSON.

Under a budget few cells meet, ``novel-first`` (50 uniform tries, then a repair toward a fast anchor) gave a cell
already evaluated while others within the budget were left; a draw without replacement never does, and ends the
run ("exhausted") when none is left. Tasks: nb201, optimise ``cifar10_valid``, report ``cifar10_test``, one
Raspberry Pi 4 budget at a quantile of the whole table's latencies (0.65%, 0.3% and 0.15% of 15,625 cells), 100
queries. Per strategy, option and task: distinct cells evaluated, queries spent (fewer when the feasible cells ran
out), and the regret of the chosen cell (the best feasible cifar10_test minus the reported one). Strategies are
driven as ``edgenas search`` drives them (``bench.search_suite``).

    python bench/tight_budget_draws.py --seeds 10 --out bench/tight_budget_draws_results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_suite import Task, chosen, drive, load_suite_table, stats, task_problem  # noqa: E402

STRATEGIES = ("random", "evolution", "nsga2", "hgm", "woa", "ri-iwoa")
QUANTILES = (0.0065, 0.003, 0.0015)
MODES = ("novel-first", "without-replacement")


def tasks(budget: int) -> list[Task]:
    return [Task(f"c10-valid@raspi4-q{q * 100:g}%", "cifar10_valid", "cifar10_test", budget, ("raspi4_ms",),
                 quantile=q) for q in QUANTILES]


def measure(strategy: str, mode: str, task: Task, problem, facts, seeds: range) -> dict:
    """One strategy and sampling over the seeds: distinct cells, queries spent, regret of the chosen cell."""
    distinct, queries, regret = [], [], []
    for seed in seeds:
        recs, _, _ = drive(strategy, problem, task.budget, seed, {"sampling": mode})
        distinct.append(len({r["arch_id"] for r in recs}))
        queries.append(len(recs))
        regret.append(facts["optimum"] - chosen(recs, task))
    return {"distinct": stats(distinct), "queries": stats(queries), "regret": stats(regret),
            "all_feasible_found": sum(d == facts["feasible"] for d in distinct)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=100, help="queries per run")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    t0 = time.time()
    table = load_suite_table()
    out: dict = {"machine": platform.node(), "python": platform.python_version(), "seeds": args.seeds,
                 "budget": args.budget, "baseline": "novel-first", "tasks": {}}
    for task in tasks(args.budget):
        problem, facts = task_problem(task, table)
        got: dict = {"feasible": facts["feasible"], "budget_ms": facts["budgets_ms"]["raspi4_ms"],
                     "optimum": facts["optimum"], "strategies": {}}
        for name in args.strategies:
            got["strategies"][name] = {m: measure(name, m, task, problem, facts, range(args.seeds)) for m in MODES}
            print(f"{task.name} {name} done ({time.time() - t0:.0f} s)", file=sys.stderr)
        out["tasks"][task.name] = got
    out["wall_s"] = round(time.time() - t0, 1)
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
