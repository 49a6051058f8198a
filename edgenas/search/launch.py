"""Build a search from user-level settings (what the CLI takes) and run or resume it.

``SearchRequest`` is the whole user intent: the space, the evaluator and its options, the devices with
their latency budgets (LUT-based), or a benchmark table with a latency column. It is saved as
``request.json`` in the run folder so ``edgenas search --resume RUN_DIR`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgenas.errors import InputError
from edgenas.io import atomic_write_json, read_json
from edgenas.limits import is_finite, is_number, is_schema
from edgenas.project import Project
from edgenas.quiet import sigint_ignored
from edgenas.search.run_files import (accuracy_name, check_config, check_request_fields, check_tables,
                                      check_warm_start, evaluator_name, resume_or_new)

REQUEST_SCHEMA = 1
QUANTILE_SAMPLES = 2000
#: the strategy with the best median rank over bench/search_suite.py (see bench/RESULTS.md)
DEFAULT_STRATEGY = "tpe"


@dataclass(frozen=True)
class SearchRequest:
    space: str
    devices: tuple[str, ...] = ()
    max_latency_ms: tuple[float, ...] = ()          # none, one for all devices, or one per device
    max_latency_quantile: float | None = None       # budget = this quantile of random archs' latency
    strategy: str = DEFAULT_STRATEGY
    budget: int = 100
    max_wall_s: float | None = None
    seed: int = 0
    population: int | None = None
    evaluator: str | None = None                    # default: tabular with --table, else compression
    evaluator_options: Mapping[str, Any] = field(default_factory=dict)
    table: str | tuple[str, ...] | None = None      # one benchmark CSV, or several joined on index
    objective: str = "cifar10_test"
    report: tuple[str, ...] = ()                    # table columns recorded, not optimised
    latency_column: str | None = None
    checkpoint_every: int = 10
    minimise: tuple[str, ...] = ()                  # extra objectives: "params", "flops"
    warm_start: tuple[str, ...] = ()                # ("auto",) or run ids / run folders
    transfer_ratio: float = 0.5                     # share of the first population transferred
    min_similarity: float = 0.6                     # past runs less similar are not used
    llm_share: float | None = None                  # share of children from the language model
    llm: Mapping[str, Any] = field(default_factory=dict)   # edgenas.llm.operator.LLMSettings fields
    batch_size: int | None = None                   # architectures asked at a time (None: the strategy's)
    ladder: tuple[str, ...] = ()                    # multi-fidelity rungs (strategy sh / hyperband)
    eta: int = 3                                    # multi-fidelity: keep 1/eta per rung by default
    strategy_options: Mapping[str, Any] = field(default_factory=dict)  # declared options of the strategy

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["devices"], d["max_latency_ms"] = list(self.devices), list(self.max_latency_ms)
        d["minimise"], d["report"] = list(self.minimise), list(self.report)
        if isinstance(self.table, tuple):
            d["table"] = list(self.table)
        d["warm_start"] = list(self.warm_start)
        d["ladder"] = list(self.ladder)
        d["evaluator_options"] = dict(self.evaluator_options)
        d["llm"] = dict(self.llm)
        d["strategy_options"] = dict(self.strategy_options)
        return {"schema": REQUEST_SCHEMA, **d}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "request.json") -> "SearchRequest":
        if not isinstance(d, Mapping) or not is_schema(d.get("schema"), REQUEST_SCHEMA):
            raise InputError(f"{where}: not a search request of schema {REQUEST_SCHEMA}")
        d = {k: v for k, v in check_request_fields(d, where).items() if k != "schema"}
        d["devices"], d["max_latency_ms"] = tuple(d.get("devices", ())), tuple(d.get("max_latency_ms", ()))
        d["minimise"], d["report"] = tuple(d.get("minimise", ())), tuple(d.get("report", ()))
        if isinstance(d.get("table"), list):
            d["table"] = tuple(d["table"])
        d["warm_start"] = tuple(d.get("warm_start", ()))
        d["ladder"] = tuple(d.get("ladder", ()))
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"{where}: {exc}") from None


def _check_numbers(req: SearchRequest) -> None:
    """The request's plain numbers, each against its flag, before anything runs (a NaN similarity used to
    be found only when the finished run's request.json was read back)."""
    for flag, v in (("--transfer-ratio", req.transfer_ratio), ("--min-similarity", req.min_similarity)):
        if not (is_number(v) and 0.0 <= v <= 1.0):
            raise InputError(f"{flag} must be in [0, 1], got {v!r}", hint=f"e.g. {flag} 0.5")
    if req.max_wall_s is not None and not (is_finite(req.max_wall_s) and req.max_wall_s > 0):
        raise InputError(f"--time-budget must be a number of seconds > 0, got {req.max_wall_s!r}",
                         hint="e.g. --time-budget 600")


