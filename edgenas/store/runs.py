"""Search runs in the experiment database: the ``RunRecord`` and its reads and writes.

A run is saved whole, in one transaction (``save_run``: the run row, its devices, every evaluation and
its fronts), replacing any earlier copy with the same id, so indexing a run folder twice (a search
that writes while it runs, then ``edgenas runs import``) never duplicates anything. Run ids are short
hex strings; any unique prefix names a run. Re-indexing keeps the run's ``created_at`` (a resume or an
import does not make it newer), and replaces a copy of the same run in the same folder under another id.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from edgenas.errors import InputError
from edgenas.kinds import is_run_id
from edgenas.locks import status_now
from edgenas.store.experiment import ExperimentDB
from edgenas.store.rows import DamagedRowError, decode_row, key_of, raw_columns, run_hint
from edgenas.store.schema import evaluations, fronts, run_devices, runs
from edgenas.textsafe import shown

#: config fields a resume may change (``search --resume RUN --time-budget S`` extends ``max_wall_s``): they do
#: not make another run, so a run's id (``search.record.run_id_for``) and the same-run check leave them out
#: (``search.run.run_search`` refuses a resume that changes any other field)
RESUME_FIELDS = frozenset({"max_wall_s"})


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as it identifies a run: the ``RESUME_FIELDS`` it has, as null (not dropped, so a run that
    never had a time limit keeps the id it always had)."""
    return {**config, **{k: None for k in RESUME_FIELDS if k in config}}


@dataclass(frozen=True)
class RunDevice:
    """A device of a run: what predicted its latency (a LUT file, or a table column) and its budget."""

    device: str
    kind: str                         # "lut" | "table" | "fewshot" | "other" | "unknown"
    fingerprint_hash: str | None = None
    lut_hash: str | None = None
    lut_ref: str | None = None        # the LUT file, or "TABLE#COLUMN"
    budget_ms: float | None = None


@dataclass(frozen=True)
class RunRecord:
    id: str
    created_at: float
    status: str
    space: str
    strategy: str
    seed: int
    objective: str
    out_dir: str
    config: Mapping[str, Any]
    task: Mapping[str, Any]
    request: Mapping[str, Any] | None = None
    devices: tuple[RunDevice, ...] = ()
    finished_at: float | None = None
    n_evaluations: int = 0
    best_number: int | None = None
    best_value: float | None = None
    best_arch: Mapping[str, Any] | None = None
    warm_start: Mapping[str, Any] | None = None
    rerun_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["devices"] = [dict(x.__dict__) for x in self.devices]
        return d


@dataclass(frozen=True)
class Evaluation:
    number: int
    arch: Mapping[str, Any]
    objectives: Mapping[str, float]
    latency_ms: Mapping[str, float]
    constraints: Mapping[str, float] = field(default_factory=dict)
    feasible: bool = True
    wall_s: float = 0.0


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """JSON columns hold no NaN/inf (PostgreSQL's JSON refuses them): those become None."""
    return {str(k): (_finite(v) if isinstance(v, float) else v) for k, v in obj.items()}


