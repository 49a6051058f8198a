"""Add a device from a few whole-model measurements (``edgenas device add NAME --fewshot K``).

1. the **references**: every other device with a LUT for the space (their newest table each), or
   with ``--table`` the latency columns of a table of other devices (``fewshot_table``: their
   additive and non-additive parts; NAS-Bench-201 only);
2. a seeded pool of architectures with the references' predictions and descriptors; the model's
   configuration and the rule that picks which ``K`` to measure (random, or one per quantile stratum
   of the references' mean log latency) are meta-learned on the references (``choose_config``:
   each reference in turn plays the new device);
3. each chosen architecture is exported and measured on the device through its agent with the
   whole-model protocol (real ONNX Runtime runs on ``local``), and stored as a ``Measurement``; one
   the store holds already (an interrupted run keeps what it measured) is not measured again;
4. a ``MetaFewShot`` (with a table: ``TableCorrected``, averaged with the nearest reference's
   ``Anchor``) is fitted on every stored measurement of (device, space, fingerprint, runtime), with
   Huber's loss (a slow reading among them counts linearly, not squared), and saved as
   ``luts/DEVICE/fewshot/SPACE.json``; its configuration is chosen on the pool of the same seed as the one
   that chose the points, and the record keeps that seed (``inner.pool_seed``) for later refits.

Search uses the model for a device that has no LUT yet (``latency_model``), and every ``deploy``
refits it with the new measurement (``refit_after_deploy``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgenas.errors import BadAnswerError, DeviceError, InputError
from edgenas.project import Project
from edgenas.quiet import signals_held

Progress = Callable[[str, int, int], None]
POOL = 2000


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` under ``np.errstate(all="ignore")``: an overflow inside a fit is no numpy warning on the
    terminal; what comes out is checked (``_fit``: a model whose predictions are not finite is an error)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return run


@dataclass(frozen=True)
class FewShotResult:
    device: str
    space: str
    measured_now: int
    n_points: int
    references: list[str]
    model_path: str
    loo_within10: float  # share of the measured points predicted within 10% with the point left out
    model: dict[str, Any]  # the fitted model's configuration (MetaFewShot.describe)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reference_predictors(project: Project, space: Any, exclude: str) -> list[tuple[str, str, Any]]:
    """(device, fingerprint hash, predictor) for every other device with a usable LUT for ``space``."""
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore

    store, out = LutStore(project.luts_dir), []
    for d in store.devices():  # luts/.git and other folders no device could have are passed over
        if d == exclude or not store.list(d, space.name):
            continue
        try:
            lut = store.latest(d, space.name)
            out.append((d, lut.fingerprint_hash, LatencyPredictor(lut, space)))
        except InputError:
            continue  # a broken or incomplete table is not a reference
    return out


#: draws of ``n`` a pool takes at most to find ``n`` distinct architectures (a small space has fewer)
POOL_ROUNDS = 8


def _pool(space: Any, refs: list[tuple[str, str, Any]], seed: int, n: int | None = None,
          table: Any = None) -> tuple[list[Any], np.ndarray]:
    """A seeded pool of ``n`` distinct architectures (``_draw``) and their features
    (``fewshot_model.model_features``)."""
    from edgenas.latency.fewshot_model import model_features

    archs = _draw(space, seed, n)
    return archs, model_features(space, archs, [r[2] for r in refs], table)


def _draw(space: Any, seed: int, n: int | None = None) -> list[Any]:
    """``n`` distinct architectures (all of a smaller space), seeded. Drawn with replacement, 2,000 nb201
    cells held 1,889 distinct ones, and about 1 in 100 random choices of 20 measured a cell twice (and left
    it out of its own leave-one-out fit in name only)."""
    n = POOL if n is None else n
    rng, seen, archs = np.random.default_rng(seed), set(), []
    for _ in range(POOL_ROUNDS):
        for g in space.sample_genes(rng, n):
            arch = space.from_genes(g)
            key = space.arch_id(arch)  # the network, not the genes (a block past a stage's depth is no gene)
            if key not in seen and len(archs) < n:
                seen.add(key)
                archs.append(arch)
        if len(archs) == n:
            break
    return archs


@_quiet
def _choose(space: Any, pool: np.ndarray | None, refs: list[tuple[str, str, Any]], k: int,
            table: Any = None) -> tuple[Any, dict]:
    """The configuration for ``k`` points, meta-learned on the references alone: ``choose_config`` on
    ``pool`` (LUT references), or ``table_config`` (table references; ``pool`` is not used)."""
    from edgenas.latency.fewshot_meta import choose_config

    return choose_config(pool, len(refs), k) if table is None else table_config(space, table, k)


#: ``table_config``'s answers by (model, table SHA-256, columns, space, k): ``add_fewshot`` asks twice for
#: the same k (what to measure, then the fit), and each answer takes tens of seconds
_TABLE_CONFIGS: dict[tuple[Any, ...], tuple[Any, dict]] = {}
_TABLE_FEATURES: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}


def _table_features(space: Any, table: Any) -> tuple[np.ndarray, np.ndarray]:
    """The features (``model_features``) and measured values of the cells the table measured, built
    once per table and space for every ``table_config`` call (both models, every k)."""
    from edgenas.latency.fewshot_model import model_features

    key = (table.sha256, table.columns, space.name)
    if key not in _TABLE_FEATURES:
        cells, measured = table.measured_cells(space)
        X, measured = model_features(space, cells, [], table), np.array(measured, dtype=float)
        for a in (X, measured):
            a.setflags(write=False)  # shared by every later call: nobody may change them
        _TABLE_FEATURES.clear()  # one table at a time: the arrays are large
        _TABLE_FEATURES[key] = (X, measured)
    return _TABLE_FEATURES[key]


@_quiet
def table_config(space: Any, table: Any, k: int, *, plain: bool = False, loss: str = "huber") -> tuple[Any, dict]:
    """``choose_config`` for table references: over the cells the table measured, each column plays the
    new device for ``TableCorrected`` on the other columns' parts and the descriptors, its measured
    values the target (their noise is what a new device's k points have too: smoothed targets chose
    too little shrinkage, bench/RESULTS.md). ``plain``: the configuration of the uncorrected
    ``MetaFewShot`` averaged into it (additive parts and descriptors only), chosen the same way for
    that model. ``loss``: the loss of every configuration tried (``fewshot_meta.config_grid``).
    Deterministic, so remembered for the process."""
    from edgenas.latency.fewshot_meta import choose_config, config_grid
    from edgenas.latency.fewshot_table import TableCorrected

    key = (plain, loss, table.sha256, table.columns, space.name, int(k))
    if key not in _TABLE_CONFIGS:
        X, measured = _table_features(space, table)
        n = len(table.columns)
        if len(_TABLE_CONFIGS) >= 64:
            _TABLE_CONFIGS.clear()
        grid = config_grid(loss)
        _TABLE_CONFIGS[key] = (choose_config(X[:, :-n], n, k, targets=measured, configs=grid) if plain else
                               choose_config(X, n, k, targets=measured, paired=True, configs=grid,
                                             model=lambda n, config: TableCorrected(n, None, config)))
    config, inner = _TABLE_CONFIGS[key]
    return config, dict(inner)


@_quiet
def _fit(space: Any, archs: list[Any], y: np.ndarray, refs: list[tuple[str, str, Any]],
         table: Any = None, pool_seed: int = 0) -> tuple[Any, float]:
    """The meta-learned model on every measurement (configuration chosen on the references for
    ``k = len(y)`` over the pool of ``pool_seed``: ``add_fewshot``'s seed, the pool whose configuration chose
    the points, recorded in the model's ``inner`` for later refits) and its leave-one-out share within 10%;
    with a table, the table-corrected model averaged with a plain one and with the nearest reference's
    anchor (``fewshot_table.TableCorrected``, ``fewshot_anchor.Anchor``)."""
    from edgenas.latency.fewshot_meta import MetaFewShot
    from edgenas.latency.fewshot_model import arch_descriptors, model_features
    from edgenas.latency.fewshot_table import TableCorrected

    desc_names = arch_descriptors(space, archs[:1])[1]
    pool = None if table is not None else _pool(space, refs, seed=pool_seed)[1]
    config, inner = _choose(space, pool, refs, len(y), table)
    if table is None:  # a table's configuration takes no pool
        inner = dict(inner, pool_seed=int(pool_seed))
    X = model_features(space, archs, [r[2] for r in refs], table)
    if table is None:
        names = [r[0] for r in refs] + desc_names

        def make() -> Any:
            return MetaFewShot(len(refs), names, config)
    else:
        names = list(table.columns) + desc_names + [f"{c}:non-additive" for c in table.columns]
        plain, plain_inner = table_config(space, table, len(y), plain=True)
        inner = dict(inner, plain=plain_inner)

        def make(anchor_lam: float | None = None) -> Any:
            return TableCorrected(len(table.columns), names, config, plain, anchor=True, anchor_lam=anchor_lam)
    m = make().fit(X, y)
    m.inner = inner
    fitted = np.asarray(m.predict(X), dtype=float)
    if not (np.isfinite(fitted).all() and (fitted > 0).all()):
        source = f"the table {table.source}" if table is not None else "the reference LUTs"
        raise InputError(f"the few-shot model fitted on {len(y)} measurements with {source} predicts latencies "
                         "that are not finite positive numbers", hint="check the references' latencies")
    if getattr(m, "anchor", None) is not None:  # the leave-one-out refits keep the anchor's shrinkage
        make = functools.partial(make, m.anchor.lam)
    loo = []
    if len(y) >= 3:
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            p = make().fit(X[keep], y[keep]).predict(X[i:i + 1])
            loo.append(abs(p[0] / y[i] - 1.0) <= 0.10)
    return m, float(np.mean(loo)) if loo else float("nan")


def _measurements(store: Any, device: str, space: Any, fp_hash: str, runtime: str) -> tuple[list[Any], np.ndarray]:
    from edgenas.store.base import measured_archs

    ms = [m for m in store.list(device=device, space=space.name, fingerprint_hash=fp_hash) if m.runtime == runtime]
    return measured_archs(space, ms), np.array([float(m.stats["median_ms"]) for m in ms])


def _save(project: Project, device: str, space: Any, fp_hash: str, runtime: str, archs: list[Any],
          y: np.ndarray, refs: list[tuple[str, str, Any]], table: Any = None,
          pool_seed: int = 0) -> tuple[Path, float, dict]:
    from edgenas.latency.fewshot_model import FewShotModel, arch_descriptors, save_model

    if len(y) < 1:
        raise InputError(f"no measurements of '{space.name}' on '{device}' to fit a few-shot model on")
    reg, loo = _fit(space, archs, y, refs, table, pool_seed)
    names = tuple(arch_descriptors(space, archs[:1])[1])
    model = FewShotModel(device=device, space=space.name, fingerprint_hash=fp_hash, runtime=runtime,
                         references=tuple((r[0], r[1]) for r in refs), descriptor_names=names,
                         ensemble=reg.to_dict(), n_points=int(len(y)),
                         table=None if table is None else table.to_dict(),
                         reference_calibrations=None if table is not None else tuple(
                             None if r[2].lut.calibration is None else r[2].lut.calibration.to_dict() for r in refs))
    return save_model(project.luts_dir, model), loo, reg.describe()


def add_fewshot(project: Project, device: str, space_name: str, k: int, *, seed: int = 0,
                protocol: dict[str, Any] | None = None, progress: Progress | None = None,
                table: Path | None = None) -> FewShotResult:
    """Measure ``k`` chosen architectures on ``device`` and fit its few-shot model. The references are
    the fleet's other LUTs for the space, or with ``table`` the latency columns of that CSV
    (``fewshot_table.TableReferences``, nb201 only), read and checked before anything is measured."""
    from edgenas.export import default_export_dir, export_arch
    from edgenas.devices.profiles import load_profile
    from edgenas.devices.session import open_session
    from edgenas.fleet.measure import measure_model, measurement_stats, model_file, reference_model
    from edgenas.io import sha256_file
    from edgenas.latency.fewshot_meta import select_architectures
    from edgenas.latency.fewshot_model import check_not_linked, model_features, model_path
    from edgenas.latency.fewshot_table import TableReferences
    from edgenas.spaces import get_space
    from edgenas.store import Measurement, check_db_url

    from edgenas.limits import check_seed

    check_seed(seed)
    space = get_space(space_name)
    if not 1 <= k <= 500:
        raise InputError(f"--fewshot must be between 1 and 500 architectures, got {k}")
    tref = None if table is None else TableReferences.build(table, space)
    profile = load_profile(project, device)  # an unknown device is refused before anything is written
    luts = Path(project.luts_dir)  # a planted link where the record goes: refused now, not after the measurements
    check_not_linked(luts, model_path(luts, profile.name, space.name))
    check_db_url(None, project)  # where the measurements go: refused before the device measures
    pool = _draw(space, seed)  # more points than the space's pool holds (mbv3-tiny: 400) are refused here, not
    if k > len(pool):  # after the device was opened
        raise InputError(f"--fewshot {k} is more than the {len(pool)} distinct architectures of '{space.name}' "
                         "to choose from", hint=f"measure at most {len(pool)}")
    with open_session(project, profile) as s:
        fp_hash, rt = s.info().fingerprint_hash, s.runtime_params()
        ref_path = reference_model(project, rt["runtime"])
        ref_sha = sha256_file(ref_path)
        refs = [] if tref else reference_predictors(project, space, exclude=s.device)
        X = model_features(space, pool, [r[2] for r in refs], tref)
        config, _ = _choose(space, X, refs, k, tref)  # what to measure: chosen on the references alone
        n_refs = len(tref.columns) if tref else len(refs)
        X = X[:, :-n_refs] if tref else X  # the additive parts and descriptors choose
        chosen = [pool[i] for i in select_architectures(X, n_refs, k, seed, config.selection)]
        before = _measured_ids(project, s.device, space, fp_hash, rt["runtime"])
        todo = [a for a in chosen if space.arch_id(a) not in before]  # kept from an interrupted run, or a deploy
        measured: list[Any] = []  # stored once all are in; a device answering nonsense half way stores nothing
        try:
            for i, arch in enumerate(todo):
                exp = export_arch(space, arch, default_export_dir(project, space, arch))
                timed = model_file(rt["runtime"], space, arch, exp)
                out = measure_model(s, timed, reference=ref_path, protocol=protocol)
                measured.append(Measurement(
                    device=s.device, space=space.name, arch=space.to_dict(arch), artifact_sha256=sha256_file(timed),
                    runtime=rt["runtime"], precision=rt["precision"], fingerprint_hash=fp_hash,
                    stats=measurement_stats(out.raw_stats, None, ref_sha)[0], cold_start=dict(out.cold_start),
                    state=dict(out.state)))
                if progress:
                    progress(f"measure architectures on {s.device}", len(chosen) - len(todo) + i + 1, len(chosen))
        except (DeviceError, KeyboardInterrupt) as exc:
            # a lost connection, a failing agent, Ctrl-C: the measurements taken are sound and kept, so the
            # same command measures only the rest (the points chosen are the seed's); after an answer that
            # makes no sense (0 ms) the device's earlier answers are not trusted either
            if measured and not isinstance(exc, BadAnswerError):
                _keep(project, measured)
                if isinstance(exc, DeviceError):
                    exc.hint = "; ".join(filter(None, (exc.hint, _kept_text(len(measured), len(todo)))))
            raise
        name = s.device
    store = _keep(project, measured)
    archs, y = _measurements(store, name, space, fp_hash, rt["runtime"])
    path, loo, described = _save(project, name, space, fp_hash, rt["runtime"], archs, y, refs, tref, seed)
    names = [f"{tref.source}:{c}" for c in tref.columns] if tref else [r[0] for r in refs]
    return FewShotResult(name, space.name, len(measured), int(len(y)), names, str(path), loo, described)


def _measured_ids(project: Project, device: str, space: Any, fp_hash: str, runtime: str) -> set[str]:
    """The architectures the store already holds a measurement of on (device, fingerprint, runtime): read
    only, so a command refused later has created no database."""
    from edgenas.store import open_db

    with open_db(None, project, readonly=True) as db:
        archs, _ = _measurements(db.measurements, device, space, fp_hash, runtime)
    return {space.arch_id(a) for a in archs}


def _keep(project: Project, measured: list[Any]) -> Any:
    """Store ``measured`` (a Ctrl-C waits until they are all in); returns the store."""
    from edgenas.store import open_store

    with signals_held():
        store = open_store(project)
        for m in measured:
            store.add(m)
    return store


def _kept_text(n: int, of: int) -> str:
    return (f"the {n} of {of} architectures measured before are kept: the same command measures the other "
            f"{of - n} and fits the model")


def refit_after_deploy(project: Project, device: str, space: Any, fp_hash: str, runtime: str, store: Any) -> bool:
    """Refit the device's few-shot model (if it has one for this fingerprint and runtime) on every
    stored measurement, the new one included. Returns whether a model was refitted."""
    from edgenas.latency.fewshot_model import load_model
    from edgenas.latency.fewshot_table import TableReferences

    model = load_model(project.luts_dir, device, space.name)
    if model is None or model.fingerprint_hash != fp_hash or model.runtime != runtime:
        return False
    table = None if model.table is None else TableReferences.from_dict(model.table, space)
    refs = _matching_refs(project, space, model)
    archs, y = _measurements(store, device, space, fp_hash, runtime)
    _save(project, device, space, fp_hash, runtime, archs, y, refs, table, _pool_seed(model))
    return True


def _pool_seed(model: Any) -> int:
    """The pool seed the model's configuration was chosen on (``add_fewshot``'s ``--seed``), so that a refit
    chooses on the same pool. Records written before it was kept (and table records, whose configuration
    takes no pool) have none: 0, the pool they were fitted on. The value was checked where the record was
    read (``FewShotModel.from_dict``)."""
    inner = model.ensemble.get("inner")
    return int(inner["pool_seed"]) if isinstance(inner, dict) and "pool_seed" in inner else 0


def _matching_refs(project: Project, space: Any, model: Any) -> list[tuple[str, str, Any]]:
    from edgenas.latency.fewshot_model import matching_references

    return matching_references(project.luts_dir, space, model)


def check_record(project: Project, device: str, space: Any) -> None:
    """Read and check the device's few-shot record for ``space``, if it has one: a damaged, misplaced or
    linked record is one ``InputError``, and so is one whose reference LUTs are gone where the device has no
    LUT of the space (a deploy then predicts with the record). A command that would use it after writing
    (``deploy``: its export and measurement) calls this first, so that such a record refuses it before
    anything is written."""
    from edgenas.latency.fewshot_model import load_model
    from edgenas.latency.store import LutStore

    model = load_model(project.luts_dir, device, space.name)
    if model is not None and not LutStore(project.luts_dir).list(device, space.name):
        _matching_refs(project, space, model)


def latency_model(project: Project, device: str, space: Any) -> Any | None:
    """The device's few-shot latency model for ``space`` (``FewShotLatency``), or None if it has none."""
    from edgenas.latency.fewshot_model import load_latency_model

    return load_latency_model(project.luts_dir, device, space)
