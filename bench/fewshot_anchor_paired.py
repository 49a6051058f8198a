"""The nearest-reference anchor of the table path, draw by draw (issue 17, part 1; JSON).

    OMP_NUM_THREADS=1 python bench/fewshot_anchor_paired.py [--table CSV] [--seeds 20]

Leave one device out on ``nb201_hw.csv`` exactly as ``bench/fewshot_lodo.py``'s ``meta_table``: for each
``*_ms`` column, k = 10, 20, 50 and seeds 0..N-1, the configurations are chosen on the other columns,
k rows are chosen by the seed, and the model ``device add --table`` fits is scored on every other row,
on the same rows: with the anchor (the product), without it (the product before the anchor), and with
the anchor but the correction weights shrunk toward 0 instead of the nearest reference (the product
before the prior, ``TableCorrected._correction_prior``). Per (device, k): the shares within +-10% for
every draw, how many draws the product was higher than each of the other two, and the exact one-sided
sign test (ties left out). ``fewshot_lodo.py`` gives the medians, means and worst draws of the first two.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fewshot_lodo import KS, table_corrected, table_references  # noqa: E402

from edgenas.fleet.fewshot import table_config  # noqa: E402
from edgenas.latency.fewshot import HwTable  # noqa: E402
from edgenas.latency.fewshot_meta import _within10  # noqa: E402  the share the inner tasks score
from edgenas.latency.fewshot_table import TableCorrected  # noqa: E402
from edgenas.spaces import get_space  # noqa: E402


class NoPrior(TableCorrected):
    """The product before the prior: with the anchor, the correction weights shrunk toward 0."""

    def _correction_prior(self) -> np.ndarray:
        return np.zeros(self.n_refs)


def _paired(a: np.ndarray, b: np.ndarray, name: str) -> dict:
    """How often ``a`` (the product) was higher and lower than ``b``, the sign test, the differences."""
    higher, lower = int((a > b).sum()), int((a < b).sum())
    p = binomtest(higher, higher + lower, 0.5, alternative="greater").pvalue if higher + lower else 1.0
    return {f"{name}_higher": higher, f"{name}_lower": lower, f"{name}_sign_test_p": round(float(p), 6),
            f"{name}_mean_difference": round(float(np.mean(a - b)), 4),
            f"{name}_largest_loss": round(float(np.min(a - b)), 4)}


def run(table: HwTable, seeds: list[int]) -> dict:
    out: dict = {"table": str(table.path), "ks": list(KS), "seeds": seeds, "devices": {}}
    for col in table.ms_columns:
        refs = [c for c in table.ms_columns if c != col]
        tref, X = table_references(table, refs)
        y = table.latency[col]
        dev = out["devices"][col] = {}
        for k in KS:
            configs = [table_config(get_space("nb201"), tref, k, plain=p)[0] for p in (False, True)]
            share: dict[str, list[float]] = {"anchor": [], "no_anchor": [], "anchor_no_prior": []}
            for s in seeds:
                for arm, anchor, cls in (("anchor", True, None), ("no_anchor", False, None),
                                         ("anchor_no_prior", True, NoPrior)):
                    pred, idx = table_corrected(tref, X, k, s, y, *configs, anchor=anchor, model_class=cls)
                    rest = np.setdiff1d(np.arange(len(y)), idx)
                    share[arm].append(_within10(pred[rest], y[rest]))
            a, b, c = (np.array(share[arm]) for arm in ("anchor", "no_anchor", "anchor_no_prior"))
            dev[str(k)] = {"anchor": a.round(4).tolist(), "no_anchor": b.round(4).tolist(),
                           "anchor_no_prior": c.round(4).tolist(),
                           "median": {arm: round(float(np.median(v)), 4) for arm, v in share.items()},
                           "mean": {arm: round(float(np.mean(v)), 4) for arm, v in share.items()},
                           **_paired(a, b, "anchor"), **_paired(a, c, "prior")}
            print(f"{col} k={k}: vs no anchor higher in {dev[str(k)]['anchor_higher']}, lower in "
                  f"{dev[str(k)]['anchor_lower']}; vs no prior higher in {dev[str(k)]['prior_higher']}, lower in "
                  f"{dev[str(k)]['prior_lower']} of {len(seeds)} draws", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = run(HwTable(args.table), list(range(args.seeds)))
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