def save_run(db: ExperimentDB, rec: RunRecord, evals: Sequence[Evaluation] = (),
             run_fronts: Mapping[str, Sequence[int]] | None = None) -> RunRecord:
    """Save ``rec`` whole, replacing its earlier copies; returns the record as saved.

    An earlier copy's ``created_at`` is kept: re-indexing a resumed or re-imported run moved it, and with it
    the order of ``runs list`` and the warm start's tie-break. Earlier copies are the row of ``rec``'s id and
    any row of the same run folder and the same run (``same_run``) under another id: an edgenas that hashed a
    resume's new time limit into the id left such a phantom, which listings and warm starts then used."""
    with db.begin() as con:
        if con.dialect.name == "postgresql":  # one run saver at a time, as SQLite's write lock makes it there: two
            # indexing one run at once (a search's last index and a `runs import` of its folder) both inserted
            # its row (a unique violation) or deadlocked on the deletes under READ COMMITTED
            con.execute(sa.text("SELECT pg_advisory_xact_lock(727002)"))
        earlier = _earlier_copies(db, con, rec)
        kept = [c for _, c in earlier if c is not None]
        if kept:
            rec = dataclasses.replace(rec, created_at=min(kept))
        ids = sorted({rid for rid, _ in earlier} | {rec.id})
        for t in (fronts, evaluations, run_devices):
            con.execute(t.delete().where(t.c.run_id.in_(ids)))
        con.execute(runs.delete().where(runs.c.id.in_(ids)))
        gone = [rid for rid in ids if rid != rec.id]
        if gone:  # a re-run of the phantom is a re-run of this run
            con.execute(runs.update().where(runs.c.rerun_of.in_(gone)).values(rerun_of=rec.id))
        _insert_run(con, rec, evals, run_fronts)
    return rec


def _insert_run(con: Any, rec: RunRecord, evals: Sequence[Evaluation],
                run_fronts: Mapping[str, Sequence[int]] | None) -> None:
    row = {f.name: getattr(rec, f.name) for f in fields(rec) if f.name != "devices"}
    row["best_value"] = _finite(rec.best_value)
    con.execute(runs.insert().values(**row))
    if rec.devices:
        con.execute(run_devices.insert(), [dict(run_id=rec.id, position=i, **d.__dict__)
                                           for i, d in enumerate(rec.devices)])
    if evals:
        con.execute(evaluations.insert(), [
            dict(run_id=rec.id, number=e.number, arch=dict(e.arch), objectives=_clean(e.objectives),
                 latency_ms=_clean(e.latency_ms), constraints=_clean(e.constraints), feasible=e.feasible,
                 value=_finite(e.objectives.get(rec.objective)), wall_s=e.wall_s) for e in evals])
    rows = [dict(run_id=rec.id, front=name, position=i, number=n)
            for name, numbers in (run_fronts or {}).items() for i, n in enumerate(numbers)]
    if rows:
        con.execute(fronts.insert(), rows)


def _earlier_copies(db: ExperimentDB, con: Any, rec: RunRecord) -> list[tuple[str, float | None]]:
    """(id, created_at) of the rows ``rec`` replaces (``save_run``); a damaged value reads as None (the
    copy of ``rec``'s id is replaced all the same, as ``runs import`` promises for a damaged row)."""
    cols = [c for c in raw_columns(runs, db.dialect) if c.name in ("id", "created_at", "config", "request")]
    rows = con.execute(sa.select(*cols).where(sa.or_(runs.c.id == rec.id, runs.c.out_dir == rec.out_dir))).all()
    out = []
    for r in rows:
        config = _decoded(db, r, "config")
        if r.id == rec.id or (config is not None and same_run(config, rec.config)
                              and _same_request(_decoded(db, r, "request"), rec.request)):
            out.append((str(r.id), _decoded(db, r, "created_at")))
    return out


