"""A run folder as a record of the experiment database (what a search writes, what ``runs import`` reads).

The run folder stays the resumable record of a run; the database indexes it: ``index_run`` reads
``config.json``, ``request.json``, ``evaluations.jsonl``, ``pareto.json``, ``best.json`` and
``warm_start.json`` and saves them as one ``RunRecord`` with its evaluations and fronts. A run's id is
derived from its folder and config (less what a resume may change, ``store.runs.RESUME_FIELDS``), so
indexing the same folder again replaces the earlier copy. Its times come from the folder's files, not the
clock at indexing: ``created_at`` when the run began (the earliest of ``request.json``, ``tables.json``,
``config.json``; an earlier copy's is kept), ``finished_at`` when it last wrote a result. A checkpoint that
says ``running`` while no search holds the folder's run lock is recorded as ``stopped`` (it was interrupted).
A multi-fidelity run is indexed the same way (every rung's evaluations; its strategy is the config's
``mode``); a DARTS run has no evaluation log: its evaluations are the cells derived at each epoch's end
(``checkpoint.json``'s history: the derived cell, its predicted latency, the training loss), and no
accuracy is recorded because DARTS measures none.

Devices are recorded with what predicted their latency: for a LUT its fingerprint hash and the
SHA-256 of the table's content (a rebuilt, rescaled or re-calibrated table has another hash); for a
benchmark table column ``table:COLUMN`` and the SHA-256 of that column. The hash is the one the run
started with (its ``tables.json``), not today's table's: ``runs stale`` compares the two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgenas.errors import InputError
from edgenas.io import read_json
from edgenas.locks import status_now
from edgenas.project import Project
from edgenas.search.run_files import (
    accuracy_name, bad_evaluation_field, check_best, check_checkpoint, check_config, check_evaluation, check_pareto,
    check_request_fields, check_tables, check_warm_start, read_evaluations)
from edgenas.search.task import describe_task
from edgenas.store.experiment import ExperimentDB
from edgenas.store.runs import Evaluation, RunDevice, RunRecord, run_identity, save_run
from edgenas.textsafe import shown

RUN_FILES = ("config.json", "evaluations.jsonl")
#: written once when a run begins (``config.json`` again on every resume: the earliest of them is the start)
START_FILES = ("request.json", "tables.json", "config.json")
#: written as a run goes and when it ends (the latest of them is when it finished or stopped)
RESULT_FILES = ("evaluations.jsonl", "checkpoint.json", "best.json", "pareto.json", "history.json")


def run_id_for(out_dir: Path, config: Mapping[str, Any], request: Mapping[str, Any] | None = None) -> str:
    """The run's id: its folder, its config and its ``request.json`` (where it has one), less what a resume may
    change (a run resumed with more time stays one run; an id of a run that never had a time limit is what it
    always was). The request holds what the config does not (the objective, the tables, the evaluator): two
    searches in one folder path (on two machines sharing a database, or one after the other) that differed only
    there had one id, and the second's record replaced the first's."""
    text = str(Path(out_dir).resolve()) + "\n" + json.dumps(run_identity(config), sort_keys=True)
    if request:
        text += "\n" + json.dumps(run_identity(request), sort_keys=True)
    # surrogateescape: a folder name that is not valid in a non-UTF-8 locale (its bytes kept as surrogates)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def record_hash(record: Any) -> str:
    """The hash of a latency model's record (``to_dict``): a LUT's with its calibration, a few-shot model's.
    A refit (``lut calibrate``, a deploy) changes it, so ``runs stale`` knows to look again."""
    return hashlib.sha256(json.dumps(record.to_dict(), sort_keys=True).encode()).hexdigest()


def column_hash(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def describe_device(project: Project, target: Any) -> RunDevice:
    """How ``target`` (a ``DeviceTarget``) predicts latency, for the record."""
    from edgenas.evaluate.tabular import TableLatency

    model = target.model
    if isinstance(model, TableLatency):
        return RunDevice(target.name, "table", f"table:{model.column}", column_hash(model.values),
                         f"{model.table.path}#{model.column}", target.budget_ms)
    lut = getattr(model, "lut", None)
    if lut is not None:
        from edgenas.latency.store import LutStore

        path = LutStore(project.luts_dir).path_for(lut.device, lut.space, lut.fingerprint_hash)
        return RunDevice(target.name, "lut", lut.fingerprint_hash, record_hash(lut), str(path), target.budget_ms)
    from edgenas.latency.fewshot_model import FewShotLatency, model_path

    if isinstance(model, FewShotLatency):  # `runs stale` and warm start find it again by device and space
        m = model.model
        return RunDevice(target.name, "fewshot", m.fingerprint_hash, record_hash(m),
                         str(model_path(project.luts_dir, m.device, m.space)), target.budget_ms)
    return RunDevice(target.name, "other", None, None, None, target.budget_ms)


def folder_run_id(out: Path, config: Mapping[str, Any]) -> str:
    """The id of the run in ``out`` (``run_id_for``) with its checked ``config`` and its ``request.json`` as read."""
    return run_id_for(out, config, _object(out / "request.json", "search request"))


def _object(path: Path, what: str) -> dict[str, Any]:
    """A run file holding one JSON object ({} when the file is absent)."""
    if not path.exists():
        return {}
    obj = read_json(path, what)
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a JSON object", hint="the run folder is damaged")
    return dict(obj)


def check_run_folder(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path, if it holds a search run's files (else one ``InputError``)."""
    from edgenas.safenames import check_utf8_path

    out = Path(out_dir)
    check_utf8_path(out, "run folder")
    link = next((f for f in (*START_FILES, *RESULT_FILES, "warm_start.json") if (out / f).is_symlink()), None)
    if link is not None:  # as the report refuses one: what is indexed is the folder's own record
        raise InputError(f"{out / link} is a symbolic link; a run's records are files of their own folder",
                         hint="replace the link with the file itself")
    config = read_json(out / "config.json", "run config") if (out / "config.json").exists() else None
    darts = isinstance(config, Mapping) and config.get("kind") == "darts"
    missing = [f for f in RUN_FILES if not (out / f).exists() and not (darts and f == "evaluations.jsonl")]
    if missing:
        raise InputError(f"{shown(out)} is not a search run folder (no {', '.join(missing)})",
                         hint="give the --out folder of an edgenas search")
    _check_space(check_config(config, out / "config.json")["space"], out / "config.json")
    return out


