"""``open_db``, ``open_store``, ``check_db_url`` and ``import_legacy_measurements`` (``edgenas.store``) on real
SQLite files: which database each opens, what a reader creates (nothing), what an import copies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.store import (DatabaseError, DbMeasurementStore, ExperimentDB, InMemoryStore, JsonlStore, SQLiteStore,
                           check_db_url, import_legacy_measurements, open_db, open_store)
from edgenas.store import db as dbmod


def _fds_on(path: Path) -> int:
    """How many of this process's descriptors are open on ``path`` (or its -wal / -shm files)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(path))
        except OSError:
            pass
    return n


@pytest.fixture
def elsewhere(tmp_path, monkeypatch, no_env_db):
    """Another project as the default one (``$EDGENAS_PROJECT``, the working folder): a project given must win."""
    other = tmp_path / "default-project"
    other.mkdir()
    monkeypatch.setenv("EDGENAS_PROJECT", str(other))
    monkeypatch.chdir(other)
    return other


def test_open_db_opens_the_given_projects_database(tmp_path, elsewhere, make):
    project = Project(tmp_path / "p")
    with open_db(None, project) as db:
        assert db.url == f"sqlite:///{project.state_dir / 'edgenas.db'}"
        db.measurements.add(make())
    with open_db(None, project, readonly=True) as db:
        assert db.url == f"sqlite:///{project.state_dir / 'edgenas.db'}" and db.measurements.count() == 1
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("folder", ["what?", "100%41"])
def test_a_project_in_a_folder_whose_name_a_url_would_read_otherwise_keeps_its_database_inside(tmp_path, no_env_db,
                                                                                              make, folder):
    """The project's URL was ``sqlite:///`` + its path as it is: in a folder "what?" the database was the file
    "what" beside it (the rest read as the URL's query), in "100%41" it was made in a new folder "100A"."""
    root = tmp_path / folder / "proj"
    root.mkdir(parents=True)
    with open_db(None, Project(root)) as db:
        db.measurements.add(make())
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]
    assert (root / ".edgenas" / "edgenas.db").is_file() and dbmod.database_exists(Project(root))
    with open_db(None, Project(root), readonly=True) as db:
        assert len(db.measurements.list()) == 1


def test_a_reader_of_a_project_without_a_database_gets_an_empty_one_and_nothing_is_made(tmp_path, elsewhere):
    project = Project(tmp_path / "p")
    with open_db(None, project, readonly=True) as db:
        assert db.measurements.list() == [] and db.revision() is not None  # an empty, migrated one in memory
        assert db.url == "sqlite://" and db.where == f"sqlite:///{project.state_dir / 'edgenas.db'}"
    assert not (tmp_path / "p").exists() and list(elsewhere.iterdir()) == []


def test_a_reader_of_an_empty_database_file_gets_an_empty_one_and_lets_go_of_the_file(tmp_path, no_env_db):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    before = _fds_on(path)
    with open_db(f"sqlite:///{path}", Project(tmp_path), readonly=True) as db:
        assert db.url == "sqlite://" and db.where == f"sqlite:///{path}" and db.measurements.list() == []
        assert _fds_on(path) == before  # the handle on the file was closed, not kept open by the stand-in
    assert path.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_a_reader_of_a_migrated_database_reads_it_and_migrates_nothing(tmp_path, no_env_db, make):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with ExperimentDB(url) as db:
        m = make()
        db.measurements.add(m)
    with open_db(url, readonly=True) as db:
        assert db.url == url and db.opened_revision == "0001" and db.measurements.list() == [m]


@pytest.mark.parametrize("readonly", [False, True])
def test_an_in_memory_url_is_refused_by_every_opener(tmp_path, no_env_db, monkeypatch, readonly):
    with pytest.raises(DatabaseError, match="'sqlite://' is an in-memory database"):
        open_db("sqlite://", Project(tmp_path), readonly=readonly)
    with pytest.raises(DatabaseError, match="in-memory database"):
        check_db_url("sqlite:///:memory:")
    monkeypatch.setenv("EDGENAS_DB", "sqlite://")
    with pytest.raises(DatabaseError, match="in-memory database"):
        open_db(None, Project(tmp_path), readonly=readonly)
    with pytest.raises(DatabaseError, match="in-memory database"):
        check_db_url()
    assert list(tmp_path.iterdir()) == []


