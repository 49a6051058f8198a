"""The files of a search run folder, checked once for everyone who reads them.

A run folder is a file a user can edit, copy or damage: ``runs import`` (``search/record.py``), the
report and the API (``report/source.py``) read the same ``config.json``, ``best.json``,
``pareto.json``, ``checkpoint.json`` and ``evaluations.jsonl`` records, and check them here, so a field
of the wrong type is one ``InputError`` naming the file and the field, never a TypeError deep in a
plot or a number SQLite cannot store. Only the fields these readers use are checked; values a search
writes (NaN or -inf scores) stay valid. A record must also be one the run could have written
(``bad_evaluation_value``): ``wall_s`` from 0 to ``MAX_WALL_S``, on a feasible evaluation latencies that are
numbers from 0 (a ``null`` one is left alone), latencies only for the devices of its ``config.json`` and, for an
ask/tell run with a ``request.json``, its objectives exactly (``LogShape``). A value is checked with the predicate the
experiment database's reader (``store/rows.py``) uses for the column it lands in (``edgenas.kinds``): a folder
that imports must read back. ``tables.json`` (``check_tables``) is read by a resume only, which warns rather
than refuses when it is damaged.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from edgenas.errors import InputError
from edgenas.io import read_log_bytes, read_log_tail
from edgenas.kinds import is_budget_ms, is_run_id, is_scores, is_warm_start
from edgenas.limits import is_count, is_finite, loads_json
from edgenas.textsafe import brief

_DAMAGED = "the run folder is damaged"

#: the evaluator a search without ``--evaluator`` or ``--table`` scores with: the proxy with the best rank
#: correlation in bench/proxies_nb201.py (it beats the parameter count)
DEFAULT_EVALUATOR = "compression"

#: the most seconds a record's ``wall_s`` (the time the run had run) may say: 10^9 s is 31 years; a run's clock
#: starts at 0 and goes on from its checkpoint's ``elapsed_s`` when resumed (checked against the same limit)
MAX_WALL_S = 1e9  # (the error says 10^9)

#: what a record may hold beside the searched objective: a network's costs (``search --minimise``)
COST_OBJECTIVES = ("params", "flops")


def main_objective(objectives: Mapping[str, Any]) -> str | None:
    """The objective a record's search optimised: its first one that is not a cost (None when it has none)."""
    return next((k for k in objectives if k not in COST_OBJECTIVES), None)


def read_jsonl(path: Path, since: int = 0) -> tuple[list[Any], int]:
    """The JSON values of the complete lines of ``path`` from line ``since`` on (blank lines skipped),
    and the length in bytes of those complete lines: a torn last line (a writer killed mid-line) is
    left out, for the writer to cut off; readers must not write. ``([], 0)`` when there is no file."""
    data = read_log_bytes(path)
    if data is None:
        return [], 0
    end = data.rfind(b"\n") + 1
    out = []
    for n, line in enumerate(data[:end].splitlines()):
        if n < since or not line.strip():
            continue
        try:
            out.append(loads_json(line))
        except ValueError:  # bad JSON, bad UTF-8, a value no record holds or too deep (UnreadableValue)
            raise InputError(f"malformed line {n + 1} in {path}", hint=_DAMAGED) from None
    return out, end


def evaluator_name(evaluator: str | None, table: Any) -> str:
    """The evaluator a request's ``--evaluator`` and ``--table`` name: the one given, else the tabular one with a
    table, else ``DEFAULT_EVALUATOR``."""
    return evaluator or ("tabular" if table else DEFAULT_EVALUATOR)


def accuracy_name(evaluator: str | None, table: Any, objective: str) -> str:
    """The name of the objective a search scores (``Problem.accuracy_name``) for a request's ``--evaluator``,
    ``--table`` and ``--objective``: the table's column with the tabular evaluator, else the evaluator's name."""
    name = evaluator_name(evaluator, table)
    return objective if name == "tabular" else name