def _check_space(name: str, path: Path) -> None:
    """A run of a space this edgenas does not know is refused: indexed, it failed every later ``runs
    stale`` and its report page."""
    from edgenas.spaces import get_space

    try:
        get_space(name)
    except InputError as exc:
        raise InputError(f"{path}: {exc.message}", hint="the run folder is damaged, or made by a plugin that is "
                         "not installed") from None


def _canonical_space(name: str) -> str:
    """A space's own name for ``name``: request.json keeps the name as typed (``mbv3``, an alias), config.json
    the space's (``ofa-mbv3``)."""
    from edgenas.spaces import get_space

    return get_space(name).name


def index_run(db: ExperimentDB, project: Project, out_dir: str | os.PathLike, *, problem: Any = None,
              status: str | None = None, rerun_of: str | None = None,
              created_at: float | None = None, own: bool = False) -> RunRecord:
    """Save the run in ``out_dir`` into ``db`` (replacing an earlier copy); returns its record.

    Without ``problem`` the devices are recorded without table hashes (``launch.import_run`` rebuilds
    the problem from the folder's request first). ``own``: see ``read_run``."""
    return save_run(db, *read_run(project, out_dir, problem=problem, status=status, rerun_of=rerun_of,
                                  created_at=created_at, own=own))


def _check_archs(space_name: str, out: Path, logged: list[dict[str, Any]], best: Mapping[str, Any]) -> None:
    """Each logged architecture and the chosen one, one of the space (``space.from_dict``; about 30 us each)."""
    from edgenas.spaces import get_space

    space = get_space(space_name)
    named = [(f"{out / 'evaluations.jsonl'}: evaluation {r['number']}", r["arch"]) for r in logged]
    if best.get("arch") is not None:
        named.append((f"{out / 'best.json'}", best["arch"]))
    for where, arch in named:
        space.from_record(arch, where, hint="the run folder was edited or damaged: restore the file, or start a "
                                            "new search")


