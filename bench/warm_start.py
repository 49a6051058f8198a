"""Warm-started search on NAS-Bench-201 (tabular), warm vs cold in the same run; prints JSON.

For every seed s (REA = regularised evolution, the CLI's defaults: population 20, tournament 5):

* **source runs** (recorded in a fresh experiment database per seed, the way ``edgenas search`` records
  them): a CIFAR-10 run of 100 queries optimising *validation* accuracy (``cifar10_valid`` of
  ``nb201_valid.csv``: the standard protocol; no test number is seen), one under a Pixel 3 latency
  budget, and a deliberately unrelated run (it optimised the *negated* CIFAR-10 validation accuracy,
  i.e. it found the worst cells, and is recorded as a run on another dataset, digits);
* **targets**, each searched cold (from scratch) and warm (``--warm-start SOURCE``) with seed s for
  ``--budget`` queries through ``launch_search``:
  CIFAR-100 test accuracy and ImageNet16-120 test accuracy (from the CIFAR-10 run); CIFAR-10 test
  accuracy under a Raspberry Pi 4 budget (from the Pixel 3 run); and the negative control (CIFAR-100
  from the unrelated run, with the similarity guard at its default 0.6, and with the guard off).

Metric: the number of evaluations needed to reach the target value = the median over seeds of the
best value cold REA reaches in 100 queries (censored at ``--budget``, counted as budget + 1);
reported as the median over seeds, warm vs cold, and the reduction 1 - warm/cold. Transferred
architectures are evaluated on the new task and count.

Finally ``runs stale``: runs under Raspberry Pi 4 budgets (several budgets), the table's column then
rescaled by 1.5x; the stale runs found are compared with a hand check (the chosen cell's latency read
straight from the rescaled CSV vs the budget).

``--tighter``: instead, warm starts under Raspberry Pi 4 budgets tighter than the source's (23 ms, as above;
5 ms and 3 ms, about the 5% and 3% quantiles) from the Pixel 3 run, each searched cold and warm in the same run;
besides the metric above, how many transferred architectures score at chance on the target column (within
1 point of its minimum: on nb201, disconnected cells, 10% on CIFAR-10) and how many were repaired.

Usage: python bench/warm_start.py --hw ../shared/data/nb201/nb201_hw.csv \\
           --valid ../shared/data/nb201/nb201_valid.csv --seeds 30 --budget 300 [--tighter]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edgenas.io import atomic_write_json
from edgenas.project import Project
from edgenas.search import DeviceTarget, Problem, SearchConfig, run_search
from edgenas.search.launch import SearchRequest, launch_search
from edgenas.search.record import index_run
from edgenas.search.stale import find_stale
from edgenas.search.task import _card
from edgenas.store import open_db
from edgenas.store.runs import save_run

os.environ.setdefault("EDGENAS_NO_PROGRESS", "1")


class ValidEvaluator:
    """cifar10_valid from nb201_valid.csv (optionally negated: the 'worst cells' objective)."""

    def __init__(self, space, path: str, sign: float = 1.0) -> None:
        self.space, self.sign = space, sign
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        self.value = {r["arch"]: self.sign * float(r["cifar10_valid"]) for r in rows}

    def evaluate(self, archs):
        return np.array([self.value.get(self.space.to_dict(a)["arch"], -np.inf) for a in archs])


def source_run(db, proj, out: Path, hw: str, valid: str, seed: int, *, latency: str | None = None,
               budget_ms: float | None = None, sign: float = 1.0) -> str:
    """A recorded CIFAR-10 validation run of 100 queries (what an earlier ``edgenas search`` left)."""
    from edgenas.evaluate.tabular import TableLatency
    from edgenas.spaces import get_space

    space = get_space("nb201")
    targets = [DeviceTarget(latency, TableLatency(hw, latency, space), budget_ms)] if latency else []
    problem = Problem(space, ValidEvaluator(space, valid, sign), targets, accuracy_name="cifar10_valid")
    req = SearchRequest(space="nb201", table=hw, objective="cifar10_valid", budget=100, seed=seed,
                        latency_column=latency, max_latency_ms=(budget_ms,) if budget_ms else ())
    out.mkdir(parents=True)
    atomic_write_json(out / "request.json", req.to_json())
    config = SearchConfig(space="nb201", strategy="evolution", budget_evals=100, seed=seed,
                          devices=tuple((t.name, t.budget_ms) for t in targets))
    run_search(config, problem, out)
    return index_run(db, proj, out, problem=problem).id


def curve(result, objective: str) -> np.ndarray:
    best, out = -np.inf, []
    for t in result.trials:
        if t.feasible:
            best = max(best, t.objectives[objective])
        out.append(best)
    return np.array(out)


def evals_to(c: np.ndarray, target: float) -> int:
    hit = np.flatnonzero(c >= target - 1e-9)
    return int(hit[0]) + 1 if hit.size else len(c) + 1


def summary(cold: np.ndarray, warm: np.ndarray) -> dict:
    target = float(np.median(cold[:, 99]))
    ec = [evals_to(c, target) for c in cold]
    ew = [evals_to(c, target) for c in warm]
    return {
        "target_value": round(target, 4),
        "evals_to_target_median": {"cold": float(np.median(ec)), "warm": float(np.median(ew))},
        "evals_to_target_mean": {"cold": round(float(np.mean(ec)), 2), "warm": round(float(np.mean(ew)), 2)},
        "reduction_of_median": round(1 - float(np.median(ew)) / float(np.median(ec)), 4),
        "reached_within_100": {"cold": float(np.mean(np.array(ec) <= 100)),
                               "warm": float(np.mean(np.array(ew) <= 100))},
        "best_at_100_median": {"cold": round(float(np.median(cold[:, 99])), 4),
                               "warm": round(float(np.median(warm[:, 99])), 4)},
        "best_at_10_median": {"cold": round(float(np.median(cold[:, 9])), 4),
                              "warm": round(float(np.median(warm[:, 9])), 4)},
    }


def tighter(args, root: Path, hw: str) -> dict:
    """Warm starts under budgets tighter than the source run's: cold and warm."""
    pixel_budget, budgets = 9.0, {"raspi4_23ms": 23.0, "raspi4_5ms": 5.0, "raspi4_3ms": 3.0}
    with open(hw, newline="") as fh:
        test = {r["arch"]: float(r["cifar10_test"]) for r in csv.DictReader(fh)}
    chance = min(test.values()) + 1.0
    variants = ("cold", "warm")
    curves = {k: {v: [] for v in variants} for k in budgets}
    junk = {k: {v: [] for v in variants[1:]} for k in budgets}
    repaired = {k: {v: [] for v in variants[1:]} for k in budgets}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        d = root / f"s{seed}"
        d.mkdir(parents=True)
        proj = Project(d)
        db = open_db(f"sqlite:///{d / 'edgenas.db'}", proj)
        src = source_run(db, proj, d / "src-pixel3", hw, args.valid, seed, latency="pixel3_ms", budget_ms=pixel_budget)
        for name, b in budgets.items():
            base = dict(space="nb201", table=hw, budget=args.budget, seed=seed, objective="cifar10_test",
                        latency_column="raspi4_ms", max_latency_ms=(b,))
            for v in variants:
                req = SearchRequest(**base, warm_start=() if v == "cold" else (src,))
                res = launch_search(proj, req, d / f"{v}-{name}", db=db)[2]
                curves[name][v].append(curve(res, "cifar10_test"))
                if v != "cold":
                    plan = json.loads((d / f"{v}-{name}" / "warm_start.json").read_text())
                    junk[name][v].append(sum(test[t["arch"]["arch"]] <= chance for t in plan["transferred"]))
                    repaired[name][v].append(sum(t["repaired"] for t in plan["transferred"]))
        db.close()
        shutil.rmtree(d)
    out = {}
    for name in budgets:
        cold = np.array(curves[name]["cold"])
        out[name] = {v: {**summary(cold, np.array(curves[name][v])),
                         "transferred_at_chance": {"total": int(sum(junk[name][v])),
                                                   "median": float(np.median(junk[name][v]))},
                         "repaired_total": int(sum(repaired[name][v]))} for v in variants[1:]}
    return {"source": f"REA, 100 queries, cifar10_valid, pixel3_ms <= {pixel_budget} ms",
            "chance": f"cifar10_test <= {chance}", "budgets_ms": budgets, "results": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--workdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--tighter", action="store_true", help="warm starts under budgets tighter than the source's")
    args = ap.parse_args()
    t_start = time.time()
    root = Path(tempfile.mkdtemp(prefix="edgenas-warm-", dir=args.workdir))
    hw = str(Path(args.hw).resolve())
    if args.tighter:
        doc = tighter(args, root, hw)
        shutil.rmtree(root, ignore_errors=True)
        print(json.dumps({"bench": "warm_start --tighter", "machine": platform.platform(), "cpus": os.cpu_count(),
                          "seeds": args.seeds, "first_seed": args.first_seed, "budget": args.budget,
                          "strategy": "evolution (REA), population 20, tournament 5", **doc,
                          "wall_s": round(time.time() - t_start, 1)}, indent=2))
        return
    pixel_budget, raspi_budget = 9.0, 23.0   # ms; about the 40% quantile of each column
    tasks = {
        "cifar100": dict(objective="cifar100_test"),
        "imagenet16": dict(objective="imagenet16_test"),
        "latency_pixel3_to_raspi4": dict(objective="cifar10_test", latency_column="raspi4_ms",
                                         max_latency_ms=(raspi_budget,)),
        "negative_control_guard_on": dict(objective="cifar100_test"),
        "negative_control_guard_off": dict(objective="cifar100_test", min_similarity=0.0),
    }
    curves = {k: {"cold": [], "warm": []} for k in tasks}
    similarity = {k: [] for k in tasks}
    transferred = {k: [] for k in tasks}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        d = root / f"s{seed}"
        d.mkdir(parents=True)
        proj = Project(d)
        db = open_db(f"sqlite:///{d / 'edgenas.db'}", proj)
        src = source_run(db, proj, d / "src-c10", hw, args.valid, seed)
        src_lat = source_run(db, proj, d / "src-pixel3", hw, args.valid, seed, latency="pixel3_ms",
                             budget_ms=pixel_budget)
        bad = source_run(db, proj, d / "src-unrelated", hw, args.valid, seed, sign=-1.0)
        from edgenas.store.runs import get_run, run_evaluations

        rec = get_run(db, bad)
        save_run(db, rec.__class__(**{**rec.__dict__, "task": _card("digits")}), run_evaluations(db, bad))
        source = {"cifar100": src, "imagenet16": src, "latency_pixel3_to_raspi4": src_lat,
                  "negative_control_guard_on": bad, "negative_control_guard_off": bad}
        cold_cache = {}
        for name, kw in tasks.items():
            base = dict(space="nb201", table=hw, budget=args.budget, seed=seed)
            cold_kw = {k: v for k, v in kw.items() if k != "min_similarity"}
            key = json.dumps(cold_kw, sort_keys=True)
            if key not in cold_cache:
                cold_cache[key] = launch_search(proj, SearchRequest(**base, **cold_kw), d / f"cold-{name}", db=db)[2]
            cold = cold_cache[key]
            warm = launch_search(proj, SearchRequest(**base, **kw, warm_start=(source[name],)),
                                 d / f"warm-{name}", db=db)[2]
            obj = kw["objective"]
            curves[name]["cold"].append(curve(cold, obj))
            curves[name]["warm"].append(curve(warm, obj))
            plan = json.loads((d / f"warm-{name}" / "warm_start.json").read_text())
            similarity[name].append(plan["candidates"][0]["similarity"])
            transferred[name].append(len(plan["transferred"]))
        db.close()
        shutil.rmtree(d)
    results = {}
    for name in tasks:
        results[name] = {
            **summary(np.array(curves[name]["cold"]), np.array(curves[name]["warm"])),
            "similarity": round(float(np.median(similarity[name])), 4),
            "transferred_median": float(np.median(transferred[name])),
        }
    stale = stale_check(root, hw, raspi_budget)
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "bench": "warm_start", "machine": platform.platform(), "cpus": os.cpu_count(), "seeds": args.seeds,
        "first_seed": args.first_seed,
        "budget": args.budget, "strategy": "evolution (REA), population 20, tournament 5",
        "source_runs": "REA, 100 queries, cifar10_valid (nb201_valid.csv); latency source under pixel3_ms <= "
                       f"{pixel_budget} ms; target raspi4_ms <= {raspi_budget} ms",
        "baseline": "cold REA (same seed, same settings, no transfer)",
        "results": results, "runs_stale": stale, "wall_s": round(time.time() - t_start, 1)}, indent=2))


