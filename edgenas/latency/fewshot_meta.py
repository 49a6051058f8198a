"""Few-shot latency meta-learned across the reference devices (issue 17, HELP-style): ``MetaFewShot``.

The new device's latency is modelled as a combination of the reference devices' latencies (their
LUT predictions: the "hardware embedding" of HELP is the new device's weights on them) plus a small
correction on descriptors of the architecture, fitted by ridge regression on the ``k`` measured
points. Which model and how much shrinkage is *meta-learned*: ``choose_config`` plays the few-shot
task on every reference device in turn (leave that reference out, treat its column as the new
device, draw ``k`` points, fit, score on the pool) and keeps the configuration with the best mean
share within +-10%. The new device's own values are never looked at to choose anything: only the
``k`` points it is fitted on (``fit_new_device`` asks for them through a ``measure`` callback).

A configuration (``MetaConfig``) is:

* ``space``: ``"ms"`` - ``y = c + sum_j b_j R_j / rbar_j + d . D`` (additive costs; latencies of
  different devices differ mostly by per-operation costs), or ``"log"`` - the multiplicative model
  ``log y = c + sum_j b_j log(R_j / rbar_j) + d . D``;
* ``lam_ref`` / ``lam_desc``: ridge penalties on the reference weights and on the descriptor
  correction (``None``: no correction);
* ``selection``: which ``k`` architectures to measure - ``"random"`` or ``"stratified"`` (one per
  quantile stratum of the references' mean log latency, ``select_stratified``). Choosing needs no
  target value, so the inner tasks choose it too;
* ``loss``: ``"huber"`` (the default grid) - iteratively reweighted ridge (``huber_irls``) with Huber's
  weights on the relative residual (log ratio): a point more than ``HUBER_C`` robust scales off counts
  linearly, not squared - or ``"squared"``, plain ridge (every model before it). In ``"log"`` space this
  minimises Huber's loss on the log ratio. In ``"ms"`` space the weighted step fits the residual in ms,
  so its fixed point is squared ms error with weights from the log ratio, not a Huber minimiser of either
  (an audit compared both with scipy; the weighted ms fit is what the benchmarks measured). The robust
  scale is re-estimated every iteration, and about 3% of fits on NAS-Bench-201 (k = 3-50) stop at the
  ``IRLS_ITERATIONS`` cap before a fixed point (their predictions a median 0.04% from the fit iterated
  much longer, at worst 10x).
  The edge devices' measurements are heavy-tailed: on NAS-Bench-201 the Raspberry Pi 4's and the
  Pixel 3's log residuals to trees fitted on 5,000 of their cells have a kurtosis of about 124 and a
  standard deviation three times their robust scale (0.30 against 0.09-0.11; GPUs: 3.5, 0.025 against
  0.022), so one slow reading among 20 pulls a squared fit off the bulk the share within +-10% is
  scored on (bench/RESULTS.md).

Below ``MIN_K`` points (or with one reference, where there is nothing to leave out) the defaults
apply; below ``MIN_K`` points the model is a ratio to the references (``k`` = 1, 2). Records are JSON
(``to_dict``/``from_dict``, kind ``fewshot-meta``); no pickle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.fewshot_records import (
    reading_model, record_count, record_number, record_strings, record_table, record_vector,
)
from edgenas.limits import is_schema

META_SCHEMA = 1
MIN_K = 3
SPACES = ("ms", "log")
SELECTIONS = ("random", "stratified")
LOSSES = ("huber", "squared")
HUBER_C = 1.345  # Huber's constant: 95% efficiency when the noise is Gaussian
SCALE_FLOOR = 0.01  # robust residual scale at least 1%: a near-exact fit down-weights nothing
IRLS_ITERATIONS = 50
LAM_REF = (1e-3, 1e-2, 1e-1, 1.0)
LAM_DESC = (None, 1.0, 10.0, 100.0)
INNER_SEEDS = (0, 1, 2)
INNER_POOL = 2000
MAX_FEATURES = 10_000  # columns of a record's features, at most (a fitted one has tens)


@dataclass(frozen=True)
class MetaConfig:
    space: str = "ms"
    lam_ref: float = 1e-2
    lam_desc: float | None = None
    selection: str = "stratified"
    loss: str = "huber"

    def __post_init__(self) -> None:
        if self.space not in SPACES or self.selection not in SELECTIONS or self.loss not in LOSSES:
            raise InputError(f"bad few-shot configuration {self}",
                             hint=f"space in {SPACES}, selection in {SELECTIONS}, loss in {LOSSES}")
        if not self.lam_ref > 0 or (self.lam_desc is not None and not self.lam_desc > 0):
            raise InputError(f"ridge penalties must be > 0, got {self.lam_ref}, {self.lam_desc}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetaConfig":
        d = record_table(d, "config")
        lam_desc = d.get("lam_desc")
        words = [d["space"], d["selection"], d.get("loss", "squared")]
        if not all(isinstance(w, str) for w in words):
            raise ValueError("config: space, selection and loss must be strings")
        # records written before the loss was a choice were fitted with the squared loss
        return cls(words[0], record_number(d["lam_ref"], "config lam_ref", positive=True),
                   None if lam_desc is None else record_number(lam_desc, "config lam_desc", positive=True),
                   words[1], words[2])


DEFAULT = MetaConfig()


def config_grid(loss: str = "huber") -> tuple[MetaConfig, ...]:
    """The configurations ``choose_config`` tries, all with ``loss``, ordered from the simplest."""
    return tuple(MetaConfig(s, lr, ld, sel, loss) for sel in SELECTIONS for s in SPACES for lr in LAM_REF
                 for ld in LAM_DESC)


CONFIGS = config_grid()


def huber_weights(r: np.ndarray) -> np.ndarray:
    """Huber's IRLS weights for relative residuals ``r`` (log ratios): 1 within ``HUBER_C`` robust
    scales (1.4826 x the median absolute residual, at least ``SCALE_FLOOR``), ``HUBER_C s / |r|``
    beyond."""
    s = max(1.4826 * float(np.median(np.abs(r))), SCALE_FLOOR)
    a = np.abs(r) / (HUBER_C * s)
    return np.where(a <= 1.0, 1.0, 1.0 / np.maximum(a, 1e-12))


def huber_irls(solve: Callable[[np.ndarray], Any], residuals: Callable[[Any], np.ndarray], n: int) -> Any:
    """Iteratively reweighted least squares for Huber's loss: ``solve(weights)`` fits (weighted ridge),
    ``residuals(fit)`` gives its relative residuals on the ``n`` points. Returns the last fit, whose
    weights no longer change (or after ``IRLS_ITERATIONS``)."""
    weights = np.ones(n)
    for _ in range(IRLS_ITERATIONS):
        fit = solve(weights)
        new = huber_weights(residuals(fit))
        if np.allclose(new, weights, atol=1e-6):
            break
        weights = new
    return fit


def _split(X: np.ndarray, n_refs: int) -> tuple[np.ndarray, np.ndarray]:
    if X.ndim != 2 or not 0 <= n_refs <= X.shape[1]:
        raise InputError(f"features must be a 2-D array with at least {n_refs} reference columns, "
                         f"got shape {X.shape}")
    R, D = X[:, :n_refs], X[:, n_refs:]
    if not np.isfinite(X).all() or (R <= 0).any():
        raise InputError("features must be finite, and reference latencies > 0")
    return R, D


class MetaFewShot:
    """``fit(features, y_ms)`` / ``predict(features) -> ms``; features are ``[references | descriptors]``."""

    def __init__(self, n_refs: int, feature_names: Sequence[str] | None = None,
                 config: MetaConfig = DEFAULT) -> None:
        self.n_refs = int(n_refs)
        self.feature_names = None if feature_names is None else list(feature_names)
        self.config = config
        self.kind = ""  # "ridge", "ratio" or "mean" once fitted
        self.inner: dict[str, Any] = {}  # what choose_config found, for describe()

    def _design(self, R: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Design matrix and penalties of the ridge model (scales from fit)."""
        c = self.config
        Rn = R / self._scale_r
        blocks, pen = [], []
        if self.n_refs:
            blocks.append(Rn if c.space == "ms" else np.log(Rn))
            pen += [c.lam_ref] * self.n_refs
        lam_desc = c.lam_desc if c.lam_desc is not None else 1.0  # no references: descriptors only
        if c.lam_desc is not None or not self.n_refs:
            blocks.append(D)
            pen += [lam_desc] * D.shape[1]
        F = np.hstack(blocks) if blocks else np.zeros((R.shape[0], 0))
        return F, np.asarray(pen, dtype=float)

    def fit(self, features, y_ms) -> "MetaFewShot":
        X = np.asarray(features, dtype=float)
        R, D = _split(X, self.n_refs)
        y = np.asarray(y_ms, dtype=float).ravel()
        if y.size != X.shape[0] or y.size == 0:
            raise InputError(f"need one target per row: {X.shape[0]} rows, {y.size} targets")
        if not np.isfinite(y).all() or (y <= 0).any():
            raise InputError("target latencies must be finite and > 0")
        self._width = X.shape[1]
        self._scale_r = R.mean(axis=0) if self.n_refs else np.zeros(0)
        self._scale_y = float(y.mean())
        self._floor = float(y.min()) / 10.0
        yn = y / self._scale_y
        F, pen = self._design(R, D)
        if y.size < MIN_K or F.shape[1] == 0:
            self.kind = "ratio" if self.n_refs else "mean"
            self._mu, self._ym, self._w = np.zeros(0), self._level(R, yn), np.zeros(0)
            return self
        t = yn if self.config.space == "ms" else np.log(yn)

        def solve(weights: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:  # weighted ridge, intercept free
            mu, ym = (weights @ F) / weights.sum(), float(weights @ t / weights.sum())
            Fc = F - mu
            return mu, ym, np.linalg.solve(Fc.T @ (Fc * weights[:, None]) + np.diag(pen), Fc.T @ (weights * (t - ym)))

        def residuals(fit: tuple[np.ndarray, float, np.ndarray]) -> np.ndarray:  # log(fitted / measured)
            mu, ym, w = fit
            fitted = ym + (F - mu) @ w
            return fitted - t if self.config.space == "log" else np.log(np.maximum(fitted, 1e-9) / t)

        if self.config.loss == "huber":
            self._mu, self._ym, self._w = huber_irls(solve, residuals, y.size)
        else:  # plain ridge, as every model before the loss was a choice (to the last bit)
            self._mu, self._ym = F.mean(axis=0), float(t.mean())
            Fc = F - self._mu
            self._w = np.linalg.solve(Fc.T @ Fc + np.diag(pen), Fc.T @ (t - self._ym))
        self.kind = "ridge"
        return self

    def _level(self, R: np.ndarray, yn: np.ndarray) -> float:
        """The level ``_ym`` of the ratio and mean models: the geometric mean of the scaled targets over the
        references' scaled geometric mean (``_reference_shape``), so that the in-sample log residuals
        average to zero. The geometric mean of ``yn`` alone, over ``_scale_r`` (an arithmetic mean),
        was low by G(R)/A(R) < 1 whenever the reference's values differed: a device exactly twice its
        reference came out 1.6x it at 1 and 4 ms. Without references it is the geometric mean of ``yn``."""
        logs = np.log(yn)
        if self.n_refs:
            logs = logs - np.log(self._reference_shape(R))
        return float(np.exp(np.mean(logs)))

    def _reference_shape(self, R: np.ndarray) -> np.ndarray:
        """Per row, the geometric mean over the references of ``R / _scale_r``: what the ratio model scales."""
        return np.exp(np.log(R / self._scale_r).mean(axis=1))

    def predict(self, features) -> np.ndarray:
        if not self.kind:
            raise InputError("MetaFewShot.predict called before fit")
        X = np.asarray(features, dtype=float)
        if X.ndim != 2 or X.shape[1] != self._width:
            raise InputError(f"features must have shape (n, {self._width}), got {X.shape}")
        R, D = _split(X, self.n_refs)
        if self.kind == "mean":
            return np.full(X.shape[0], self._ym * self._scale_y)
        if self.kind == "ratio":  # k < MIN_K: the mean log ratio to the references at the measured points
            return self._ym * self._scale_y * self._reference_shape(R)
        F, _ = self._design(R, D)
        t = self._ym + (F - self._mu) @ self._w
        if self.config.space == "log":
            return np.exp(t) * self._scale_y
        return np.maximum(t * self._scale_y, self._floor)

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict[str, Any]:
        if not self.kind:
            raise InputError("MetaFewShot.to_dict called before fit")
        return {"schema": META_SCHEMA, "kind": "fewshot-meta", "n_refs": self.n_refs,
                "feature_names": self.feature_names, "config": self.config.to_dict(), "fit": self.kind,
                "scale_r": self._scale_r.tolist(), "scale_y": self._scale_y, "floor": self._floor,
                "mu": self._mu.tolist(), "ym": self._ym, "w": self._w.tolist(), "width": self._width,
                "inner": self.inner}

    @classmethod
    def from_dict(cls, d) -> "MetaFewShot":
        """Rebuild from ``to_dict``'s record; a malformed record is one ``InputError``. Every array is a flat
        list of finite numbers of the length the configuration implies, every count a whole number."""
        with reading_model():
            if not is_schema(d["schema"], META_SCHEMA) or d.get("kind") != "fewshot-meta":
                raise InputError(f"not a meta few-shot model of schema {META_SCHEMA} "
                                 f"(schema={d['schema']!r:.40}, kind={d.get('kind')!r:.40})")
            n_refs = record_count(d["n_refs"], "n_refs", high=MAX_FEATURES)
            names = d.get("feature_names")
            m = cls(n_refs, None if names is None else record_strings(names, "feature_names"),
                    MetaConfig.from_dict(d["config"]))
            m.kind = d["fit"] if isinstance(d["fit"], str) else ""
            if m.kind not in ("ridge", "ratio", "mean"):
                raise ValueError(f"unknown fit {d['fit']!r:.40}")
            if (m.kind == "ratio") != (n_refs > 0) and m.kind != "ridge":
                raise ValueError(f"a {m.kind} fit with {n_refs} references")
            m._width = record_count(d["width"], "width", low=n_refs, high=MAX_FEATURES)
            m._scale_r = record_vector(d["scale_r"], "scale_r", n_refs, positive=True)
            size = m._design_width() if m.kind == "ridge" else 0
            m._mu, m._w = record_vector(d["mu"], "mu", size), record_vector(d["w"], "w", size)
            m._scale_y = record_number(d["scale_y"], "scale_y", positive=True)
            m._floor = record_number(d["floor"], "floor", low=0)
            m._ym = record_number(d["ym"], "ym", positive=m.kind != "ridge")
            m.inner = record_table(d.get("inner"), "inner")
        return m

    def _design_width(self) -> int:
        """Columns of ``_design``: the references, then the descriptors if corrected (or no references)."""
        n_desc = self._width - self.n_refs
        return self.n_refs + (n_desc if self.config.lam_desc is not None or not self.n_refs else 0)

    def describe(self) -> dict[str, Any]:
        return {"model": "meta", "fit": self.kind, **self.config.to_dict(), "inner": self.inner}


# ---------------------------------------------------------------------- choosing what to measure
def selection_score(X: np.ndarray, n_refs: int) -> np.ndarray:
    """A cheap latency score known for every candidate: the references' mean log latency, else the
    log of the first descriptor (MACs for the MobileNetV3 spaces), else zeros."""
    if n_refs:
        return np.log(X[:, :n_refs]).mean(axis=1)
    if X.shape[1]:
        return np.log(np.maximum(X[:, 0], 0) + 1e-9)
    return np.zeros(X.shape[0])


def select_architectures(X, n_refs: int, k: int, seed: int, rule: str) -> np.ndarray:
    """Indices of the ``k`` rows of the pool ``X`` to measure (seeded; the same seed, the same rows)."""
    from edgenas.latency.fewshot_ensemble import select_stratified

    X = np.asarray(X, dtype=float)
    if not 1 <= k <= X.shape[0]:
        raise InputError(f"cannot choose {k} of {X.shape[0]} candidates", hint=f"k must be 1..{X.shape[0]}")
    if rule == "random":
        return np.random.default_rng(seed).permutation(X.shape[0])[:k].astype(np.int64)
    if rule == "stratified":
        return select_stratified(selection_score(X, n_refs), k, seed)
    raise InputError(f"unknown selection rule {rule!r}", hint=f"one of {', '.join(SELECTIONS)}")


# ---------------------------------------------------------------------- meta-learning
def _within10(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / y - 1.0) <= 0.10))


