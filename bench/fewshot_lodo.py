"""Few-shot latency for a new device, leave one device out, against each device's own ceiling (JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_lodo.py --table ../shared/data/nb201/nb201_hw.csv [--seeds 5]

For every ``*_ms`` column (the "new device") and k = 10, 20, 50, seeds 0..N-1: fit on k of its rows,
score on all its other rows. The device's column is never used to fit or choose anything scored on
it (hyper-parameters and the selection rule of ``meta`` are chosen by inner leave-one-out over the
OTHER devices only); the other columns are the reference devices, known for every architecture.
Methods, all in this run:

* ``before``: ``FewShotPredictor`` as it was before issue 17 (ridge or single reference, chosen by
  leave-one-out; op-count descriptors), raw reference columns, k drawn at random - the named baseline;
* ``ensemble``: ``FewShotEnsemble`` (the first issue-17 model), raw references, stratified k;
* ``meta_raw``: ``MetaFewShot`` (``edgenas.latency.fewshot_meta``, Huber's loss as in the product) on
  the raw reference columns;
* ``meta``: ``MetaFewShot`` on the reference devices' LUTs: each reference column is replaced by its
  own least-squares fit on ``cell_encoding`` (a per-edge cost table, what a LUT is; fitted on that
  reference column alone), as in the product, where references are LUT predictions;
* ``before_lut``: the ``before`` model on the same LUT references (separates features from model);
* ``meta_table``: what ``device add --fewshot K --table CSV`` fits, for a user who has a table of the
  other devices (whole models measured), on the table without the scored column
  (``edgenas.latency.fewshot_table``): each reference column's additive part (its own LUT, as above)
  and its non-additive part (log ratio to that LUT smoothed by gradient-boosted trees on one-hot
  edges, fitted on that column alone); ``MetaFewShot`` on the additive parts times
  ``exp(sum_j w_j r_j)``, fitted in turn on the k rows; configuration and k rows chosen on the
  references, each column in turn the new device for the same model with its measured values as
  the target (``table_references``, ``fleet.fewshot.table_config``, ``table_corrected``); the
  prediction is the geometric mean of that corrected model and a plain ``MetaFewShot`` on the same
  rows, its configuration chosen the same way for it (``table_config(..., plain=True)``), and that
  average averaged again with the nearest reference's anchor (``fewshot_anchor.Anchor``: the
  reference whose log ratio to the k rows varies least, its smoothed latency times a Huber ridge
  correction on the descriptors, shrinkage chosen by leave-one-out on the k rows);
* ``meta_table_no_anchor``: ``meta_table`` without the anchor, on the same rows (the product before
  the anchor, the baseline for it in the same run);
* ``meta_squared`` and ``meta_table_squared``: ``meta`` and ``meta_table_no_anchor`` with the squared
  loss (every configuration of the grid, inner tasks included): the product before Huber's loss, the
  baseline for it in the same run.

``ceiling``: gradient-boosted trees (scikit-learn ``HistGradientBoostingRegressor``, 300 iterations,
log target) on one-hot edge operations fitted on 5,000 of the device's OWN rows, scored on the rest
(median over ``--ceiling-seeds`` random splits); ``ceiling_5000_own_rows_absolute``: the same with
the absolute loss. ``lut_combination_all_rows``: least squares of the
device's column on the reference LUTs over ALL its rows (in-sample): the best a linear combination of
the references can do, an upper bound for ``meta`` without its correction. ``own_lut_all_rows``: the
device's own LUT (the same per-edge least squares, on ALL its rows, in-sample): what an additive
per-block table of the device itself reaches. Metrics: Spearman, Kendall tau, share
within +-10% (``within10``), median over seeds, and the worst seed's and the mean ``within10``
(``within10_min``, ``within10_mean``).
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

from edgenas.fleet.fewshot import table_config  # noqa: E402
from edgenas.latency.fewshot import FewShotPredictor, HwTable, cell_encoding, op_counts  # noqa: E402
from edgenas.latency.fewshot_ensemble import FewShotEnsemble, select_stratified  # noqa: E402
from edgenas.latency.fewshot_meta import fit_new_device  # noqa: E402
from edgenas.spaces import get_space  # noqa: E402

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

KS = (10, 20, 50)


def _metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    rel = np.abs(pred / meas - 1.0)
    return {"spearman": float(spearmanr(pred, meas).statistic), "kendall": float(kendalltau(pred, meas).statistic),
            "within10": float(np.mean(rel <= 0.10))}


def _summary(runs: list[dict]) -> dict:
    out = {m: round(float(np.median([r[m] for r in runs])), 4) for m in ("spearman", "kendall", "within10")}
    out["within10_min"] = round(float(min(r["within10"] for r in runs)), 4)
    out["within10_mean"] = round(float(np.mean([r["within10"] for r in runs])), 4)
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


def ceiling(X: np.ndarray, y: np.ndarray, seeds: list[int], n_fit: int, loss: str = "squared_error") -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor

    runs = []
    for s in seeds:
        perm = np.random.default_rng(1000 + s).permutation(len(y))
        tr, te = perm[:n_fit], perm[n_fit:]
        m = HistGradientBoostingRegressor(loss=loss, max_iter=300, random_state=s).fit(X[tr], np.log(y[tr]))
        runs.append(_metrics(np.exp(m.predict(X[te])), y[te]))
    return _summary(runs)


def lut_references(table: HwTable) -> dict[str, np.ndarray]:
    """Each latency column's own LUT: least squares on ``cell_encoding`` (that column only)."""
    E, _ = cell_encoding(table.arch, OPS)
    E1 = np.column_stack([E, np.ones(len(E))])
    out = {}
    for c in table.ms_columns:
        w = np.linalg.lstsq(E1, table.latency[c], rcond=None)[0]
        out[c] = np.maximum(E1 @ w, 1e-3 * float(np.median(table.latency[c])))
    return out


