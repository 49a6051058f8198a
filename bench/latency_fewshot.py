"""Few-shot latency prediction on a hardware table: fit on k measured rows, predict the rest (JSON).

    python bench/latency_fewshot.py --table ../shared/data/nb201/nb201_hw.csv --column raspi4_ms --k 10 --seed 0
    python bench/latency_fewshot.py --table ../shared/data/nb201/nb201_hw.csv --all

``--all`` runs every ``*_ms`` column for k = 10, 20, 50 and seeds 0..4 and reports, per column and k,
the median over seeds of each metric (and the models chosen). The target column is never a feature.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.latency.fewshot import HwTable, fewshot_from_table

METRICS = ("spearman", "kendall", "within10", "mape")


def run_all(table: HwTable, ks: list[int], seeds: list[int]) -> dict:
    out: dict = {"table": str(table.path), "ks": ks, "seeds": seeds, "aggregate": "median over seeds",
                 "columns": {}}
    for col in table.ms_columns:
        per_k = {}
        for k in ks:
            runs = [fewshot_from_table(table, col, k, s) for s in seeds]
            row = {m: round(float(np.median([r[m] for r in runs])), 4) for m in METRICS}
            row["models"] = dict(Counter(r["model"] if r["model"] != "single" else f"single:{r['reference']}"
                                         for r in runs))
            row["n_test"] = runs[0]["n_test"]
            per_k[str(k)] = row
        out["columns"][col] = per_k
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="CSV like nb201_hw.csv")
    ap.add_argument("--column", help="target latency column (*_ms)")
    ap.add_argument("--k", type=int, default=10, help="measured architectures to fit on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all", action="store_true", help="every *_ms column, k = 10/20/50, seeds 0..4")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        table = HwTable(a.table)
        if a.all:
            result = run_all(table, [10, 20, 50], [0, 1, 2, 3, 4])
        else:
            if not a.column:
                ap.error("--column is required unless --all is given")
            result = fewshot_from_table(table, a.column, a.k, a.seed)
    except EdgenasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    result["elapsed_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