def test_check_db_url_checks_the_environments_url_too(tmp_path, monkeypatch, no_env_db):
    check_db_url()  # nothing given: the project's own database, made when it is first opened
    monkeypatch.setenv("EDGENAS_DB", f"sqlite:///{tmp_path}/no/such/x.db")
    with pytest.raises(DatabaseError, match=f"the folder {tmp_path}/no/such does not exist"):
        check_db_url()
    check_db_url(f"sqlite:///{tmp_path}/given.db")  # a URL given wins over the environment's
    with pytest.raises(DatabaseError, match="use sqlite:///PATH"):
        check_db_url("nonsense://x")
    assert list(tmp_path.iterdir()) == []


def test_each_store_kind_is_its_own_file_of_the_given_project(tmp_path, elsewhere, make):
    project = Project(tmp_path / "p")
    sq = open_store(project, kind="sqlite")
    assert isinstance(sq, SQLiteStore) and (project.measurements_dir / "edgenas.db").is_file()
    js = open_store(project, kind="jsonl")
    js.add(make())
    assert isinstance(js, JsonlStore) and (project.measurements_dir / "measurements.jsonl").is_file()
    mem = open_store(project, kind="memory")
    assert isinstance(mem, InMemoryStore) and mem.list() == [] and mem is not open_store(project, kind="memory")
    db = open_store(project, kind="db", url=f"sqlite:///{tmp_path / 'given.db'}")
    assert isinstance(db, DbMeasurementStore) and db.db.url == f"sqlite:///{tmp_path / 'given.db'}"
    with pytest.raises(InputError, match="unknown measurement store kind 'DB'") as info:
        open_store(project, kind="DB")
    assert info.value.hint == "known: db, sqlite, jsonl, memory"
    assert list(elsewhere.iterdir()) == []


def test_legacy_measurements_of_both_files_are_imported_once_each(tmp_path, make, no_env_db):
    project = Project(tmp_path)
    a, b, c, d = make(), make(), make(), make()
    for m in (a, b):
        open_store(project, kind="sqlite").add(m)
    for m in (b, c, d):  # b in both files: imported once
        open_store(project, kind="jsonl").add(m)
    with ExperimentDB(project=project) as db:
        db.measurements.add(d)  # already in the database: not imported again
        assert import_legacy_measurements(db, project) == 3
        assert db.measurements.list() == [d, a, b, c]
        assert import_legacy_measurements(db, project) == 0


@pytest.mark.parametrize("only", ["sqlite", "jsonl"])
def test_legacy_measurements_of_either_file_alone_are_imported(tmp_path, make, no_env_db, only):
    project = Project(tmp_path)
    ms = [make(), make()]
    for m in ms:
        open_store(project, kind=only).add(m)
    with ExperimentDB(project=project) as db:
        assert import_legacy_measurements(db, project) == 2 and db.measurements.list() == ms


def test_no_legacy_file_imports_nothing_and_makes_none(tmp_path, no_env_db):
    project = Project(tmp_path)
    with ExperimentDB(project=project) as db:
        assert import_legacy_measurements(db, project) == 0
    assert not project.measurements_dir.exists()


def test_a_reader_of_a_fresh_server_database_lets_go_of_its_connection(pg_url):
    """A fresh (empty) PostgreSQL database: the reader gets the empty stand-in, and the handle that found it empty
    is closed, not left to the garbage collector with its server connection (``edgenas serve`` opens one a
    request)."""
    import gc
    import warnings

    gc.collect()  # an earlier test's unreachable connections warn here, not below (a CI run saw two)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_db(pg_url, readonly=True) as db:
            assert db.url == "sqlite://" and db.measurements.list() == []
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
