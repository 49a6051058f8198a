"""The run loop: drive a strategy against a problem with budgets, a run folder and exact resume.

A run folder holds ``config.json``, ``evaluations.jsonl`` (one line per evaluation, appended and
flushed), ``checkpoint.json`` (atomic, every ``checkpoint_every`` evaluations), and at the end
``pareto.json`` and ``best.json``. Strategies are deterministic functions of the seed and of the results
told, so ``resume=True`` rebuilds the strategy and replays the log (results read from it, never
recomputed) before evaluating anything new: a run killed at any point ends exactly like an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.io import atomic_write_json, open_log_for_append, read_json
from edgenas.limits import is_number
from edgenas.search.base import STRATEGIES, Trial, make_strategy, recorded_options
from edgenas.search.options import convert_option
from edgenas.search.problem import Problem
from edgenas.search.results import SearchResult, summarise, write_results
from edgenas.search.run_files import check_checkpoint, check_config, read_evaluations, resume_or_new

RUN_SCHEMA = 1


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search (what ``config.json`` records)."""

    space: str
    strategy: str = "evolution"
    budget_evals: int = 100
    max_wall_s: float | None = None
    seed: int = 0
    population: int | None = None
    devices: tuple[tuple[str, float | None], ...] = ()   # (device, budget in ms or None)
    objectives: tuple[str, ...] = ("accuracy",)
    checkpoint_every: int = 10
    batch_size: int | None = None                          # None: the strategy's preference
    strategy_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", STRATEGIES.canonical(self.strategy))
        object.__setattr__(self, "devices", tuple((str(n), None if b is None else float(b))
                                                  for n, b in self.devices))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        for name, value, low in (("budget_evals", self.budget_evals, 1),
                                 ("checkpoint_every", self.checkpoint_every, 1),
                                 ("population", self.population, 2), ("batch_size", self.batch_size, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise InputError(f"search config: {name} must be an integer >= {low}, got {value!r}")
        from edgenas.limits import check_seed

        check_seed(self.seed, "search config: seed")
        if self.max_wall_s is not None and not (is_number(self.max_wall_s) and self.max_wall_s > 0):
            raise InputError(f"search config: max_wall_s must be > 0, got {self.max_wall_s!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["devices"] = [list(x) for x in self.devices]
        d["objectives"] = list(self.objectives)
        d["strategy_options"] = dict(self.strategy_options)
        return {"schema": RUN_SCHEMA, **d}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "SearchConfig":
        d = {k: v for k, v in d.items() if k != "schema"}
        d["devices"] = tuple(tuple(x) for x in d.get("devices", ()))
        d["objectives"] = tuple(d.get("objectives", ("accuracy",)))
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"malformed search config: {exc}") from None


def _read_log(path: Path) -> tuple[list[dict[str, Any]], int | None]:
    """The checked records of the evaluation log's complete lines, and their length in bytes when a torn
    last line (kill -9) follows: ``open_log_for_append(path, whole=...)`` cuts it off before the next record
    (a resume refused after reading had already cut it)."""
    logged, end = read_evaluations(path)
    return logged, end if path.exists() and path.stat().st_size > end else None


def strategy_options(config: SearchConfig, hooks: Mapping[str, Any] | None) -> dict[str, Any]:
    spec = STRATEGIES.get(config.strategy).options
    opts = dict(config.strategy_options)
    if config.population is not None and "population" in spec:
        opts.setdefault("population", config.population)
    if "budget" in spec:
        opts.setdefault("budget", config.budget_evals)
    return {**opts, **(hooks or {})}


def with_objectives(config: SearchConfig, problem: Problem, opts: dict[str, Any]) -> dict[str, Any]:
    """``opts`` with the strategy's ``n_objectives``: the search's count unless given. Fewer optimise the first
    ones; more made every trial fail, and the study sampled at random (10**12 was a ``MemoryError``). A
    strategy of one scalar (CMA-ES) is left as given: its option checks that it is 1."""
    cls = STRATEGIES.get(config.strategy)
    if "n_objectives" not in cls.options or getattr(cls, "single_objective", False):
        return opts
    names = problem.objective_names
    opts = {"n_objectives": len(names), **opts}
    n = convert_option(config.strategy, "n_objectives", opts["n_objectives"], int)
    if n > len(names):
        raise InputError(f"strategy '{config.strategy}': option n_objectives={n} is more than the search's "
                         f"{len(names)} objective(s) ({', '.join(names)})",
                         hint=f"drop n_objectives (it is {len(names)}), or give fewer to optimise the first ones")
    return opts


def build_strategy(config: SearchConfig, problem: Problem, hooks: Mapping[str, Any] | None = None,
                   initial_population: Sequence[Any] = (), *, recorded: bool = False) -> tuple[Any, int]:
    """The strategy a run uses (seeded, with the config's and the strategy's default options) and the
    number of architectures asked for per round. Benchmarks call this to drive strategies exactly as
    ``run_search`` (and so ``edgenas search``) does. ``recorded``: ``config`` is a run folder's, where an
    option it lacks that the strategy spells out (``Strategy.recorded_options``) means what a run recorded
    before the option existed ran with."""
    if recorded:
        spelled = recorded_options(config.strategy, config.strategy_options, new=False)
        config = dataclasses.replace(config, strategy_options=spelled)
    opts = with_objectives(config, problem, strategy_options(config, hooks))
    strategy = make_strategy(config.strategy, problem.space, np.random.default_rng(config.seed),
                             feasibility=problem if problem.constrained else None,
                             initial_population=initial_population, **opts)
    batch = config.batch_size or strategy.batch_hint or strategy.opts.get("population") or 1
    return strategy, int(batch)


class ResumeRefused(InputError):
    """A resume refused before it wrote anything: the folder is as it was, so nothing is re-indexed either
    (``launch_search``; a refused resume of a complete run once re-recorded it as stopped)."""


class ReplayMismatch(ResumeRefused):
    """A resumed run's log is not what the strategy proposes on replay (``replay_or_evaluate``)."""


def replay_or_evaluate(problem: Problem, archs: Sequence[Any], start: int, logged: Sequence[Mapping[str, Any]],
                       log: IO[str], t0: float, out: Path, proposer: str,
                       tags: Mapping[str, Any] | None = None,
                       write: Callable[[list[dict[str, Any]]], None] | None = None
                       ) -> tuple[list[dict[str, Any]], list[int]]:
    """The log records of ``archs``, evaluations ``start``, ``start + 1``, ... of a run.

    Those already in ``logged`` (a resumed run's log) are checked against what is proposed now (the
    architecture and the ``tags``, e.g. a multi-fidelity bracket and rung; a mismatch means the code or
    the seed changed) and reused, never recomputed; the others are evaluated with ``problem``, appended
    to ``log`` in order and fsynced (``write``: given to it instead, in order, to write or keep back). Returns
    the records and the indices of the fresh ones. Shared by the run loop and the multi-fidelity driver, so both
    resume by the same rule."""
    space, tags = problem.space, dict(tags or {})
    records: list[dict[str, Any]] = [None] * len(archs)  # type: ignore[list-item]
    for j, arch in enumerate(archs):
        if start + j < len(logged):
            rec = logged[start + j]
            # refused, not indexed as a stopped run (it was, naming no file)
            was = space.from_record(rec["arch"], f"cannot resume {out}: evaluation {start + j} in the log",
                                    hint="the log was edited or damaged: start a new run", error=ResumeRefused)
            if any(rec.get(k) != v for k, v in tags.items()) or space.arch_id(was) != space.arch_id(arch):
                raise ReplayMismatch(f"cannot resume {out}: evaluation {start + j} in the log is not "
                                     f"what {proposer} proposes on replay",
                                     hint="the code or the seed changed, or the log was edited; start a new run")
            missing = _unreplayable(problem, rec)
            if missing:
                raise ResumeRefused(f"cannot resume {out}: evaluation {start + j} in the log has no {missing}",
                                    hint="the run folder is damaged; start a new run")
            records[j] = dict(rec)
    todo = [j for j, r in enumerate(records) if r is None]
    if todo:
        fresh = problem.evaluate([archs[j] for j in todo])
        for j, rec in zip(todo, fresh):
            records[j] = {"number": start + j, **tags, "arch": space.to_dict(archs[j]), **rec,
                          "wall_s": round(time.monotonic() - t0, 6)}
        (write or functools.partial(append_records, log))([records[j] for j in todo])  # in order: the sequence
    return records, todo


def append_records(log: IO[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Append evaluation records to the run's log, in order, flushed and fsynced."""
    if records:
        log.write("".join(json.dumps(r) + "\n" for r in records))
        log.flush()
        os.fsync(log.fileno())


def _unreplayable(problem: Problem, rec: Mapping[str, Any]) -> str | None:
    """What a logged record lacks that the problem reads from it (a number per objective and device)."""
    obj, lat = rec["objectives"], rec["latency_ms"]
    for k in (problem.accuracy_name, *problem.extra):
        if not is_number(obj.get(k)):
            return f"number for objective '{k}'"
    return next((f"latency on '{d.name}'" for d in problem.devices if not is_number(lat.get(d.name))), None)


#: a run whose strategy proposed only architectures it had evaluated, this many times in a row (at least two
#: rounds), stops: ``propose`` gives a repeat only when its tries, the repair and as many uniform samples
#: found nothing new and feasible, so what is left of the budget would only repeat them (on nb201 with a tight
#: latency budget, 10,724 of 15,625 evaluations were repeats, each re-evaluated)
EXHAUSTED_AFTER = 100


def _with_recorded_choices(config: SearchConfig, old: Mapping[str, Any]) -> SearchConfig:
    """A resume's ``config`` with the run's recorded value of each option the strategy spells out
    (``Strategy.recorded_options``) and ``config`` leaves out: ``run_search`` wrote a new run's choice
    (``mutation=one``) into ``config.json``, and a caller resuming with the config it started from still leaves
    it out. A run recorded before the option existed has none to take: it replays what it ran with."""
    given = dict(config.strategy_options)
    recorded = old.get("strategy_options")
    if not isinstance(recorded, Mapping):
        return config
    spelled = recorded_options(config.strategy, given, new=True)
    take = {k: recorded[k] for k in spelled if k not in given and k in recorded}
    return dataclasses.replace(config, strategy_options={**given, **take}) if take else config


def exhausted_after(batch: int) -> int:
    return max(EXHAUSTED_AFTER, 2 * int(batch))


def run_search(config: SearchConfig, problem: Problem, out_dir: str | os.PathLike, *,
               resume: bool = False, progress: Callable[[int, int], None] | None = None,
               strategy_hooks: Mapping[str, Any] | None = None,
               initial_population: Sequence[Any] = (), more_wall_s: float | None = None) -> SearchResult:
    """Run (or resume) a search; returns the best feasible architecture, the fronts and counts.

    ``initial_population`` (a warm start) is proposed first; pass the same list again to resume.
    ``more_wall_s`` (a resume): stop this many seconds after the time the run has already run, whatever
    its time limit was (a run stopped by ``--time-budget`` goes on; a long one runs in slices)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path, ckpt_path, cfg_path = out / "evaluations.jsonl", out / "checkpoint.json", out / "config.json"
    names = [n for n, _ in config.devices]
    have = [d.name for d in problem.devices]
    if names != have or any(b != d.budget_ms for (_, b), d in zip(config.devices, problem.devices)):
        raise InputError(f"search config devices {config.devices} do not match the problem's "
                         f"{[(d.name, d.budget_ms) for d in problem.devices]}")
    if resume and cfg_path.exists():
        old = check_config(read_json(cfg_path, "run config"), cfg_path)
        config = _with_recorded_choices(config, old)
        mine = config.to_json()
        diff = sorted(k for k in set(old) | set(mine) if k != "max_wall_s" and old.get(k) != mine.get(k))
        if diff:
            raise ResumeRefused(f"cannot resume {out}: the config differs in {', '.join(diff)}",
                                hint="resume with the original settings or use a new folder")
        logged, whole = _read_log(log_path)
        prev = check_checkpoint(read_json(ckpt_path, "checkpoint"), ckpt_path) if ckpt_path.exists() else {}
        elapsed0 = float(prev.get("elapsed_s", logged[-1]["wall_s"] if logged else 0.0))
    else:
        if log_path.exists() or ckpt_path.exists():
            raise InputError(f"{out} already holds a search run", hint=resume_or_new(out))
        logged, whole, elapsed0 = [], None, 0.0
        if not resume:  # a resume with no config.json is a request an earlier edgenas may have recorded
            spelled = recorded_options(config.strategy, config.strategy_options, new=True)
            config = dataclasses.replace(config, strategy_options=spelled)
    if more_wall_s is not None:
        config = dataclasses.replace(config, max_wall_s=elapsed0 + more_wall_s)
    trials: list[Trial] = []
    config_saved = False
    replay_checked = not resume  # a resume: until the strategy has checked what it keeps beside the log

    def save_config_once_replayed() -> None:
        """config.json (a resume's new time limit) once the log has replayed and the strategy's files checked
        (``end_replay``): a resume the replay refuses (``ReplayMismatch``) must leave the folder as it was."""
        nonlocal config_saved
        if not config_saved and replay_checked and len(trials) >= len(logged):
            atomic_write_json(cfg_path, config.to_json())
            config_saved = True

    save_config_once_replayed()  # a new run's, before anything else
    strategy, batch = build_strategy(config, problem, strategy_hooks, initial_population, recorded=True)
    if resume:
        strategy.replay_starts(lambda: (len(trials), len(logged)))

    def end_replay(check: bool = True) -> None:
        """A resume's replay is over: before its first new evaluation is written, or at the end of the run. The
        strategy refuses what it still had to replay (``Strategy.replay_ends``), then writes what it kept back;
        then config.json."""
        nonlocal replay_checked
        if not replay_checked:
            strategy.replay_ends(check)
            replay_checked = True
        save_config_once_replayed()

    held: list[dict[str, Any]] = []  # new evaluations kept back while the strategy replays its own log

    def write(records: list[dict[str, Any]], log: IO[str]) -> None:
        """New evaluations, appended once the strategy has nothing left to replay. Its own log (its language
        model's) may run ahead of the evaluations: by the batch a killed run was evaluating, or further when
        ``evaluations.jsonl`` was cut back (the batches after are evaluated again on the logged proposals). An
        event there that the replay refuses (``ReplayMismatch``) was found only after the batches before it had
        been appended; they are kept back until the strategy's log has replayed."""
        held.extend(records)
        if replay_checked or not strategy.replay_pending():
            end_replay()
            append_records(log, held)
            held.clear()
    t0 = time.monotonic() - elapsed0
    clock_started = not logged
    stopped = "budget"

    def start_clock() -> None:
        """The run's clock goes on from ``elapsed0`` once the log has replayed: the replay (the strategy told
        again what it was told, as slow as then for TPE or GP) is not the run's time, and a resume given
        ``--time-budget S`` spent S on it and added nothing."""
        nonlocal t0, clock_started
        if not clock_started:
            t0, clock_started = time.monotonic() - elapsed0, True

    def checkpoint(status: str) -> None:
        atomic_write_json(ckpt_path, {"schema": RUN_SCHEMA, "config": config.to_json(), "status": status,
                                      "n_evaluations": len(trials), "log_bytes": log_path.stat().st_size,
                                      "elapsed_s": time.monotonic() - t0})

    seen: set[str] = set()
    repeats = 0  # consecutive evaluations of architectures the run had already evaluated
    give_up = exhausted_after(batch)
    with open_log_for_append(log_path, whole=whole) as log:
        while len(trials) < config.budget_evals:
            if repeats >= give_up and len(trials) >= len(logged):
                stopped = "exhausted"
                break
            save_config_once_replayed()
            replaying = len(trials) < len(logged)
            if not replaying:
                start_clock()
                if config.max_wall_s is not None and time.monotonic() - t0 >= config.max_wall_s:
                    stopped = "wall_time"
                    break
            archs = strategy.ask(min(batch, config.budget_evals - len(trials)))
            if not archs:  # nothing new meets the budgets (random search without replacement): the run is complete
                if len(trials) < len(logged):  # ... but it went on: the replay differs (a latency table changed)
                    raise ReplayMismatch(f"cannot resume {out}: the strategy proposes nothing more after "
                                         f"{len(trials)} evaluations, and the log holds {len(logged)}",
                                         hint="the code or the seed changed, or the log was edited; start a new run")
                stopped = "exhausted"
                break
            if len(trials) + len(archs) > len(logged):  # a batch that ends past the log evaluates afresh
                start_clock()
            records, _ = replay_or_evaluate(problem, archs, len(trials), logged, log, t0, out, "the strategy",
                                            write=functools.partial(write, log=log))
            for arch, rec in zip(archs, records):
                trials.append(Trial.from_json(rec))
                aid = problem.space.arch_id(arch)
                repeats = repeats + 1 if aid in seen else 0
                seen.add(aid)
                if not replaying and not held and len(trials) % config.checkpoint_every == 0:
                    checkpoint("running")
            strategy.tell(archs, [problem.to_result(r) for r in records])
            if progress is not None:
                progress(len(trials), config.budget_evals)
        # stopped by its time limit, the run may not have asked again for the batch it was evaluating when killed;
        # else what the strategy logged past the run's end is refused, and the evaluations kept back with it
        end_replay(check=stopped != "wall_time")
        append_records(log, held)
    if progress is not None and stopped == "exhausted":
        # complete short of the budget: the bar ends at what was done (a run stopped by its time budget stays short)
        progress(len(trials), len(trials))
    start_clock()  # a resume that only replayed: its elapsed time is the run's, not the replay's
    checkpoint("complete" if stopped in ("budget", "exhausted") else "stopped")
    result = summarise(trials, problem, out, stopped)
    write_results(result, problem, out)
    return result
