"""Few-shot references from a table of other devices' whole-model latencies (issue 17, part 1).

A fleet LUT is additive (a cost per block), so a few-shot model whose references are LUTs cannot
predict what is not: on NAS-Bench-201 the Raspberry Pi 4's own per-edge table, fitted on every cell,
is within +-10% for 56.5% of them where trees on 5,000 of its cells reach 62%. A table of other
devices' measured cells (``nb201_hw.csv``: ``index, arch, ..., *_ms``) has that part, and the ARM
devices share it (their smoothed parts correlate 0.95; bench/RESULTS.md). ``TableReferences`` turns
each ``*_ms`` column into a reference in two parts, over every architecture of the space:

* **additive**: the column's own per-edge least squares on ``cell_encoding`` (what a LUT of that
  device would predict, in ms);
* **non-additive**: log(measured / additive) smoothed by gradient-boosted trees on one-hot edges
  (scikit-learn ``HistGradientBoostingRegressor``, at most 300 iterations: over 10,000 rows, as in the whole
  NAS-Bench-201 table, scikit-learn's default early stopping holds 10% of them out and may stop sooner),
  fitted on that column's rows.

``TableCorrected`` is the new device's model: ``MetaFewShot`` on the additive parts (and the
descriptors) times ``exp(sum_j w_j r_j)``, where ``r_j`` are the non-additive parts; the additive model
and ``w`` (ridge on the log ratio) are fitted in turn on the measured points, three times each, both
with the configuration's loss (Huber's by default, ``fewshot_meta.huber_irls``). With a
``plain_config`` its prediction is the geometric mean of that corrected model and a plain
``MetaFewShot`` on the same points, each with the configuration meta-learned for it: over 20 seeds of
leave one device out on ``nb201_hw.csv`` (squared loss) the mean share within +-10% rose in 13 of 15 (device, k)
cells, by up to 0.024, and fell by at most 0.003 (bench/RESULTS.md); the configuration choice is
fragile, and two models configured apart hedge it. With ``anchor`` (what ``device add --table`` fits)
that prediction is averaged again (geometric mean) with the nearest reference's ``Anchor``
(``fewshot_anchor``): its smoothed latency (log additive plus non-additive part) times a correction on
the descriptors, the reference and the shrinkage chosen from the measured points alone (from
``fewshot_anchor.MIN_LOO`` points on; below, none), and the correction weights ``w`` are shrunk toward 1
on that reference instead of 0 (``_correction_prior``). The inner tasks that choose the configurations
fit the model without either.

Both are JSON (no pickle): the references store both parts for every architecture of the space (a
dense array over its gene grid, so a table that misses cells still serves them) and the table's own
values (the targets on which the configuration is meta-learned, again at every refit), the model its
``MetaFewShot`` records, ``w`` and the anchor's record. Only the NAS-Bench-201 space (cells as strings) is supported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.fewshot import MAX_LATENCY_COLUMNS, MAX_MS, MIN_MS, HwTable, cell_encoding
from edgenas.latency.fewshot_records import (
    reading_model, record_count, record_strings, record_table, record_vector,
)
from edgenas.latency.fewshot_anchor import MIN_LOO as ANCHOR_MIN_K, Anchor
from edgenas.latency.fewshot_meta import DEFAULT, MIN_K, MetaConfig, MetaFewShot, huber_irls
from edgenas.limits import is_schema

TABLE_SCHEMA = 1
_COLUMN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}_ms\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
MIN_ROWS = 50  # distinct cells with every column measured, at least (a cell given twice counts once)
TREE_ITERATIONS = 300
RIDGE = 0.05  # on the correction weights
ROUNDS = 3  # fits of the additive model and of the correction, each
#: the largest non-additive part (a log ratio) a record may hold: e^100 is far past MAX_MS / MIN_MS (e^30), and
#: a built part stays within about 40; more overflows the fits of a refit that reads the record
MAX_LOG_RATIO = 100.0


def _space_ops(space: Any) -> tuple[str, ...]:
    if space.name != "nb201":
        raise InputError(f"a latency table can serve as few-shot references for the nb201 space only, "
                         f"not '{space.name}'", hint="use --space nb201, or leave out --table")
    from edgenas.spaces.nb201 import OPS

    return OPS


def _sizes(space: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in space.gene_sizes())


def _rows(space: Any, archs: Sequence[Any]) -> np.ndarray:
    """The row of each of ``archs`` in the references' arrays: its place in gene order (``all_archs``)."""
    if not len(archs):
        return np.zeros(0, dtype=np.int64)
    return np.ravel_multi_index(space.genes_matrix(list(archs)).T, _sizes(space))