@dataclass(frozen=True)
class LogShape:
    """What the records of one run's log may name, from its other files (``log_shape``): ``devices``, the
    devices of its ``config.json`` (a latency for another is damage); ``objectives``, the names every record of
    an ask/tell run holds, its accuracy's and the costs it minimises (``Problem.evaluate``). None: not known
    (a folder without the file; a multi-fidelity run, whose rungs score under names of their own)."""

    devices: frozenset[str] | None = None
    objectives: frozenset[str] | None = None


def _readable(path: Path) -> Any:
    """The JSON of ``path``, or None when it is missing or unreadable (its reader names that damage)."""
    from edgenas.io import read_json

    if not path.is_file():
        return None
    try:
        return read_json(path, path.name)
    except InputError:
        return None


def _ask_tell(strategy: Any) -> bool:
    """Whether ``strategy`` is a registered ask/tell strategy, whose records ``Problem.evaluate`` writes: a
    driver (a plugin's too) writes its own records, under objective names of its own."""
    from edgenas.search.base import STRATEGIES, Driver

    try:
        return isinstance(strategy, str) and not issubclass(STRATEGIES.get(strategy), Driver)
    except InputError:  # a strategy this edgenas does not know (a plugin not installed here)
        return False


def log_shape(folder: Path) -> LogShape:
    """The ``LogShape`` of the run in ``folder``: two small files read once per log read, not per record."""
    config = _readable(folder / "config.json")
    if not isinstance(config, Mapping):
        return LogShape()
    try:
        config = check_config(config, folder / "config.json")
    except InputError:
        return LogShape()
    devices = frozenset(n for n, _ in config["devices"]) if "devices" in config else None
    request = _readable(folder / "request.json") if "kind" not in config else None  # an ask/tell run's config
    if not isinstance(request, Mapping) or request.get("ladder") or not isinstance(request.get("objective"), str) \
            or not _ask_tell(request.get("strategy")):
        return LogShape(devices)
    try:
        check_request_fields(request, folder / "request.json")
    except InputError:
        return LogShape(devices)
    main = accuracy_name(request.get("evaluator"), request.get("table"), request["objective"])
    return LogShape(devices, frozenset((main, *request.get("minimise", ()))))


