"""Rank correlation of zero-cost proxies with NAS-Bench-201 CIFAR-10 test accuracy.

Samples ``--n`` architectures (seeded) from the NAS-Bench-201 table, builds each real cell network
with ``build_nb201_network``, scores it with every proxy on one batch of scikit-learn's digits
upsampled to 32x32 RGB (there is no CIFAR-10 here), and prints JSON: Spearman and Kendall of each
proxy vs ``cifar10_test``, the proxies ranked, and the proxy that should be the default (the best
one that beats the parameter count; ``params`` itself if none does).

    python bench/proxies_nb201.py --table ../shared/data/nb201/nb201_hw.csv --n 1000 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import platform
import time

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from edgenas.datasets import load_digits_images
from edgenas.evaluate.proxies import ct_prior_combine, make_proxy
from edgenas.spaces.nb201_net import build_nb201_network, parse_nb201_string

PROXY_NAMES = ["params", "flops", "synflow", "naswot", "snip", "grad_norm", "jacob_cov",
               "compression", "trainability"]
BASELINES = {"params", "flops"}
PUBLISHED_SPEARMAN = {"synflow": 0.737, "jacob_cov": 0.731, "snip": 0.596, "grad_norm": 0.594,
                      "params": 0.73}
_BATCH: tuple[torch.Tensor, torch.Tensor] | None = None
_ARGS: dict = {}


def _init(batch_size: int, seed: int, groups: int) -> None:
    global _BATCH
    torch.set_num_threads(1)
    _BATCH = load_digits_images(32, n=batch_size, seed=seed)
    _ARGS.update(seed=seed, groups=groups)


def _score_one(arch: str) -> tuple[dict[str, float], dict[str, float]]:
    ops = parse_nb201_string(arch)
    scores, seconds = {}, {}
    for name in PROXY_NAMES:
        torch.manual_seed(_ARGS["seed"])
        model = build_nb201_network(ops)
        start = time.perf_counter()
        try:
            options = {"groups": _ARGS["groups"]} if name == "trainability" else {}
            value = float(make_proxy(name, **options).score(model, _BATCH))
        except Exception:  # noqa: BLE001 - the benchmark records a broken network as -inf
            value = float("-inf")
        seconds[name] = time.perf_counter() - start
        scores[name] = value if np.isfinite(value) else float("-inf")
    return scores, seconds


def _correlations(scores: np.ndarray, acc: np.ndarray) -> dict[str, float]:
    finite = np.isfinite(scores)
    # -inf (a degenerate network) ranks below every finite score
    filled = np.where(finite, scores, (scores[finite].min() - 1.0) if finite.any() else 0.0)
    return {"spearman": round(float(spearmanr(filled, acc)[0]), 4),
            "kendall": round(float(kendalltau(filled, acc)[0]), 4),
            "n_neg_inf": int((~finite).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default="../shared/data/nb201/nb201_hw.csv")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--groups", type=int, default=2, help="trainability micro-batches")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--proxies", default=",".join(PROXY_NAMES),
                        help="comma-separated subset (params is always included as the baseline)")
    args = parser.parse_args()
    chosen = [p for p in args.proxies.split(",") if p]
    unknown = sorted(set(chosen) - set(PROXY_NAMES))
    if unknown:
        parser.error(f"unknown proxies {unknown}; known: {PROXY_NAMES}")
    PROXY_NAMES[:] = [p for p in PROXY_NAMES if p in set(chosen) | {"params"}]

    with open(args.table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(args.seed)
    picked = [rows[i] for i in rng.choice(len(rows), size=min(args.n, len(rows)), replace=False)]
    acc = np.array([float(r["cifar10_test"]) for r in picked])

    start = time.perf_counter()
    if args.workers > 1:
        init_args = (args.batch_size, args.seed, args.groups)
        with mp.get_context("fork").Pool(args.workers, _init, init_args) as pool:
            results = pool.map(_score_one, [r["arch"] for r in picked], chunksize=4)
    else:
        _init(args.batch_size, args.seed, args.groups)
        results = [_score_one(r["arch"]) for r in picked]
    wall = time.perf_counter() - start

    table = {name: np.array([s[name] for s, _ in results]) for name in PROXY_NAMES}
    if "compression" in table and "trainability" in table:
        table["ct_prior"] = ct_prior_combine(table["compression"], table["trainability"])
    proxies = {}
    for name, scores in table.items():
        proxies[name] = _correlations(scores, acc)
        if name != "ct_prior":
            proxies[name]["mean_seconds"] = round(float(np.mean([t[name] for _, t in results])), 4)
        if name in PUBLISHED_SPEARMAN:
            proxies[name]["published_spearman_cifar10_all_15625"] = PUBLISHED_SPEARMAN[name]
    ranking = sorted(proxies, key=lambda k: proxies[k]["spearman"], reverse=True)
    for rank, name in enumerate(ranking, start=1):
        proxies[name]["rank"] = rank
    params_rho = proxies["params"]["spearman"]
    beating = [k for k in ranking if k not in BASELINES and proxies[k]["spearman"] > params_rho]
    print(json.dumps({
        "benchmark": "zero-cost proxies vs NAS-Bench-201 cifar10_test",
        "table": args.table, "n": len(picked), "seed": args.seed,
        "images": f"scikit-learn digits (8x8 grey) bilinearly upsampled to 32x32, replicated to RGB, "
                  f"normalised; batch of {args.batch_size} (no CIFAR-10 available)",
        "trainability_groups": args.groups,
        "network": "build_nb201_network(ops, C=16, N=5, num_classes=10), torch.manual_seed(seed) init",
        "ct_prior": "0.4*rank(compression)+0.6*rank(trainability), ranks over the n sampled archs",
        "proxies": proxies, "ranking_by_spearman": ranking,
        "default": beating[0] if beating else "params",
        "default_rule": "best non-baseline proxy whose Spearman beats params; params if none does",
        "wall_seconds": round(wall, 1), "workers": args.workers,
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}, 1 thread per worker",
    }, indent=2))


if __name__ == "__main__":
    main()
