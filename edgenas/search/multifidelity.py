"""Multi-fidelity search: successive halving and Hyperband over a ladder of evaluators.

Each bracket samples fresh candidates (seeded random search within the latency budgets; ``sampling``:
``without-replacement``, new runs, draws none that an earlier bracket drew and leaves a bracket short when
nothing new meets the budgets; ``novel-first``, runs recorded before the option, may draw one again,
``edgenas.search.draws``), evaluates them all on its first rung, keeps the best (``Rung.survivors``: Deb's
feasibility-first order, then the rung's accuracy) and evaluates those on the next rung, up to the
last one. ``sh`` is one bracket from the cheapest rung (Jamieson & Talwalkar 2016); ``hyperband``
runs brackets that trade many cheap screenings against few expensive ones (Li et al. 2018).

The run folder holds ``config.json`` (with the ladder), ``evaluations.jsonl`` (one line per
evaluation with its bracket, rung and cost; appended and fsynced per rung), ``checkpoint.json``, and
at the end ``best.json`` / ``pareto.json`` from the last rung's evaluations (so ``export`` and
``deploy`` take ``best.json`` unchanged). The schedule is a deterministic function of the seed and of
the results, so ``resume=True`` replays the log (results read, never recomputed) and continues: a run
killed at any point ends exactly like an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.io import atomic_write_json, open_log_for_append, read_json
from edgenas.limits import is_schema
from edgenas.search.base import Trial, make_strategy, rank_key
from edgenas.search.draws import DEFAULT_SAMPLING, OLD_SAMPLING, SAMPLINGS
from edgenas.search.ladder import Bracket, Rung, brackets
from edgenas.search.problem import Problem
from edgenas.search.results import SearchResult, summarise, write_results
from edgenas.search.run import ReplayMismatch, ResumeRefused, _read_log, replay_or_evaluate
from edgenas.search.run_files import check_config, resume_or_new

MF_SCHEMA = 1
MODES = ("sh", "hyperband")


@dataclass(frozen=True)
class MFConfig:
    """Everything that determines a multi-fidelity search (``config.json``)."""

    space: str
    rungs: tuple[Rung, ...]
    mode: str = "sh"
    candidates: int = 81          # sh: candidates of the bracket; hyperband: of the most exploratory one
    eta: int = 3
    seed: int = 0
    devices: tuple[tuple[str, float | None], ...] = ()
    sampling: str = DEFAULT_SAMPLING  # a config.json without it is a run's from before: OLD_SAMPLING

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown multi-fidelity mode '{self.mode}'", hint="use sh or hyperband")
        if self.sampling not in SAMPLINGS:
            raise InputError(f"unknown sampling '{self.sampling}'", hint=f"use {' or '.join(SAMPLINGS)}")
        if len(self.rungs) < 1:
            raise InputError("a multi-fidelity search needs a ladder of at least one rung")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            raise InputError(f"candidates must be an integer >= 1, got {self.candidates!r}")
        brackets(self.mode, self.rungs, self.candidates, self.eta)  # validates eta
        object.__setattr__(self, "devices", tuple((str(n), None if b is None else float(b))
                                                  for n, b in self.devices))

    def to_json(self) -> dict[str, Any]:
        """The record; ``sampling`` only when it is not ``novel-first``, so that a run recorded before the option
        keeps its config.json (and its run id) and resumes against it."""
        d = {"schema": MF_SCHEMA, "kind": "multi-fidelity", "space": self.space, "mode": self.mode,
             "ladder": [r.to_json() for r in self.rungs], "candidates": self.candidates,
             "eta": self.eta, "seed": self.seed, "devices": [list(d) for d in self.devices]}
        return d if self.sampling == OLD_SAMPLING else {**d, "sampling": self.sampling}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "MFConfig":
        if not is_schema(d.get("schema"), MF_SCHEMA) or d.get("kind") != "multi-fidelity":
            raise InputError("not a multi-fidelity run config")
        return cls(space=d["space"], rungs=tuple(Rung.from_json(r) for r in d["ladder"]), mode=d["mode"],
                   candidates=int(d["candidates"]), eta=int(d["eta"]), seed=int(d["seed"]),
                   devices=tuple(tuple(x) for x in d.get("devices", ())), sampling=d.get("sampling", OLD_SAMPLING))

    def plan(self) -> list[tuple[Bracket, list[int]]]:
        """Per bracket, the number of candidates evaluated on each of its rungs."""
        out = []
        for b in brackets(self.mode, self.rungs, self.candidates, self.eta):
            sizes, n = [], b.n
            for r in range(b.start, len(self.rungs)):
                sizes.append(n)
                n = self.rungs[r].survivors(n, self.eta)
            out.append((b, sizes))
        return out

    def planned_cost(self) -> float:
        return sum(n * self.rungs[b.start + i].cost for b, sizes in self.plan() for i, n in enumerate(sizes))


@dataclass(frozen=True)
class MFResult:
    result: SearchResult          # best / fronts from the last rung's evaluations
    cost: float                   # sum of rung costs over distinct (rung, architecture) evaluations
    rung_counts: tuple[int, ...]  # evaluations per rung


def run_multifidelity(config: MFConfig, problems: Sequence[Problem], out_dir: str | os.PathLike, *,
                      resume: bool = False, progress: Callable[[int, int], None] | None = None) -> MFResult:
    """Run (or resume) a multi-fidelity search; ``problems[i]`` evaluates rung ``i``."""
    if len(problems) != len(config.rungs):
        raise InputError(f"{len(problems)} problems for a ladder of {len(config.rungs)} rungs")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path, ckpt_path, cfg_path = out / "evaluations.jsonl", out / "checkpoint.json", out / "config.json"
    if resume and cfg_path.exists():
        old = check_config(read_json(cfg_path, "run config"), cfg_path)
        if old != config.to_json():
            diff = sorted(k for k in set(old) | set(config.to_json()) if old.get(k) != config.to_json().get(k))
            raise ResumeRefused(f"cannot resume {out}: the config differs in {', '.join(diff)}",
                                hint="resume with the original settings or use a new folder")
        logged, whole = _read_log(log_path)  # config.json is this config already: a refused replay changes nothing
    else:
        if log_path.exists() or ckpt_path.exists():
            raise InputError(f"{out} already holds a search run", hint=resume_or_new(out))
        logged, whole = [], None
        atomic_write_json(cfg_path, config.to_json())
    space = problems[0].space
    total = sum(sum(s) for _, s in config.plan())
    t0 = time.monotonic() - (float(logged[-1]["wall_s"]) if logged else 0.0)
    trials: list[tuple[int, Trial]] = []  # (rung, trial)
    done_pairs: set[tuple[int, str]] = set()
    cost = 0.0

    def checkpoint(status: str) -> None:
        atomic_write_json(ckpt_path, {"schema": MF_SCHEMA, "status": status, "n_evaluations": len(trials),
                                      "cost": cost, "elapsed_s": time.monotonic() - t0})

    with open_log_for_append(log_path, whole=whole) as log:
        def evaluate(bracket: int, rung: int, archs: list[Any]) -> list[dict[str, Any]]:
            nonlocal cost
            recs, todo = replay_or_evaluate(problems[rung], archs, len(trials), logged, log, t0, out, "the schedule",
                                            {"bracket": bracket, "rung": rung})
            for arch, rec in zip(archs, recs):
                trials.append((rung, Trial.from_json(rec)))
                key = (rung, space.arch_id(arch))
                if key not in done_pairs:
                    done_pairs.add(key)
                    cost += config.rungs[rung].cost
            if todo:
                checkpoint("running")
            if progress is not None:
                progress(len(trials), total)
            return recs  # type: ignore[return-value]

        drawn: set[str] = set()  # every bracket's candidates so far: without replacement, not drawn again
        short = False            # a bracket drew fewer than planned: nothing new met the budgets
        for b in brackets(config.mode, config.rungs, config.candidates, config.eta):
            sampler = make_strategy("random", space, np.random.default_rng([config.seed, b.index]),
                                    feasibility=problems[0] if problems[0].constrained else None,
                                    sampling=config.sampling)
            if config.sampling != OLD_SAMPLING:
                sampler.seen.update(drawn)
            cands = sampler.ask(b.n)
            drawn.update(space.arch_id(a) for a in cands)
            short = short or len(cands) < b.n
            if not cands:
                continue
            for r in range(b.start, len(config.rungs)):
                recs = evaluate(b.index, r, cands)
                if r == len(config.rungs) - 1:
                    break
                results = [problems[r].to_result(rec) for rec in recs]
                order = sorted(range(len(cands)), key=lambda i: (rank_key(results[i]), i))
                cands = [cands[i] for i in order[:config.rungs[r].survivors(len(cands), config.eta)]]
        if len(trials) < len(logged):  # brackets drew fewer on replay (nothing new met the budgets) than they had
            raise ReplayMismatch(f"cannot resume {out}: the schedule ends after {len(trials)} evaluations, and the "
                                 f"log holds {len(logged)}",
                                 hint="the code or the seed changed, or the log was edited; start a new run")
    if progress is not None and len(trials) != total:
        # brackets left short (nothing new met the budgets): the run is complete at what it did, and its bar
        # ends there, not short of a planned total it will never reach
        progress(len(trials), len(trials))
    checkpoint("complete")
    last = len(config.rungs) - 1
    # the last rung's evaluations (summarise keeps each architecture's first)
    result = summarise([t for rung, t in trials if rung == last], problems[last], out,
                       "exhausted" if short else "budget")
    write_results(result, problems[last], out)
    best = read_json(out / "best.json", "best.json")
    best.update({"evaluations": len(trials), "metric": problems[last].evaluator.metric,
                 "accuracy_name": problems[last].accuracy_name, "rung": last,
                 "ladder": [r.label() for r in config.rungs], "cost": cost})
    if result.best is not None:  # the cheaper rungs' scores of the winner, for the record
        bid = space.arch_id(space.from_dict(result.best.arch))
        best["rungs"] = {config.rungs[r].label(): t.objectives[problems[r].accuracy_name]
                         for r, t in trials if space.arch_id(space.from_dict(t.arch)) == bid}
    atomic_write_json(out / "best.json", best)
    counts = tuple(sum(1 for r, _ in trials if r == i) for i in range(len(config.rungs)))
    return MFResult(result, cost, counts)
