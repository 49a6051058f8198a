"""How much of the few-shot gap is the configuration choice: the table path against hindsight (JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_hindsight.py --table ../shared/data/nb201/nb201_hw.csv [--seeds 20]

For every ``*_ms`` column (the "new device"), k = 10, 20, 50 and seeds 0..N-1, the table path's model
(``TableCorrected`` averaged with a plain ``MetaFewShot``, as ``device add --fewshot K --table CSV``
fitted before the nearest-reference anchor and ``bench/fewshot_lodo.py``'s ``meta_table_no_anchor``
scores), the plain model's configuration as the
product chooses it, with every configuration of the grid (``fewshot_meta.CONFIGS``) for the corrected
model in turn. Within +-10% on the device's other rows:

* ``product``: the configuration the inner tasks choose on the other columns (``table_config``): the
  product without its anchor, equal to ``fewshot_lodo.py``'s ``meta_table_no_anchor``;
* ``best_fixed_in_hindsight``: the one configuration with the best mean over the seeds, chosen WITH
  the scored column (not a predictor anyone can build: what a perfect meta-learner of one
  configuration per device would reach);
* ``best_per_draw_in_hindsight``: for every seed the best configuration for that draw, chosen with the
  scored column (an upper bound for any choice of configuration from the grid, the k points included).
  A seed draws different cells under each selection rule, so this also picks the better of the rules'
  draws; ``best_per_draw_by_rule_in_hindsight`` keeps to one rule's configurations, i.e. one set of k
  cells: the best any configuration does with the cells that rule measured.

Median and mean over seeds. Beside them, the device's ceiling from ``bench/fewshot_lodo.py``'s JSON
(``--lodo-json``; trees on one-hot edges fitted on 5,000 of its own cells), not recomputed here.
Where ``best_per_draw_in_hindsight`` stays under the ceiling, no choice among these configurations
reaches it from k points; what remains is the variance of the fit.
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
from edgenas.latency.fewshot_meta import CONFIGS, SELECTIONS, _within10  # noqa: E402 (the inner tasks' score)
from edgenas.spaces import get_space  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fewshot_lodo import KS, table_corrected, table_references  # noqa: E402


def _agg(x) -> dict:
    return {"within10": round(float(np.median(x)), 4), "within10_mean": round(float(np.mean(x)), 4)}


def run(table: HwTable, seeds: list[int], columns: list[str], ceilings: dict) -> dict:
    space = get_space("nb201")
    out: dict = {"table": str(table.path), "ks": list(KS), "seeds": seeds, "configs": len(CONFIGS),
                 "aggregate": "median and mean over seeds", "devices": {}}
    for col in columns:
        refs = [c for c in table.ms_columns if c != col]
        tref, X = table_references(table, refs)
        y = table.latency[col]
        dev: dict = {"references": refs}
        if col in ceilings:
            dev["ceiling_5000_own_rows"] = ceilings[col]
        for k in KS:
            chosen, _ = table_config(space, tref, k)
            plain, _ = table_config(space, tref, k, plain=True)
            scores = np.zeros((len(CONFIGS), len(seeds)))  # configuration x seed
            for i, config in enumerate(CONFIGS):
                for j, s in enumerate(seeds):
                    p, idx = table_corrected(tref, X, k, s, y, config, plain)
                    test = np.setdiff1d(np.arange(len(y)), idx)
                    scores[i, j] = _within10(p[test], y[test])
            c = CONFIGS.index(chosen)
            best = int(np.argmax(scores.mean(axis=1)))
            dev[str(k)] = {"product": {**_agg(scores[c]), "config": chosen.to_dict()},
                           "best_fixed_in_hindsight": {**_agg(scores[best]), "config": CONFIGS[best].to_dict()},
                           "best_per_draw_in_hindsight": _agg(scores.max(axis=0)),
                           "best_per_draw_by_rule_in_hindsight": {
                               rule: _agg(scores[[c.selection == rule for c in CONFIGS]].max(axis=0))
                               for rule in SELECTIONS},
                           "product_rank_of_configs": int((scores.mean(axis=1) > scores[c].mean()).sum()) + 1}
            print(f"{col} k={k} done", file=sys.stderr)
        out["devices"][col] = dev
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    ap.add_argument("--column", action="append", help="only these *_ms columns (default: all)")
    ap.add_argument("--lodo-json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "fewshot_lodo_results_20seeds.json"),
                    help="fewshot_lodo.py's JSON, for the ceilings")
    a = ap.parse_args(argv)
    table = HwTable(a.table)
    columns = a.column or list(table.ms_columns)
    unknown = [c for c in columns if c not in table.ms_columns]
    if unknown:
        print(f"error: unknown column(s) {unknown}; the table has {list(table.ms_columns)}", file=sys.stderr)
        return 2
    ceilings = {}
    if os.path.exists(a.lodo_json):
        with open(a.lodo_json) as f:
            lodo = json.load(f)
        ceilings = {c: d["ceiling_5000_own_rows"]["within10"] for c, d in lodo["devices"].items()
                    if "ceiling_5000_own_rows" in d}
    t0 = time.perf_counter()
    result = run(table, list(range(a.seeds)), columns, ceilings)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
