"""Few-shot latency prediction for a device that has no LUT yet, from k whole-model measurements.

What is known about an architecture without measuring it on the target device: its latency on OTHER
reference devices, and simple descriptors of the architecture (operation counts). Latency across
devices is roughly multiplicative, so everything happens in log space:

* **ridge**: ``log y = c + w . z`` where ``z`` are the standardised log reference latencies and the
  descriptors; the regularisation ``alpha`` is picked by exact leave-one-out CV (ridge's hat-matrix
  shortcut) on the k points;
* **single**: the one reference device whose loglinear calibration (``edgenas.latency.calibration``,
  slope shrunk toward 1, offset only for 1-2 points) predicts the held-out points best;
* **additive** (issue 17): ``y = c + w . x`` in milliseconds on the raw reference latencies and
  descriptors - a per-operation cost model, which suits descriptors that count the operations a
  device actually runs (``graph_descriptors``: live and dead operations of a cell); its
  leave-one-out error is measured in log space too, so it competes with the others on equal terms.

``fit`` keeps whichever has the smaller leave-one-out error (ridge and additive need
``MIN_K_RIDGE`` points); nothing is tuned per column. ``to_dict``/``from_dict`` give a JSON record
(schema ``FEWSHOT_SCHEMA``); no pickle. With no reference device at all it falls back to ridge on the
descriptors or, below 3 points, the geometric mean.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.calibration import apply_calibration, fit_calibration
from edgenas.latency.fewshot_records import (
    reading_model, record_count, record_number, record_strings, record_vector,
)
from edgenas.latency.lut import MAX_MS, Calibration
from edgenas.limits import is_schema

MIN_K_RIDGE = 5
FEWSHOT_SCHEMA = 1
ALPHAS = tuple(float(a) for a in np.logspace(-4, 4, 33))


class FewShotPredictor:
    """``fit(features, y_ms)`` / ``predict(features) -> ms``; latency features are modelled in log."""

    def __init__(self, is_latency: Sequence[bool] | None = None,
                 feature_names: Sequence[str] | None = None, additive: bool = True) -> None:
        self.additive = additive  # False: the pre-issue-17 candidates only (ridge, single)
        self.is_latency = None if is_latency is None else np.asarray(is_latency, dtype=bool)
        self.feature_names = None if feature_names is None else list(feature_names)
        self.model: str = ""
        self.loo_mse: float = float("nan")
        self.alpha: float | None = None
        self.reference: int | None = None
        self._cal: Calibration | None = None

    # ------------------------------------------------------------------ design
    def _design(self, features) -> np.ndarray:
        X = np.asarray(features, dtype=float)
        if X.ndim != 2:
            raise InputError(f"features must be a 2-D array (n, F), got shape {X.shape}")
        lat = self.is_latency if self.is_latency is not None else np.ones(X.shape[1], dtype=bool)
        if lat.size != X.shape[1]:
            raise InputError(f"{X.shape[1]} feature columns but is_latency has {lat.size}")
        if not np.isfinite(X).all() or (X[:, lat] <= 0).any():
            raise InputError("features must be finite, and latency features > 0")
        Z = X.copy()
        Z[:, lat] = np.log(X[:, lat])
        return Z

    # ------------------------------------------------------------------ fit
    def fit(self, features_train, y_train) -> "FewShotPredictor":
        Z = self._design(features_train)
        y_ms = np.asarray(y_train, dtype=float).ravel()
        if y_ms.size != Z.shape[0] or y_ms.size == 0:
            raise InputError(f"need one target per row: {Z.shape[0]} rows, {y_ms.size} targets")
        if not np.isfinite(y_ms).all() or (y_ms <= 0).any():
            raise InputError("target latencies must be finite and > 0")
        X = np.asarray(features_train, dtype=float)
        y = np.log(y_ms)
        k = y.size
        lat = self.is_latency if self.is_latency is not None else np.ones(Z.shape[1], dtype=bool)
        candidates = []
        if lat.any():
            candidates.append(self._single_candidate(X[:, lat], y_ms, np.flatnonzero(lat)))
        if k >= MIN_K_RIDGE or (not lat.any() and k >= 3):
            candidates.append(self._ridge_candidate(Z, y))
        if self.additive and k >= MIN_K_RIDGE:
            candidates.append(self._ridge_candidate(X, y_ms, additive=True))
        if not candidates:
            self.model, self.loo_mse, self._mean = "mean", float("nan"), float(y.mean())
            return self
        best = min(candidates, key=lambda c: c["loo_mse"])
        self.model, self.loo_mse = best["model"], best["loo_mse"]
        for name in ("alpha", "reference"):
            setattr(self, name, best.get(name))
        self._cal, self._ridge, self._floor = best.get("cal"), best.get("ridge"), best.get("floor", 0.0)
        return self

    def _single_candidate(self, Xl: np.ndarray, y_ms: np.ndarray, cols: np.ndarray) -> dict:
        k = y_ms.size
        best = None
        for j in range(Xl.shape[1]):
            x = Xl[:, j]
            if k >= 2:
                err = [np.log(apply_calibration(fit_calibration(np.delete(x, i), np.delete(y_ms, i)),
                                                x[i:i + 1])[0] / y_ms[i]) for i in range(k)]
                mse = float(np.mean(np.square(err)))
            else:
                mse = float("inf")  # one point cannot rank references: keep the first
            if best is None or mse < best[0]:
                best = (mse, j)
        mse, j = best
        return {"model": "single", "loo_mse": mse, "reference": int(cols[j]),
                "cal": fit_calibration(Xl[:, j], y_ms)}

    def _ridge_candidate(self, Z: np.ndarray, y: np.ndarray, additive: bool = False) -> dict:
        """Ridge on standardised columns, alpha by exact leave-one-out; ``additive``: ``y`` in ms,
        the leave-one-out error still measured as a log ratio (predictions floored at ``floor``)."""
        k = y.size
        mu, sd = Z.mean(axis=0), Z.std(axis=0)
        keep = sd > 1e-12
        Zs = (Z[:, keep] - mu[keep]) / sd[keep]
        ybar = y.mean()
        yc = y - ybar
        U, s, Vt = np.linalg.svd(Zs, full_matrices=False)
        uty = U.T @ yc
        floor = float(y.min()) / 10.0 if additive else 0.0
        best = None
        for alpha in ALPHAS:
            d = s**2 / (s**2 + alpha)
            h = 1.0 / k + (U**2) @ d
            fitted = ybar + U @ (d * uty)
            loo = (y - fitted) / np.maximum(1.0 - h, 1e-9)
            if additive:
                loo = np.log(np.maximum(y - loo, floor) / y)
            mse = float(np.mean(loo**2))
            if best is None or mse < best[0]:
                best = (mse, alpha)
        mse, alpha = best
        w = Vt.T @ (s / (s**2 + alpha) * uty)
        return {"model": "additive" if additive else "ridge", "loo_mse": mse, "alpha": alpha,
                "ridge": (mu, sd, keep, w, ybar), "floor": floor}

    # ------------------------------------------------------------------ predict
    def predict(self, features) -> np.ndarray:
        if not self.model:
            raise InputError("FewShotPredictor.predict called before fit")
        Z = self._design(features)
        if self.model == "mean":
            return np.full(Z.shape[0], np.exp(self._mean))
        if self.model == "single":
            if self.reference >= Z.shape[1]:
                raise InputError(f"the model reads feature column {self.reference}, the features have {Z.shape[1]}")
            x = np.asarray(features, dtype=float)[:, self.reference]
            return apply_calibration(self._cal, x)
        mu, sd, keep, w, ybar = self._ridge
        if keep.size != Z.shape[1]:
            raise InputError(f"{Z.shape[1]} feature columns but the model takes {keep.size}")
        if self.model == "additive":
            X = np.asarray(features, dtype=float)
            return np.maximum(ybar + ((X[:, keep] - mu[keep]) / sd[keep]) @ w, self._floor)
        return np.exp(ybar + ((Z[:, keep] - mu[keep]) / sd[keep]) @ w)

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict:
        """A JSON-serialisable record of the fitted model (schema ``FEWSHOT_SCHEMA``)."""
        if not self.model:
            raise InputError("FewShotPredictor.to_dict called before fit")
        d: dict = {"schema": FEWSHOT_SCHEMA, "model": self.model, "loo_mse": _num_or_none(self.loo_mse),
                   "alpha": self.alpha, "reference": self.reference,
                   "is_latency": None if self.is_latency is None else [bool(b) for b in self.is_latency],
                   "feature_names": self.feature_names}
        if self.model == "mean":
            d["mean"] = float(self._mean)
        elif self.model == "single":
            d["calibration"] = self._cal.to_dict()
        else:
            mu, sd, keep, w, ybar = self._ridge
            d.update(mu=mu.tolist(), sd=sd.tolist(), keep=keep.tolist(), w=w.tolist(), ybar=float(ybar),
                     floor=float(self._floor))
        return d

    @classmethod
    def from_dict(cls, d) -> "FewShotPredictor":
        """Rebuild from ``to_dict``'s record; a malformed record is one ``InputError``."""
        with reading_model():
            if not is_schema(d["schema"], FEWSHOT_SCHEMA):
                raise InputError(f"unsupported few-shot model schema {d['schema']!r:.40}",
                                 hint=f"this edgenas reads schema {FEWSHOT_SCHEMA}")
            lat = d.get("is_latency")
            if lat is not None and (not isinstance(lat, list) or not all(isinstance(b, bool) for b in lat)):
                raise ValueError("is_latency must be a list of true/false")
            names = d.get("feature_names")
            m = cls(is_latency=lat, feature_names=None if names is None else record_strings(
                names, "feature_names", None if lat is None else len(lat)))
            m.model = str(d["model"])
            m.loo_mse = float("nan") if d.get("loo_mse") is None else record_number(d["loo_mse"], "loo_mse", low=0)
            m.alpha = None if d.get("alpha") is None else record_number(d["alpha"], "alpha", positive=True)
            m.reference = None if d.get("reference") is None else record_count(d["reference"], "reference")
            if m.model == "mean":
                m._mean = record_number(d["mean"], "mean")
            elif m.model == "single":
                m._cal = Calibration.from_dict(d["calibration"])
                if m.reference is None or (lat is not None and (m.reference >= len(lat) or not lat[m.reference])) \
                        or (names is not None and m.reference >= len(names)):
                    raise ValueError("single model without a reference latency column")
            elif m.model in ("ridge", "additive"):
                mu = record_vector(d["mu"], "mu")
                sd = record_vector(d["sd"], "sd", mu.size)
                keep = d["keep"]
                if not isinstance(keep, list) or len(keep) != mu.size or not all(isinstance(b, bool) for b in keep):
                    raise ValueError(f"keep must be a list of {mu.size} true/false")
                keep = np.array(keep, dtype=bool).reshape(mu.size)
                w = record_vector(d["w"], "w", int(keep.sum()))
                if (sd[keep] <= 0).any() or (lat is not None and len(lat) != mu.size):
                    raise ValueError("inconsistent ridge parameters")
                m._ridge = (mu, sd, keep, w, record_number(d["ybar"], "ybar"))
                m._floor = record_number(d.get("floor", 0.0), "floor", low=0)
            else:
                raise ValueError(f"unknown model {m.model[:40]!r}")
        return m

    def describe(self) -> dict:
        name = (self.feature_names[self.reference] if self.feature_names and self.reference is not None
                else self.reference)
        return {"model": self.model, "loo_rmse_log": float(np.sqrt(self.loo_mse)), "alpha": self.alpha,
                "reference": name}