def read_run(project: Project, out_dir: str | os.PathLike, *, problem: Any = None, status: str | None = None,
             rerun_of: str | None = None, created_at: float | None = None, own: bool = False
             ) -> tuple[RunRecord, list[Evaluation], dict[str, list[int]]]:
    """The record, evaluations and fronts ``index_run`` saves of the run in ``out_dir``, every file checked;
    nothing is opened but the folder's files. Each architecture is one of the run's space, unless ``own`` (the
    records this search wrote, or replayed and checked): an edited one was imported, and every later warm start
    from the database failed on it ("r=99 is not one of 24, 28, 32", naming no run)."""
    out = check_run_folder(out_dir)
    config = check_config(read_json(out / "config.json", "run config"), out / "config.json")
    request = _object(out / "request.json", "search request") or None
    if request is not None:  # recorded, it is what `search --rerun` repeats: of a space it cannot search, refused
        asked = check_request_fields(request, out / "request.json")["space"]
        _check_space(asked, out / "request.json")
        if _canonical_space(asked) != _canonical_space(config["space"]):  # indexed as one space, re-run as another
            raise InputError(f"{out}: request.json names the space {asked!r} and config.json {config['space']!r}",
                             hint="the run folder is damaged: the two files are of different runs")
    darts = config.get("kind") == "darts"
    if problem is not None:
        devices = as_recorded(out, config, tuple(describe_device(project, t) for t in problem.devices))
        objective = problem.accuracy_name
    else:
        devices = tuple(RunDevice(n, "unknown", budget_ms=None if b is None else float(b))
                        for n, b in config.get("devices", []))
        pareto = check_pareto(_object(out / "pareto.json", "pareto"), out / "pareto.json")
        first = (pareto.get("objectives") or [None])[0]  # DARTS measures no accuracy: its problem's name
        objective = "accuracy" if darts else str(first or _scored(request) or "accuracy")
    best = check_best(_object(out / "best.json", "best"), out / "best.json")
    logged = darts_log(out, config, best) if darts else read_evaluations(out / "evaluations.jsonl")[0]
    if not (own or darts):
        _check_archs(str(config["space"]), out, logged, best)
    evals = [Evaluation(int(r["number"]), r["arch"], r["objectives"], r["latency_ms"], r.get("constraints", {}),
                        bool(r["feasible"]), float(r.get("wall_s", 0.0))) for r in logged]
    ckpt = check_checkpoint(_object(out / "checkpoint.json", "checkpoint"), out / "checkpoint.json")
    fronts: dict[str, list[int]] = {}
    if (out / "pareto.json").exists():
        pareto = check_pareto(_object(out / "pareto.json", "pareto"), out / "pareto.json")
        fronts = {str(k): [int(p["number"]) for p in v] for k, v in (pareto.get("devices") or {}).items()}
        fronts["*"] = [int(p["number"]) for p in pareto.get("front") or []]
    warm = check_warm_start(_object(out / "warm_start.json", "warm start"), out / "warm_start.json") or None
    if darts:
        ckpt = {"status": "complete"} if best else {}
    run_status = status or checkpoint_status(out, ckpt)
    if not best and run_status == "stopped" and not darts and "ladder" not in config:
        best = stopped_best(config, request, problem, str(objective), logged)
    best_obj = best.get("objectives") or {}
    best_number = darts_best_number(best) if darts else best.get("number")
    rec = RunRecord(
        id=run_id_for(out, config, request), created_at=created_at or _file_time(out, START_FILES, min),
        status=run_status, space=str(config["space"]),
        strategy=str(config.get("strategy") or config.get("mode") or config.get("kind") or "?"),
        seed=int(config.get("seed") or 0), objective=str(objective), out_dir=str(out.resolve()), config=config,
        task=describe_task(request or {"table": None}), request=request, devices=devices,
        finished_at=_file_time(out, RESULT_FILES, max) if run_status != "running" else None, n_evaluations=len(evals),
        best_number=best_number,
        best_value=best_obj.get(objective), best_arch=best.get("arch"),
        warm_start=warm, rerun_of=rerun_of if rerun_of is not None else (warm or {}).get("rerun_of"))
    return rec, evals, fronts