def _same_request(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two recorded requests can be one run's: equal but for what a resume may change, or one of them
    not recorded (a run indexed before it had one). A search in the same folder with the same config and another
    objective or table is another run (an earlier version gave both one id)."""
    return not a or not b or run_identity(a) == run_identity(b)


def _decoded(db: ExperimentDB, r: Any, column: str) -> Any:
    """One column of a raw run row, checked (``rows.decode_row``); None when damaged."""
    try:
        return decode_row({column: r._mapping[column]}, "runs", where=db.where, key=key_of(r), hint="")[column]
    except InputError:
        return None


def same_run(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two configs are one run's (equal but for what a resume may change)."""
    return run_identity(a) == run_identity(b)


def _decode_run(db: ExperimentDB, r: Any, devs: Sequence[Any]) -> RunRecord:
    """The run row ``r`` and its device rows (``raw_columns``), checked (``rows.decode_row``)."""
    key, hint = key_of(r), run_hint(r._mapping.get("out_dir"))
    d = decode_row(r, "runs", where=db.where, key=key, hint=hint)
    devices = []
    for x in devs:
        dev = decode_row(x, "run_devices", where=db.where, key=key, hint=hint)
        devices.append(RunDevice(dev["device"], dev["kind"], dev["fingerprint_hash"], dev["lut_hash"], dev["lut_ref"],
                                 None if dev["budget_ms"] is None else float(dev["budget_ms"])))
    if d.get("out_dir"):  # imported while it ran, then killed: no process holds its folder now
        d = dict(d, status=status_now(d.get("status"), d["out_dir"]))
    return RunRecord(**d, devices=tuple(devices))


def _runs_query(db: ExperimentDB) -> Any:
    return sa.select(*raw_columns(runs, db.dialect))


def _devices_query(db: ExperimentDB) -> Any:
    return sa.select(*raw_columns(run_devices, db.dialect))


def scan_runs(db: ExperimentDB, *, space: str | None = None, device: str | None = None,
              status: str | None = None) -> tuple[list[RunRecord], list[tuple[str, DamagedRowError]]]:
    """(runs, damaged runs): the runs, oldest first, filtered by space, device and status, and each run
    whose row (or a row of its devices) is damaged, as (its id as stored, the error): what a listing
    shows as damaged instead of failing whole."""
    q = _runs_query(db)
    if space is not None:
        q = q.where(runs.c.space == space)
    if status is not None:  # a stored "running" may read as "stopped" (``_decode_run``): both are fetched
        q = q.where(runs.c.status.in_({status, "running"} if status == "stopped" else {status}))
    if device is not None:
        q = q.where(runs.c.id.in_(sa.select(run_devices.c.run_id).where(run_devices.c.device == device)))
    with db.read() as con:
        rows = con.execute(q.order_by(runs.c.created_at, runs.c.id)).all()
        devs = con.execute(_devices_query(db).order_by(run_devices.c.run_id, run_devices.c.position)).all()
    by_run: dict[Any, list[Any]] = {}
    for x in devs:
        by_run.setdefault(x.run_id, []).append(x)
    good, damaged = [], []
    for r in rows:
        try:
            run = _decode_run(db, r, by_run.get(r.id, []))
        except DamagedRowError as exc:
            damaged.append((str(r.id), exc))
            continue
        if status is None or run.status == status:
            good.append(run)
    return good, damaged


def list_runs(db: ExperimentDB, *, space: str | None = None, device: str | None = None,
              status: str | None = None) -> list[RunRecord]:
    """Runs, oldest first, filtered by space, device and status; a damaged row is one ``DamagedRowError``."""
    good, damaged = scan_runs(db, space=space, device=device, status=status)
    if damaged:
        raise damaged[0][1]
    return good


def resolve_run_id(db: ExperimentDB, ref: str) -> str:
    """The full id of the run named by ``ref`` (an id or a unique prefix of one)."""
    if not ref or not all(c in "0123456789abcdef" for c in ref):
        raise InputError(f"'{shown(ref)}' is not a run id", hint="run ids are hex strings; see: edgenas runs list")
    hint = "see: edgenas runs list (older run folders: edgenas runs import DIR)"
    if not is_run_id(ref):  # longer than any id: not asked (SQLite called a LIKE of 50,000 digits too complex, exit 6)
        raise InputError(f"no run '{ref[:16]}…' ({len(ref):,} digits; a run id has at most 64) in the experiment "
                         f"database {db.where}", hint=hint)
    with db.read() as con:
        ids = con.execute(sa.select(runs.c.id).where(runs.c.id.like(f"{ref}%")).limit(3)).scalars().all()
    if not ids:
        raise InputError(f"no run '{ref}' in the experiment database {db.where}", hint=hint)
    if len(ids) > 1:
        raise InputError(f"run id prefix '{ref}' is ambiguous ({', '.join(ids)}, ...)", hint="give more characters")
    return ids[0]


def get_run(db: ExperimentDB, ref: str) -> RunRecord:
    rid = resolve_run_id(db, ref)
    with db.read() as con:
        r = con.execute(_runs_query(db).where(runs.c.id == rid)).one()
        devs = con.execute(_devices_query(db).where(run_devices.c.run_id == rid)
                           .order_by(run_devices.c.position)).all()
    return _decode_run(db, r, devs)


def _children(db: ExperimentDB, table: sa.Table, run_id: str, order: Sequence[Any], *, where: Any = None,
              limit: int | None = None, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``table`` (evaluations, fronts) of run ``run_id`` (those ``where`` selects, the first ``limit``
    in ``order``; ``only`` these columns, ``number`` among them), checked; a damaged one names the run."""
    cols = [c for c in raw_columns(table, db.dialect) if only is None or c.name in only]
    q = sa.select(*cols).where(table.c.run_id == run_id)
    if where is not None:
        q = q.where(where)
    with db.read() as con:
        rows = con.execute(q.order_by(*order).limit(limit)).all()
        out_dir = con.execute(sa.select(runs.c.out_dir).where(runs.c.id == run_id)).scalar() if rows else None
    hint = run_hint(out_dir)
    what = "evaluation" if table is evaluations else "front row"
    return [decode_row(r, table.name, where=db.where, hint=hint,
                       key=f"run {run_id}, {what} {r.number if table is evaluations else r.position}") for r in rows]


def _evaluation(r: Mapping[str, Any]) -> Evaluation:
    """A row as the record it was saved from, but for what ``_clean`` stored as null (a NaN or an infinity): an
    objective is then the worst, -inf, and a latency or a constraint +inf (the stale check's float(None) was a
    TypeError)."""
    objectives = {k: (-math.inf if v is None else v) for k, v in r["objectives"].items()}
    latency, constraints = ({k: (math.inf if v is None else v) for k, v in r[c].items()}
                            for c in ("latency_ms", "constraints"))
    return Evaluation(r["number"], r["arch"], objectives, latency, constraints, r["feasible"], float(r["wall_s"]))


def run_evaluations(db: ExperimentDB, run_id: str) -> list[Evaluation]:
    return [_evaluation(r) for r in _children(db, evaluations, run_id, [evaluations.c.number])]


def evaluation_values(db: ExperimentDB, run_id: str) -> list[tuple[int, float | None, bool]]:
    """``(number, value, feasible)`` of each of the run's evaluations in order: the primary objective that
    ``save_run`` stores in ``value`` (None where not finite), not the records. ``runs compare`` decoded every
    evaluation's JSON columns for these two fields: 15 s and 340 MB with a run of 100,000 evaluations."""
    rows = _children(db, evaluations, run_id, [evaluations.c.number], only=("number", "value", "feasible"))
    return [(r["number"], r["value"], r["feasible"]) for r in rows]


def best_evaluations(db: ExperimentDB, run_id: str, limit: int) -> list[Evaluation]:
    """The run's ``limit`` best evaluations by its primary objective (the ``value`` column ``save_run`` fills),
    best first, of equal value the first evaluated; those of no finite value (null) are left out. Selected in
    the database: a warm start read every evaluation of every run it drew from (200 runs of 1,000 in the
    database: 200,000 rows decoded and checked) to keep the best few of each."""
    order = [evaluations.c.value.desc(), evaluations.c.number]
    return [_evaluation(r) for r in _children(db, evaluations, run_id, order, where=evaluations.c.value.is_not(None),
                                              limit=max(int(limit), 0))]


def run_fronts(db: ExperimentDB, run_id: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in _children(db, fronts, run_id, [fronts.c.front, fronts.c.position]):
        out.setdefault(r["front"], []).append(r["number"])
    return out
