"""Build a search from user-level settings (what the CLI takes) and run or resume it.

``SearchRequest`` is the whole user intent: the space, the evaluator and its options, the devices with
their latency budgets (LUT-based), or a benchmark table with a latency column. It is saved as
``request.json`` in the run folder so ``edgenas search --resume RUN_DIR`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgenas.errors import InputError
from edgenas.io import atomic_write_json, read_json
from edgenas.project import Project

REQUEST_SCHEMA = 1
QUANTILE_SAMPLES = 2000
#: the proxy with the best rank correlation in bench/proxies_nb201.py, and it beats the parameter count
DEFAULT_EVALUATOR = "compression"
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

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["devices"], d["max_latency_ms"] = list(self.devices), list(self.max_latency_ms)
        d["minimise"], d["report"] = list(self.minimise), list(self.report)
        if isinstance(self.table, tuple):
            d["table"] = list(self.table)
        d["evaluator_options"] = dict(self.evaluator_options)
        return {"schema": REQUEST_SCHEMA, **d}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "request.json") -> "SearchRequest":
        if not isinstance(d, Mapping) or d.get("schema") != REQUEST_SCHEMA:
            raise InputError(f"{where}: not a search request of schema {REQUEST_SCHEMA}")
        d = {k: v for k, v in d.items() if k != "schema"}
        d["devices"], d["max_latency_ms"] = tuple(d.get("devices", ())), tuple(d.get("max_latency_ms", ()))
        d["minimise"], d["report"] = tuple(d.get("minimise", ())), tuple(d.get("report", ()))
        if isinstance(d.get("table"), list):
            d["table"] = tuple(d["table"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"{where}: {exc}") from None


def _budgets(req: SearchRequest, names: list[str]) -> list[float | None]:
    b = list(req.max_latency_ms)
    if req.max_latency_quantile is not None and b:
        raise InputError("give either --max-latency-ms or --max-latency-quantile, not both")
    if not b:
        return [None] * len(names)
    if len(b) == 1:
        return b * len(names)
    if len(b) != len(names):
        raise InputError(f"{len(b)} latency budgets for {len(names)} devices",
                         hint="give one --max-latency-ms per --device, in the same order, or one for all")
    return b


def build_problem(project: Project, req: SearchRequest) -> tuple[Any, Any]:
    """(problem, config) for a request; raises InputError/InfeasibleError before anything runs."""
    from edgenas.evaluate import make_evaluator
    from edgenas.search import DeviceTarget, Problem, SearchConfig
    from edgenas.spaces import get_space

    space = get_space(req.space)
    models: list[tuple[str, Any]] = []
    if req.table:
        from edgenas.evaluate.tabular import TableLatency, join_tables

        table = join_tables(req.table)
        if req.latency_column:
            models.append((req.latency_column, TableLatency(table, req.latency_column, space)))
    elif req.latency_column:
        raise InputError("--latency-column needs --table")
    if req.devices:
        from edgenas.latency.predictor import LatencyPredictor
        from edgenas.latency.store import LutStore

        store = LutStore(project.luts_dir)
        for d in req.devices:
            models.append((d, LatencyPredictor(store.latest(d, space.name), space)))
    names = [n for n, _ in models]
    budgets = _budgets(req, names)
    if req.max_latency_quantile is not None:
        q = req.max_latency_quantile
        if not 0 < q <= 1:
            raise InputError(f"--max-latency-quantile must be in (0, 1], got {q}")
        rng = np.random.default_rng(req.seed)
        sample = [space.sample(rng) for _ in range(QUANTILE_SAMPLES)]
        budgets = [float(np.quantile(m.predict_many(sample), q)) for _, m in models]
    if any(b is not None for b in budgets) and not models:
        raise InputError("a latency budget needs a device (--device) or a table column (--latency-column)")
    name = req.evaluator or ("tabular" if req.table else DEFAULT_EVALUATOR)
    opts = dict(req.evaluator_options)
    if name == "tabular":
        if not req.table:
            raise InputError("the tabular evaluator needs --table")
        opts.update(table=req.table, objective=req.objective, report=list(req.report))
    elif req.report:
        raise InputError("--report needs the tabular evaluator (--table)")
    evaluator = make_evaluator(name, space, seed=req.seed, **opts)
    targets = [DeviceTarget(n, m, b) for (n, m), b in zip(models, budgets)]
    bad = sorted(set(req.minimise) - {"params", "flops"})
    if bad:
        raise InputError(f"unknown objective(s) to minimise: {', '.join(bad)}", hint="use params and/or flops")
    extra = {}
    if req.minimise:
        from edgenas.evaluate.cost import cost_functions

        fns = cost_functions(space)
        extra = {k: fns[k] for k in req.minimise}
    problem = Problem(space, evaluator, targets, accuracy_name=req.objective if name == "tabular" else name,
                      params=extra.get("params"), flops=extra.get("flops"))
    config = SearchConfig(space=space.name, strategy=req.strategy, budget_evals=req.budget,
                          max_wall_s=req.max_wall_s, seed=req.seed, population=req.population,
                          devices=tuple((t.name, t.budget_ms) for t in targets),
                          checkpoint_every=req.checkpoint_every)
    return problem, config


def launch_search(project: Project, req: SearchRequest | None, out_dir: Path, *, resume: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> Any:
    """Run a new search into ``out_dir`` or resume the one there (``req`` None: read request.json)."""
    from edgenas.search import run_search

    out_dir = Path(out_dir)
    req_path = out_dir / "request.json"
    if resume:
        if not req_path.exists():
            raise InputError(f"{out_dir} holds no search to resume (no request.json)",
                             hint="check the folder, or start a new search with --out")
        req = SearchRequest.from_json(read_json(req_path, "search request"), str(req_path))
    elif req is None:
        raise InputError("nothing to search: give --space (or --resume RUN_DIR)")
    elif (out_dir / "evaluations.jsonl").exists():
        raise InputError(f"{out_dir} already holds a search run", hint="use --resume or another --out folder")
    problem, config = build_problem(project, req)  # validates everything before the folder is touched
    if not resume:
        atomic_write_json(req_path, req.to_json())
    result = run_search(config, problem, out_dir, resume=resume, progress=progress)
    return problem, config, result


def summary(problem: Any, result: Any) -> dict[str, Any]:
    b = result.best
    return {
        "best": dict(b.arch) if b else None,
        "objective": problem.accuracy_name,
        "objective_value": b.objectives[problem.accuracy_name] if b else None,
        "report": dict(b.report) if b else {},
        "latency_ms": dict(b.latency_ms) if b else None,
        "budgets_ms": {d.name: d.budget_ms for d in problem.devices},
        "min_latency_ms": dict(problem.min_latency_ms),
        "evaluations": result.n_evaluations,
        "pareto_size": len(result.pareto),
        "front_sizes": {name: len(front) for name, front in result.fronts.items()},
        "stopped": result.stopped,
        "out_dir": str(result.out_dir),
    }
