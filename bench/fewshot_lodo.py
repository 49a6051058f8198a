"""Few-shot latency for a new device, leave one device out, against each device's own ceiling (JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_lodo.py --table ../shared/data/nb201/nb201_hw.csv [--seeds 5]

For every ``*_ms`` column (the "new device") and k = 10, 20, 50: fit on k of its rows, score on all
its other rows. The device's column is never used to fit anything scored on it; the other columns
are the reference devices (known for every architecture). Methods, all in this run:

* ``before``: ``FewShotPredictor`` as it was (ridge or single reference, chosen by leave-one-out;
  op-count descriptors), k drawn at random - the named baseline;
* ``ensemble_random``: ``FewShotEnsemble`` (all / references / graph-aware additive members,
  geometric mean) with op counts and ``graph_descriptors``, k drawn at random;
* ``ensemble_stratified``: the same, the k chosen by ``select_stratified`` on the mean log latency of
  the reference devices (active selection; no target value is looked at).

``ceiling``: gradient-boosted trees (scikit-learn ``HistGradientBoostingRegressor``, 300 iterations,
log target) on one-hot edge operations fitted on 5,000 of the device's OWN rows, scored on the rest
(median over the seeds). Metrics: Spearman, Kendall tau, share within +-10% (``within10``), median
over seeds (and min over seeds for ``within10``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402

from edgenas.latency.fewshot import FewShotPredictor, HwTable, op_counts  # noqa: E402
from edgenas.latency.fewshot_ensemble import FewShotEnsemble, select_stratified  # noqa: E402

KS = (10, 20, 50)


def _metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    rel = np.abs(pred / meas - 1.0)
    return {"spearman": float(spearmanr(pred, meas).statistic), "kendall": float(kendalltau(pred, meas).statistic),
            "within10": float(np.mean(rel <= 0.10))}


def _summary(runs: list[dict]) -> dict:
    out = {m: round(float(np.median([r[m] for r in runs])), 4) for m in ("spearman", "kendall", "within10")}
    out["within10_min"] = round(float(min(r["within10"] for r in runs)), 4)
    return out


def one_hot_edges(table: HwTable) -> np.ndarray:
    from edgenas.latency.fewshot import _cell_edges

    edges = [_cell_edges(a) for a in table.arch]
    ops = sorted({op for e in edges for _, _, op in e})
    X = np.zeros((len(edges), len(edges[0]) * len(ops)))
    for r, e in enumerate(edges):
        for j, (_, _, op) in enumerate(e):
            X[r, j * len(ops) + ops.index(op)] = 1.0
    return X


def ceiling(X: np.ndarray, y: np.ndarray, seeds: list[int], n_fit: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor

    runs = []
    for s in seeds:
        perm = np.random.default_rng(1000 + s).permutation(len(y))
        tr, te = perm[:n_fit], perm[n_fit:]
        m = HistGradientBoostingRegressor(max_iter=300, random_state=s).fit(X[tr], np.log(y[tr]))
        runs.append(_metrics(np.exp(m.predict(X[te])), y[te]))
    return _summary(runs)


def run(table: HwTable, seeds: list[int], n_ceiling: int, ceiling_seeds: int) -> dict:
    counts, count_names = op_counts(table.arch)
    D, dnames = table.descriptors, table.descriptor_names
    graph = [i for i, n in enumerate(dnames) if not n.startswith("n_")]
    onehot = one_hot_edges(table)
    out: dict = {"table": str(table.path), "ks": list(KS), "seeds": seeds, "aggregate": "median over seeds",
                 "devices": {}}
    for col in table.ms_columns:
        refs = [c for c in table.ms_columns if c != col]
        R = np.column_stack([table.latency[c] for c in refs])
        y = table.latency[col]
        score = np.log(R).mean(axis=1)
        Xb = np.column_stack([R, counts])
        Xe = np.column_stack([R, D])
        lat = [True] * len(refs)
        dev: dict = {"references": refs}
        for k in KS:
            res: dict = {"before": [], "ensemble_random": [], "ensemble_stratified": []}
            for s in seeds:
                perm = np.random.default_rng(s).permutation(len(y))
                for name, train in (("random", perm[:k]), ("stratified", select_stratified(score, k, s))):
                    test = np.setdiff1d(np.arange(len(y)), train)
                    if name == "random":
                        b = FewShotPredictor(is_latency=lat + [False] * counts.shape[1], additive=False)
                        b.fit(Xb[train], y[train])
                        res["before"].append(_metrics(b.predict(Xb[test]), y[test]))
                    e = FewShotEnsemble(lat + [False] * D.shape[1], refs + dnames, [len(refs) + g for g in graph])
                    e.fit(Xe[train], y[train])
                    res[f"ensemble_{name}"].append(_metrics(e.predict(Xe[test]), y[test]))
            dev[str(k)] = {m: _summary(r) for m, r in res.items()}
        dev["ceiling_5000_own_rows"] = ceiling(onehot, y, seeds[:ceiling_seeds], n_ceiling)
        out["devices"][col] = dev
        print(f"{col} done", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    ap.add_argument("--ceiling-fit", type=int, default=5000, help="own rows the ceiling model is fitted on")
    ap.add_argument("--ceiling-seeds", type=int, default=3)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = run(HwTable(a.table), list(range(a.seeds)), a.ceiling_fit, a.ceiling_seeds)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
