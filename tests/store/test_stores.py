"""The MeasurementStore contract, run against every implementation (memory, the experiment database on
SQLite and on PostgreSQL, JSONL, the SQLite measurement file)."""

from __future__ import annotations

import multiprocessing as mp
import threading
import warnings

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.store import DbMeasurementStore, ExperimentDB, JsonlStore, SQLiteStore, open_store


def test_add_then_list_returns_equal_records(store, make):
    ms = [make(median_ms=1.0 + i) for i in range(5)]
    for m in ms:
        store.add(m)
    assert store.list() == ms  # equal records, insertion order
    assert store.get(ms[2].id) == ms[2]
    with pytest.raises(InputError, match="no measurement with id"):
        store.get("nope")


def test_adding_and_listing_warn_of_nothing(store, make):
    """A command that records a measurement prints no library warning (a table's key declared without its
    autoincrement had SQLAlchemy warn on every insert)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.add(make())
        store.list()
    assert [w for w in caught if not issubclass(w.category, ResourceWarning)] == []


def test_filters_and_count(store, make):
    store.add(make(device="a", space="mbv3-small", fp="1" * 64))
    store.add(make(device="a", space="nb201", fp="1" * 64))
    store.add(make(device="b", space="mbv3-small", fp="2" * 64))
    store.add(make(device="a", space="mbv3-small", fp="2" * 64))
    assert [m.device for m in store.list(device="b")] == ["b"]
    assert store.count(device="a") == 3
    assert store.count(space="mbv3-small") == 3
    assert store.count(device="a", space="mbv3-small") == 2
    assert store.count(device="a", space="mbv3-small", fingerprint_hash="2" * 64) == 1
    assert store.count(fingerprint_hash="1" * 64) == 2
    assert [(m.device, m.space) for m in store.list(fingerprint_hash="2" * 64)] == [("b", "mbv3-small"),
                                                                                 ("a", "mbv3-small")]
    assert store.count(device="zzz") == 0 and store.list(device="zzz") == []
    for kw in ({}, {"device": "a"}, {"space": "nb201"}, {"fingerprint_hash": "2" * 64}):
        assert store.count(**kw) == len(store.list(**kw))


def test_duplicate_id_rejected_and_store_unchanged(store, make):
    m = make()
    store.add(m)
    with pytest.raises(InputError, match="already stored"):
        store.add(make(id=m.id, median_ms=9.0))
    assert store.list() == [m]


def test_data_survives_reopening(factory, make):
    ms = [make(), make(device="other")]
    with factory.reopen() as s:
        for m in ms:
            s.add(m)
    again = factory.reopen()
    assert again.list() == ms and again.count(device="other") == 1


def test_concurrent_writers_from_threads(store, make):
    per, n_threads = 15, 6
    batches = [[make(device=f"d{t}") for _ in range(per)] for t in range(n_threads)]
    errors = []

    def write(batch):
        try:
            for m in batch:
                store.add(m)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = store.list()
    assert len(got) == per * n_threads and len({m.id for m in got}) == per * n_threads
    for t, batch in enumerate(batches):  # each writer's own records keep their order
        assert store.list(device=f"d{t}") == batch


def _proc_write(kind: str, where: str, tag: int, n: int) -> None:
    from edgenas.store.record import Measurement

    store = ExperimentDB(where).measurements if kind == "db" else SQLiteStore(where) if kind == "sqlite" \
        else JsonlStore(where)
    stats = {"n": 1, "median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.0, "cov": 0.0, "p90_ms": 1.0,
             "p99_ms": 1.0, "min_ms": 1.0, "max_ms": 1.0}
    for i in range(n):
        store.add(Measurement(device=f"p{tag}", space="s", arch={"space": "s", "i": i}, artifact_sha256="x",
                              runtime="onnxruntime", precision="fp32", fingerprint_hash="f", stats=stats))


def test_concurrent_writers_from_processes(factory):
    if factory.kind == "memory":
        pytest.skip("an in-memory store lives in one process; nothing to share across processes")
    factory.reopen()  # create the file / schema first, as open_store does
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_proc_write, args=(factory.kind, factory.url or str(factory.path), t, 20)) for t in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    store = factory.reopen()
    assert store.count() == 60
    for t in range(3):
        assert [m.arch["i"] for m in store.list(device=f"p{t}")] == list(range(20))


def test_open_store_default_is_the_experiment_db_in_the_project(tmp_path, make, no_env_db):
    project = Project(tmp_path)
    s = open_store(project)
    assert isinstance(s, DbMeasurementStore) and s.db.url == f"sqlite:///{tmp_path / '.edgenas' / 'edgenas.db'}"
    s.add(make())
    assert open_store(project).count() == 1
    assert isinstance(open_store(project, kind="jsonl"), JsonlStore)
    with pytest.raises(InputError, match="unknown measurement store kind 'csv'"):
        open_store(project, kind="csv")


def test_edgenas_db_env_var_picks_the_database(tmp_path, make, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("EDGENAS_DB", url)
    s = open_store(Project(tmp_path))
    s.add(make())
    assert s.db.url == url and (tmp_path / "elsewhere.db").exists()
    assert not (tmp_path / ".edgenas" / "edgenas.db").exists()