@dataclass(frozen=True)
class TableReferences:
    """The ``*_ms`` columns of a latency table as references: additive and non-additive parts, per
    architecture of the space (rows in gene order), ``columns`` in feature order."""

    space: str
    source: str  # the table's file name, for messages
    sha256: str  # of the table file
    columns: tuple[str, ...]
    rows: int  # table rows used (every column measured; a cell given twice counts twice)
    additive: np.ndarray  # (architectures, columns), ms
    nonadditive: np.ndarray  # (architectures, columns), log ratio
    measured: np.ndarray  # (architectures, columns), ms as the table has it, nan for cells it lacks

    @classmethod
    def build(cls, path: str | Path, space: Any, columns: Sequence[str] | None = None) -> "TableReferences":
        """From the table at ``path``: every ``*_ms`` column, or only ``columns``. Rows where one of them
        is missing, or not a latency from ``MIN_MS`` to ``MAX_MS`` ms (``HwTable``), are left out; a row whose
        ``arch`` is not a cell of ``space`` is an error."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        ops = _space_ops(space)
        table = HwTable(path)
        cols = list(table.ms_columns if columns is None else columns)
        _check_names(table.path.name, cols)
        unknown = [c for c in cols if c not in table.ms_columns]
        if not cols or unknown:
            raise InputError(f"{table.path.name}: no latency column {', '.join(unknown)}" if unknown
                             else f"{table.path.name}: no latency columns to use",
                             hint=f"its latency columns: {', '.join(table.ms_columns)}")
        twice = [c for c in cols if cols.count(c) > 1]
        if twice:  # the record would hold it twice, and no reading accepts that
            raise InputError(f"{table.path.name}: latency column {twice[0]} given twice", hint="name each column once")
        cells = []
        for i, text in enumerate(table.arch):
            try:
                cells.append(space.from_string(text))
            except (InputError, ValueError):
                raise InputError(f"{table.path.name}: row {i + 1}: {text[:80]!r} is not a {space.name} cell",
                                 hint="arch must read like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'") from None
        Y = np.column_stack([table.latency[c] for c in cols])
        ok = np.isfinite(Y).all(axis=1) & (Y > 0).all(axis=1)
        kept = _rows(space, [c for c, keep in zip(cells, ok) if keep])
        distinct = len(np.unique(kept))  # 60 rows of one cell fitted a per-edge model on that one cell
        if distinct < MIN_ROWS:
            raise InputError(f"{table.path.name}: only {distinct} distinct cells have every latency column "
                             f"measured, at least {MIN_ROWS} are needed",
                             hint=f"a latency is a number of ms from {MIN_MS:g} to {MAX_MS:g}; others count as missing")
        strings = [space.to_dict(a)["arch"] for a in space.all_archs()]  # in gene order
        grid, _ = cell_encoding(strings, ops)
        rows, _ = cell_encoding([a for a, keep in zip(table.arch, ok) if keep], ops)
        one_hot = slice(0, 6 * len(ops))  # per edge position, the operation on it
        add, nonadd = np.empty((len(strings), len(cols))), np.empty((len(strings), len(cols)))
        A, G = np.column_stack([rows, np.ones(len(rows))]), np.column_stack([grid, np.ones(len(grid))])
        with np.errstate(all="ignore"):  # values are MIN_MS..MAX_MS (HwTable); the parts are checked below
            for j in range(len(cols)):
                y = Y[ok, j]
                w = np.linalg.lstsq(A, y, rcond=None)[0]
                floor = 1e-3 * float(np.median(y))
                trees = HistGradientBoostingRegressor(max_iter=TREE_ITERATIONS, random_state=0).fit(
                    rows[:, one_hot], np.log(y / np.maximum(A @ w, floor)))
                add[:, j] = np.maximum(G @ w, floor)
                nonadd[:, j] = trees.predict(grid[:, one_hot])
        bad = [c for j, c in enumerate(cols) if not (np.isfinite(add[:, j]).all() and (add[:, j] > 0).all()
                                                     and (np.abs(nonadd[:, j]) <= MAX_LOG_RATIO).all())]
        if bad:
            raise InputError(f"{table.path.name}: latency column {bad[0]} gives no usable per-edge model",
                             hint=f"check its values (whole-model latencies in ms, {MIN_MS:g} to {MAX_MS:g})")
        measured = np.full(add.shape, np.nan)
        measured[kept] = Y[ok]
        return cls(space.name, table.path.name, table.sha256, tuple(cols), int(ok.sum()), _sig6(add),
                   np.round(nonadd, 5), _sig6(measured))

    def parts(self, space: Any, archs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(additive, non-additive) of ``archs``, each ``(len(archs), len(columns))``."""
        if space.name != self.space:
            raise InputError(f"table references of '{self.space}' cannot serve '{space.name}'")
        idx = _rows(space, archs)
        return self.additive[idx], self.nonadditive[idx]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": TABLE_SCHEMA, "kind": "table-references", "space": self.space, "source": self.source,
                "sha256": self.sha256, "columns": list(self.columns), "rows": self.rows,
                "additive": self.additive.T.tolist(), "nonadditive": self.nonadditive.T.tolist(),
                "measured": [[None if math.isnan(v) else v for v in col] for col in self.measured.T.tolist()]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], space: Any) -> "TableReferences":
        """Checked against ``space``: one value per architecture of it and column, finite, additive > 0,
        non-additive within +-``MAX_LOG_RATIO``, measured values (null where the table lacks the cell) from
        ``MIN_MS`` to ``MAX_MS``."""
        with reading_model("table references"):
            if not is_schema(d.get("schema"), TABLE_SCHEMA) or d.get("kind") != "table-references":
                raise ValueError(f"not table references of schema {TABLE_SCHEMA}")
            if d["space"] != space.name:
                raise ValueError(f"table references of {d['space']!r:.40}, not {space.name!r}")
            columns = tuple(record_strings(d["columns"], "columns"))
            source, digest = d["source"], d["sha256"]
            if not isinstance(source, str) or not isinstance(digest, str) or not _SHA256.match(digest):
                raise ValueError("source must be a file name and sha256 a SHA-256 in hex")
            _check_names(source, columns)
            if not 1 <= len(columns) <= MAX_LATENCY_COLUMNS or len(set(columns)) != len(columns):
                raise ValueError(f"expected 1 to {MAX_LATENCY_COLUMNS} distinct columns, got {len(columns)}")
            n = math.prod(_sizes(space))
            add = _columns(d["additive"], "additive", len(columns), n, positive=True)
            nonadd = _columns(d["nonadditive"], "nonadditive", len(columns), n)
            if not (np.abs(nonadd) <= MAX_LOG_RATIO).all():
                raise ValueError(f"nonadditive: log ratios must be from -{MAX_LOG_RATIO:g} to {MAX_LOG_RATIO:g}")
            measured = d["measured"]
            if not isinstance(measured, list) or len(measured) != len(columns) or any(
                    not isinstance(col, list) or len(col) != n for col in measured):
                raise ValueError(f"measured: expected {len(columns)} lists of {n} values")
            if not all(v is None or type(v) is float or type(v) is int for col in measured for v in col):
                raise ValueError("measured: values must be numbers or null")
            measured = np.array([[np.nan if v is None else v for v in col] for col in measured], dtype=float).T
            known = measured[~np.isnan(measured)]
            if not ((known >= MIN_MS) & (known <= MAX_MS)).all():
                raise ValueError(f"measured values must be latencies from {MIN_MS:g} to {MAX_MS:g} ms")
            rows = record_count(d["rows"], "rows", low=1)  # table rows: more than n where a table gives a cell twice
            return cls(space.name, source, digest, columns, rows, add, nonadd, measured)

    def measured_cells(self, space: Any) -> tuple[list[Any], np.ndarray]:
        """The cells the table measured in every column, and those measurements (ms)."""
        rows = np.flatnonzero(np.isfinite(self.measured).all(axis=1))
        genes = np.stack(np.unravel_index(rows, _sizes(space)), axis=1)
        return [space.from_genes(g) for g in genes], self.measured[rows]