def table_references(table: HwTable, refs: list[str]):
    """What ``device add --fewshot K --table CSV`` makes of a table without the scored column: the
    ``refs`` columns as ``TableReferences``, and their features (additive parts, descriptors,
    non-additive parts) for every row."""
    from edgenas.latency.fewshot_model import model_features
    from edgenas.latency.fewshot_table import TableReferences

    space = get_space("nb201")
    tref = TableReferences.build(table.path, space, columns=refs)
    return tref, model_features(space, [space.from_string(a) for a in table.arch], [], tref)


def table_corrected(tref, X: np.ndarray, k: int, seed: int, y: np.ndarray, config,
                    plain=None, anchor: bool = True, model_class=None) -> tuple[np.ndarray, np.ndarray]:
    """The model ``device add --table`` fits, given the configurations chosen on the references
    (``fleet.fewshot.table_config``, the same for every seed): ``k`` rows chosen, ``TableCorrected``
    fitted on them (averaged with a plain model configured by ``plain``, as the product does; without
    it, the corrected model alone, the product before; ``model_class``: a variant of ``TableCorrected``).
    Returns the predictions of every row of ``X`` and the measured rows."""
    from edgenas.latency.fewshot_meta import select_architectures
    from edgenas.latency.fewshot_table import TableCorrected

    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, k, seed, config.selection)
    cls = model_class or TableCorrected
    return cls(n, None, config, plain, anchor=anchor).fit(X[idx], y[idx]).predict(X), idx