def read_evaluations(path: Path, since: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A run's evaluation records from number ``since`` on, each checked and numbered in order (evaluation
    ``i`` is the log's record ``i + 1``: resume replays them by position and the database keys them by number),
    and the byte length of the complete lines (a torn last line left out, as ``read_jsonl`` leaves it):
    ``read_evaluations_after`` without a mark to go on from."""
    recs, mark = read_evaluations_after(path, since)
    return recs, 0 if mark is None else mark.offset


@dataclass(frozen=True)
class LogMark:
    """Where a reader of an evaluation log stopped (``read_evaluations_after``): ``records`` records (and
    ``lines`` lines, blank ones too) end at byte ``offset``; ``file``, the log's device and inode, and ``tail``,
    the bytes just before ``offset``: the same file with the same bytes there is taken to be the same log,
    appended to since."""

    records: int
    lines: int
    offset: int
    file: tuple[int, int]
    tail: bytes


#: the bytes before a ``LogMark`` compared again (the end of its last record or two)
_MARK_TAIL = 512


def read_evaluations_after(path: Path, since: int = 0,
                           mark: LogMark | None = None) -> tuple[list[dict[str, Any]], LogMark | None]:
    """The log's evaluation records from number ``since`` on, each checked as ``read_evaluations`` checks it
    (the records before ``since`` are counted, not parsed), and a ``LogMark`` at the end of its complete lines
    (None when there is no log). ``mark``, one of an earlier call: when it is at or before record ``since`` and
    still holds (same file, same bytes before it) the log is read from there only, so a live view polling a
    run of 100,000 evaluations every second reads what was appended, not the whole log. ``since`` counts
    records: a blank line is skipped, not counted (``read_evaluations`` numbers records so too)."""
    start = mark if mark is not None and mark.records <= since else None
    shape = log_shape(path.parent)
    got = read_log_tail(path, max(start.offset - len(start.tail), 0) if start else 0)
    if got is None:
        return [], None
    data, st = got
    file = (st.st_dev, st.st_ino)
    if start is not None and not (start.file == file and start.offset <= st.st_size
                                  and data[:len(start.tail)] == start.tail):
        start = None   # another file, or not the one it was: read it from the start
        data, st = read_log_tail(path, 0) or (b"", st)
        file = (st.st_dev, st.st_ino)
    skip = len(start.tail) if start else 0
    base = start.offset - skip if start else 0
    end = data.rfind(b"\n") + 1
    records, lines = (start.records, start.lines) if start else (0, 0)
    out = []
    for line in data[skip:max(end, skip)].splitlines():
        lines += 1
        if not line.strip():
            continue
        if records >= since:
            out.append(_checked_record(line, path, lines, records, shape))
        records += 1
    stop = max(end, skip)
    return out, LogMark(records, lines, base + stop, file, bytes(data[max(stop - _MARK_TAIL, 0):stop]))


def _checked_record(line: bytes, path: Path, line_no: int, number: int, shape: LogShape) -> dict[str, Any]:
    """One line of an evaluation log parsed and checked as its record ``number`` of a run of ``shape``
    (``line_no`` counts blank lines too, as ``read_jsonl`` does)."""
    try:
        rec = loads_json(line)
    except ValueError:  # as read_jsonl
        raise InputError(f"malformed line {line_no} in {path}", hint=_DAMAGED) from None
    check_evaluation(rec, path, number + 1, shape)
    if rec["number"] != number:
        raise _out_of_order(path, number, rec["number"])
    return rec


def _out_of_order(path: Path, i: int, number: Any) -> InputError:
    return InputError(f"{path}: record {i + 1} is evaluation number {number}, expected {i} "
                      "(the numbers must run 0, 1, 2, ... in order)", hint=_DAMAGED)


@dataclass(frozen=True)
class LogTally:
    """An evaluation log's complete lines counted and checked as ``read_evaluations`` checks them, the records
    not kept (``tally_evaluations``): ``records``; ``lines`` (blank ones too); ``end``, their length in bytes,
    and ``digest``, a hash of those bytes; ``objective``, the first objective name of a record other than
    ``params`` and ``flops`` (what a run's summary falls back on), None when none has one."""

    records: int
    lines: int
    end: int
    digest: bytes
    objective: str | None


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def tally_evaluations(path: Path, after: LogTally | None = None, *,
                      visit: Callable[[dict[str, Any]], None] | None = None) -> LogTally:
    """The ``LogTally`` of the log at ``path``: what a run's summary needs (its count, and whether every record
    is one), without the records, which for 100,000 evaluations took 5 s and 300 MB. ``after``, an earlier
    tally of the same log, is gone on from when the bytes it counted are still the log's first ones (the
    digest): a log is appended to, so a server asked again (the live view polls the run) checks only the
    records written since; any other change is counted from the start. ``visit``: called with each record
    counted, once it is checked (the report's columns are filled so, without keeping the records)."""
    data = read_log_bytes(path)
    if data is None:
        return LogTally(0, 0, 0, _digest(b""), None)
    shape = log_shape(path.parent)
    end = data.rfind(b"\n") + 1
    view = memoryview(data)
    if after is not None and after.end <= end and _digest(view[:after.end]) == after.digest:
        start, records, lines, objective = after.end, after.records, after.lines, after.objective
    else:
        start, records, lines, objective = 0, 0, 0, None
    for line in data[start:end].splitlines():
        lines += 1
        if not line.strip():
            continue
        rec = _checked_record(line, path, lines, records, shape)
        if objective is None:
            objective = main_objective(rec["objectives"])
        if visit is not None:
            visit(rec)
        records += 1
    return LogTally(records, lines, end, _digest(view[:end]), objective)


def bad_evaluation_field(rec: Any) -> str | None:
    """The first field of an ``evaluations.jsonl`` record that is missing or of the wrong type, else None."""
    if not isinstance(rec, Mapping):
        return "record (not a JSON object)"
    if not is_count(rec.get("number")):
        return "'number'"
    if not isinstance(rec.get("arch"), Mapping):
        return "'arch'"
    for key in ("objectives", "latency_ms"):
        if not is_scores(rec.get(key)):
            return f"'{key}'"
    if not is_scores(rec.get("constraints", {})):
        return "'constraints'"
    if not isinstance(rec.get("feasible"), bool):
        return "'feasible'"
    if not (is_finite(rec.get("wall_s", 0.0))):
        return "'wall_s'"
    return None


def bad_evaluation_value(rec: Mapping[str, Any], shape: LogShape = LogShape()) -> str | None:
    """The first field of a well-typed record (``bad_evaluation_field``) that no run of ``shape`` writes, and
    why, else None. A run's clock starts at 0; its latency models give finite times from 0 (LUT, table and
    few-shot predictors refuse anything else); it records a latency per device of its config and, per
    evaluation, the same objectives. A ``null`` latency is left alone (no writer's, but the
    database reads one as a NaN or infinity it could not store)."""
    # (read once per record of a log of 100,000: each test is a comparison or one set operation in C)
    wall = rec.get("wall_s", 0.0)
    if not 0 <= wall <= MAX_WALL_S:
        return f"'wall_s' ({wall!r}: the seconds the run had run, from 0 to 10^9)"
    latency, objectives = rec["latency_ms"], rec["objectives"]
    devices, names = shape.devices, shape.objectives
    if devices is not None and not devices.issuperset(latency):
        other = next(d for d in latency if d not in devices)
        known = ", ".join(brief(d) for d in sorted(devices)) or "none"
        return f"'latency_ms' (a latency for {brief(other)}, not one of the run's devices: {known})"
    if rec["feasible"]:
        for ms in latency.values():
            if ms is not None and not 0 <= ms < math.inf:
                device = next(d for d, v in latency.items() if v is ms)
                return f"'latency_ms' ({ms!r} ms on {brief(device)} for a feasible evaluation)"
    if names is not None and not (len(objectives) == len(names) and names.issuperset(objectives)):
        got, want = (", ".join(brief(k) for k in sorted(keys)) for keys in (objectives, names))
        return f"'objectives' ({got or 'none'}, not the run's {want})"
    return None


def check_evaluation(rec: Any, path: Path, line: int, shape: LogShape = LogShape()) -> dict[str, Any]:
    bad = bad_evaluation_field(rec) or bad_evaluation_value(rec, shape)
    if bad:
        raise InputError(f"{path}: line {line} is not an evaluation record (malformed {bad})", hint=_DAMAGED)
    return rec


def resume_or_new(folder: Any) -> str:
    """The hint for a folder that already holds a run: the command that resumes it (``--resume`` added to
    the command that made it is refused: the run's settings are in its folder), or another folder."""
    import shlex

    return f"resume it: edgenas search --resume {shlex.quote(str(folder))}; or choose another --out folder"


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path}: malformed {what}", hint=_DAMAGED)


def check_config(config: Any, path: Path) -> dict[str, Any]:
    """``config.json``: an object with a ``space`` name; ``seed``, ``budget_evals`` whole numbers;
    ``devices`` pairs of a name and a budget (a number of ms from 0, or null); ``strategy``/``mode``/``kind``
    names."""
    if not isinstance(config, Mapping) or not isinstance(config.get("space"), str):
        raise InputError(f"{path} is not a search config (no 'space' name)", hint=_DAMAGED)
    for key in ("seed", "budget_evals"):
        if config.get(key) is not None and not is_count(config[key]):
            raise _fail(path, f"'{key}' (a whole number from 0)")
    devices = config.get("devices", [])
    if not (isinstance(devices, list) and all(
            isinstance(d, list) and len(d) == 2 and isinstance(d[0], str)
            and (d[1] is None or is_budget_ms(d[1])) for d in devices)):
        raise _fail(path, "'devices' (pairs of a name and a budget in ms from 0, or null)")
    for key in ("strategy", "mode", "kind"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise _fail(path, f"'{key}' (a name)")
    return dict(config)


def check_best(best: Any, path: Path) -> dict[str, Any]:
    """``best.json``: ``number`` (or a DARTS ``epoch``) a whole number or null, ``objectives`` and
    ``latency_ms`` objects of numbers, ``arch`` an architecture record or a cell string."""
    if not isinstance(best, Mapping):
        raise InputError(f"{path}: expected a JSON object", hint=_DAMAGED)
    for key in ("number", "epoch"):
        if best.get(key) is not None and not is_count(best[key]):
            raise _fail(path, f"'{key}' (a whole number from 0)")
    for key in ("objectives", "latency_ms"):
        if best.get(key) is not None and not is_scores(best[key]):
            raise _fail(path, f"'{key}' (an object of numbers)")
    if best.get("arch") is not None and not isinstance(best["arch"], (Mapping, str)):
        raise _fail(path, "'arch' (an architecture record)")
    return dict(best)


def _points(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(p, Mapping) and is_count(p.get("number")) for p in v)


def check_pareto(pareto: Any, path: Path) -> dict[str, Any]:
    """``pareto.json``: ``objectives`` a list of names; ``front`` and each of ``devices`` lists of points
    with a whole ``number``."""
    if not isinstance(pareto, Mapping):
        raise InputError(f"{path}: expected a JSON object", hint=_DAMAGED)
    objs = pareto.get("objectives")
    if objs is not None and not (isinstance(objs, list) and all(isinstance(o, str) for o in objs)):
        raise _fail(path, "'objectives' (a list of names)")
    devices = pareto.get("devices")
    if (pareto.get("front") is not None and not _points(pareto["front"])) or (devices is not None and not (
            isinstance(devices, Mapping) and all(_points(v) for v in devices.values()))):
        raise _fail(path, "front (lists of points with a 'number')")
    return dict(pareto)


def check_checkpoint(ckpt: Any, path: Path) -> dict[str, Any]:
    """``checkpoint.json``: an object whose ``status``, if any, is a word and whose ``elapsed_s``, if any,
    a finite number of seconds >= 0."""
    if not isinstance(ckpt, Mapping):
        raise InputError(f"{path}: expected a JSON object", hint=_DAMAGED)
    if not isinstance(ckpt.get("status", ""), str):
        raise _fail(path, "'status'")
    elapsed = ckpt.get("elapsed_s", 0.0)  # a resume's records' wall_s go on from it: the same limit
    if not (is_finite(elapsed) and 0 <= elapsed <= MAX_WALL_S):
        raise _fail(path, "'elapsed_s' (seconds)")
    return dict(ckpt)


def check_warm_start(warm: Any, path: Path) -> dict[str, Any]:
    """``warm_start.json``: an object; ``transferred`` a list of objects with an ``arch`` record (a resume
    proposes them again); ``candidates`` with their similarities; ``note`` text or null; ``rerun_of`` a run
    id or null (the database's ``rerun_of`` column)."""
    if not isinstance(warm, Mapping):
        raise InputError(f"{path}: expected a JSON object", hint=_DAMAGED)
    moved = warm.get("transferred", [])
    if not (isinstance(moved, list) and all(isinstance(t, Mapping) and isinstance(t.get("arch"), Mapping)
                                            for t in moved)):
        raise _fail(path, "'transferred' (a list of objects with an 'arch')")
    if warm.get("note") is not None and not isinstance(warm["note"], str):
        raise _fail(path, "'note' (text)")
    if warm.get("rerun_of") is not None and not is_run_id(warm["rerun_of"]):
        raise _fail(path, "'rerun_of' (the id of the run it re-runs: hex digits)")
    if not is_warm_start(dict(warm)):  # what is left to check: the candidates
        raise _fail(path, "'candidates' (objects with a 'run_id', 'used' and their similarities)")
    return dict(warm)


def check_tables(record: Any, path: Path) -> dict[str, str | None]:
    """``tables.json``: ``{"tables": {device: the SHA-256 of its latency table, or null}}`` (what a resume
    compares today's tables with)."""
    tables = record.get("tables") if isinstance(record, Mapping) else None
    if not (isinstance(tables, Mapping) and all(v is None or isinstance(v, str) for v in tables.values())):
        raise _fail(path, "'tables' (an object of device names to text or null)")
    return dict(tables)


def _is(*types: type) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, types) and not isinstance(v, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and all(check(x) for x in v)


#: what each field of a request.json must be (the values themselves are checked when the problem is built)
_REQUEST_KINDS: dict[str, Callable[[Any], bool]] = {
    "space": _is(str), "strategy": _is(str), "objective": _is(str), "budget": _is(int), "seed": _is(int),
    "checkpoint_every": _is(int), "eta": _is(int), "transfer_ratio": is_finite, "min_similarity": is_finite,
    "max_latency_quantile": _optional(is_finite), "max_wall_s": _optional(is_finite), "llm_share": _optional(is_finite),
    "population": _optional(_is(int)), "batch_size": _optional(_is(int)), "evaluator": _optional(_is(str)),
    "latency_column": _optional(_is(str)), "table": _optional(lambda v: isinstance(v, str) or _list_of(_is(str))(v)),
    "devices": _list_of(_is(str)), "max_latency_ms": _list_of(is_finite), "report": _list_of(_is(str)),
    "minimise": _list_of(_is(str)), "warm_start": _list_of(_is(str)), "ladder": _list_of(_is(str)),
    "evaluator_options": _is(Mapping), "llm": _is(Mapping), "strategy_options": _is(Mapping),
}


def _has_nul(v: Any) -> bool:
    """Text with a NUL byte anywhere in ``v``: no path, name or option holds one, and a path with one
    raised ValueError from the OS layer (an internal error) where the table was opened."""
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, Mapping):
        return any(_has_nul(k) or _has_nul(x) for k, x in v.items())
    return isinstance(v, (list, tuple)) and any(_has_nul(x) for x in v)


def check_request_fields(d: Mapping[str, Any], where: Any) -> Mapping[str, Any]:
    """A ``request.json`` has a ``space`` and no field a ``SearchRequest`` lacks, and the fields present have
    its types and hold no NUL byte (for ``SearchRequest.from_json`` and for ``runs import`` of any run, DARTS
    included). An unknown field used to be a bare TypeError of ``SearchRequest.__init__``."""
    damaged = "the run folder is damaged; start a new search with the options you want"
    unknown = next((k for k in d if k not in _REQUEST_KINDS and k != "schema"), None)
    if unknown is not None:
        raise InputError(f"{where}: unknown field '{str(unknown)[:60]}'",
                         hint="remove the field if it was added by hand; else the run folder is damaged: start a new "
                              "search with the options you want")
    if "space" not in d:
        raise InputError(f"{where}: no 'space' field", hint=damaged)
    bad = next((k for k, v in d.items() if k in _REQUEST_KINDS and not _REQUEST_KINDS[k](v)), None)
    if bad is not None:
        raise InputError(f"{where}: malformed '{bad}' ({str(d[bad])[:60]!r})", hint=damaged)
    nul = next((k for k, v in d.items() if _has_nul(v)), None)
    if nul is not None:
        raise InputError(f"{where}: '{nul}' holds a NUL byte (no path or name has one)", hint=damaged)
    return d
