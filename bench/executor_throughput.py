"""Ray (2 workers) vs in-process on a short-training search: same result? throughput? Prints JSON.

Runs the same seeded random search (``--budget`` candidates of ``--space``, each trained from scratch
on digits for ``--epochs`` epochs by the ``train`` evaluator) once per executor: ``inprocess`` (the
baseline), ``process`` (a local pool of 2) and ``ray`` (a local Ray cluster with 2 CPUs started by
the bench, or ``--ray-address``). Reports evaluations per second and whether every logged score and
the chosen architecture equal the in-process run's.

Usage: python bench/executor_throughput.py --budget 8 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("EDGENAS_NO_PROGRESS", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="mbv3-tiny")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--ray-address", default=None)
    args = ap.parse_args()
    from edgenas.evaluate.executor import make_executor
    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, launch_search

    req = SearchRequest(space=args.space, strategy="random", budget=args.budget, seed=0, evaluator="train",
                        evaluator_options={"epochs": args.epochs, "limit": args.limit})
    runs = {}
    with tempfile.TemporaryDirectory() as d:
        proj = Project(Path(d) / "proj")
        for name, opts in (("inprocess", {}), ("process", {"workers": 2}),
                           ("ray", {"workers": 2, "address": args.ray_address})):
            t_start = time.perf_counter()
            ex = make_executor(name, **opts)
            t_ready = time.perf_counter()
            try:
                _, _, res = launch_search(proj, req, Path(d) / name, executor=ex)
            finally:
                ex.close()
            t_end = time.perf_counter()
            log = [json.loads(x) for x in (Path(d) / name / "evaluations.jsonl").read_text().splitlines()]
            runs[name] = {"startup_s": round(t_ready - t_start, 2), "search_s": round(t_end - t_ready, 2),
                          "evals_per_s": round(args.budget / (t_end - t_ready), 4),
                          "scores": [r["objectives"]["train"] for r in log], "best": res.best.arch}
    base = runs["inprocess"]
    base_scores = base["scores"]
    for r in runs.values():
        r["same_scores_as_inprocess"] = r.pop("scores") == base_scores
    out = {"bench": "executor_throughput", "space": args.space, "budget": args.budget, "epochs": args.epochs,
           "limit": args.limit, "baseline": "inprocess", "cpus": os.cpu_count(),
           "runs": {k: {kk: vv for kk, vv in v.items() if kk != "best"} for k, v in runs.items()},
           "same_best_as_inprocess": {k: v["best"] == base["best"] for k, v in runs.items()},
           "speedup_vs_inprocess": {k: round(v["evals_per_s"] / base["evals_per_s"], 3) for k, v in runs.items()},
           "python": platform.python_version()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
