"""TPE under a latency budget over a long run: CPU per evaluation as the study grows. Prints JSON.

Under a budget the predictor rejects some of TPE's proposals before they are evaluated; each rejected
proposal is told to the optuna study as an infeasible trial (constrained TPE learns the region from them),
and the sampler reads every trial of the study at each ask. Two ways to go on after a rejection, both run
here on the same task and seeds, in one process:

* ``ask`` (the baseline, edgenas up to 34b38ca; ``--strategy-opt rejected=ask`` since): ask the study again,
  up to ``max_tries`` = 20 times, then enqueue a random feasible architecture;
* ``repair`` (the default since): repair the rejected proposal, gene by gene toward the device's fastest
  architecture or a random feasible one, and enqueue the repaired architecture as the next trial.

Task: the search suite's ``c10-valid@raspi4`` (optimise CIFAR-10 validation accuracy, report test accuracy,
Raspberry Pi 4 latency at most its 30th percentile; ``--quantile`` for another budget), driven as
``edgenas search`` drives TPE (``bench.search_suite.build`` and ``drive_built``). Per mode: CPU ms per
evaluation (ask + tell) in windows of ``--window`` evaluations, the study's trials per evaluation, and the
reported value chosen.

Usage: python bench/tpe_growth.py [--evals 1000] [--seeds 3] [--quantile 0.3] [--out F.json]
(``--quantile 0.04``: a budget 625 of the 15,625 cells meet, where asking again chose better.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_suite import DATA, TASKS, build, chosen, drive_built, load_suite_table, task_problem  # noqa: E402

MODES = ("ask", "repair")


def one_run(problem, task, evals: int, seed: int, window: int, mode: str) -> dict:
    s, batch = build("tpe", problem, evals, seed, {"rejected": mode})
    cpu: list[float] = []
    recs, _, _ = drive_built(s, batch, problem, evals, trace=cpu)   # ask + tell, not the table lookup
    ms = 1000 * np.asarray(cpu)
    return {"seed": seed, "trials": len(s.study.trials), "trials_per_eval": round(len(s.study.trials) / evals, 2),
            "ms_per_eval_by_window": [round(float(ms[i:i + window].mean()), 2) for i in range(0, evals, window)],
            "cpu_s": round(float(ms.sum()) / 1000, 2), "reported": round(chosen(recs, task), 4),
            "distinct": len({r["arch_id"] for r in recs}), "feasible": sum(bool(r["feasible"]) for r in recs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evals", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--quantile", type=float, default=0.3)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out")
    args = ap.parse_args()
    task = replace({t.name: t for t in TASKS}["c10-valid@raspi4"], quantile=args.quantile, budget=args.evals)
    problem, facts = task_problem(task, load_suite_table(args.data))
    out = {"task": task.name, "quantile": args.quantile, **facts, "evals": args.evals, "window": args.window,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "modes": {}}
    for mode in MODES:
        runs = [one_run(problem, task, args.evals, seed, args.window, mode) for seed in range(args.seeds)]
        windows = np.array([r["ms_per_eval_by_window"] for r in runs])
        out["modes"][mode] = {
            "runs": runs, "ms_per_eval_by_window_median": [round(float(x), 2) for x in np.median(windows, axis=0)],
            "cpu_s_median": float(np.median([r["cpu_s"] for r in runs])),
            "trials_per_eval_median": float(np.median([r["trials_per_eval"] for r in runs])),
            "reported_median": float(np.median([r["reported"] for r in runs]))}
    a, b = out["modes"]["ask"], out["modes"]["repair"]
    out["cpu_ratio_ask_over_repair"] = round(a["cpu_s_median"] / b["cpu_s_median"], 2)
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