def _budgets(req: SearchRequest, names: list[str]) -> list[float | None]:
    b = list(req.max_latency_ms)
    if req.max_latency_quantile is not None and b:
        raise InputError("give either --max-latency-ms or --max-latency-quantile, not both")
    if not b:
        return [None] * len(names)
    if len(b) == 1:
        return b * len(names)
    if len(b) != len(names):
        what = "--device (and --latency-column, which is one table column)" if req.latency_column else "--device"
        raise InputError(f"{len(b)} latency budgets for {len(names)} devices",
                         hint=f"give one --max-latency-ms per {what}, in the same order, or one for all")
    return b


def build_problem(project: Project, req: SearchRequest, note: Callable[[str], None] | None = None,
                  executor: Any = None) -> tuple[Any, Any]:
    """(problem, config) for a request; raises InputError/InfeasibleError before anything runs.

    With an ``executor`` (``edgenas.evaluate.executor``) the evaluations run through it.
    """
    from edgenas.evaluate import make_evaluator
    from edgenas.search import DeviceTarget, Problem, SearchConfig
    from edgenas.spaces import get_space

    from edgenas.limits import check_count, check_seed
    from edgenas.search.budget import cap_budget

    space = get_space(req.space)
    check_seed(req.seed)
    check_count(req.budget, "--budget", 1)
    budget_evals, capped = cap_budget(space, req.budget)
    if capped and note:
        note("warning: " + capped)
    models: list[tuple[str, Any]] = []
    if req.table:
        from edgenas.evaluate.tabular import TableLatency, join_tables

        table = join_tables(req.table)
        if req.latency_column:
            models.append((req.latency_column, TableLatency(table, req.latency_column, space).check_covers()))
    elif req.latency_column:
        raise InputError("--latency-column needs --table")
    if req.devices:
        from edgenas.latency.store import LutStore

        store = LutStore(project.luts_dir)
        for d in req.devices:
            if not store.list(d, space.name):  # no LUT yet: the few-shot model, if the device has one
                from edgenas.latency.fewshot_model import load_latency_model

                fewshot = load_latency_model(project.luts_dir, d, space)
                if fewshot is not None:
                    if note:
                        note(f"device '{d}' has no LUT for {space.name} yet: latency from its few-shot model")
                    models.append((d, fewshot))
                    continue
            models.append((d, store.predictor(d, space, note)))  # the same policy as deploy's (latency/store.py)
    names = [n for n, _ in models]
    budgets = _budgets(req, names)
    if (req.max_latency_ms or req.max_latency_quantile is not None) and not models:  # it was dropped without a word
        raise InputError("a latency budget needs a device (--device) or a table column (--latency-column)")
    if req.max_latency_quantile is not None:
        q = req.max_latency_quantile
        if not 0 < q <= 1:
            raise InputError(f"--max-latency-quantile must be in (0, 1], got {q}")
        rng = np.random.default_rng(req.seed)
        sample = [space.sample(rng) for _ in range(QUANTILE_SAMPLES)]
        budgets = [float(np.quantile(m.predict_many(sample), q)) for _, m in models]
    name = evaluator_name(req.evaluator, req.table)
    opts = dict(req.evaluator_options)
    if name == "tabular":
        if not req.table:
            raise InputError("the tabular evaluator needs --table")
        taken = sorted({"table", "objective", "report"} & set(opts))
        if taken:  # they were overwritten by the flags below, and recorded as if used
            raise InputError(f"--eval-opt {', '.join(taken)} of the tabular evaluator come from --table, --objective "
                             "and --report", hint=f"drop --eval-opt {taken[0]}=..., and use the flags")
        opts.update(table=req.table, objective=req.objective, report=list(req.report))
    elif req.report:
        raise InputError("--report needs the tabular evaluator (--table)",
                         hint="a multi-fidelity ladder records a column with report=COLUMN on its last "
                              "nb201-fidelity rung")
    if executor is None:
        evaluator = make_evaluator(name, space, seed=req.seed, **opts)
    else:
        from edgenas.evaluate import CachedEvaluator
        from edgenas.evaluate.executor import EvalSpec, ExecutorEvaluator

        spec = EvalSpec.make(name, space.name, req.seed, _absolute_paths(opts))
        evaluator = CachedEvaluator(ExecutorEvaluator(spec, executor))
    targets = [DeviceTarget(n, m, b) for (n, m), b in zip(models, budgets)]
    bad = sorted(set(req.minimise) - {"params", "flops"})
    if bad:
        raise InputError(f"unknown objective(s) to minimise: {', '.join(bad)}", hint="use params and/or flops")
    extra = {}
    if req.minimise:
        from edgenas.evaluate.cost import cost_functions

        fns = cost_functions(space)
        extra = {k: fns[k] for k in req.minimise}
    problem = Problem(space, evaluator, targets, accuracy_name=accuracy_name(name, req.table, req.objective),
                      params=extra.get("params"), flops=extra.get("flops"))
    config = SearchConfig(space=space.name, strategy=req.strategy, budget_evals=budget_evals,
                          max_wall_s=req.max_wall_s, seed=req.seed, population=req.population,
                          devices=tuple((t.name, t.budget_ms) for t in targets),
                          checkpoint_every=req.checkpoint_every, batch_size=req.batch_size,
                          strategy_options={**req.strategy_options,
                                            **({} if req.llm_share is None else {"llm_share": float(req.llm_share)})})
    from edgenas.search.base import STRATEGIES

    if req.strategy_options or (req.population is not None and config.strategy in STRATEGIES):
        # unknown or bad options fail here, before the run folder is touched; --population too (it reaches the
        # strategy as an option: --population 3 of nsga2 was refused after the folder was written)
        from edgenas.search.run import strategy_options, with_objectives

        _check_llm_share(req, config)  # --llm-share is a flag: said as such, not as an unknown option llm_share

        opts = with_objectives(config, problem, strategy_options(config, None))
        STRATEGIES.get(config.strategy).validate_options(opts)
    return problem, config


