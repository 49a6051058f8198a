"""A six-parameter operation-count model against the table path: which devices it suits, and whether
20 readings can tell (JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_counts.py --table ../shared/data/nb201/nb201_hw.csv [--seeds 20]

The ``counts`` model is least squares in milliseconds on an intercept, the cell's counts of
``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` and ``avg_pool_3x3`` (all six edges) and the square
of its number of convolutions: no reference device at all. For every ``*_ms`` column (the "new
device"), each k of ``--ks`` and seeds 0..N-1, within +-10% on the device's other cells:

* ``product``: the table path (``bench/fewshot_lodo.py``'s ``meta_table``: what ``device add --fewshot K
  --table CSV`` fits, configurations chosen on the other columns), on the cells its rule picks;
* ``counts_product_cells``: the counts model on those same cells;
* ``counts_doptimal``: the counts model on cells picked for it: greedy D-optimal design (each next cell
  the candidate of largest leverage ``x' (X'X)^-1 x`` on the counts features) among 2,000 random cells
  of the seed; needs no measurement to choose;
* ``product_doptimal``: the table path fitted on those D-optimal cells;
* ``loo_choice``: on the product's cells, whichever of the table path, the counts model and their
  geometric mean has the lower mean absolute log error in leave-one-out over the k readings (ties go
  to the table path): a choice made from the k readings alone.

``counts_5000_own_cells``: the counts model fitted on 5,000 of the device's own cells, scored on the
rest (the splits of ``fewshot_lodo.py``'s ceiling): what the family reaches with plenty of data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from edgenas.fleet.fewshot import table_config  # noqa: E402
from edgenas.latency.fewshot import HwTable, op_counts  # noqa: E402
from edgenas.latency.fewshot_meta import select_architectures  # noqa: E402
from edgenas.latency.fewshot_table import TableCorrected  # noqa: E402
from edgenas.spaces import get_space  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fewshot_lodo import table_references  # noqa: E402

POOL = 2000


def count_features(arch: list[str]) -> np.ndarray:
    counts, names = op_counts(arch)
    col = {n: counts[:, i] for i, n in enumerate(names)}
    convs = col["n_nor_conv_1x1"] + col["n_nor_conv_3x3"]
    return np.column_stack([np.ones(len(arch)), col["n_skip_connect"], col["n_nor_conv_1x1"],
                            col["n_nor_conv_3x3"], col["n_avg_pool_3x3"], convs ** 2])


def fit_counts(F: np.ndarray, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The counts model fitted on rows ``idx`` of ``F``; predictions for every row (floored > 0)."""
    w = np.linalg.lstsq(F[idx], y[idx], rcond=None)[0]
    return np.maximum(F @ w, 1e-3 * float(np.median(y[idx])))


def d_optimal(F: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` rows of ``F`` by greedy D-optimal design among ``POOL`` random rows (seeded)."""
    rng = np.random.default_rng(seed)
    cand = rng.choice(len(F), POOL, replace=False)
    Z = F[cand]
    chosen = list(rng.choice(POOL, F.shape[1], replace=False))
    while len(chosen) < k:
        Mi = np.linalg.inv(Z[chosen].T @ Z[chosen] + 1e-6 * np.eye(F.shape[1]))
        lev = np.einsum("ij,jk,ik->i", Z, Mi, Z)
        lev[chosen] = -1.0
        chosen.append(int(np.argmax(lev)))
    return cand[np.array(chosen[:k])]


def _w10(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / y - 1.0) <= 0.10))


def _agg(x: list[float]) -> dict:
    return {"within10": round(float(np.median(x)), 4), "within10_mean": round(float(np.mean(x)), 4),
            "within10_min": round(float(np.min(x)), 4)}


def run(table: HwTable, ks: list[int], seeds: list[int], columns: list[str]) -> dict:
    space = get_space("nb201")
    F = count_features(table.arch)
    out: dict = {"table": str(table.path), "ks": ks, "seeds": seeds, "doptimal_pool": POOL,
                 "aggregate": "median, mean and worst over seeds", "devices": {}}
    for col in columns:
        refs = [c for c in table.ms_columns if c != col]
        n = len(refs)
        tref, X = table_references(table, refs)
        y = table.latency[col]
        every = np.arange(len(y))
        dev: dict = {}
        for k in ks:
            cfg, plain = (table_config(space, tref, k, plain=p)[0] for p in (False, True))

            def product(idx):  # the column reaches the table path only through y[idx]
                return TableCorrected(n, None, cfg, plain, anchor=True).fit(X[idx], y[idx]).predict(X)

            res: dict = {m: [] for m in ("product", "counts_product_cells", "counts_doptimal", "product_doptimal",
                                         "loo_choice")}
            picked: dict = {}
            for s in seeds:
                idx = select_architectures(X[:, :-n], n, k, s, cfg.selection)
                te = np.setdiff1d(every, idx)
                full = {"product": product(idx), "counts": fit_counts(F, idx, y)}
                full["geometric_mean"] = np.sqrt(full["product"] * full["counts"])
                res["product"].append(_w10(full["product"][te], y[te]))
                res["counts_product_cells"].append(_w10(full["counts"][te], y[te]))
                loo = {m: [] for m in full}
                for i in range(k):
                    rest = np.delete(idx, i)
                    p = product(rest)[idx[i]]
                    q = fit_counts(F, rest, y)[idx[i]]
                    for m, v in (("product", p), ("counts", q), ("geometric_mean", np.sqrt(p * q))):
                        loo[m].append(abs(np.log(v / y[idx[i]])))
                best = min(full, key=lambda m: (np.mean(loo[m]), m != "product"))
                picked[best] = picked.get(best, 0) + 1
                res["loo_choice"].append(_w10(full[best][te], y[te]))
                d = d_optimal(F, k, s)
                te = np.setdiff1d(every, d)
                res["counts_doptimal"].append(_w10(fit_counts(F, d, y)[te], y[te]))
                res["product_doptimal"].append(_w10(product(d)[te], y[te]))
            dev[str(k)] = {**{m: _agg(v) for m, v in res.items()}, "loo_picked": picked}
            print(f"{col} k={k} done", file=sys.stderr)
        splits = []
        for s in seeds[:5]:  # the ceiling's splits in fewshot_lodo.py
            perm = np.random.default_rng(1000 + s).permutation(len(y))
            splits.append(_w10(fit_counts(F, perm[:5000], y)[perm[5000:]], y[perm[5000:]]))
        dev["counts_5000_own_cells"] = _agg(splits)
        out["devices"][col] = dev
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    ap.add_argument("--ks", default="20", help="comma-separated k")
    ap.add_argument("--columns", default="", help="comma-separated *_ms columns (default: all)")
    a = ap.parse_args(argv)
    table = HwTable(a.table)
    columns = [c for c in a.columns.split(",") if c] or list(table.ms_columns)
    t0 = time.perf_counter()
    result = run(table, [int(k) for k in a.ks.split(",")], list(range(a.seeds)), columns)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
