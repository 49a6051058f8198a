"""Architectures per second of the vectorised predictor vs the one-at-a-time loop (prints JSON).

    python bench/predictor_throughput.py [--lut PATH] [--ofa-dir ../shared/data/ofa_note10_lut]

``mbv3-small`` uses the LUT given with ``--lut`` or, without one, a LUT whose entries are synthetic
(deterministic, derived from a hash of each key) - the JSON says which. ``ofa-mbv3-w12`` uses
Once-for-All's Note10 tables through ``import_ofa_lut`` when the folder exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.predictor import LatencyPredictor
from edgenas.spaces import get_space


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


def bench_space(space, lut: Lut, lut_source: str, n_vec: int, n_loop: int, seed: int) -> dict:
    pred = LatencyPredictor(lut, space)
    genes = space.sample_genes(np.random.default_rng(seed), n_vec)
    archs = [space.from_genes(g) for g in genes[:n_loop]]
    fast, slow = pred.predict_many(genes[:n_loop]), pred.predict_loop(archs)
    vec_genes = _rate(lambda: pred.predict_many(genes), n_vec, 1.0)
    vec_archs = _rate(lambda: pred.predict_many(archs), n_loop, 1.0)
    loop = _rate(lambda: pred.predict_loop(archs), n_loop, 1.0)
    return {
        "space": space.name, "lut": lut_source, "n_keys": len(set(space.key_vocab())),
        "n_vectorised": n_vec, "n_loop": n_loop,
        "vectorised_genes_arch_per_s": round(vec_genes),
        "vectorised_archs_arch_per_s": round(vec_archs),
        "loop_arch_per_s": round(loop),
        "ratio_genes_vs_loop": round(vec_genes / loop, 1),
        "ratio_archs_vs_loop": round(vec_archs / loop, 1),
        "max_abs_diff_ms": float(np.max(np.abs(fast - slow))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", help="a measured mbv3-small LUT (JSON); synthetic if omitted")
    ap.add_argument("--ofa-dir", default="../shared/data/ofa_note10_lut")
    ap.add_argument("--n", type=int, default=100_000, help="architectures for the vectorised path")
    ap.add_argument("--n-loop", type=int, default=5_000, help="architectures for the loop")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                       "cpu": platform.processor() or platform.machine()}, "results": []}
    space = get_space("mbv3-small")
    lut, src = (Lut.load(a.lut), a.lut) if a.lut else (synthetic_lut(space), "synthetic (deterministic)")
    out["results"].append(bench_space(space, lut, src, a.n, a.n_loop, a.seed))
    if Path(a.ofa_dir).is_dir():
        from edgenas.latency.ofa_import import import_ofa_lut

        out["results"].append(bench_space(get_space("ofa-mbv3-w12"), import_ofa_lut(a.ofa_dir),
                                          f"OFA Note10 tables ({a.ofa_dir})", a.n, a.n_loop, a.seed))
    else:
        out["skipped"] = f"ofa-mbv3-w12: no OFA tables at {a.ofa_dir}"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