def _llm_strategies() -> list[str]:
    """The strategies with a language-model operator (for a hint only: asking every strategy's options imports
    optuna and scipy)."""
    from edgenas.search.base import STRATEGIES

    return [n for n in STRATEGIES.names() if "llm_share" in STRATEGIES.get(n).options]


def _check_llm_share(req: SearchRequest, config: Any) -> None:
    """``--llm-share`` of a strategy without a language-model operator: one error saying so."""
    from edgenas.search.base import STRATEGIES

    if req.llm_share is not None and "llm_share" not in STRATEGIES.get(config.strategy).options:
        raise InputError(f"strategy {config.strategy} has no language-model operator",
                         hint=f"use one of {', '.join(_llm_strategies())}")


def uses_llm(req: SearchRequest, config: Any) -> bool:
    """Whether the search needs a language model (checks ``--llm-share`` against the strategy)."""
    from edgenas.search.base import STRATEGIES

    spec = STRATEGIES.get(config.strategy).options
    _check_llm_share(req, config)
    if "llm_share" in spec:
        STRATEGIES.get(config.strategy).validate_options(config.strategy_options)  # before the folder exists
    share = config.strategy_options.get("llm_share", spec["llm_share"].default) if "llm_share" in spec else 0
    if req.llm and not share:
        mixed = " or ".join(n for n in _llm_strategies() if n != "llm-evolution")
        raise InputError(f"--llm-* options given but strategy {config.strategy} uses no language model",
                         hint=f"use --strategy {mixed} with --llm-share, or --strategy llm-evolution")
    return bool(share)


def idle_model_note(config: Any) -> str | None:
    """What to say when the budget ends before the language model could propose anything (the initial
    population and the first round are random samples): the model is then not loaded at all."""
    from edgenas.search.base import STRATEGIES
    from edgenas.search.run import strategy_options

    cls = STRATEGIES.get(config.strategy)
    if not hasattr(cls, "before_children"):
        return None
    first = cls.before_children(strategy_options(config, None), config.batch_size)
    if config.budget_evals > first:
        return None
    return (f"the budget of {config.budget_evals} evaluations ends before the language model proposes anything: "
            f"the first {first} are random samples (the initial population); raise --budget above {first} "
            "or lower --population")


def build_llm_operator(req: SearchRequest, problem: Any, out_dir: Path) -> Any:
    """The LLM operator of a search (validates the model path and adapter; loads nothing yet)."""
    from edgenas.llm.operator import LLMOperator, LLMSettings
    from edgenas.llm.prompt import DeviceInfo

    settings = LLMSettings.from_json(req.llm)
    devices = [DeviceInfo(d.name, d.model, d.budget_ms) for d in problem.devices]
    return LLMOperator(problem.space, settings, out_dir, seed=req.seed, objective=problem.accuracy_name,
                       devices=devices)


