"""How far the table path's model goes with more of the device's own cells: sample size or model (JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_family.py [--table ../shared/data/nb201/nb201_hw.csv] [--splits 5]
        [--loss squared]

For every ``*_ms`` column (the "new device"): the model ``device add --fewshot K --table CSV`` fitted
before the nearest-reference anchor (``TableCorrected`` averaged with a plain ``MetaFewShot``, the
configurations meta-learned on the other columns for k = 50, as ``bench/fewshot_lodo.py`` does),
fitted on n = 20, 50, 200, 1,000 and 5,000 random cells of the device and scored on the rest; splits as the ceiling's
(``ceiling_5000_own_rows`` in ``fewshot_lodo.py``: the same permutations), median (mean) over
``--splits``. Beside it, that ceiling (trees on one-hot edges, 5,000 own cells). Where the model
reaches the ceiling with enough cells, what keeps it below from 20 is the sample, not the model.
``--loss squared``: the same model with the squared loss in every fit and configuration choice (the
product fits Huber's; ``table_config(..., loss=)``), to tell the model family from its loss.
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
from edgenas.latency.fewshot import HwTable  # noqa: E402
from edgenas.latency.fewshot_table import TableCorrected  # noqa: E402
from edgenas.spaces import get_space  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fewshot_lodo import _metrics, ceiling, one_hot_edges, table_references  # noqa: E402

SIZES = (20, 50, 200, 1000, 5000)
CONFIG_K = 50  # the configurations chosen for this k (inner tasks cap at the pool; larger k adds nothing)


def run(table: HwTable, splits: int, loss: str = "huber") -> dict:
    onehot = one_hot_edges(table)
    out: dict = {"table": str(table.path), "sizes": list(SIZES), "splits": splits, "config_k": CONFIG_K, "loss": loss,
                 "aggregate": "median (and mean) over splits", "devices": {}}
    for col in table.ms_columns:
        refs = [c for c in table.ms_columns if c != col]
        tref, X = table_references(table, refs)
        y = table.latency[col]
        config, plain = (table_config(get_space("nb201"), tref, CONFIG_K, plain=p, loss=loss)[0] for p in (False, True))
        dev: dict = {"config": {"corrected": config.to_dict(), "plain": plain.to_dict()}}
        for n in SIZES:
            shares = []
            for s in range(splits):
                perm = np.random.default_rng(1000 + s).permutation(len(y))
                fit, test = perm[:n], perm[n:]
                model = TableCorrected(len(refs), None, config, plain).fit(X[fit], y[fit])
                shares.append(_metrics(model.predict(X[test]), y[test])["within10"])
            dev[str(n)] = {"within10": round(float(np.median(shares)), 4),
                           "within10_mean": round(float(np.mean(shares)), 4)}
            print(f"{col} n={n}: {dev[str(n)]}", file=sys.stderr)
        dev["ceiling_5000_own_rows"] = ceiling(onehot, y, list(range(splits)), 5000)["within10"]
        out["devices"][col] = dev
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--loss", choices=("huber", "squared"), default="huber",
                    help="the loss of every fit and configuration choice (the product: huber)")
    a = ap.parse_args(argv)
    if a.splits < 1:
        ap.error("--splits must be at least 1")
    t0 = time.perf_counter()
    result = run(HwTable(a.table), a.splits, a.loss)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