def _scored(request: Mapping[str, Any] | None) -> str | None:
    """The objective a run scored by its request (``Problem.accuracy_name``): the table's column ``--objective``
    with the tabular evaluator, else the evaluator's name. A stopped run has no pareto.json to say it, and
    ``--objective`` (cifar10_test by default) was taken for every evaluator: no evaluation of a proxy's run held
    it, so ``runs import`` recorded the run under it, with no best so far."""
    if request is None:
        return None
    return accuracy_name(request.get("evaluator"), request.get("table"), request.get("objective"))


def as_recorded(out: Path, config: Mapping[str, Any], devices: tuple[RunDevice, ...]) -> tuple[RunDevice, ...]:
    """``devices`` (described with today's tables, as ``runs import`` rebuilds them) with what the run had:
    its budgets (``config.json``; a quantile budget moves with the table) and the table hashes it started
    with (``tables.json``). With today's hash, ``runs import`` after a table changed hid the run from ``runs
    stale``. A device the record lacks keeps today's hash (a run made before the record); an unreadable
    record gives none, so ``runs stale`` checks the run again rather than trusting a guess."""
    budgets = {str(n): None if b is None else float(b) for n, b in config.get("devices", [])}
    devices = tuple(dataclasses.replace(d, budget_ms=budgets[d.device]) if d.device in budgets else d
                    for d in devices)
    path = out / "tables.json"
    if not path.exists():
        return devices
    try:
        recorded: Mapping[str, str | None] = check_tables(read_json(path, "the run's table record"), path)
    except InputError:
        recorded = {d.device: None for d in devices}
    return tuple(dataclasses.replace(d, lut_hash=recorded[d.device]) if d.device in recorded else d
                 for d in devices)


def stopped_best(config: Mapping[str, Any], request: Mapping[str, Any] | None, problem: Any, objective: str,
                 logged: list[dict[str, Any]]) -> dict[str, Any]:
    """The best so far of a stopped ask/tell run that wrote no best.json (killed, interrupted: it writes one only
    when it ends), as best.json's fields: what it would have chosen had it stopped after the evaluations it
    logged (``results.choose_best``, ``summarise``'s choice, on the budgets it ran with), {} when none is
    feasible. Such a run was recorded with no best at all though it had feasible evaluations. Records without a
    number for the objective or a device's latency (a null the log kept for a NaN) are no candidates."""
    from edgenas.limits import is_number
    from edgenas.search.base import Trial
    from edgenas.search.results import choose_best
    from edgenas.spaces import get_space

    budgets = {str(n): None if b is None else float(b) for n, b in config.get("devices", [])}
    extra = list(problem.extra) if problem is not None else \
        [k for k in ("params", "flops") if k in ((request or {}).get("minimise") or ())]
    trials = [Trial.from_json(r) for r in logged]
    trials = [t for t in trials if all(is_number(t.objectives.get(k)) for k in (objective, *extra))
              and all(is_number(t.latency_ms.get(d)) for d in budgets)]
    t = choose_best(trials, get_space(str(config["space"])), objective, budgets, extra)
    if t is None:
        return {}
    return {"arch": dict(t.arch), "objectives": dict(t.objectives), "latency_ms": dict(t.latency_ms),
            "number": t.number}


def checkpoint_status(out: Path, ckpt: Mapping[str, Any]) -> str:
    """The run's status by its checkpoint; ``running`` only while a search holds the folder's run lock (an
    interrupted run's checkpoint still says ``running``, and ``runs import`` recorded it as running)."""
    status = "complete" if ckpt.get("status") == "complete" else ckpt.get("status") or "running"
    return status_now(status, out)


