"""Few-shot latency from k measurements, robust version (issue 17): an ensemble and a choice of which k.

``FewShotEnsemble`` fits three ``FewShotPredictor`` members on column subsets of the same features
and predicts their geometric mean:

* **all**: every column (reference-device latencies and descriptors), the member picks its own model
  (ridge, single reference, additive) by leave-one-out error;
* **references**: the other devices' latencies only (a hardware embedding: the new device as a
  calibrated combination of devices already measured);
* **graph**: an additive per-operation cost model on graph-aware descriptors (live and dead
  operations of the cell, see ``graph_descriptors``), which no other device's quirks enter.

Picking one model by leave-one-out error on 20 noisy points is itself noisy (on the Raspberry Pi 4
of ``nb201_hw.csv`` the pick alone swings within-10% between 0.29 and 0.53 over seeds); the geometric
mean trades a little on the best seeds for much less on the worst.

``select_stratified`` chooses which architectures to measure: ``k`` evenly spaced quantiles of a
cheap latency score known for every candidate (the mean log latency on the reference devices, or a
LUT/FLOPs proxy), each jittered within its stratum by a seeded generator, so the k measurements span
the range the model must cover instead of clustering where random draws fall.

Everything serialises to JSON (``to_dict``/``from_dict``); no pickle. ``device add --fewshot`` now
fits ``fewshot_meta.MetaFewShot`` (meta-learned on the reference devices); records of this ensemble
still load (``fewshot_model.REGRESSORS``), and ``bench/fewshot_lodo.py`` keeps it as a baseline.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.fewshot import MIN_K_RIDGE, FewShotPredictor
from edgenas.latency.fewshot_records import reading_model, record_count, record_strings
from edgenas.limits import is_schema

ENSEMBLE_SCHEMA = 1


class FewShotEnsemble:
    """Geometric mean of ``FewShotPredictor`` members fitted on column subsets of one feature matrix."""

    def __init__(self, is_latency: Sequence[bool], feature_names: Sequence[str] | None = None,
                 graph_columns: Sequence[int] = ()) -> None:
        self.is_latency = np.asarray(is_latency, dtype=bool)
        self.feature_names = None if feature_names is None else list(feature_names)
        if self.feature_names is not None and len(self.feature_names) != self.is_latency.size:
            raise InputError(f"{len(self.feature_names)} feature names for {self.is_latency.size} columns")
        self.graph_columns = [int(c) for c in graph_columns]
        if any(not 0 <= c < self.is_latency.size or self.is_latency[c] for c in self.graph_columns):
            raise InputError("graph columns must be descriptor (non-latency) columns of the features")
        self.members: list[tuple[str, list[int], FewShotPredictor]] = []

    def _subsets(self, k: int) -> list[tuple[str, list[int]]]:
        n = self.is_latency.size
        subsets = [("all", list(range(n)))]
        lat = [int(c) for c in np.flatnonzero(self.is_latency)]
        if lat and len(lat) < n:
            subsets.append(("references", lat))
        if self.graph_columns and k >= MIN_K_RIDGE:
            subsets.append(("graph", list(self.graph_columns)))
        return subsets

    def fit(self, features, y_ms) -> "FewShotEnsemble":
        X = np.asarray(features, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.is_latency.size:
            raise InputError(f"features must have shape (k, {self.is_latency.size}), got {X.shape}")
        y = np.asarray(y_ms, dtype=float).ravel()
        self.members = []
        for name, cols in self._subsets(len(y)):
            names = None if self.feature_names is None else [self.feature_names[c] for c in cols]
            m = FewShotPredictor(is_latency=self.is_latency[cols], feature_names=names).fit(X[:, cols], y)
            self.members.append((name, cols, m))
        return self

    def predict(self, features) -> np.ndarray:
        if not self.members:
            raise InputError("FewShotEnsemble.predict called before fit")
        X = np.asarray(features, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.is_latency.size:
            raise InputError(f"features must have shape (n, {self.is_latency.size}), got {X.shape}")
        logs = [np.log(m.predict(X[:, cols])) for _, cols, m in self.members]
        return np.exp(np.mean(logs, axis=0))

    def describe(self) -> dict:
        return {"model": "ensemble", "members": {name: m.describe() for name, _, m in self.members}}

    def to_dict(self) -> dict:
        if not self.members:
            raise InputError("FewShotEnsemble.to_dict called before fit")
        return {"schema": ENSEMBLE_SCHEMA, "kind": "fewshot-ensemble",
                "is_latency": [bool(b) for b in self.is_latency], "feature_names": self.feature_names,
                "graph_columns": self.graph_columns,
                "members": [{"name": n, "columns": cols, "model": m.to_dict()} for n, cols, m in self.members]}

    @classmethod
    def from_dict(cls, d) -> "FewShotEnsemble":
        with reading_model():
            if not is_schema(d["schema"], ENSEMBLE_SCHEMA) or d.get("kind") != "fewshot-ensemble":
                raise InputError(f"not a few-shot ensemble of schema {ENSEMBLE_SCHEMA} "
                                 f"(schema={d['schema']!r:.40}, kind={d.get('kind')!r:.40})")
            lat, names, graph = d["is_latency"], d.get("feature_names"), d.get("graph_columns", [])
            if not isinstance(lat, list) or not all(isinstance(b, bool) for b in lat):
                raise ValueError("is_latency must be a list of true/false")
            if not isinstance(graph, list) or not isinstance(d["members"], list):
                raise ValueError("graph_columns and members must be lists")
            e = cls(lat, None if names is None else record_strings(names, "feature_names"),
                    [record_count(c, "a graph column") for c in graph])
            n = e.is_latency.size
            for mem in d["members"]:
                if not isinstance(mem, dict) or not isinstance(mem.get("name"), str) \
                        or not isinstance(mem.get("columns"), list):
                    raise ValueError("a member must have a name and columns")
                cols = [record_count(c, f"a column of member {mem['name'][:40]!r}") for c in mem["columns"]]
                if not cols or any(not 0 <= c < n for c in cols):
                    raise ValueError(f"member {mem['name'][:40]!r} has columns outside 0..{n - 1}")
                m = FewShotPredictor.from_dict(mem["model"])
                if m.is_latency is None or m.is_latency.size != len(cols) \
                        or not np.array_equal(m.is_latency, e.is_latency[cols]):
                    raise ValueError(f"member {mem['name'][:40]!r}: its latency flags do not match its columns")
                e.members.append((mem["name"], cols, m))
            if not e.members:
                raise ValueError("no members")
        return e


def select_stratified(score, k: int, seed: int) -> np.ndarray:
    """Indices of ``k`` candidates spread over the range of ``score`` (one per quantile stratum).

    The candidates are sorted by score and cut into ``k`` equal strata; one index is drawn from each
    (uniformly, with ``seed``). Raises ``InputError`` unless ``1 <= k <= len(score)``.
    """
    s = np.asarray(score, dtype=float).ravel()
    if not 1 <= k <= s.size:
        raise InputError(f"cannot choose {k} of {s.size} candidates", hint=f"k must be 1..{s.size}")
    if not np.isfinite(s).all():
        raise InputError("selection scores must be finite")
    order = np.argsort(s, kind="stable")
    edges = np.linspace(0, s.size, k + 1).round().astype(int)
    rng = np.random.default_rng(seed)
    return np.array([order[rng.integers(lo, hi)] for lo, hi in zip(edges[:-1], edges[1:])], dtype=np.int64)