def launch_search(project: Project, req: SearchRequest | None, out_dir: Path, *, resume: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  note: Callable[[str], None] | None = None, db: Any = None, db_url: str | None = None,
                  rerun_of: str | None = None, record: bool = True, executor: Any = None,
                  more_wall_s: float | None = None) -> Any:
    """Run a new search into ``out_dir`` or resume the one there (``req`` None: read request.json);
    ``more_wall_s`` with a resume: stop that many seconds on (``--resume RUN --time-budget S``).

    Everything is validated before the folder is touched; the folder is then locked (an OS file lock)
    for the whole run, so a second search into it is refused before it writes anything. A disk that
    fills up or a Ctrl-C end with one line saying how to resume.

    The run folder is the resumable record; the experiment database (``db``, or the one ``db_url`` /
    ``$EDGENAS_DB`` / the project names; ``record=False``: none) indexes it when the search ends, is
    interrupted or fails. A warm start (``req.warm_start``) is planned before anything runs and
    written to ``warm_start.json``; resuming reads it back. A strategy that runs its own loop (a
    ``Driver``: ``sh`` / ``hyperband`` climbing ``req.ladder``, ``darts``; ``edgenas.search.drivers``)
    is prepared by its driver and then run, locked, interrupted and indexed exactly like the others."""
    from edgenas.errors import SearchInterrupted
    from edgenas.locks import run_lock
    from edgenas.outdirs import check_out_dir, disk_error, new_out_dir
    from edgenas.search import run_search

    out_dir = Path(out_dir)
    req_path = out_dir / "request.json"
    if resume:
        _check_resume_folder(out_dir)
    check_out_dir(out_dir, "--resume" if resume else "--out")
    _check_no_links(out_dir)
    if resume:
        if not req_path.exists():
            raise _nothing_to_resume(out_dir)
        req = SearchRequest.from_json(read_json(req_path, "search request"), str(req_path))
    elif req is None:
        raise InputError("nothing to search: give --space (or --resume RUN_DIR)")
    else:
        _check_new_run_folder(out_dir)
        if rerun_of is None:  # a re-run's request is a recorded one: it runs as recorded (edgenas.search.repeats)
            from edgenas.search.repeats import check_new_request

            check_new_request(req)
    from edgenas.search.base import STRATEGIES, is_driver, recorded_options

    if not resume:  # the request records the choices a default would make (evolution's mutation), as run
        req = dataclasses.replace(req, strategy_options=recorded_options(req.strategy, req.strategy_options, new=True))

    _check_numbers(dataclasses.replace(req, max_wall_s=more_wall_s) if more_wall_s is not None else req)
    if more_wall_s is not None and not resume:
        raise InputError("more time is for a resumed run", hint="give the time with --time-budget")
    notes: list[str] = []  # said once the run has started: a refused run prints its one error line only
    initial, warm, hooks = [], None, {}
    asked = _with_recorded_budgets(req, out_dir) if resume else req
    if is_driver(req.strategy) and (req.max_wall_s is not None and not resume or more_wall_s is not None):
        raise InputError(f"--time-budget stops the ask/tell strategies; '{req.strategy}' runs its "
                         f"{'epochs' if req.strategy == 'darts' else 'ladder'} to the end",
                         hint="drop --time-budget, and size the run with "
                              + ("--epochs" if req.strategy == "darts" else "--budget and --ladder"))
    if is_driver(req.strategy):
        prepared = STRATEGIES.get(req.strategy).prepare(project, asked, out_dir, resume=resume, executor=executor,
                                                        note=notes.append)
        problem, config = prepared.problem, prepared.config
        if not resume:  # budgets each device meets alone but no architecture together: refused before anything
            notes.extend(filter(None, [_check_joint(req, problem)]))
    else:
        if req.ladder:
            raise InputError(f"--ladder needs --strategy sh or hyperband, not '{req.strategy}'")
        problem, config = build_problem(project, asked, notes.append, executor)  # validated before the folder is used
        if not resume:  # as a driver's, and before a language model is loaded
            notes.extend(filter(None, [_check_joint(req, problem)]))
        if uses_llm(req, config):
            hooks["llm_operator"] = op = build_llm_operator(req, problem, out_dir)
            idle = idle_model_note(config)
            if idle:
                notes.append(idle)
            if resume:
                op.load_log()   # replayed events never load the model; it is loaded when first needed
            elif not idle:
                op.preload()    # a model that does not load fails before the run folder is written
    tables = table_hashes(project, problem)
    changed = changed_tables_notes(out_dir / TABLES_FILE, tables) if resume else []
    notes.extend(changed)
    notes.extend(uncalibrated_budget_notes(req, problem))
    open_later: Callable[[], Any] | None = None  # a resume's new database: made once it has a run to record
    if record and db is None:
        from edgenas.store import open_db
        from edgenas.store.db import check_writable, database_exists, resolve_url
        from edgenas.store.runs import resolve_run_id

        refs = [] if resume else [s for s in req.warm_start if s != "auto" and not _is_folder(s)]
        if refs and not database_exists(project, db_url):  # no database, no such run: refused before one is made
            resolve_run_id(open_db(db_url, project, readonly=True), refs[0])
        check_writable(resolve_url(db_url, project))
        if resume and not database_exists(project, db_url):  # a resume the replay refuses makes no database
            open_later = functools.partial(open_db, db_url, project)
        else:
            db = open_db(db_url, project)  # an unreachable database fails here, before anything is written
    if not is_driver(req.strategy):
        initial, warm = _warm_start(project, db, req, problem, config, out_dir, resume, rerun_of)
    elif rerun_of and not resume:  # a driver takes no warm start: the record only says what it re-runs
        warm = {"transferred": [], "rerun_of": rerun_of,
                "note": f"a re-run of {rerun_of}: '{req.strategy}' takes no warm start, so the same search runs "
                        "again with today's latency tables"}
    resume_hint = f"resume with: edgenas search --resume {shlex.quote(str(out_dir))}"
    from edgenas.locks import LOCK_NAME

    with new_out_dir(out_dir, "--out", leftovers=(LOCK_NAME,)) as folder, run_lock(folder, f"run folder {folder}"):
        if not resume:
            _check_new_run_folder(folder)
        pending = list(notes) if note else []
        # a resume's notes wait until it has replayed its log and goes on: a resume refused meanwhile (a damaged
        # file, a replay that no longer matches) prints its one error line only
        logged = _records_logged(folder) if resume else 0

        def say_notes() -> None:
            while pending:
                note(pending.pop(0))  # type: ignore[misc]

        def progressed(done: int, total: int) -> None:
            if done > logged:
                say_notes()
            if progress is not None:
                progress(done, total)

        if not resume:
            say_notes()
        started = None if resume else time.time()  # a resume's start is not the run's (the folder's files say it)
        try:
            if not resume:
                atomic_write_json(req_path, req.to_json())
                atomic_write_json(folder / TABLES_FILE, {"schema": 1, "tables": tables})
                if warm is not None:
                    atomic_write_json(folder / "warm_start.json", warm)
            if is_driver(req.strategy):
                result = prepared.run(folder, resume, progressed)
            else:
                result = run_search(config, problem, folder, resume=resume, progress=progressed,
                                    initial_population=initial, strategy_hooks=hooks, more_wall_s=more_wall_s)
            say_notes()  # a resume with nothing left to run
        except BaseException as exc:
            from edgenas.outdirs import DISK_ERRNOS
            from edgenas.search.run import ReplayMismatch, ResumeRefused

            if not isinstance(exc, ResumeRefused):  # a refused resume changed nothing, its record neither
                _index_stopped(db, project, folder, problem, rerun_of, started, open_later)
            if isinstance(exc, ReplayMismatch) and changed:  # not the code or the seed: the budgets now bind
                raise InputError(f"{exc.message}: a latency table changed since the run started, and the "
                                 "strategy's choices between feasible and infeasible candidates with it",
                                 hint="a resume replays the run exactly, which holds only while the tables decide "
                                      "as they did: start a new run") from None
            if isinstance(exc, KeyboardInterrupt):
                raise SearchInterrupted(f"search interrupted; every finished evaluation is kept in {out_dir}",
                                        hint=resume_hint) from None
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise disk_error(exc, f"the run folder {out_dir}",
                                 then=resume_hint if req_path.exists() else None) from None
            raise
        if db is not None or open_later is not None:
            # Ctrl-C held off for this one transaction: in the middle it rolled the index back, and the database
            # said stopped (or nothing) while the folder said complete
            with sigint_ignored():
                _index(db, project, folder, problem, None, rerun_of, started, open_later)
    return problem, config, result


