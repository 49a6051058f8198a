"""DARTS on mbv3-small for ``local`` with and without a latency budget, measured by real ``deploy``: JSON.

The mbv3-small LUT of ``local`` is profiled into ``--project`` (default protocol) when missing. Budget =
``--budget-quantile`` of 2000 random networks' predicted latency. For each seed, DARTS
(``edgenas.search.darts_mbv3_train``: path sampling, expected LUT latency in the loss) runs without a
latency term (the baseline, same run) and with the budget (Lagrange multiplier), each in a fresh process
(peak RSS before and after training); then every derived ``best.json`` goes, unchanged, through
``edgenas deploy local best.json --json`` (export to ONNX, ONNX Runtime, the winner protocol), and the
measured latency (at the device's nominal speed when the LUT has a speed reference; the median of
``--repeat`` deploys in rounds) is compared with the budget and with the LUT prediction. Each derived network is
also trained from scratch for ``--train-epochs`` on digits (``ShortTrainEvaluator``: split seed 0,
held-out 20%) so the two variants' accuracies can be compared.

With ``--calibrate N`` the LUT is first calibrated on N measured random networks, so the budget, the
search and the prediction are in calibrated milliseconds.

Usage: nice -n 10 python bench/darts_mbv3.py --seeds 2 --epochs 5 [--calibrate 10] [--project DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one(project: str, cfg_json: dict, out: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from edgenas.project import Project
    from edgenas.search.darts_mbv3_launch import latency_models
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    cfg = MbDartsConfig.from_json(cfg_json)
    models = latency_models(Project(Path(project)), cfg)
    from edgenas.datasets import load_dataset

    load_dataset(cfg.data, 32)  # data and imports in memory before the baseline RSS
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    rec = run_mbv3_darts(cfg, models, out)
    hist = json.loads((Path(out) / "history.json").read_text())["history"]
    return {"arch": rec["arch"], "latency_ms": rec["latency_ms"]["local"],
            "argmax_latency_ms": rec["argmax_ms"]["local"], "within_budget": rec["within_budget"],
            "derivation": rec["derivation"], "repair_steps": rec["repair_steps"],
            "derived_ms_per_epoch": [h["derived_ms"]["local"] for h in hist],
            "expected_ms_per_epoch": [h["expected_ms"]["local"] for h in hist],
            "lambda_per_epoch": [h["lambda"][0] for h in hist],
            "epoch_s": [h["epoch_s"] for h in hist], "wall_s": time.perf_counter() - t0,
            "rss_before_training_mb": rss0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def deploy(project: Path, best: Path) -> dict:
    env = dict(os.environ, EDGENAS_PROJECT=str(project), PYTHONPATH=str(ROOT), EDGENAS_NO_PROGRESS="1")
    cmd = [sys.executable, "-c", "import sys; from edgenas.cli import main; main(sys.argv[1:])",
           "deploy", "local", str(best), "--json", "--no-calibrate"]  # the table stays as the searches saw it
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-500:]}
    d = json.loads(p.stdout)
    return {k: d[k] for k in ("measured_ms", "measured_nominal_ms", "predicted_ms", "rel_error", "runtime")} | \
        {"cov": d["stats"].get("cov"), "stable": d["stats"].get("stable")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", default=None, help="project folder (default: a temporary one)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--budget-quantile", type=float, default=0.5)
    ap.add_argument("--calibrate", type=int, default=0,
                    help="first calibrate the LUT on this many measured random networks (edgenas lut calibrate)")
    ap.add_argument("--repeat", type=int, default=2, help="deploy every derived network this many times (rounds)")
    ap.add_argument("--train-epochs", type=float, default=3.0,
                    help="each derived network is trained from scratch this long on digits (held-out accuracy)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.project import Project
    from edgenas.search.darts_mbv3_train import MbDartsConfig
    from edgenas.spaces import get_space

    proj = Project(Path(args.project or tempfile.mkdtemp(prefix="edgenas-darts-mbv3-")))
    space = get_space("mbv3-small")
    store = LutStore(proj.luts_dir)
    t0 = time.perf_counter()
    if not store.list("local", space.name):
        from edgenas.fleet.profiler import profile_device

        profile_device(proj, "local", space.name)
    profile_s = time.perf_counter() - t0
    cal = None
    if args.calibrate:
        from edgenas.fleet.calibrate import calibrate_device

        cal = calibrate_device(proj, "local", space.name, measure=args.calibrate, seed=0)
        cal = cal.to_dict()
    pred = LatencyPredictor(store.latest("local", space.name), space)
    rng = np.random.default_rng(0)
    random_ms = pred.predict_many([space.sample(rng) for _ in range(2000)])
    budget = float(np.quantile(random_ms, args.budget_quantile))
    ctx = multiprocessing.get_context("spawn")
    runs: dict[str, list[dict]] = {}
    folders: list[tuple[str, int, Path]] = []
    work = Path(tempfile.mkdtemp(prefix="darts-mbv3-runs-"))
    for label, devices in (("no-budget", (("local", None),)), ("budget", (("local", budget),))):
        runs[label] = []
        for seed in range(args.seeds):
            cfg = MbDartsConfig(space=space.name, epochs=args.epochs, seed=seed, devices=devices).to_json()
            out = work / f"{label}-s{seed}"
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:  # a fresh process: its own peak RSS
                runs[label].append(pool.submit(one, str(proj.root), cfg, str(out)).result())
            folders.append((label, seed, out))
    for rep in range(args.repeat):  # every search first, then the measurements (no overlap), in rounds
        for label, seed, out in folders:
            runs[label][seed].setdefault("deploys", []).append(deploy(proj.root, out / "best.json"))
    for label, seed, _ in folders:
        ds = runs[label][seed]["deploys"]
        nominal = [d.get("measured_nominal_ms") or d.get("measured_ms") for d in ds if "error" not in d]
        raw = [d["measured_ms"] for d in ds if "error" not in d]
        runs[label][seed]["deploy"] = {
            "measured_ms": float(np.median(nominal)) if nominal else None, "measured_each_ms": nominal,
            "measured_raw_ms": float(np.median(raw)) if raw else None,
            "rel_error": (runs[label][seed]["latency_ms"] - float(np.median(nominal))) / float(np.median(nominal))
            if nominal else None}
    from edgenas.evaluate.short_train import ShortTrainEvaluator

    scorer = ShortTrainEvaluator(space, seed=0, epochs=args.train_epochs)  # from scratch, held-out 20%
    for label, seed, out in folders:
        t1 = time.perf_counter()
        runs[label][seed]["train_acc_pct"] = scorer.train_one(space.from_dict(runs[label][seed]["arch"]))
        runs[label][seed]["train_s"] = round(time.perf_counter() - t1, 1)
    variants = {}
    for label, rs in runs.items():
        dep = [r["deploy"] for r in rs]
        meas = [d["measured_ms"] for d in dep]
        variants[label] = {
            "predicted_ms": [r["latency_ms"] for r in rs], "measured_ms": meas,
            "measured_each_ms": [d["measured_each_ms"] for d in dep],
            "measured_raw_ms": [d["measured_raw_ms"] for d in dep],
            "measured_within_budget": [m is not None and m <= budget for m in meas],
            "predicted_within_budget": [r["latency_ms"] <= budget for r in rs],
            "prediction_rel_error": [d.get("rel_error") for d in dep],
            "train_acc_pct": [r["train_acc_pct"] for r in rs],
            "epoch_s_median": float(np.median([s for r in rs for s in r["epoch_s"]])),
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rs),
            "rss_before_training_mb": max(r["rss_before_training_mb"] for r in rs), "runs": rs}
    print(json.dumps({"bench": "darts_mbv3", "space": space.name, "device": "local",
                      "data": "digits (sklearn, 32x32)", "epochs": args.epochs, "seeds": args.seeds,
                      "budget_ms": budget, "budget_quantile": args.budget_quantile,
                      "random_ms": {"min": float(random_ms.min()), "median": float(np.median(random_ms)),
                                    "max": float(random_ms.max())},
                      "fastest_ms": pred.min_latency()[0], "profile_s": round(profile_s, 1), "calibration": cal,
                      "baseline": "no-budget", "train_epochs": args.train_epochs, "variants": variants, "torch_threads": 1,
                      "load_avg": os.getloadavg(), "python": platform.python_version()}, indent=2))


if __name__ == "__main__":
    main()
