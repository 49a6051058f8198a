"""DARTS on nb201 trained on digits, with and without a latency budget on ``local``: prints JSON.

For each seed, first-order DARTS (``edgenas.search.darts_train``) runs twice: without a latency term
(the baseline) and with ``--budget-quantile`` of random cells' predicted latency as a Lagrange budget.
Reported per variant: the derived cells' CIFAR-10 / CIFAR-100 test accuracy looked up in
nb201_hw.csv (median over seeds), the derived cell's predicted latency vs the budget, how often the
argmax cell already met it (``derivation`` "argmax") or the budget-aware derivation had to pick a
less probable cell ("budget"), the number of skip-connect and none edges (collapse checks), seconds
per epoch and the peak RSS of the run (each run in a fresh process). The nb201 LUT of ``local`` is
profiled into ``--project`` first if it is missing. The two variants alternate seed by seed, and
each finished run is appended to ``--jsonl`` (a rerun skips the runs already there), so a partial
benchmark still compares both variants on the same seeds. A third row costs no training: the
no-budget runs' architecture weights derived under the budget (``BudgetDerivation``), i.e. what the
budget-aware derivation alone gives without a latency term in the loss (and the same for their PT
scores).

Every run uses ``selection="pt"``; its ``best.json`` also records the alpha selection from the same
trained supernet, so each arm is reported twice ("alpha selection" / "pt selection") at the cost of
one training, with the avg_pool / skip / none edge counts of each derived cell and the PT time.
Runs in ``--jsonl`` from before the PT selection are not reused.

Usage: python bench/darts_nb201.py --table ../shared/data/nb201/nb201_hw.csv --seeds 5 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def one(project: str, cfg_json: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.search.darts_train import DartsConfig, run_darts
    from edgenas.spaces import get_space

    cfg = DartsConfig.from_json(cfg_json)
    pred = LatencyPredictor(LutStore(Path(project) / "luts").latest("local", "nb201"), get_space("nb201"))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        rec = run_darts(cfg, [("local", pred)], Path(d) / "run")
        hist = json.loads((Path(d) / "run" / "history.json").read_text())["history"]
    return {"arch": rec["arch"]["arch"], "latency_ms": rec["latency_ms"]["local"], "selection": rec["selection"],
            "alpha_arch": rec["alpha_arch"], "alpha_ms": rec["alpha_ms"]["local"], "pt_s": rec["pt_s"],
            "pt_scores": rec["pt_scores"],
            "within_budget": rec["within_budget"], "derivation": rec["derivation"],
            "argmax_arch": rec["argmax_arch"], "argmax_ms": rec["argmax_ms"]["local"],
            "skip_edges": rec["skip_edges"], "none_edges": rec["none_edges"],
            "skip_edges_per_epoch": [h["skip_edges"] for h in hist], "lambda_final": hist[-1]["lambda"][0],
            "alpha_softmax": rec["alpha_softmax"],
            "epoch_s": float(np.median([h["epoch_s"] for h in hist])), "wall_s": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", required=True)
    ap.add_argument("--project", default=".edgenas-bench")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--budget-quantile", type=float, default=0.3)
    ap.add_argument("--jsonl", default=None, help="append each finished run here; runs already there are skipped")
    args = ap.parse_args()
    from edgenas.evaluate.tabular import load_table
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.project import Project
    from edgenas.search.darts_train import DartsConfig
    from edgenas.spaces import get_space

    proj = Project(Path(args.project))
    space = get_space("nb201")
    store = LutStore(proj.luts_dir)
    try:
        lut = store.latest("local", "nb201")
    except Exception:
        from edgenas.fleet.profiler import profile_device

        profile_device(proj, "local", "nb201")
        lut = store.latest("local", "nb201")
    pred = LatencyPredictor(lut, space)
    rng = np.random.default_rng(0)
    budget = float(np.quantile(pred.predict_many([space.sample(rng) for _ in range(2000)]), args.budget_quantile))
    table = load_table(args.table)
    out: dict[str, dict] = {}
    ctx = multiprocessing.get_context("spawn")
    variants = (("no-budget", (("local", None),)), ("budget", (("local", budget),)))
    done: dict[tuple[str, int], dict] = {}
    log = Path(args.jsonl) if args.jsonl else None
    if log is not None and log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            if r["epochs"] == args.epochs and r["budget_ms"] == budget and r.get("selection") == "pt":
                done[(r["variant"], r["seed"])] = r
    for seed in range(args.seeds):
        for label, devices in variants:
            if (label, seed) in done:
                continue
            cfg = DartsConfig(epochs=args.epochs, seed=seed, devices=devices, selection="pt").to_json()
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:  # a fresh process: its own peak RSS
                r = {"variant": label, "seed": seed, "epochs": args.epochs, "budget_ms": budget,
                     **pool.submit(one, str(proj.root), cfg).result()}
            done[(label, seed)] = r
            if log is not None:
                with log.open("a") as f:
                    f.write(json.dumps(r) + "\n")
    every = space.all_archs()  # context: what a uniformly random cell within the budget scores
    ms_all = pred.predict_many(every)
    rows_all = table.lookup([space.to_dict(a)["arch"] for a in every])

    def row(archs: list[str], runs: list[dict], label: str) -> dict:
        rows = table.lookup(archs)
        c10, c100 = table.column("cifar10_test")[rows], table.column("cifar100_test")[rows]
        cells = [space.from_string(a) for a in archs]
        ms = pred.predict_many(cells)
        return {"cifar10_test_median": float(np.median(c10)), "cifar100_test_median": float(np.median(c100)),
                "cifar10_test": c10.tolist(), "cifar100_test": c100.tolist(), "archs": archs,
                "latency_ms": ms.tolist(), "within_budget": int((ms <= budget).sum()),
                "avg_pool_edges": [c.ops.count("avg_pool_3x3") for c in cells],
                "skip_edges": [c.ops.count("skip_connect") for c in cells],
                "none_edges": [c.ops.count("none") for c in cells],
                "argmax_within_budget": sum(r["argmax_ms"] <= budget for r in runs),
                "lambda_final": [r["lambda_final"] for r in runs],
                "epoch_s_median": float(np.median([r["epoch_s"] for r in runs])),
                "pt_s_median": float(np.median([r["pt_s"] for r in runs])),
                "wall_s_median": float(np.median([r["wall_s"] for r in runs])),
                "peak_rss_mb_median": float(np.median([r["peak_rss_mb"] for r in runs]))}

    for label, _ in variants:  # one training per seed and arm, two selections on the same supernet
        runs = [done[(label, seed)] for seed in range(args.seeds)]
        out[f"{label}, alpha selection"] = row([r["alpha_arch"] for r in runs], runs, label)
        out[f"{label}, pt selection"] = row([r["arch"] for r in runs], runs, label)
    nb = [done[("no-budget", seed)] for seed in range(args.seeds)]
    if all("alpha_softmax" in r for r in nb):  # the unconstrained alphas, derived under the budget: no training
        import torch

        from edgenas.search.darts_nb201 import BudgetDerivation

        derive = BudgetDerivation([("local", pred)], [budget])
        cells = [derive(torch.log(torch.tensor(r["alpha_softmax"], dtype=torch.float64))) for r in nb]
        archs = [space.to_dict(a)["arch"] for a in cells]
        rows = table.lookup(archs)
        out["no-budget alphas, budget derivation"] = {
            "cifar10_test_median": float(np.median(table.column("cifar10_test")[rows])),
            "cifar100_test_median": float(np.median(table.column("cifar100_test")[rows])),
            "cifar10_test": table.column("cifar10_test")[rows].tolist(), "archs": archs,
            "latency_ms": pred.predict_many(cells).tolist(),
            "all_within_budget": bool(np.all(pred.predict_many(cells) <= budget)),
            "skip_edges": [a.ops.count("skip_connect") for a in cells]}
        pt_cells = [derive.pick(np.array(r["pt_scores"])) for r in nb]  # the no-budget PT scores, budget pick
        out["no-budget pt scores, budget derivation"] = row([space.to_dict(a)["arch"] for a in pt_cells], nb, "")
    c10_all = table.column("cifar10_test")[rows_all]
    fits = ms_all <= budget
    no_none = np.array(["none" not in a.ops for a in every])
    reference = {"cells_within_budget": int(fits.sum()),
                 "cifar10_test_median_within_budget": float(np.median(c10_all[fits])),
                 "cifar10_test_median_within_budget_no_none": float(np.median(c10_all[fits & no_none])),
                 "cifar10_test_best_within_budget": float(c10_all[fits].max())}
    print(json.dumps({"bench": "darts_nb201", "data": "digits (sklearn, 32x32)", "epochs": args.epochs,
                      "reference": reference,
                      "seeds": args.seeds, "budget_ms": budget, "budget_quantile": args.budget_quantile,
                      "baseline": "no-budget", "min_latency_ms": pred.min_latency()[0], "variants": out,
                      "python": platform.python_version()}, indent=2))


if __name__ == "__main__":
    main()