def _columns(value: Any, what: str, n_columns: int, n: int, positive: bool = False) -> np.ndarray:
    """A record's ``n_columns`` lists of ``n`` finite numbers as an ``(n, n_columns)`` array."""
    if not isinstance(value, list) or len(value) != n_columns:
        raise ValueError(f"{what}: expected {n_columns} lists of {n} numbers")
    return np.column_stack([record_vector(col, what, n, positive=positive) for col in value])


def _check_names(source: str, columns: Sequence[str]) -> None:
    """Column names like device names, a file name of printable characters: both end up in records
    and on the terminal."""
    bad = [c for c in columns if not _COLUMN.match(c)]
    if bad:
        raise InputError(f"{source[:80]!r}: bad latency column name {bad[0][:80]!r}",
                         hint="column names: letters, digits, '.', '_' and '-', ending in _ms")
    if not source or len(source) > 255 or not source.isprintable():
        raise InputError(f"the table's file name {source[:80]!r} is not printable", hint="rename the file")


def _sig6(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to 6 significant digits (nan stays nan), as stored."""
    return np.array([float(f"{v:.6g}") for v in a.ravel()]).reshape(a.shape)


class TableCorrected:
    """``fit(features, y_ms)`` / ``predict(features)``; features are ``[additive | descriptors | non-additive]``
    with ``n_refs`` columns in each reference part. Record kind ``fewshot-meta-table``."""

    kind_name = "fewshot-meta-table"

    def __init__(self, n_refs: int, feature_names: Sequence[str] | None = None, config: MetaConfig = DEFAULT,
                 plain_config: MetaConfig | None = None, anchor: bool = False,
                 anchor_lam: float | None = None) -> None:
        if n_refs < 1:
            raise InputError("a table-corrected few-shot model needs at least one reference column")
        self.n_refs, self.config, self.plain_config = int(n_refs), config, plain_config
        self.use_anchor, self.anchor_lam = bool(anchor), anchor_lam
        self.feature_names = None if feature_names is None else list(feature_names)
        self.meta = MetaFewShot(self.n_refs, None, config)
        #: the uncorrected model averaged in (log space) when ``plain_config`` is given, else None
        self.plain: MetaFewShot | None = None
        #: the nearest reference's model averaged in (log space) with ``anchor``, else None
        self.anchor: Anchor | None = None
        self.w = np.zeros(self.n_refs)
        self.inner: dict[str, Any] = {}

    def _split(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(features, dtype=float)
        if X.ndim != 2 or X.shape[1] < 2 * self.n_refs:
            raise InputError(f"features must have at least {2 * self.n_refs} columns, got shape {X.shape}")
        H = X[:, -self.n_refs:]
        if not np.isfinite(H).all():
            raise InputError("non-additive parts must be finite")
        return X[:, :-self.n_refs], H

    def fit(self, features: Any, y_ms: Any) -> "TableCorrected":
        X, H = self._split(features)
        y = np.asarray(y_ms, dtype=float).ravel()
        if y.size != X.shape[0] or y.size == 0 or not np.isfinite(y).all() or (y <= 0).any():
            raise InputError("need one finite target latency > 0 per row")
        corr = np.zeros(y.size)
        eye = np.eye(self.n_refs)
        # below MIN_LOO points neither the anchor's reference nor its shrinkage can be checked on held-out
        # points: with 4 real measurements and references unlike the device, it put one 2.2x off in-sample
        self.anchor = Anchor(self.anchor_lam).fit(*self._anchor_features(X, H), y) \
            if self.use_anchor and y.size >= ANCHOR_MIN_K else None
        prior = self._correction_prior()
        for _ in range(ROUNDS):  # the additive model given the correction, then the correction given it
            self.meta = MetaFewShot(self.n_refs, None, self.config).fit(X, y / np.exp(corr))
            if y.size < MIN_K:  # too few points to weigh the references' non-additive parts
                self.w = np.zeros(self.n_refs)
                break
            target = np.log(y / self.meta.predict(X))

            def solve(weights: np.ndarray) -> np.ndarray:
                return np.linalg.solve(H.T @ (H * weights[:, None]) + RIDGE * eye,
                                       H.T @ (weights * target) + RIDGE * prior)

            self.w = solve(np.ones(y.size)) if self.config.loss == "squared" else \
                huber_irls(solve, lambda w: target - H @ w, y.size)
            corr = H @ self.w
        self.plain = None if self.plain_config is None else MetaFewShot(self.n_refs, None, self.plain_config).fit(X, y)
        return self

    def _correction_prior(self) -> np.ndarray:
        """The prior mean of the correction weights: with the anchor, 1 on its reference (the nearest) and 0
        elsewhere; without it, 0. The new device's non-additive part is its relative's unless the measured
        points say otherwise: where the references' parts are too faint for ``k`` points to weigh (the
        GPUs' on NAS-Bench-201, about 1%), the ridge keeps the relative's."""
        prior = np.zeros(self.n_refs)
        if self.anchor is not None:
            prior[self.anchor.source] = 1.0
        return prior

    def _anchor_features(self, X: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the references' smoothed log latencies, the descriptors): log additive part plus non-additive."""
        if not np.isfinite(X).all() or (X[:, :self.n_refs] <= 0).any():
            raise InputError("features must be finite, and additive parts > 0")
        return np.log(X[:, :self.n_refs]) + H, X[:, self.n_refs:]

    def predict(self, features: Any) -> np.ndarray:
        X, H = self._split(features)
        corrected = self.meta.predict(X) * np.exp(H @ self.w)
        out = corrected if self.plain is None else np.sqrt(corrected * self.plain.predict(X))
        return out if self.anchor is None else np.sqrt(out * self.anchor.predict(*self._anchor_features(X, H)))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind_name, "n_refs": self.n_refs, "meta": self.meta.to_dict(),
                "w": [float(v) for v in self.w], "inner": self.inner,
                "plain": None if self.plain is None else self.plain.to_dict(),
                "anchor": None if self.anchor is None else self.anchor.to_dict(),
                "feature_names": self.feature_names}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TableCorrected":
        with reading_model():
            if d.get("kind") != cls.kind_name:
                raise ValueError(f"not a {cls.kind_name} record")
            n_refs = record_count(d["n_refs"], "n_refs", low=1, high=MAX_LATENCY_COLUMNS)
            meta = MetaFewShot.from_dict(d["meta"])
            plain = None if d.get("plain") is None else MetaFewShot.from_dict(d["plain"])  # absent before the average
            names = d.get("feature_names")
            m = cls(n_refs, None if names is None else record_strings(names, "feature_names"), meta.config,
                    None if plain is None else plain.config)
            w = record_vector(d["w"], "w", m.n_refs)
            if meta.n_refs != m.n_refs:
                raise ValueError("correction weights do not match the references")
            if plain is not None and (plain.n_refs != m.n_refs or plain._width != meta._width):
                raise ValueError("the plain model does not match the corrected one")
            m.meta, m.plain, m.w, m.inner = meta, plain, w, record_table(d.get("inner"), "inner")
            if d.get("anchor") is not None:  # absent before the anchor
                m.anchor = Anchor.from_dict(d["anchor"], m.n_refs)
                m.use_anchor, m.anchor_lam = True, m.anchor.lam
                if m.anchor._mu.size != meta._width - m.n_refs:
                    raise ValueError("the anchor's descriptors do not match the model's")
            return m

    def describe(self) -> dict[str, Any]:
        out = dict(self.meta.describe())
        out.update(model="meta-table", correction_weights=[round(float(v), 4) for v in self.w], inner=self.inner)
        if self.plain is not None:
            out["averaged_with"] = self.plain.describe()
        if self.anchor is not None:
            out.update(self.anchor.describe())
        return out
