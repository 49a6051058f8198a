"""Synthetic latency tables for the DARTS tests (no profiling): each entry a single sample drawn, seeded, from
a uniform range of milliseconds."""

from __future__ import annotations

import numpy as np

from edgenas.latency.lut import EntryStats, Lut
from edgenas.spaces import get_space


def one_sample(ms: float) -> EntryStats:
    return EntryStats(n=1, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms, min_ms=ms, max_ms=ms)


def random_lut(space_name: str, seed: int, *, device: str = "t", high_ms: float = 2.0) -> Lut:
    """A table of ``space_name`` for ``device``: every block from 0.1 to ``high_ms`` ms, 0.05 ms overhead."""
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    return Lut(device=device, space=space.name, fingerprint={}, fingerprint_hash="0" * 64, runtime="onnxruntime",
               precision="fp32", threads=1, protocol={}, overhead=one_sample(0.05),
               entries={k: one_sample(float(rng.uniform(0.1, high_ms))) for k in space.key_vocab()}, created_at=0.0)
