"""How much of a table column's noise is drift in the order it was measured (issue 17, part 1; JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_drift.py [--table CSV] [--block 125] [--seeds 20]

The ceiling of part 1 (gradient-boosted trees on one-hot edges fitted on 5,000 of a device's own rows)
counts as noise whatever its trees cannot see. One thing they cannot see is the row's place in the
table. For every ``*_ms`` column of ``nb201_hw.csv``:

* **drift**: out-of-fold log residuals of those trees (3 folds over all rows), their median over runs
  of ``--block`` consecutive rows in table order, centred on the overall median. NAS-Bench-201's index
  does not follow the cell's structure (its correlation with each edge's operation is within +-0.02),
  so a run of rows that reads slow or fast together is most likely a spell of the machine while the
  table was measured. ``null``: the same statistic with the rows in a random order (median over
  ``--permutations``), what sampling alone gives;
* **ceiling**: the trees of ``bench/fewshot_lodo.py`` (``ceiling``, the same 5 splits) on the column,
  on the column with its drift divided out (``detrended``, in hindsight: the drift is estimated
  from the column itself), and, as a control, with the drift of rows in a random order divided out
  (``detrended_random_order``: what dividing out block medians does when there is no drift);
* **product**: what ``device add --fewshot K --table CSV`` fits (``fewshot_lodo.table_corrected``,
  leave one device out, seeds 0..N-1, k = 10, 20, 50, the configurations chosen on the other
  columns), ``raw``: fitted on the measured k rows and scored on the column (``fewshot_lodo``'s
  ``meta_table``); ``scored_detrended``: the same fit scored on the detrended column; ``detrended``:
  fitted on the detrended k rows and scored on the detrended column (a device measured without
  spells).

Nothing here changes the product: it cannot know the table's drift. It says which part of the gap
to the ceiling is the sample, which the model, and which the drift in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fewshot_lodo import KS, _metrics, _summary, ceiling, one_hot_edges, table_corrected, table_references  # noqa: E402

from edgenas.fleet.fewshot import table_config  # noqa: E402
from edgenas.latency.fewshot import HwTable  # noqa: E402
from edgenas.spaces import get_space  # noqa: E402

FOLDS = 3


def out_of_fold_residuals(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log(y) minus the trees' prediction, each row predicted by trees fitted on the other folds."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    fold = np.random.default_rng(7).permutation(len(y)) % FOLDS
    r = np.empty(len(y))
    for f in range(FOLDS):
        m = HistGradientBoostingRegressor(max_iter=300, random_state=0).fit(X[fold != f], np.log(y[fold != f]))
        r[fold == f] = np.log(y[fold == f]) - m.predict(X[fold == f])
    return r


def block_drift(r: np.ndarray, block: int, order: np.ndarray | None = None) -> np.ndarray:
    """Per row, the median residual of its run of ``block`` rows (in ``order``, default table order),
    centred on the overall median."""
    order = np.arange(len(r)) if order is None else order
    drift = np.empty(len(r))
    for start in range(0, len(r), block):
        rows = order[start:start + block]
        drift[rows] = np.median(r[rows])
    return drift - np.median(r)


def _block_sd(drift: np.ndarray, block: int, order: np.ndarray) -> float:
    return float(np.std(drift[order[::block]]))


def run(table: HwTable, seeds: list[int], block: int, permutations: int, ceiling_seeds: int) -> dict:
    X1 = one_hot_edges(table)
    n = len(table.arch)
    out: dict = {"table": str(table.path), "block": block, "ks": list(KS), "seeds": seeds, "devices": {}}
    for col in table.ms_columns:
        y = table.latency[col]
        r = out_of_fold_residuals(X1, y)
        ident = np.arange(n)
        drift = block_drift(r, block)
        perms = [np.random.default_rng(100 + p).permutation(n) for p in range(permutations)]
        null_sd = [_block_sd(block_drift(r, block, o), block, o) for o in perms]
        yd = y * np.exp(-drift)
        y_control = y * np.exp(-block_drift(r, block, perms[0]))
        dev = out["devices"][col] = {
            "drift": {"block_median_sd": round(_block_sd(drift, block, ident), 4),
                      "null_block_median_sd": round(float(np.median(null_sd)), 4),
                      "block_median_range": [round(float(drift.min()), 4), round(float(drift.max()), 4)],
                      "share_rows_drift_over_5pct": round(float(np.mean(np.abs(drift) > 0.05)), 4)},
            "ceiling": {"raw": ceiling(X1, y, seeds[:ceiling_seeds], 5000)["within10"],
                        "detrended": ceiling(X1, yd, seeds[:ceiling_seeds], 5000)["within10"],
                        "detrended_random_order": ceiling(X1, y_control, seeds[:ceiling_seeds], 5000)["within10"]}}
        refs = [c for c in table.ms_columns if c != col]
        tref, X = table_references(table, refs)
        for k in KS:
            configs = [table_config(get_space("nb201"), tref, k, plain=p)[0] for p in (False, True)]
            res: dict[str, list[dict]] = {"raw": [], "scored_detrended": [], "detrended": []}
            for s in seeds:
                pred, idx = table_corrected(tref, X, k, s, y, *configs)  # the product, as meta_table
                rest = np.setdiff1d(np.arange(n), idx)
                res["raw"].append(_metrics(pred[rest], y[rest]))
                res["scored_detrended"].append(_metrics(pred[rest], yd[rest]))
                pred, idx = table_corrected(tref, X, k, s, yd, *configs)
                rest = np.setdiff1d(np.arange(n), idx)
                res["detrended"].append(_metrics(pred[rest], yd[rest]))
            dev[str(k)] = {name: _summary(v) for name, v in res.items()}
        print(f"{col}: drift sd {dev['drift']['block_median_sd']} (null {dev['drift']['null_block_median_sd']}), "
              f"ceiling {dev['ceiling']}, k=20 within10 " +
              ", ".join(f"{m} {dev['20'][m]['within10']}" for m in res), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    ap.add_argument("--block", type=int, default=125, help="consecutive table rows per drift estimate")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 of the product's draws")
    ap.add_argument("--permutations", type=int, default=20, help="random row orders for the null")
    ap.add_argument("--ceiling-seeds", type=int, default=5)
    a = ap.parse_args(argv)
    if a.block < 2 or min(a.seeds, a.permutations, a.ceiling_seeds) < 1 or a.ceiling_seeds > a.seeds:
        ap.error("--block must be at least 2, --seeds, --permutations and --ceiling-seeds at least 1, "
                 "--ceiling-seeds at most --seeds")
    t0 = time.perf_counter()
    result = run(HwTable(a.table), list(range(a.seeds)), a.block, a.permutations, a.ceiling_seeds)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
