"""``edgenas search --rerun RUN_ID``: repeat a recorded search, warm-started from it.

The request is the recorded one (space, evaluator, devices and budgets, strategy, budget, seed), with
``warm_start`` set to the run itself (and the options a run recorded before they existed as it ran them:
evolution's ``mutation=per-gene``; ``sampling=novel-first`` of random, multi-fidelity and the strategies that draw
their first population); latency now comes from each device's current table. The strategies that run their own
loop (``sh``, ``hyperband``, ``darts``) take no warm start: theirs is the same search again on today's tables
(``runs stale`` suggests a re-run for them too). The new run goes to ``<old folder>-rerun-N`` (or ``--out``) and
records what it re-runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search.launch import SearchRequest


def rerun_request(project: Project, ref: str, *, db_url: str | None = None,
                  out_dir: Path | None = None) -> tuple[SearchRequest, Path, str]:
    """The request of the re-run of ``ref``, its folder, and the id of the run it re-runs."""
    from edgenas.search.base import is_driver, recorded_options
    from edgenas.store import open_db
    from edgenas.store.runs import get_run

    run = get_run(open_db(db_url, project, readonly=True), ref)
    if not run.request:
        raise InputError(f"run {run.id} has no recorded search request (request.json)",
                         hint="re-run it by hand with the same settings and --warm-start " + run.id)
    req = SearchRequest.from_json(run.request, where=f"run {run.id}: request")
    # a run recorded before an option existed re-runs with what it ran with (a driver's too: sh's sampling)
    req = dataclasses.replace(req, strategy_options=recorded_options(req.strategy, req.strategy_options, new=False))
    if not is_driver(req.strategy):
        req = dataclasses.replace(req, warm_start=(run.id,))
    if out_dir is None:
        base = Path(run.out_dir)
        n = 1
        while Path(f"{base}-rerun-{n}").exists():
            n += 1
        out_dir = Path(f"{base}-rerun-{n}")
    return req, Path(out_dir), run.id
