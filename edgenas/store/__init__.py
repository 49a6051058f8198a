"""The experiment database: measurements of deployed models (SQLite by default).

``open_store(project)`` opens ``<project>/measurements/edgenas.db``; ``kind="jsonl"`` opens the
journal ``<project>/measurements/measurements.jsonl`` instead and ``kind="memory"`` a throw-away store.
"""

from __future__ import annotations

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.store.base import InMemoryStore, MeasurementStore
from edgenas.store.jsonl import JsonlStore
from edgenas.store.record import MEASUREMENT_SCHEMA, Measurement, new_measurement_id
from edgenas.store.sqlite import SQLiteStore

STORE_KINDS = ("sqlite", "jsonl", "memory")

__all__ = ["InMemoryStore", "JsonlStore", "MEASUREMENT_SCHEMA", "Measurement", "MeasurementStore",
           "SQLiteStore", "STORE_KINDS", "new_measurement_id", "open_store"]


def open_store(project: Project | None = None, kind: str = "sqlite") -> MeasurementStore:
    """The project's measurement store (``Project.default()`` when ``project`` is None)."""
    project = project or Project.default()
    if kind == "sqlite":
        return SQLiteStore(project.measurements_dir / "edgenas.db")
    if kind == "jsonl":
        return JsonlStore(project.measurements_dir / "measurements.jsonl")
    if kind == "memory":
        return InMemoryStore()
    raise InputError(f"unknown measurement store kind '{kind}'", hint=f"known: {', '.join(STORE_KINDS)}")
