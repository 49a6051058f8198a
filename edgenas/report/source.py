"""Where reports and the API read from: one small interface, run folders and ``luts/`` behind it today.

``DataSource`` is what the report pages and the HTTP API need (runs, their evaluations, devices, LUTs,
drift checks, measurements). ``FolderSource`` reads a project's files directly: run folders (under
``runs/`` and any direct child of the project root holding a run, e.g. ``demo-run``), ``luts/DEVICE/``
and the measurement store (``measurements/edgenas.db``, opened only when it exists, so reading never
creates anything). The experiment database can plug in later as another ``DataSource``.

Names are untrusted: a run id or device name must match ``NAME_RE`` and resolve inside the project, or
the source answers ``NotFoundError`` (the API turns that into a 404); nothing outside the project is read.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgenas.errors import InputError
from edgenas.io import read_json
from edgenas.locks import run_lock_held, status_now
from edgenas.project import Project
from edgenas.textsafe import shown

if TYPE_CHECKING:
    from edgenas.report.columns import Columns
    from edgenas.search.run_files import LogMark, LogTally

#: a run folder holds ``config.json`` and a log: the evaluations, or a DARTS run's checkpoint (its epochs)
RUN_LOGS = ("evaluations.jsonl", "checkpoint.json")

#: run ids and device names: a letter or digit, then letters, digits, ``.``, ``_``, ``-`` (no ``..``)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


class NotFoundError(InputError):
    """A run, device or table that does not exist (or a name that may not be used)."""


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise NotFoundError(f"invalid {what} name {name!r}",
                            hint="names are letters, digits, '.', '_' and '-', starting with a letter or digit")
    return name


#: evaluators whose scores are accuracies in percent (their ``metric`` says "(%)")
PERCENT_EVALUATORS = ("tabular", "nb201-fidelity", "train", "supernet")


@dataclass(frozen=True)
class RunData:
    """Everything in one run folder, parsed (evaluations as the JSON records of ``evaluations.jsonl``; a DARTS
    run's are its epochs, the network derived at each one's end, as the experiment database indexes them).
    ``logged``: the log counted and checked instead (``load_run_dir(..., tally=...)``; ``evaluations`` is then
    empty), for what needs only the summary. ``columns``: the log read into columns instead (``load_run_dir(...,
    columns=True)``; ``evaluations`` is then empty), for the plots; ``cols`` is them either way."""

    id: str
    path: Path
    config: dict[str, Any]
    request: dict[str, Any] | None
    evaluations: list[dict[str, Any]]
    pareto: dict[str, Any] | None
    best: dict[str, Any] | None
    checkpoint: dict[str, Any] | None
    logged: LogTally | None = None
    columns: Columns | None = None

    @property
    def n_evaluations(self) -> int:
        if self.logged is not None:
            return self.logged.records
        return len(self.columns) if self.columns is not None else len(self.evaluations)

    @cached_property
    def cols(self) -> Columns:
        """The evaluations as columns: ``columns``, else made from ``evaluations`` (once)."""
        from edgenas.report.columns import Columns

        return self.columns if self.columns is not None else Columns.from_records(self.evaluations)

    @property
    def space(self) -> str:
        return str(self.config.get("space", "?"))

    @property
    def strategy(self) -> str | None:
        """The search strategy (a multi-fidelity run's is its ``mode``, a DARTS run's its ``kind``)."""
        return self.config.get("strategy") or self.config.get("mode") or self.config.get("kind")

    @property
    def darts(self) -> bool:
        return is_darts(self.config)

    @property
    def budgets(self) -> dict[str, float | None]:
        return {str(n): (None if b is None else float(b)) for n, b in self.config.get("devices", [])}

    @property
    def table_columns(self) -> set[str]:
        """The devices whose latency is a benchmark table's measured column (``--latency-column``), not a
        prediction."""
        req = self.request or {}
        col = req.get("latency_column")
        return {col} if isinstance(col, str) and req.get("table") else set()

    @property
    def status(self) -> str:
        """``complete`` or ``stopped`` by the checkpoint once ``best.json`` is written; before that ``running``
        while a search holds the folder's run lock, ``stopped`` where none does (killed: the live view polled such
        a run for ever), as ``runs list`` says (``status_now``). With no evaluation yet the lock decides too: a
        search starting up (profiling, its first batch) is running, one killed then is stopped (it read
        ``empty``, and the live page polled it for ever). ``empty``: nothing recorded and no search to ask (no log
        nor checkpoint, or a lock this machine cannot probe)."""
        # DARTS writes no status: its best.json is written when training ends (as the database reads it)
        done = "complete" if self.darts else (self.checkpoint or {}).get("status")
        if done in ("complete", "stopped") and self.best is not None:
            return str(done)
        if self.n_evaluations:
            return status_now("running", self.path)
        held = run_lock_held(self.path)
        if held:
            return "running"
        started = any(os.path.lexists(self.path / f) for f in RUN_LOGS)  # a search ran here
        return "stopped" if held is False and started else "empty"

    @property
    def best_number(self) -> int | None:
        """The chosen architecture's evaluation number (a DARTS run without one: its last epoch's)."""
        from edgenas.search.record import darts_best_number

        best = self.best or {}
        return darts_best_number(best) if self.darts else best.get("number")

    @property
    def higher_is_better(self) -> bool:
        """Whether a higher objective is better: DARTS measures no accuracy, its log's objective is a loss."""
        return not self.darts

    @property
    def objective(self) -> str:
        """The accuracy objective's name (the key in every evaluation's ``objectives``)."""
        if self.pareto and self.pareto.get("objectives"):
            return str(self.pareto["objectives"][0])
        if self.darts:
            return "train_loss"
        req = self.request or {}
        if req.get("table") and (req.get("evaluator") in (None, "tabular")):
            return str(req.get("objective", "cifar10_test"))
        if req.get("evaluator"):
            return str(req["evaluator"])
        if self.logged is not None:
            return self.logged.objective or "accuracy"
        if self.columns is not None:
            return self.columns.objective or "accuracy"
        from edgenas.search.run_files import main_objective

        for e in self.evaluations:
            name = main_objective(e.get("objectives", {}))
            if name is not None:
                return name
        return "accuracy"

    @property
    def objective_unit(self) -> str:
        """'%' for accuracies, '' for proxy scores and losses: a multi-fidelity run's is its last rung's (the
        ``metric`` in best.json, or while it runs the rung's evaluator)."""
        metric = (self.best or {}).get("metric")
        if isinstance(metric, str):
            return "%" if "(%)" in metric else ""
        req = self.request or {}
        evaluator = (self.last_rung or {}).get("evaluator") or req.get("evaluator") or (req.get("table") and "tabular")
        return "%" if evaluator in PERCENT_EVALUATORS else ""

    @property
    def last_rung(self) -> dict[str, Any] | None:
        """A multi-fidelity run's last (most faithful) rung: ``{"evaluator": ..., "options": {...}, ...}``."""
        ladder = self.config.get("ladder")
        return ladder[-1] if isinstance(ladder, list) and ladder and isinstance(ladder[-1], dict) else None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "space": self.space, "strategy": self.strategy,
                "status": self.status, "evaluations": self.n_evaluations,
                "budget_evals": self.config.get("budget_evals"), "devices": self.budgets,
                "objective": self.objective, "seed": self.config.get("seed")}