def run(table: HwTable, seeds: list[int], n_ceiling: int, ceiling_seeds: int) -> dict:
    counts, count_names = op_counts(table.arch)
    D, dnames = table.descriptors, table.descriptor_names
    graph = [i for i, n in enumerate(dnames) if not n.startswith("n_")]
    onehot = one_hot_edges(table)
    lut = lut_references(table)
    out: dict = {"table": str(table.path), "ks": list(KS), "seeds": seeds, "aggregate": "median over seeds",
                 "devices": {}}
    for col in table.ms_columns:
        refs = [c for c in table.ms_columns if c != col]
        R = np.column_stack([table.latency[c] for c in refs])
        RL = np.column_stack([lut[c] for c in refs])
        tref, XT = table_references(table, refs)
        y = table.latency[col]
        score = np.log(R).mean(axis=1)
        lat = [True] * len(refs)
        dev: dict = {"references": refs, "meta_config": {}, "meta_raw_config": {}, "meta_squared_config": {},
                     "meta_table_config": {}, "meta_table_config_squared": {}}
        for k in KS:
            tables = {}
            for loss in ("huber", "squared"):
                tables[loss] = [table_config(get_space("nb201"), tref, k, plain=p, loss=loss)[0] for p in (False, True)]
                dev["meta_table_config" + ("" if loss == "huber" else "_squared")][str(k)] = {
                    "corrected": tables[loss][0].to_dict(), "plain": tables[loss][1].to_dict()}
            res: dict = {m: [] for m in ("before", "before_lut", "ensemble", "meta_raw", "meta", "meta_squared",
                                         "meta_table", "meta_table_no_anchor", "meta_table_squared")}
            for s in seeds:
                train = np.random.default_rng(s).permutation(len(y))[:k]
                test = np.setdiff1d(np.arange(len(y)), train)
                for name, refm in (("before", R), ("before_lut", RL)):
                    Xb = np.column_stack([refm, counts])
                    b = FewShotPredictor(is_latency=lat + [False] * counts.shape[1], additive=False)
                    b.fit(Xb[train], y[train])
                    res[name].append(_metrics(b.predict(Xb[test]), y[test]))
                st = select_stratified(score, k, s)
                te = np.setdiff1d(np.arange(len(y)), st)
                Xe = np.column_stack([R, D])
                e = FewShotEnsemble(lat + [False] * D.shape[1], refs + dnames, [len(refs) + g for g in graph])
                e.fit(Xe[st], y[st])
                res["ensemble"].append(_metrics(e.predict(Xe[te]), y[te]))
                for name, refm, loss in (("meta_raw", R, "huber"), ("meta", RL, "huber"),
                                         ("meta_squared", RL, "squared")):
                    pool = np.column_stack([refm, D])
                    # the target column reaches the model only through measure(), for the k chosen rows
                    m, idx = fit_new_device(pool, len(refs), k, s, lambda i: y[i], targets=R, loss=loss)
                    te = np.setdiff1d(np.arange(len(y)), idx)
                    res[name].append(_metrics(m.predict(pool[te]), y[te]))
                    dev[f"{name}_config"][str(k)] = {**m.config.to_dict(), **m.inner}
                for name, loss, anchor in (("meta_table", "huber", True), ("meta_table_no_anchor", "huber", False),
                                           ("meta_table_squared", "squared", False)):
                    p, idx = table_corrected(tref, XT, k, s, y, *tables[loss], anchor=anchor)  # the column: only y[idx]
                    te = np.setdiff1d(np.arange(len(y)), idx)
                    res[name].append(_metrics(p[te], y[te]))
            dev[str(k)] = {m: _summary(r) for m, r in res.items()}
            print(f"{col} k={k} done", file=sys.stderr)
        if ceiling_seeds:
            dev["ceiling_5000_own_rows"] = ceiling(onehot, y, seeds[:ceiling_seeds], n_ceiling)
            # the same trees with the absolute loss (the median, robust to slow readings): higher on the ARM
            # devices, whose measurements are heavy-tailed; reported beside the (squared) ceiling
            dev["ceiling_5000_own_rows_absolute"] = ceiling(onehot, y, seeds[:ceiling_seeds], n_ceiling,
                                                            "absolute_error")
        # what a linear combination of the reference LUTs can do at best: least squares on ALL the
        # device's rows (in-sample; an upper bound for meta without its descriptor correction)
        A = np.column_stack([RL, np.ones(len(y))])
        dev["lut_combination_all_rows"] = _summary([_metrics(A @ np.linalg.lstsq(A, y, rcond=None)[0], y)])
        # the device's OWN LUT (per-edge least squares on all its rows, in-sample): the best any per-block
        # additive table of this device reaches; what few-shot on LUT references can approach at most
        dev["own_lut_all_rows"] = _summary([_metrics(lut[col], y)])
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