def stale_check(root: Path, hw: str, _budget: float) -> dict:
    d = root / "stale"
    d.mkdir()
    table = d / "hw.csv"
    shutil.copy(hw, table)
    proj = Project(d)
    db = open_db(f"sqlite:///{d / 'edgenas.db'}", proj)
    budgets = [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 70.0, 100.0, 150.0]
    for i, b in enumerate(budgets):
        launch_search(proj, SearchRequest(space="nb201", table=str(table), objective="cifar10_test",
                                          latency_column="raspi4_ms", max_latency_ms=(b,), budget=100, seed=i),
                      d / f"r{i}", db=db)
    rows = list(csv.reader(open(table, newline="")))
    col = rows[0].index("raspi4_ms")
    for r in rows[1:]:
        r[col] = repr(float(r[col]) * 1.5)
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    by_arch = {r[1]: float(r[col]) for r in rows[1:]}
    found, checked = find_stale(db, proj)
    by_hand = []
    for i, b in enumerate(budgets):
        best = json.loads((d / f"r{i}" / "best.json").read_text())
        if best["arch"] and by_arch[best["arch"]["arch"]] > b:
            by_hand.append(f"r{i}")
    found_names = sorted(Path(s.out_dir).name for s in found)
    return {"runs": len(budgets), "checked": checked, "budgets_ms": budgets, "stale_found": found_names,
            "stale_by_hand": sorted(by_hand), "agree": found_names == sorted(by_hand),
            "statuses": sorted({s.status for s in found})}


if __name__ == "__main__":
    main()
