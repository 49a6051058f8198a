"""Every store test runs against every implementation (Optuna's storage-test pattern)."""

from __future__ import annotations

import itertools

import pytest

from edgenas.store import InMemoryStore, JsonlStore, Measurement, SQLiteStore

STATS = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": 0.21, "mean_ms": 0.215, "std_ms": 0.01,
         "cov": 0.046, "p90_ms": 0.23, "p99_ms": 0.25, "min_ms": 0.2, "max_ms": 0.26, "stable": True,
         "total_s": 0.41}

_counter = itertools.count()


def make_measurement(device: str = "orin-nano", space: str = "mbv3-small", fp: str = "a" * 64,
                     median_ms: float = 5.0, **kw) -> Measurement:
    i = next(_counter)
    stats = dict(STATS, median_ms=median_ms, mean_ms=median_ms, min_ms=median_ms * 0.9,
                 max_ms=median_ms * 1.2, p90_ms=median_ms * 1.1, p99_ms=median_ms * 1.15)
    return Measurement(device=device, space=space, arch={"space": space, "schema": 1, "r": 160 + i % 5},
                       artifact_sha256=f"{i:064x}", runtime="onnxruntime", precision="fp32",
                       fingerprint_hash=fp, stats=stats, lut_fingerprint="b" * 64,
                       cold_start={"session_ms": 120.0, "first_run_ms": 9.5},
                       state={"temps_c": {"cpu": 41.5}, "clocks_mhz": {"gpu": 624}},
                       predicted_raw_ms=median_ms * 0.8, predicted_ms=median_ms * 0.95, **kw)


class StoreFactory:
    """Opens a store of one kind; ``reopen()`` gives a new handle on the same data."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind, self.tmp_path = kind, tmp_path
        self._memory = InMemoryStore() if kind == "memory" else None

    @property
    def path(self):
        return self.tmp_path / ("m.db" if self.kind == "sqlite" else "m.jsonl")

    def reopen(self):
        if self.kind == "memory":
            return self._memory  # the process is the storage: the same object is the same data
        return SQLiteStore(self.path) if self.kind == "sqlite" else JsonlStore(self.path)


@pytest.fixture(params=["memory", "sqlite", "jsonl"])
def factory(request, tmp_path) -> StoreFactory:
    return StoreFactory(request.param, tmp_path)


@pytest.fixture
def store(factory):
    return factory.reopen()


@pytest.fixture
def make():
    """The measurement factory, as a fixture (test modules cannot import conftest by name)."""
    return make_measurement
