"""Every store test runs against every implementation (Optuna's storage-test pattern): the experiment
database on SQLite and on a REAL PostgreSQL server the fixture starts itself, the in-memory store, the
JSONL journal and the SQLite measurement file of projects from before the experiment database."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from edgenas.store import ExperimentDB, InMemoryStore, JsonlStore, Measurement, SQLiteStore

from .pgserver import PgServer, pg_bin

STATS = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": 0.21, "mean_ms": 0.215, "std_ms": 0.01,
         "cov": 0.046, "p90_ms": 0.23, "p99_ms": 0.25, "min_ms": 0.2, "max_ms": 0.26, "stable": True,
         "total_s": 0.41}

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"

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


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the test session (skips with the reason when PostgreSQL is absent)."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql package)")
    server = PgServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A URL of a new, empty experiment database on each back end."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'edgenas.db'}"
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def db(db_url):
    handle = ExperimentDB(db_url)
    yield handle
    handle.close()


@pytest.fixture
def pg_url(pg_server):
    """A URL of a new, empty PostgreSQL database (what only a server has: advisory locks, dropped sessions)."""
    name = pg_server.new_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture
def pg_db(pg_url):
    handle = ExperimentDB(pg_url)
    yield handle
    handle.close()


class StoreFactory:
    """Opens a store of one kind; ``reopen()`` gives a new handle on the same data."""

    def __init__(self, kind: str, tmp_path, url: str | None = None) -> None:
        self.kind, self.tmp_path, self.url = kind, tmp_path, url
        self._memory = InMemoryStore() if kind == "memory" else None

    @property
    def path(self):
        return self.tmp_path / ("m.db" if self.kind == "sqlite" else "m.jsonl")

    def reopen(self):
        if self.kind == "memory":
            return self._memory  # the process is the storage: the same object is the same data
        if self.kind == "jsonl":
            return JsonlStore(self.path)
        if self.kind == "sqlite":
            return SQLiteStore(self.path)
        return ExperimentDB(self.url).measurements


@pytest.fixture(params=["memory", "db-sqlite", "db-postgresql", "jsonl", "sqlite"])
def factory(request, tmp_path) -> StoreFactory:
    if request.param == "db-sqlite":
        yield StoreFactory("db", tmp_path, f"sqlite:///{tmp_path / 'edgenas.db'}")
    elif request.param == "db-postgresql":
        server = request.getfixturevalue("pg_server")
        name = server.new_database()
        yield StoreFactory("db", tmp_path, server.url(name))
        server.drop_database(name)
    else:
        yield StoreFactory(request.param, tmp_path)


@pytest.fixture
def store(factory):
    return factory.reopen()


@pytest.fixture
def make():
    """The measurement factory, as a fixture (test modules cannot import conftest by name)."""
    return make_measurement


@pytest.fixture
def no_env_db(monkeypatch):
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    return os.environ
