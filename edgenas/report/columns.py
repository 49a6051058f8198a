"""A run's evaluations as columns: what the run and compare pages plot, one array per field, not one dict per record.

A report of a run of 100,000 evaluations held every record of ``evaluations.jsonl`` as parsed JSON (about 2 KB
each: 200 MB) to plot four numbers and a label of each. ``Columns`` keeps the evaluation number, feasibility and
wall time, every objective and latency as float arrays (NaN where a record has no finite value: no plot shows
those), and each record's architecture, equal ones shared (a long search repeats architectures: nb201 has
15,625). ``read_columns`` fills them in the one pass that checks the log (``run_files.tally_evaluations``), a
record at a time; ``Columns.from_records`` takes records already parsed (a DARTS run's epochs, the API's runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from edgenas.limits import is_finite
from edgenas.search.run_files import main_objective, tally_evaluations

#: architectures compared for sharing under one label (a label many records share, e.g. none, costs no more)
_SHARE_TRIES = 4


def arch_label(arch: Any) -> str:
    """An architecture's short text: an nb201 cell string, or an MobileNetV3's ``r= d= ks= e=``."""
    if not isinstance(arch, Mapping):
        return ""
    if "arch" in arch:
        return str(arch["arch"])
    return " ".join(f"{k}={arch[k]}" for k in ("r", "d", "ks", "e") if k in arch)


@dataclass(frozen=True)
class Columns:
    number: np.ndarray                   # int64, as logged
    feasible: np.ndarray                 # bool
    wall_s: np.ndarray                   # float64 (0 where a record has none)
    objectives: dict[str, np.ndarray]    # name -> float64, NaN where not a finite number
    latency_ms: dict[str, np.ndarray]    # device -> float64, NaN where not a finite number
    archs: list[Any]                     # each record's ``arch`` (equal ones: one object)
    labels: list[str]                    # ``arch_label`` of each (equal ones: one string)
    objective: str | None                # the first objective name of a record other than params and flops

    def __len__(self) -> int:
        return len(self.number)

    def objective_values(self, name: str) -> np.ndarray:
        return self.objectives.get(name, np.full(len(self), np.nan))

    def latencies(self, device: str) -> np.ndarray:
        return self.latency_ms.get(device, np.full(len(self), np.nan))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Columns:
        build = ColumnBuilder()
        for rec in records:
            build.add(rec)
        return build.done()


class ColumnBuilder:
    """Columns filled a record at a time (``add``), finished by ``done``."""

    def __init__(self) -> None:
        self.number: list[int] = []
        self.feasible: list[bool] = []
        self.wall_s: list[float] = []
        self.objectives: dict[str, list[float]] = {}
        self.latency_ms: dict[str, list[float]] = {}
        self.archs: list[Any] = []
        self.labels: list[str] = []
        self.objective: str | None = None
        self._shared: dict[str, list[tuple[Any, str]]] = {}

    @staticmethod
    def _put(cols: dict[str, list[float]], values: Any, n: int) -> None:
        for k, v in (values or {}).items():
            col = cols.get(k)
            if col is None:
                col = cols[k] = []
            if len(col) < n:   # a name the records before this one lack
                col.extend([math.nan] * (n - len(col)))
            col.append(float(v) if is_finite(v) else math.nan)

    def add(self, rec: Mapping[str, Any]) -> None:
        n = len(self.number)
        self.number.append(int(rec["number"]))
        self.feasible.append(bool(rec.get("feasible")))
        self.wall_s.append(float(rec.get("wall_s", 0.0)))
        objectives = rec.get("objectives", {})
        self._put(self.objectives, objectives, n)
        self._put(self.latency_ms, rec.get("latency_ms", {}), n)
        if self.objective is None:
            self.objective = main_objective(objectives or {})
        arch = rec.get("arch")
        label = arch_label(arch)
        bucket = self._shared.setdefault(label, [])
        for seen, seen_label in bucket:
            if seen == arch:
                arch, label = seen, seen_label
                break
        else:
            if len(bucket) < _SHARE_TRIES:
                bucket.append((arch, label))
        self.archs.append(arch)
        self.labels.append(label)

    def done(self) -> Columns:
        n = len(self.number)

        def column(values: list[float]) -> np.ndarray:
            return np.array(values + [math.nan] * (n - len(values)), dtype=float)

        return Columns(np.array(self.number, dtype=np.int64), np.array(self.feasible, dtype=bool),
                       np.array(self.wall_s, dtype=float), {k: column(v) for k, v in self.objectives.items()},
                       {k: column(v) for k, v in self.latency_ms.items()}, self.archs, self.labels, self.objective)


def read_columns(path: Path) -> Columns:
    """The columns of the evaluation log at ``path``, read and checked as ``read_evaluations`` reads it (the
    same errors), a record at a time."""
    build = ColumnBuilder()
    tally_evaluations(path, visit=build.add)
    return build.done()