def is_darts(config: Any) -> bool:
    return isinstance(config, dict) and config.get("kind") == "darts"


def _not_a_link(path: Path) -> Path:
    """``path``, if it is no link: the API serves nothing from outside a run's folder."""
    if path.is_symlink():
        raise InputError(f"{path} is a symbolic link; a run's records are files of their own folder",
                         hint="replace the link with the file itself")
    return path


def _read_json(path: Path) -> Any:
    """A record of a run folder (None when absent), read within the size and depth limits; never
    through a link. A FIFO or a folder in its place is refused (``read_json``), not taken for no record: a
    FIFO best.json showed a finished run as running, with no chosen network."""
    if not os.path.lexists(_not_a_link(path)):
        return None
    return read_json(path, "run record")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of the complete lines of an append-only log such as ``verified.jsonl`` (lines
    that are not objects are skipped; see ``run_files.read_jsonl``)."""
    from edgenas.search.run_files import read_jsonl as read_lines

    return [rec for rec in read_lines(path)[0] if isinstance(rec, dict)]


def read_evaluations(path: Path, since: int = 0) -> list[dict[str, Any]]:
    """A run's evaluation records from number ``since`` on, each checked (``run_files``)."""
    from edgenas.search.run_files import read_evaluations as read_checked

    return read_checked(path, since)[0]


