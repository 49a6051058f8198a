"""Strategy overhead and search speed: prints JSON.

* overhead: milliseconds per ``ask(P)`` + ``tell(P)`` round at population ``P`` (default 100), with an
  instant evaluator, on ``nb201`` and (if present) ``mbv3-small``, unconstrained and with a latency budget;
* speed: evaluations per second of the whole ``run_search`` loop (log writing, checkpoints included)
  with a LUT-like ``LatencyPredictor`` on ``mbv3-small`` (synthetic per-key costs), if
  ``edgenas.latency.predictor`` exists.

Usage: python bench/search_overhead.py [--population 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from edgenas.evaluate.base import Evaluator
from edgenas.search import DeviceTarget, Problem, SearchConfig, make_strategy, run_search, strategy_names
from edgenas.spaces import SPACES, get_space


class GeneSum(Evaluator):
    """An instant evaluator (a fixed weighted sum of genes) so only the strategy's cost is timed."""

    name, metric = "gene-sum", "weighted gene sum"

    def __init__(self, space):
        super().__init__(space)
        self.w = np.random.default_rng(0).random(space.dim)

    def evaluate(self, archs):
        return np.array([float(self.w @ self.space.to_genes(a)) for a in archs])


class KeyCost:
    """Latency model from per-key costs (used when the LUT predictor is absent)."""

    def __init__(self, space, seed=0):
        rng = np.random.default_rng(seed)
        self.space, self.vocab = space, space.key_vocab()
        self.cost = np.append(rng.uniform(0.05, 1.0, len(self.vocab)), 0.0)

    def predict_many(self, archs):
        g = np.array([self.space.to_genes(a) for a in archs])
        return self.cost[self.space.key_index_matrix(g)].sum(axis=1)

    def min_latency(self):
        return self.space.min_latency(dict(zip(self.vocab, self.cost[:-1])))


def lut_predictor(space, seed=0):
    """A LatencyPredictor over a synthetic LUT (random per-key medians), or None if absent."""
    try:
        from edgenas.latency.lut import EntryStats, Lut
        from edgenas.latency.predictor import LatencyPredictor
    except ImportError:
        return None
    rng = np.random.default_rng(seed)

    def stats(ms):
        return EntryStats(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms,
                          min_ms=ms, max_ms=ms)

    entries = {k: stats(float(rng.uniform(0.05, 1.0))) for k in space.key_vocab()}
    lut = Lut(device="synthetic", space=space.name, fingerprint={}, fingerprint_hash="0" * 64,
              runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=stats(0.01),
              entries=entries)
    return LatencyPredictor(lut, space)


def overhead(space, name, population, rounds, constrained):
    lat = KeyCost(space)
    devices = []
    if constrained:
        ms, _ = lat.min_latency()
        devices = [DeviceTarget("dev", lat, ms * 1.5)]
    problem = Problem(space, GeneSum(space), devices)
    opts = {"population": population} if "population" in make_strategy(name, space, np.random.default_rng(0)
                                                                         ).opts else {}
    if name in ("woa", "ri-iwoa"):
        opts["budget"] = population * (rounds + 1)
    s = make_strategy(name, space, np.random.default_rng(0), feasibility=problem if constrained else None,
                      **opts)
    times = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        archs = s.ask(population)
        t1 = time.perf_counter()
        res = [problem.to_result(r) for r in problem.evaluate(archs)]
        t2 = time.perf_counter()
        s.tell(archs, res)
        times.append((t1 - t0) + (time.perf_counter() - t2))
    return round(1000 * float(np.median(times[1:])), 2)  # first round (random init) excluded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--speed-evals", type=int, default=2000)
    args = ap.parse_args()
    out = {"population": args.population, "unit": "ms per ask(P)+tell(P) round, evaluation excluded",
           "overhead": {}, "speed": {}}
    spaces = ["nb201"] + (["mbv3-small"] if "mbv3-small" in SPACES or _has("mbv3-small") else [])
    for sp in spaces:
        space = get_space(sp)
        for constrained in (False, True):
            key = f"{sp}{' (latency budget)' if constrained else ''}"
            out["overhead"][key] = {n: overhead(space, n, args.population, args.rounds, constrained)
                                    for n in strategy_names()}
    if _has("mbv3-small"):
        space = get_space("mbv3-small")
        pred = lut_predictor(space)
        if pred is None:
            out["speed"] = "skipped: edgenas.latency.predictor not present"
        else:
            ms, _ = pred.min_latency()
            sample = [space.sample(np.random.default_rng(i)) for i in range(1000)]
            t0 = time.perf_counter()
            pred.predict_many(sample)
            out["predictor_ms_per_1000_archs"] = round(1000 * (time.perf_counter() - t0), 2)
            for name in strategy_names():
                problem = Problem(space, GeneSum(space), [DeviceTarget("synthetic", pred, ms * 1.5)])
                cfg = SearchConfig(space="mbv3-small", strategy=name, budget_evals=args.speed_evals, seed=0,
                                   population=args.population, devices=(("synthetic", ms * 1.5),),
                                   checkpoint_every=100)
                with tempfile.TemporaryDirectory() as d:
                    t0 = time.perf_counter()
                    run_search(cfg, problem, d)
                    out["speed"][name] = round(args.speed_evals / (time.perf_counter() - t0), 1)
            out["speed_unit"] = ("evaluations/s of run_search on mbv3-small, instant evaluator, LUT predictor "
                                 "as a constraint, log + checkpoints written")
    print(json.dumps(out, indent=2))


def _has(name: str) -> bool:
    try:
        get_space(name)
        return True
    except Exception:  # noqa: BLE001 - the space module is optional here
        return False


if __name__ == "__main__":
    main()