def _file_time(out: Path, names: tuple[str, ...], pick: Any) -> float:
    """The ``pick`` (min or max) of the modification times of the run files ``names`` that exist
    (``config.json``'s when none does)."""
    times = [(out / n).stat().st_mtime for n in names if (out / n).is_file()]
    return float(pick(times)) if times else (out / "config.json").stat().st_mtime


def darts_best_number(best: Mapping[str, Any]) -> int | None:
    """The evaluation number of a DARTS run's chosen network: ``best.json``'s (DARTS-PT's pick, mbv3's
    repaired network, the last epoch's), else (runs from before it was recorded) its last epoch's record
    (``darts_log`` numbers epoch e as e - 1)."""
    number, epoch = best.get("number"), best.get("epoch")
    return number if number is not None else int(epoch) - 1 if epoch else None


def darts_log(out: Path, config: Mapping[str, Any], best: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A DARTS run's epochs as evaluation records: the cell derived at each epoch's end (by alpha), then,
    for a finished run whose chosen network is none of them (DARTS-PT's pick on nb201, the network the
    budget repair made of the last argmax on mbv3), that network (``best.json``'s ``number``)."""
    from edgenas.spaces import get_space

    src = out / "checkpoint.json" if (out / "checkpoint.json").exists() else out / "history.json"
    history = _object(src, "DARTS history").get("history", [])
    space = get_space(str(config["space"]))
    budgets = {str(n): b for n, b in config.get("devices", [])}

    def record(number: Any, arch: Any, train_loss: Any, latency_ms: Mapping[str, Any], wall_s: float) -> dict:
        ms = {str(k): float(v) for k, v in latency_ms.items()}
        cons = {k: v - budgets[k] for k, v in ms.items() if budgets.get(k) is not None}
        return {"number": int(number), "arch": arch, "objectives": {"train_loss": float(train_loss)},
                "latency_ms": ms, "constraints": cons, "feasible": all(v <= 0 for v in cons.values()),
                "wall_s": wall_s}

    damaged = (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError)
    try:
        recs, wall = _darts_records(space, history, record, src)
        recs = [check_evaluation(r, src, n) for n, r in enumerate(recs, 1)]
    except damaged:
        raise InputError(f"{src}: malformed DARTS history (epochs with arch, train_loss, derived_ms)",
                         hint="the run folder is damaged") from None
    if not (history and best.get("number") == len(history)):
        return recs
    try:  # the chosen network, after the epochs': best.json's (its arch a record, or a cell string as nb201's epochs)
        arch = _darts_arch(space, best["arch"], out / "best.json") if isinstance(best["arch"], str) else best["arch"]
        chosen = record(best["number"], arch, history[-1]["train_loss"], best["latency_ms"],
                        wall + float(best.get("pt_s") or 0.0))
    except damaged:
        raise InputError(f"{out / 'best.json'}: malformed chosen network (arch, latency_ms)",
                         hint="the run folder is damaged") from None
    bad = bad_evaluation_field(chosen)
    if bad:
        raise InputError(f"{out / 'best.json'}: the chosen network is not an evaluation record (malformed {bad})",
                         hint="the run folder is damaged")
    return [*recs, chosen]


def _darts_records(space: Any, history: Any, record: Any, src: Path) -> tuple[list[dict[str, Any]], float]:
    """The epochs' records and the wall time they took."""
    recs, wall = [], 0.0
    for h in history:
        wall += float(h.get("epoch_s", 0.0))
        # nb201: the cell's string; mbv3 (darts_mbv3_train): the architecture record
        recs.append(record(int(h["epoch"]) - 1, _darts_arch(space, h["arch"], src), h["train_loss"],
                           h["derived_ms"], wall))
    return recs, wall


def _darts_arch(space: Any, a: Any, path: Path) -> dict[str, Any]:
    """The architecture record of a DARTS file's ``arch`` (a record or a cell string); the space's error names
    the file."""
    try:
        return space.to_dict(space.from_dict(a) if isinstance(a, Mapping) else space.from_string(a))
    except InputError as exc:
        raise InputError(f"{path}: {exc.message}", hint="the run folder is damaged") from None