def choose_config(pool, n_refs: int, k: int, *, targets=None, configs: Sequence[MetaConfig] = CONFIGS,
                  seeds: Sequence[int] = INNER_SEEDS, n_pool: int = INNER_POOL,
                  model: Callable[[int, MetaConfig], Any] | None = None,
                  paired: bool = False) -> tuple[MetaConfig, dict]:
    """The configuration with the best mean within-10% share over inner leave-one-reference-out tasks.

    ``pool``: ``(n, n_refs + d)`` features of candidate architectures (reference latencies, then
    descriptors). Each reference ``j`` in turn is the "new device": its target is ``targets[:, j]``
    (default: the reference column itself), the other references are its references, ``k`` rows
    are chosen with each configuration's selection rule and seed, the rest of the (sub-sampled)
    pool is scored. Needs two references; otherwise ``DEFAULT`` (with the grid's loss). Deterministic.

    ``model(n_refs, config)`` makes the regressor the inner tasks fit (default ``MetaFewShot``): the
    one that will be fitted on the new device. ``paired``: the pool's last ``n_refs`` columns belong
    to the references, one each (``fewshot_table``'s non-additive parts); a task drops its
    reference's pair too.
    """
    X = np.asarray(pool, dtype=float)
    R, _ = _split(X, n_refs)
    T = R if targets is None else np.asarray(targets, dtype=float)
    if T.shape != R.shape or not np.isfinite(T).all() or (T <= 0).any():
        raise InputError(f"inner targets must be finite, > 0 and of shape {R.shape}, got {T.shape}")
    fallback = replace(DEFAULT, loss=configs[0].loss) if configs else DEFAULT
    if n_refs < 2 or k < MIN_K:
        return fallback, {"tasks": 0, "reason": "fewer than 2 references" if n_refs < 2 else f"k < {MIN_K}"}
    n = X.shape[0]
    rows = np.random.default_rng(12345).permutation(n)[:n_pool] if n > n_pool else np.arange(n)
    if k >= rows.size:
        return fallback, {"tasks": 0, "reason": "pool too small"}
    Xs, Ts = X[rows], T[rows]
    per_task = np.zeros((n_refs, len(configs)))
    make = model or (lambda n, c: MetaFewShot(n, config=c))
    for j in range(n_refs):
        Xj = np.delete(Xs, [j, Xs.shape[1] - n_refs + j] if paired else j, axis=1)
        yj = Ts[:, j]
        for rule in sorted({c.selection for c in configs}):
            for s in seeds:
                train = select_architectures(Xj, n_refs - 1, k, s, rule)
                test = np.setdiff1d(np.arange(rows.size), train)
                for i, c in enumerate(configs):
                    if c.selection == rule:
                        m = make(n_refs - 1, c).fit(Xj[train], yj[train])
                        per_task[j, i] += _within10(m.predict(Xj[test]), yj[test]) / len(seeds)
    scores = per_task.mean(axis=0)
    best = int(np.argmax(scores))  # first of equals: CONFIGS is ordered from the simplest
    return configs[best], {"tasks": n_refs * len(seeds), "inner_within10": round(float(scores[best]), 4),
                           "k": int(k)}


def fit_new_device(pool, n_refs: int, k: int, seed: int, measure: Callable[[np.ndarray], Any], *,
                   targets=None, feature_names: Sequence[str] | None = None,
                   loss: str = "huber") -> tuple[MetaFewShot, np.ndarray]:
    """Choose the configuration on the references (among ``config_grid(loss)``), choose ``k`` rows of
    ``pool``, ``measure`` them (the only values of the new device ever seen), fit. Returns the model
    and the measured rows."""
    config, inner = choose_config(pool, n_refs, k, targets=targets, configs=config_grid(loss))
    X = np.asarray(pool, dtype=float)
    idx = select_architectures(X, n_refs, k, seed, config.selection)
    y = np.asarray(measure(idx), dtype=float).ravel()
    m = MetaFewShot(n_refs, feature_names, config).fit(X[idx], y)
    m.inner = inner
    return m, idx