def load_evaluations(path: Path, config: dict[str, Any], best: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The evaluations of the run in folder ``path``: ``evaluations.jsonl``, or a DARTS run's epochs from its
    checkpoint (or history), as the experiment database indexes them."""
    if not is_darts(config):
        return read_evaluations(path / "evaluations.jsonl")
    from edgenas.search.record import darts_log

    for name in ("checkpoint.json", "history.json"):
        _not_a_link(path / name)
    return darts_log(path, config, best or {})


def load_run_dir(path: str | Path, run_id: str | None = None, *,
                 tally: Callable[[Path], LogTally] | None = None, columns: bool = False) -> RunData:
    """Parse a run folder (any path the user names; the API goes through ``FolderSource.run``); the
    files' fields are checked where ``runs import`` checks them (``edgenas.search.run_files``). ``tally``:
    the evaluation log is counted and checked by it, not loaded (``RunData.logged``); ``columns``: read into
    columns, not kept as records (``RunData.columns``, what the report's plots need). A DARTS run's few epochs
    are loaded all the same."""
    from edgenas.safenames import check_utf8_path
    from edgenas.search import run_files as rf

    path = Path(path)
    check_utf8_path(path, "run folder")
    config = _read_json(path / "config.json")
    if config is None:
        raise NotFoundError(f"{shown(path)} is not a search run (no config.json)",
                            hint="give the folder passed to edgenas search --out")

    def read(name: str, check: Any) -> dict[str, Any] | None:
        data = _read_json(path / name)
        return None if data is None else check(data, path / name)

    request = _read_json(path / "request.json")
    if request is not None and not isinstance(request, dict):
        raise InputError(f"{path / 'request.json'}: expected a JSON object", hint="the run folder is damaged")
    if request is not None:  # its fields' types, as runs import checks them: "minimise": 5 was a TypeError
        rf.check_request_fields(request, path / "request.json")
    config = rf.check_config(config, path / "config.json")
    best, checkpoint = read("best.json", rf.check_best), read("checkpoint.json", rf.check_checkpoint)
    counted = tally is not None and not is_darts(config)
    as_columns = columns and not counted and not is_darts(config)
    if as_columns:
        from edgenas.report.columns import read_columns
    return RunData(id=run_id or path.name, path=path, config=config, request=request,
                   evaluations=[] if counted or as_columns else load_evaluations(path, config, best),
                   pareto=read("pareto.json", rf.check_pareto), best=best, checkpoint=checkpoint,
                   logged=tally(path / "evaluations.jsonl") if counted else None,
                   columns=read_columns(path / "evaluations.jsonl") if as_columns else None)


class DataSource(ABC):
    """What the report and the API read. Implementations: ``FolderSource`` (files), later the database."""

    @abstractmethod
    def run_ids(self) -> list[str]: ...

    @abstractmethod
    def run(self, run_id: str, *, evaluations: bool = True, columns: bool = False) -> RunData:
        """``evaluations=False``: for the summary only (``RunData.logged``); ``columns``: for the plots only
        (``RunData.columns``)."""

    @abstractmethod
    def evaluations(self, run_id: str, since: int = 0) -> list[dict[str, Any]]: ...

    @abstractmethod
    def devices(self) -> list[str]: ...

    @abstractmethod
    def luts(self, device: str) -> list[Any]:
        """The device's current tables (``Lut``), newest first; history excluded."""

    @abstractmethod
    def verified(self, device: str) -> list[dict[str, Any]]:
        """The device's drift checks (``luts/DEVICE/verified.jsonl``), oldest first."""

    @abstractmethod
    def measurements(self, device: str | None = None, space: str | None = None) -> list[Any]: ...

    def last_refresh(self) -> list[dict[str, Any]]:
        return []

    def stale_runs(self, device: str) -> int | None:
        """How many recorded search runs are stale on ``device`` (None: no experiment database)."""
        return None

    def damaged_luts(self, device: str) -> list[str]:
        """The names of the device's table files that cannot be read (``luts`` leaves them out)."""
        return []

    def fewshot_spaces(self, device: str) -> list[str]:
        """The spaces the device has a few-shot latency model of (``luts/DEVICE/fewshot/SPACE.json``)."""
        return []


@dataclass(frozen=True)
class FolderSource(DataSource):
    project: Project
    extra_runs: tuple[Path, ...] = field(default=())
    #: each evaluation log's last count (``_tally``), by path
    _tallies: dict[str, LogTally] = field(default_factory=dict, compare=False, repr=False)
    #: where each evaluation log's last read for ``evaluations`` stopped (``_read_after``), by path
    _marks: dict[str, LogMark] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root(self) -> Path:
        return Path(self.project.root).resolve()

    def _inside(self, p: Path) -> bool:
        try:
            p.resolve().relative_to(self.root)
            return True
        except (ValueError, OSError):
            return False

    def _is_run(self, p: Path) -> bool:
        return bool(NAME_RE.match(p.name)) and ".." not in p.name and (p / "config.json").is_file() \
            and any((p / f).exists() for f in RUN_LOGS) and self._inside(p)

    def _run_dirs(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for base in (self.root, self.project.runs_dir):
            if not base.is_dir():
                continue
            for p in sorted(base.iterdir()):
                if self._is_run(p):
                    found[p.name] = p   # runs/ (scanned second) wins a name clash
        return found

    def run_ids(self) -> list[str]:
        return sorted(self._run_dirs())

    def _run_path(self, run_id: str) -> Path:
        check_name(run_id, "run")
        # the two places a run of this name can be, not a scan of every folder: /api/runs and the index
        # page asked once per run (time quadratic in the runs: 7.5 s for 400), and every poll of the live view
        for base in (Path(self.project.runs_dir), self.root):  # runs/ first: it wins a name clash
            if (base / run_id).is_dir() and self._is_run(base / run_id):
                return base / run_id
        raise NotFoundError(f"no run '{run_id}' in {self.root}", hint="GET /api/runs lists the runs")

    def run(self, run_id: str, *, evaluations: bool = True, columns: bool = False) -> RunData:
        return load_run_dir(self._run_path(run_id), run_id, tally=None if evaluations else self._tally,
                            columns=columns)

    def _tally(self, log: Path) -> LogTally:
        """The log counted, going on from this source's last count of it (``tally_evaluations``): the API's
        listing and run summary, asked again and again (the live view polls), check only what was appended."""
        from edgenas.search.run_files import tally_evaluations

        key = str(log)
        self._tallies[key] = tally_evaluations(log, self._tallies.get(key))
        return self._tallies[key]

    def evaluations(self, run_id: str, since: int = 0) -> list[dict[str, Any]]:
        path, since = self._run_path(run_id), max(int(since), 0)
        if is_darts(_read_json(path / "config.json")):   # a few epochs: the whole run, parsed
            return self.run(run_id).evaluations[since:]
        return self._read_after(path / "evaluations.jsonl", since)

    def _read_after(self, log: Path, since: int) -> list[dict[str, Any]]:
        """The log's records from number ``since`` on, read from where this source's last read of it stopped
        when that is at or before ``since`` (``read_evaluations_after``): the live view polls with the number
        it got to, so each poll reads what was appended, not the whole log (31 MB for 100,000
        evaluations, read and split into lines every second)."""
        from edgenas.search.run_files import read_evaluations_after

        key = str(log)
        recs, mark = read_evaluations_after(log, since, self._marks.get(key))
        if mark is None:
            self._marks.pop(key, None)
        else:
            self._marks[key] = mark
        return recs

    def devices(self) -> list[str]:
        from edgenas.latency.store import LutStore

        d = Path(self.project.luts_dir)  # a folder reached through a link out of the project is not served
        return [n for n in LutStore(d).devices() if ".." not in n and self._inside(d / n)]

    def _device_dir(self, device: str) -> Path:
        check_name(device, "device")
        if device not in self.devices():
            known = self.devices()
            raise NotFoundError(f"no device '{device}' in {self.project.luts_dir}",
                                hint=f"the devices with LUTs: {', '.join(known[:20]) or 'none'} (GET /api/devices)")
        return Path(self.project.luts_dir) / device

    def luts(self, device: str) -> list[Any]:
        from edgenas.latency.lut import Lut

        d = self._device_dir(device)
        tables = []
        for p in sorted(d.glob("*.json")):
            if p.is_file() and self._inside(p):
                try:
                    tables.append(Lut.load(p))
                except InputError:
                    continue  # a damaged table is skipped, not shown
        return sorted(tables, key=lambda t: -t.created_at)

    def damaged_luts(self, device: str) -> list[str]:
        from edgenas.latency.lut import Lut
        from edgenas.safenames import LUT_FILE_RE

        bad = []
        for p in sorted(self._device_dir(device).glob("*.json")):
            if p.is_file() and self._inside(p) and LUT_FILE_RE.match(p.name):
                try:
                    Lut.load(p)
                except InputError:
                    bad.append(p.name)
        return bad

    def fewshot_spaces(self, device: str) -> list[str]:
        d = self._device_dir(device) / "fewshot"
        return sorted(p.stem for p in d.glob("*.json") if p.is_file() and self._inside(p)
                      and NAME_RE.match(p.stem)) if d.is_dir() else []

    def verified(self, device: str) -> list[dict[str, Any]]:
        path = self._device_dir(device) / "verified.jsonl"
        return read_jsonl(path) if self._inside(path) else []

    def _has_db(self) -> bool:
        """Whether an experiment database exists (never created by reading)."""
        from edgenas.store.db import database_exists

        return database_exists(self.project)

    def measurements(self, device: str | None = None, space: str | None = None) -> list[Any]:
        if not self._has_db():
            return []
        from edgenas.store import open_db

        with open_db(None, self.project, readonly=True) as db:
            return db.measurements.list(device=device, space=space)

    def stale_runs(self, device: str) -> int | None:
        if not self._has_db():
            return None
        from edgenas.errors import EdgenasError
        from edgenas.search.stale import find_stale
        from edgenas.store import open_db

        try:  # closed at once: an open read connection kept the WAL files of the database in the project
            with open_db(None, self.project, readonly=True) as db:
                return len(find_stale(db, self.project, device=device)[0])
        except EdgenasError:
            return None

    def last_refresh(self) -> list[dict[str, Any]]:
        from edgenas.fleet.refresh import last_refresh_path, last_refresh_rows

        return last_refresh_rows(_read_json(last_refresh_path(self.project)))
