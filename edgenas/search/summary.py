"""The summary of a finished (or stopped) search that ``edgenas search`` prints and ``--json`` shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgenas.errors import InputError
from edgenas.io import read_json


def summary(problem: Any, result: Any, archs: Any = None) -> dict[str, Any]:
    """``archs``: the architecture dicts whose distinct count the summary gives (default: the result's trials;
    a multi-fidelity search passes every rung's)."""
    b = result.best
    archs = [t.arch for t in result.trials] if archs is None else archs
    return {
        "best": dict(b.arch) if b else None,
        "objective": problem.accuracy_name,
        "objective_value": b.objectives[problem.accuracy_name] if b else None,
        "report": dict(b.report) if b else {},
        "latency_ms": dict(b.latency_ms) if b else None,
        "budgets_ms": {d.name: d.budget_ms for d in problem.devices},
        "min_latency_ms": dict(problem.min_latency_ms),
        "evaluations": result.n_evaluations,
        "distinct": len({problem.space.arch_id(problem.space.from_dict(a)) for a in archs}),
        "pareto_size": len(result.pareto),
        "front_sizes": {name: len(front) for name, front in result.fronts.items()},
        "stopped": result.stopped,
        "out_dir": str(result.out_dir),
        "run_id": run_id_of(result.out_dir),
        "warm_start": _warm_note(result.out_dir),
        **({"llm": llm} if (llm := _llm_summary(result.out_dir)) else {}),
    }


def run_id_of(out_dir: Any) -> str | None:
    """The run's id in the experiment database (``edgenas runs show ID``), from its folder and config; None
    for a folder whose config cannot be read."""
    from edgenas.search.record import folder_run_id
    from edgenas.search.run_files import check_config

    path = Path(out_dir) / "config.json"
    try:
        return folder_run_id(Path(out_dir), check_config(read_json(path, "run config"), path))
    except (InputError, OSError):
        return None


def _warm_note(out_dir: Path) -> str | None:
    path = Path(out_dir) / "warm_start.json"
    if not path.exists():
        return None
    from edgenas.search.run_files import check_warm_start

    try:
        return check_warm_start(read_json(path, "warm start"), path).get("note")  # text or None, checked
    except InputError:
        return None


def _llm_summary(out_dir: Any) -> dict[str, Any] | None:
    if not (Path(out_dir) / "llm").is_dir():
        return None
    from edgenas.llm.experience import summary as llm_summary

    return llm_summary(out_dir)
