"""Architectures per second of the vectorised predictor vs the one-at-a-time loop (prints JSON).

    python bench/predictor_throughput.py [--lut PATH] [--ofa-dir ../shared/data/ofa_note10_lut]

"before" is the batch path as it was before issue 17 (``bench/_predictor_v0.py``, timed in the same
run); ``bit_identical`` compares its outputs with today's ``predict_many`` with ``np.array_equal``
on the full gene matrix, the architecture objects and batches of 1, 7, 50 and 333.

``mbv3-small`` uses the LUT given with ``--lut`` or, without one, a LUT whose entries are synthetic
(deterministic, derived from a hash of each key) - the JSON says which. ``ofa-mbv3-w12`` uses
Once-for-All's Note10 tables through ``import_ofa_lut`` when the folder exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.predictor import LatencyPredictor
from edgenas.spaces import get_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predictor_v0 import predict_many_v0  # noqa: E402


def synthetic_lut(space, overhead_ms: float = 0.05) -> Lut:
    def stats(ms: float) -> EntryStats:
        return EntryStats(n=1, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms,
                          min_ms=ms, max_ms=ms)

    entries = {}
    for k in space.key_vocab():
        h = int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little") / 2**32
        entries[k] = stats(0.02 + 2.0 * h)
    return Lut(device="synthetic", space=space.name, fingerprint={"synthetic": True},
               fingerprint_hash="0" * 64, runtime="none", precision="fp32", threads=1,
               protocol={"synthetic": "median = 0.02 + 2 * sha256(key)[:4] / 2**32 ms"},
               overhead=stats(overhead_ms), entries=entries, created_at=0.0)


def _rate(fn, n: int, min_s: float) -> float:
    """Best-of-repeats rate (arch/s); repeats until ``min_s`` seconds have passed (at least 3)."""
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or spent < min_s:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return n / best


def bench_space(space, lut: Lut, lut_source: str, n_vec: int, n_obj: int, n_loop: int, seed: int) -> dict:
    pred = LatencyPredictor(lut, space)
    genes = space.sample_genes(np.random.default_rng(seed), n_vec)
    archs = [space.from_genes(g) for g in genes[:n_obj]]  # as search samples them: genes kept
    fresh = [dataclasses.replace(a) for a in archs]  # equal objects without kept genes (e.g. parsed)
    fast, slow = pred.predict_many(genes[:n_loop]), pred.predict_loop(archs[:n_loop])
    same = bool(np.array_equal(pred.predict_many(genes), predict_many_v0(pred, genes))
                and np.array_equal(pred.predict_many(archs), predict_many_v0(pred, archs))
                and all(np.array_equal(pred.predict_many(archs[:k]), predict_many_v0(pred, archs[:k]))
                        and np.array_equal(pred.predict_many(genes[k:2 * k]), predict_many_v0(pred, genes[k:2 * k]))
                        for k in (1, 7, 50, 333)))
    genes_before = _rate(lambda: predict_many_v0(pred, genes), n_vec, 1.0)
    genes_after = _rate(lambda: pred.predict_many(genes), n_vec, 1.0)
    archs_before = _rate(lambda: predict_many_v0(pred, archs), n_obj, 1.0)
    archs_after = _rate(lambda: pred.predict_many(archs), n_obj, 1.0)
    t0 = time.perf_counter()
    pred.predict_many(fresh)  # first call converts and keeps the genes
    fresh_first = n_obj / (time.perf_counter() - t0)
    loop = _rate(lambda: pred.predict_loop(archs[:n_loop]), n_loop, 1.0)
    return {
        "space": space.name, "lut": lut_source, "n_keys": len(set(space.key_vocab())),
        "n_genes": n_vec, "n_archs": n_obj, "n_loop": n_loop,
        "genes_before_arch_per_s": round(genes_before),
        "genes_after_arch_per_s": round(genes_after),
        "archs_before_arch_per_s": round(archs_before),
        "archs_after_arch_per_s": round(archs_after),
        "archs_without_kept_genes_first_call_arch_per_s": round(fresh_first),
        "loop_arch_per_s": round(loop),
        "ratio_genes_after_vs_before": round(genes_after / genes_before, 2),
        "ratio_archs_after_vs_before": round(archs_after / archs_before, 2),
        "ratio_archs_after_vs_loop": round(archs_after / loop, 1),
        "bit_identical_to_before": same,
        "max_abs_diff_vs_loop_ms": float(np.max(np.abs(fast - slow))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", help="a measured mbv3-small LUT (JSON); synthetic if omitted")
    ap.add_argument("--ofa-dir", default="../shared/data/ofa_note10_lut")
    ap.add_argument("--n", type=int, default=100_000, help="architectures for the vectorised path")
    ap.add_argument("--n-archs", type=int, default=50_000, help="architecture objects (before/after)")
    ap.add_argument("--n-loop", type=int, default=5_000, help="architectures for the loop")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                       "cpu": platform.processor() or platform.machine()}, "results": []}
    space = get_space("mbv3-small")
    lut, src = (Lut.load(a.lut), a.lut) if a.lut else (synthetic_lut(space), "synthetic (deterministic)")
    out["results"].append(bench_space(space, lut, src, a.n, a.n_archs, a.n_loop, a.seed))
    if Path(a.ofa_dir).is_dir():
        from edgenas.latency.ofa_import import import_ofa_lut

        out["results"].append(bench_space(get_space("ofa-mbv3-w12"), import_ofa_lut(a.ofa_dir),
                                          f"OFA Note10 tables ({a.ofa_dir})", a.n, a.n_archs, a.n_loop,
                                          a.seed))
    else:
        out["skipped"] = f"ofa-mbv3-w12: no OFA tables at {a.ofa_dir}"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