def _num_or_none(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


# ---------------------------------------------------------------------- hardware tables
_FIXED = ("index", "arch")
#: reference devices a table may hold (``nb201_hw.csv`` has 5; every one costs a fit per candidate
#: configuration and about 0.4 MB in the few-shot record)
MAX_LATENCY_COLUMNS = 16
#: a plausible whole-model latency (ms): a value outside is left out like a missing one. It bounds what the
#: fits see, so that nothing in them overflows: 1e300 or 1e-320 ms is a broken table, not a device
MIN_MS = 1e-6  # with MAX_MS (lut.py): the latencies a table cell may hold


class HwTable:
    """A CSV like ``nb201_hw.csv``: ``index, arch``, accuracy columns, then any ``*_ms`` columns.

    Read by ``io.read_csv``, as a benchmark table for search is (a regular file of at most
    ``EDGENAS_MAX_INPUT_MB``, column names unique and non-empty); at most ``MAX_LATENCY_COLUMNS`` latency
    columns. A latency value that is empty, not a number, or outside ``MIN_MS``..``MAX_MS`` reads as
    missing (nan): rows missing a column are left out where it is used. ``sha256``: of the bytes read."""

    def __init__(self, path) -> None:
        from pathlib import Path

        from edgenas.io import read_csv

        self.path = Path(path)
        header, rows, self.sha256 = read_csv(self.path, "table")
        if not header or any(c not in header for c in _FIXED):
            raise InputError(f"{self.path}: expected a header with columns {', '.join(_FIXED)}, ...")
        self.ms_columns = [c for c in header if c.endswith("_ms")]
        if not self.ms_columns:
            raise InputError(f"{self.path}: no latency (*_ms) columns")
        if len(self.ms_columns) > MAX_LATENCY_COLUMNS:
            raise InputError(f"{self.path}: {len(self.ms_columns)} latency (*_ms) columns, more than the "
                             f"{MAX_LATENCY_COLUMNS} a table of reference devices may have",
                             hint=f"keep at most {MAX_LATENCY_COLUMNS}, e.g. cut -d, -f1,2,COLUMNS TABLE > smaller.csv")
        ia = header.index("arch")
        self.arch = [r[ia] if ia < len(r) else "" for r in rows]
        self.latency = {}
        for c in self.ms_columns:
            i = header.index(c)
            self.latency[c] = np.array([_latency(r[i]) if i < len(r) else np.nan for r in rows])
        counts, names = op_counts(self.arch)
        graph, gnames = graph_descriptors(self.arch)
        self.descriptors, self.descriptor_names = np.hstack([counts, graph]), names + gnames

    def column(self, name: str) -> np.ndarray:
        if name not in self.latency:
            raise InputError(f"{self.path}: no latency column '{name}'",
                             hint=f"latency columns: {', '.join(self.ms_columns)}")
        return self.latency[name]


def _latency(s: str) -> float:
    """A table's latency cell in ms; nan (missing) unless a number from ``MIN_MS`` to ``MAX_MS``."""
    try:
        v = float(s)
    except ValueError:
        return float("nan")
    return v if MIN_MS <= v <= MAX_MS else float("nan")


def op_counts(archs: Sequence[str], ops: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """How often each operation occurs in cell strings like ``|nor_conv_3x3~0|+|...|``.

    The columns are ``ops`` when given (fixed across calls), else the operations seen. Rows that do
    not parse give no descriptors at all (an empty ``(n, 0)`` matrix).
    """
    parsed = []
    for a in archs:
        row = [t.split("~")[0] for t in a.replace("+", "|").split("|") if "~" in t]
        if not row:
            return np.zeros((len(archs), 0)), []
        parsed.append(row)
    names = sorted(set(ops)) if ops is not None else sorted({o for p in parsed for o in p})
    index = {o: i for i, o in enumerate(names)}
    out = np.zeros((len(archs), len(names)))
    for r, p in enumerate(parsed):
        for o in p:
            if o in index:
                out[r, index[o]] += 1
    return out, [f"n_{o}" for o in names]


def _cell_edges(a: str) -> list[tuple[int, int, str]] | None:
    """``(src, dst, op)`` of a cell string ``|op~j|+|op~j|op~j|+...`` (group i is node i + 1)."""
    edges = []
    for i, group in enumerate(a.strip().strip("|").split("|+|")):
        for tok in group.split("|"):
            op, sep, src = tok.partition("~")
            # ASCII digits only, and few: int() refuses '²' (a digit to isdigit) and 5,000 digits with a ValueError
            if not sep or not (src.isascii() and src.isdigit()) or len(src) > 6 or int(src) > i:
                return None
            edges.append((int(src), i + 1, op))
    return edges or None


def graph_descriptors(archs: Sequence[str], ops: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Graph-aware counts of a cell: per operation, how many edges are live (on a path from the
    input node to the output node through non-``none`` edges) and how many are dead, and whether
    the output is reachable at all. Runtimes that prune unused branches (TFLite on the Raspberry
    Pi 4 and Pixel 3 of HW-NAS-Bench) pay only for live edges, others pay for all.

    The operations are ``ops`` when given (fixed columns across calls), else those seen. Rows that
    do not parse as cells give no descriptors (an empty ``(n, 0)`` matrix).
    """
    parsed = [_cell_edges(a) for a in archs]
    if not parsed or any(p is None for p in parsed):
        return np.zeros((len(archs), 0)), []
    seen = ops if ops is not None else {op for p in parsed for _, _, op in p}
    names = sorted(o for o in seen if o != "none")
    index = {o: i for i, o in enumerate(names)}
    out = np.zeros((len(archs), 2 * len(names) + 1))
    for r, edges in enumerate(parsed):
        last = max(d for _, d, _ in edges)
        fw, bw = {0}, {last}
        for s_, d, op in edges:  # edges are listed in topological order of their destination
            if op != "none" and s_ in fw:
                fw.add(d)
        for s_, d, op in reversed(edges):
            if op != "none" and d in bw:
                bw.add(s_)
        for s_, d, op in edges:
            if op in index:
                out[r, index[op] + (0 if (s_ in fw and d in bw) else len(names))] += 1
        out[r, -1] = float(last in fw)
    return out, [f"live_{o}" for o in names] + [f"dead_{o}" for o in names] + ["output_reachable"]


def cell_encoding(archs: Sequence[str], ops: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """A graph-aware one-hot encoding of cells: per edge position the operation on it, per edge position
    the operation if the edge is live (on an input-to-output path, see ``graph_descriptors``), and
    whether the output is reachable. Linear in it, a latency is a per-edge cost table that knows which
    edges a pruning runtime skips. Every cell must parse and have the same edges."""
    parsed = [_cell_edges(a) for a in archs]
    if not parsed or any(p is None or len(p) != len(parsed[0]) for p in parsed):
        raise InputError("cell_encoding needs cells of one shape, e.g. '|op~0|+|op~0|op~1|+|...|'")
    ops = list(ops)
    live_ops = [o for o in ops if o != "none"]
    n_e = len(parsed[0])
    out = np.zeros((len(archs), n_e * (len(ops) + len(live_ops)) + 1))
    base = n_e * len(ops)
    for r, edges in enumerate(parsed):
        last = max(d for _, d, _ in edges)
        fw, bw = {0}, {last}
        for s_, d, op in edges:
            if op != "none" and s_ in fw:
                fw.add(d)
        for s_, d, op in reversed(edges):
            if op != "none" and d in bw:
                bw.add(s_)
        for j, (s_, d, op) in enumerate(edges):
            if op not in ops:
                raise InputError(f"unknown operation {op!r} in a cell", hint=f"operations: {', '.join(ops)}")
            out[r, j * len(ops) + ops.index(op)] = 1.0
            if op != "none" and s_ in fw and d in bw:
                out[r, base + j * len(live_ops) + live_ops.index(op)] = 1.0
        out[r, -1] = float(last in fw)
    names = ([f"e{j}_{o}" for j in range(n_e) for o in ops] + [f"e{j}_live_{o}" for j in range(n_e) for o in live_ops]
             + ["output_reachable"])
    return out, names


def fewshot_from_table(table, column: str, k: int, seed: int) -> dict:
    """Fit on ``k`` rows drawn with ``seed``, predict all other rows; rank and error metrics.

    ``table`` is a CSV path or an ``HwTable``. The target column is never a feature; other latency
    columns with a missing or non-positive value are dropped, as are rows without a target value.
    ``mape`` is a fraction (0.05 = 5%); ``within10`` the share of predictions within 10%.
    """
    from scipy.stats import kendalltau, spearmanr

    t = table if isinstance(table, HwTable) else HwTable(table)
    y = t.column(column)
    rows = np.flatnonzero(np.isfinite(y) & (y > 0))
    refs = [c for c in t.ms_columns if c != column
            and np.all(np.isfinite(t.latency[c][rows]) & (t.latency[c][rows] > 0))]
    X = np.column_stack([t.latency[c][rows] for c in refs] + [t.descriptors[rows]]) if (
        refs or t.descriptors.shape[1]) else np.zeros((rows.size, 0))
    names = refs + t.descriptor_names
    if X.shape[1] == 0:
        raise InputError(f"{t.path}: nothing to predict '{column}' from (no other latency column, "
                         "no parseable arch strings)")
    if not 1 <= k < rows.size:
        raise InputError(f"k must be between 1 and {rows.size - 1}, got {k}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rows.size)
    train, test = perm[:k], perm[k:]
    model = FewShotPredictor(is_latency=[True] * len(refs) + [False] * len(t.descriptor_names),
                             feature_names=names).fit(X[train], y[rows][train])
    pred, meas = model.predict(X[test]), y[rows][test]
    rel = np.abs(pred / meas - 1.0)
    d = model.describe()
    return {
        "column": column, "k": int(k), "seed": int(seed), "n_test": int(test.size),
        "spearman": float(spearmanr(pred, meas).statistic),
        "kendall": float(kendalltau(pred, meas).statistic),
        "within10": float(np.mean(rel <= 0.10)), "mape": float(np.mean(rel)),
        "model": d["model"], "reference": d["reference"], "alpha": d["alpha"],
        "loo_rmse_log": d["loo_rmse_log"],
        "features": names if d["model"] == "ridge" else ([d["reference"]] if d["reference"] else []),
    }