#: evaluator options that name files or folders (a keyword such as data=digits names none here)
PATH_OPTIONS = ("table", "hw", "data", "checkpoint")


def _absolute_paths(opts: Mapping[str, Any]) -> dict[str, Any]:
    """``opts`` with relative paths that exist here made absolute: an executor's worker resolves them in
    its own folder (a Ray worker in the head's, where table=d2/nb201_valid.csv was not found)."""
    def absolute(v: Any) -> Any:
        if isinstance(v, str) and v and not Path(v).is_absolute() and Path(v).exists():
            return str(Path(v).resolve())
        return [absolute(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {k: absolute(v) if k in PATH_OPTIONS else v for k, v in opts.items()}


def _records_logged(folder: Path) -> int:
    """How many evaluations a run folder's log holds (its non-blank lines: the run checks them as it replays)."""
    from edgenas.io import read_log_bytes

    data = read_log_bytes(folder / "evaluations.jsonl")
    return 0 if data is None else sum(1 for line in data.splitlines() if line.strip())


def uncalibrated_budget_notes(req: SearchRequest, problem: Any) -> list[str]:
    """A warning for each device whose budget in ms (``--max-latency-ms``) is checked against a LUT that no
    whole-model measurement has calibrated yet: against its blocks' raw sum, which read 14-24% below whole
    mbv3-small networks in four of bench/lut_protocol.py's checks on ONNX Runtime (README, Quickstart) and 5%
    above them in another (bench/e2e_local.py), so a network chosen under the budget can break it on the device.
    A quantile budget (``req`` as asked, not a resume's recorded one) orders the networks alike either way: no
    warning."""
    from edgenas.latency.predictor import LatencyPredictor

    if req.max_latency_quantile is not None:
        return []
    return [f"warning: the LUT of '{t.name}' is not calibrated to whole networks yet, so its budget of "
            f"{t.budget_ms:g} ms is checked against the blocks' raw sum, which can miss a whole network by 10% "
            f"or more; fit it first: edgenas lut calibrate {t.name} --space {req.space} --measure 10 "
            "(each deploy refits it too)"
            for t in getattr(problem, "devices", ())
            if t.budget_ms is not None and isinstance(t.model, LatencyPredictor) and t.model.calibration_points == 0]


def _with_recorded_budgets(req: SearchRequest, out_dir: Path) -> SearchRequest:
    """The request a resumed run is built from: a quantile budget (``--max-latency-quantile``) as the budgets
    the run started with (its ``config.json``), not recomputed from today's tables. A deploy's calibration
    refit changes a table, the quantile moved with it, and the resume was refused ("the config differs in
    devices"). A folder without a readable record of them keeps the quantile (its config check then says
    what is wrong)."""
    path = out_dir / "config.json"
    if req.max_latency_quantile is None or not path.is_file():
        return req
    try:  # checked as the resume checks it: a budget of "0.0001" or true was read as one, and refused as too low
        budgets = tuple(b for _, b in check_config(read_json(path, "run config"), path).get("devices", []))
    except InputError:
        return req
    if not budgets or not all(b is not None and b > 0 for b in budgets):
        return req
    return dataclasses.replace(req, max_latency_ms=tuple(float(b) for b in budgets), max_latency_quantile=None)


#: the run folder's record of each device's latency table when the run started (its SHA-256), so that a
#: resume can say which tables changed meanwhile (a deploy's calibration refit, `lut calibrate`, a refresh)
TABLES_FILE = "tables.json"


def table_hashes(project: Project, problem: Any) -> dict[str, str | None]:
    """Each device's latency table as a hash (a LUT's, with its calibration; a benchmark column's)."""
    from edgenas.search.record import describe_device

    return {t.name: describe_device(project, t).lut_hash for t in problem.devices}


def changed_tables_notes(path: Path, now: dict[str, str | None]) -> list[str]:
    """Warnings for a resume: the devices whose table differs from the one the run started with. A run
    made before this record gets none; an unreadable record gets one saying so, not a guess."""
    if not path.exists():
        return []
    try:
        recorded = check_tables(read_json(path, "the run's table record"), path)
    except InputError:
        return [f"warning: {path} is unreadable, so whether the latency tables changed since the run started "
                "is unknown"]
    return [f"warning: the latency table of '{d}' changed since this run started (a deploy's calibration refit, "
            "`lut calibrate`, a fleet refresh or a new profile): the evaluations left are predicted with today's "
            "table, so the result can differ from an uninterrupted run"
            for d, h in now.items() if d in recorded and recorded[d] != h]


def _check_joint(req: SearchRequest, problem: Any) -> str | None:
    """``joint.check_joint`` for a new run's problem (a driver's too: DARTS's has no ``space``)."""
    from edgenas.search.joint import check_joint
    from edgenas.spaces import get_space

    space = getattr(problem, "space", None) or get_space(req.space)
    return check_joint(space, problem.devices, quantile=req.max_latency_quantile is not None, seed=req.seed)


#: what a search writes in its folder (DARTS's weights and history; the language model's ``llm/``)
RUN_FOLDER_NAMES = ("config.json", "request.json", "evaluations.jsonl", "checkpoint.json", "best.json",
                    "pareto.json", "warm_start.json", TABLES_FILE, "history.json", "checkpoint.safetensors",
                    "report.html", "llm")


def _check_resume_folder(folder: Path) -> None:
    """``--resume`` names a run folder to read before anything is written there: a file, a missing folder or a
    path that cannot be looked at (a name too long) is bad input, exit 2 (``check_out_dir`` called a file an
    output's problem, exit 6); a name that is not UTF-8 text first, as ``check_out_dir`` says it."""
    from edgenas.safenames import check_utf8_path

    check_utf8_path(folder, "--resume")
    try:
        is_dir, exists = folder.is_dir(), folder.exists()
    except OSError as exc:
        raise InputError(f"cannot read --resume {folder}: {exc.strerror or exc}", hint="check the path") from None
    if exists and not is_dir:
        raise InputError(f"--resume {folder} is a file, not a run folder",
                         hint="give the run's folder (the search's --out), which holds request.json")
    if not is_dir:
        raise _nothing_to_resume(folder)


def _nothing_to_resume(folder: Path) -> InputError:
    return InputError(f"{folder} holds no search to resume (no request.json)",
                      hint="check the folder, or start a new search with --out")


def _check_no_links(folder: Path) -> None:
    """None of the names a run writes may be a link in its folder: the run would write through it, outside
    the folder (a planted ``.edgenas.lock`` once received the pid). Checked before anything is written."""
    from edgenas.locks import LOCK_NAME

    links = [n for n in (LOCK_NAME, *RUN_FOLDER_NAMES) if (folder / n).is_symlink()]
    if links:
        what = "lock file" if links == [LOCK_NAME] else "run folder"
        verb = "is a symbolic link" if len(links) == 1 else "are symbolic links"
        raise InputError(f"{what} {folder}: {', '.join(links)} {verb} (the run would write through it)",
                         hint="replace each link with the file itself, or use another folder")


def _check_new_run_folder(folder: Path) -> None:
    """A new run does not go where a run is, nor replace files of the names a run writes."""
    if any((folder / f).exists() for f in ("evaluations.jsonl", "request.json", "config.json")):
        raise InputError(f"{folder} already holds a search run", hint=resume_or_new(folder))
    theirs = [f for f in ("best.json", "pareto.json", "checkpoint.json", "warm_start.json", TABLES_FILE)
              if (folder / f).exists()]
    if theirs:
        raise InputError(f"{folder} holds {', '.join(theirs)}, not from a search run (a new run would replace "
                         f"{'them' if len(theirs) > 1 else 'it'})", hint="choose another --out folder")


def import_run(db: Any, project: Project, out_dir: Path | str) -> Any:
    """Index a run folder (e.g. one made before the database): its problem is rebuilt from its
    ``request.json`` where the table or LUT it used still exists, so devices carry their hashes (the run's
    own, and its budgets: ``index_run`` takes them from the folder). A budget today's table cannot meet
    (rescaled since) rebuilds it without budgets: its devices are recorded all the same, so ``runs stale``
    finds the run. A ``request.json`` that ``search --rerun`` could not read back is refused here."""
    from edgenas.locks import run_read
    from edgenas.store.runs import save_run

    with run_read(out_dir):  # not a running search's folder: its snapshot would replace its own final record
        return save_run(db, *read_import(project, out_dir))


def read_import(project: Project, out_dir: Path | str) -> Any:
    """What ``import_run`` saves of a run folder (``record.read_run``), read and checked without the database:
    ``runs import`` reads every folder so before it creates one."""
    from edgenas.errors import EdgenasError, InfeasibleError
    from edgenas.search.record import read_run

    problem = None
    req_path = Path(out_dir) / "request.json"
    if req_path.exists():
        req = SearchRequest.from_json(read_json(req_path, "search request"), str(req_path))
        try:
            try:
                problem = _rebuilt_problem(project, req, Path(out_dir))
            except InfeasibleError:  # as a new run's: a driver's resume reads the budgets back from the folder
                problem = _rebuilt_problem(project, dataclasses.replace(req, max_latency_ms=(),
                                                                        max_latency_quantile=None), Path(out_dir),
                                           resume=False)
        except EdgenasError:
            problem = None  # its table or LUT is gone: the devices are recorded without hashes
    return read_run(project, out_dir, problem=problem)


def _rebuilt_problem(project: Project, req: SearchRequest, out_dir: Path, *, resume: bool = True) -> Any:
    """The problem of a run folder's request, as the run built it (for ``import_run``)."""
    from edgenas.search.base import STRATEGIES, is_driver

    if is_driver(req.strategy):  # sh, hyperband (the last rung's problem), darts: as the run built it
        return STRATEGIES.get(req.strategy).prepare(project, req, out_dir, resume=resume,
                                                    note=lambda _: None).problem
    return build_problem(project, req)[0]


def _folder_run_id(folder: Path) -> str:
    """The id of the run in ``folder``, from its files alone (the database is not opened)."""
    from edgenas.search.record import check_run_folder, folder_run_id
    from edgenas.search.run_files import check_config

    out = check_run_folder(folder)
    return folder_run_id(out, check_config(read_json(out / "config.json", "run config"), out / "config.json"))


def _indexed(db: Any, project: Project, folder: Path, rid: str) -> str:
    """The run ``rid`` of ``folder`` as indexed when it ran, or indexed now as ``runs import`` does (an older
    folder was never in the database). Re-indexing an indexed run without its problem recorded its devices as
    unknown, and the warm start then found it too dissimilar to transfer from."""
    from edgenas.store.runs import resolve_run_id

    try:
        return resolve_run_id(db, rid)
    except InputError:
        return import_run(db, project, folder).id


def _index_stopped(db: Any, project: Project, folder: Path, problem: Any, rerun_of: str | None,
                   started: float | None, open_later: Callable[[], Any] | None = None) -> None:
    """Index a run that stopped early (interrupted, failed), quietly: the run folder stays the record."""
    if (db is not None or open_later is not None) and (folder / "config.json").exists():
        try:
            _index(db, project, folder, problem, "stopped", rerun_of, started, open_later)
        except Exception:  # the original error is the one to report
            pass


def _population(req: SearchRequest, config: Any) -> int:
    """The population a warm start's share is of: ``--population``, else the strategy's population option
    (``--strategy-opt population=4`` sized nothing here: the share was of the default 20), else its default."""
    from edgenas.search.base import STRATEGIES

    opt = STRATEGIES.get(config.strategy).options.get("population")
    given = req.population or (req.strategy_options.get("population") if opt is not None else None)
    return int(given or (opt.default if opt is not None else 0) or 20)


def _is_folder(source: str) -> bool:
    """Whether a ``--warm-start`` source is a run folder, not a run id: a name longer than the file system allows
    names no folder (is_dir raised, "cannot read"), so it is answered as an id ("no run")."""
    try:
        return Path(source).is_dir()
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        return False


def _warm_start(project: Project, db: Any, req: SearchRequest, problem: Any, config: Any, out_dir: Path,
                resume: bool, rerun_of: str | None) -> tuple[list[Any], dict[str, Any] | None]:
    path = out_dir / "warm_start.json"
    if resume:
        if not path.exists():
            return [], None
        warm = check_warm_start(read_json(path, "warm start"), path)
        hint = "the run folder was edited or damaged: restore the file, or start a new run"
        return [problem.space.from_record(t["arch"], f"{path}: a transferred architecture", hint=hint)
                for t in warm.get("transferred", [])], warm
    if not req.warm_start:
        return [], None
    if db is None:
        raise InputError("a warm start needs the experiment database", hint="do not disable it for --warm-start")
    from edgenas.search.warmstart import plan_warm_start
    from edgenas.store.runs import resolve_run_id

    # each source named as the run it is, before a folder is indexed: a run named twice (by its id and its
    # folder, by two spellings of its folder, by a prefix of its id) is refused with the database unchanged
    folders = {i: Path(s) for i, s in enumerate(req.warm_start) if s != "auto" and _is_folder(s)}
    ids = [_folder_run_id(folders[i]) if i in folders else s if s == "auto" else resolve_run_id(db, s)
           for i, s in enumerate(req.warm_start)]
    for i, (given, rid) in enumerate(zip(req.warm_start, ids)):
        if ids.count(rid) > 1 and given != rid:
            what = f"its folder {given}" if i in folders else f"'{given}'"
            raise InputError(f"--warm-start names run {rid} twice ({what} is that run)", hint="give each run once")
    sources = [_indexed(db, project, folders[i], rid) if i in folders else rid for i, rid in enumerate(ids)]
    n = min(config.budget_evals, max(1, round(req.transfer_ratio * _population(req, config)))) \
        if req.transfer_ratio > 0 else 0
    archs, warm = plan_warm_start(db, project, problem, req, sources, n=n, min_similarity=req.min_similarity,
                                  transfer_ratio=req.transfer_ratio, seed=req.seed)
    if rerun_of:
        warm["rerun_of"] = rerun_of
    return archs, warm


def _index(db: Any, project: Project, out_dir: Path, problem: Any, status: str | None, rerun_of: str | None,
           started: float | None, open_later: Callable[[], Any] | None = None) -> None:
    """Record the run in ``db``, or in the database ``open_later`` makes (a resume's first)."""
    from edgenas.search.record import index_run
    from edgenas.store import DatabaseError

    try:
        index_run(db if db is not None else open_later(), project, out_dir, problem=problem, status=status,
                  rerun_of=rerun_of, created_at=started, own=True)
    except DatabaseError as exc:
        raise DatabaseError(f"the search finished and its run folder {out_dir} is complete, but recording it in "
                            f"the experiment database failed: {exc.message}",
                            hint=f"fix the database, then: edgenas runs import {out_dir}") from None
