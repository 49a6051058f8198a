"""The experiment database (SQLAlchemy + Alembic; SQLite by default, PostgreSQL by URL).

``open_db(url, project)`` opens it (``--db`` / ``$EDGENAS_DB`` / ``.edgenas/edgenas.db``); search runs
are in ``edgenas.store.runs``; ``open_store(project)`` is its measurement store. ``kind="jsonl"``
opens the journal ``<project>/measurements/measurements.jsonl`` instead, ``kind="memory"`` a
throw-away store, and ``kind="sqlite"`` the measurement file of edgenas before the experiment
database (``<project>/measurements/edgenas.db``; ``edgenas db upgrade`` imports it).
"""

from __future__ import annotations

import os

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.store.base import InMemoryStore, MeasurementStore
from edgenas.store.db import DatabaseError
from edgenas.store.experiment import DbMeasurementStore, ExperimentDB
from edgenas.store.jsonl import JsonlStore
from edgenas.store.record import MEASUREMENT_SCHEMA, Measurement, new_measurement_id
from edgenas.store.sqlite import SQLiteStore

STORE_KINDS = ("db", "sqlite", "jsonl", "memory")

__all__ = ["DatabaseError", "DbMeasurementStore", "check_db_url", "ExperimentDB", "InMemoryStore", "JsonlStore",
           "MEASUREMENT_SCHEMA", "Measurement", "MeasurementStore", "SQLiteStore", "STORE_KINDS",
           "import_legacy_measurements", "new_measurement_id", "open_db", "open_store"]


def open_db(url: str | None = None, project: Project | None = None, *, readonly: bool = False) -> ExperimentDB:
    """The experiment database (migrated on first use of a fresh one). ``readonly`` (for commands that only
    read it): nothing is created or migrated; where there is no database yet, or a fresh (empty) one, an
    empty one in memory stands in for it."""
    from edgenas.store import db as dbmod

    project = project or Project.default()
    dbmod.refuse_in_memory(url)
    if not readonly:
        return ExperimentDB(url, project)
    dbmod.check_driver(url)   # no file at the path is an empty database, but not for a driver that does not exist
    if dbmod.database_exists(project, url):
        handle = ExperimentDB(url, project, migrate=False, readonly=True)
        if handle.opened_revision is not None:
            return handle
        handle.close()
    empty = ExperimentDB("sqlite://", project)
    empty.where = dbmod.describe(dbmod.resolve_url(url, project))  # messages name the database it would be
    return empty


def check_db_url(url: str | None = None, project: Project | None = None) -> None:
    """Refuse, without creating or changing anything, a database URL (``url`` or ``$EDGENAS_DB``) that opening
    would refuse, an SQLite file (``project``'s by default) this process cannot write, and a database that
    exists but cannot be used (damaged, another application's, another schema revision: opened read-only):
    a command that measures on a device checks it first (a deploy measured for minutes, then refused the
    URL, found the database read-only or damaged, and kept nothing)."""
    from edgenas.store import db as dbmod

    project = project or Project.default()
    dbmod.refuse_in_memory(url)
    given = url or os.environ.get(dbmod.ENV_VAR)
    if given:
        dbmod.create_engine(given).dispose()
    dbmod.check_writable(dbmod.resolve_url(url, project))
    if dbmod.database_exists(project, url):
        open_db(url, project, readonly=True).close()


def open_store(project: Project | None = None, kind: str = "db", url: str | None = None) -> MeasurementStore:
    """The project's measurement store (``Project.default()`` when ``project`` is None)."""
    project = project or Project.default()
    if kind == "db":
        return open_db(url, project).measurements
    if kind == "sqlite":
        return SQLiteStore(project.measurements_dir / "edgenas.db")
    if kind == "jsonl":
        return JsonlStore(project.measurements_dir / "measurements.jsonl")
    if kind == "memory":
        return InMemoryStore()
    raise InputError(f"unknown measurement store kind '{kind}'", hint=f"known: {', '.join(STORE_KINDS)}")


def import_legacy_measurements(db: ExperimentDB, project: Project) -> int:
    """Copy measurements from the pre-database files of ``project`` into ``db`` (those not there yet)."""
    sources: list[MeasurementStore] = []
    if (project.measurements_dir / "edgenas.db").exists():
        sources.append(SQLiteStore(project.measurements_dir / "edgenas.db"))
    if (project.measurements_dir / "measurements.jsonl").exists():
        sources.append(JsonlStore(project.measurements_dir / "measurements.jsonl"))
    store = db.measurements
    have = {m.id for m in store.list()}
    n = 0
    for src in sources:
        for m in src.list():
            if m.id not in have:
                store.add(m)
                have.add(m.id)
                n += 1
    return n
