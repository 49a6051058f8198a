"""Warm start: seed a search's first population with the best architectures of similar past runs.

1. **candidates**: past runs of the same space (``auto``: all of them in the experiment database;
   else the runs named), each scored by ``similarity = task similarity x device similarity``
   (``edgenas.search.task``; devices: 1 for the same fingerprint, else the Spearman rank correlation
   of the two latency models over 256 random architectures of the space, 0.5 when a past model is no
   longer at hand; 1 when either run has no latency budget). Runs below ``min_similarity`` (default 0.6)
   are not used, and the record says why;
2. **best architectures**: from each run used, its evaluations by the primary objective, best first,
   taken in turn from the runs in order of similarity;
3. **diverse set**: greedily keep architectures at least ``MIN_DISTANCE`` genes apart (Hamming distance
   on the space's genes), filling up with the next best when that leaves too few;
4. **repair** to the new latency budgets: an architecture that now violates one is moved gene by gene
   toward the fastest architecture until it fits (``repair_toward_anchor``).

``transfer_ratio`` (default 0.5) x the population size architectures are transferred; the rest of the
first population is sampled as usual. Transferred architectures are evaluated again on the new task and
count in the budget. The plan is a JSON record (``warm_start.json`` in the run folder, ``warm_start``
in the database) naming every source run, its similarity and what was taken from where.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Sequence

import numpy as np

from edgenas.errors import EdgenasError, InputError
from edgenas.project import Project
from edgenas.search.candidates import repair_toward_anchor
from edgenas.search.task import task_similarity
from edgenas.store.experiment import ExperimentDB
from edgenas.store.rows import row_arch, run_hint
from edgenas.store.runs import RunDevice, RunRecord, best_evaluations, get_run, list_runs

WARM_SCHEMA = 1
TRANSFER_RATIO = 0.5
MIN_SIMILARITY = 0.6
MIN_DISTANCE = 2
N_PROBE = 256
UNKNOWN_DEVICE_SIMILARITY = 0.5


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation, ties ranked by their average (ordinal ranks broke ties by position: a model
    predicting one latency for every architecture scored 1.0 against one ordered like the probe)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def past_model(project: Project, space: Any, dev: RunDevice) -> Any | None:
    """The latency model a past run used for ``dev``, if it is still at hand."""
    try:
        if dev.kind == "table" and dev.lut_ref and "#" in dev.lut_ref:
            from edgenas.evaluate.tabular import TableLatency

            path, column = dev.lut_ref.rsplit("#", 1)
            return TableLatency(path, column, space)
        if dev.kind == "lut" and dev.lut_ref:
            from edgenas.latency.lut import Lut
            from edgenas.latency.predictor import LatencyPredictor

            return LatencyPredictor(Lut.load(dev.lut_ref), space)
        if dev.kind == "fewshot":
            from edgenas.latency.fewshot_model import load_latency_model

            return load_latency_model(project.luts_dir, dev.device, space)
    except EdgenasError:
        return None
    return None


def device_similarity(project: Project, problem: Any, mine: Sequence[RunDevice], past: RunRecord,
                      memo: dict[Any, Any] | None = None) -> float:
    """``memo`` (one dict per warm-start plan) keeps the probe architectures and the new devices' predictions
    of them: they were sampled and predicted again for every past run."""
    new = [(d, t) for d, t in zip(mine, problem.devices) if d.budget_ms is not None]
    old = [d for d in past.devices if d.budget_ms is not None]
    if not new or not old:
        return 1.0
    memo = {} if memo is None else memo
    if "probe" not in memo:
        memo["probe"] = [problem.space.sample(r) for r in [np.random.default_rng(0)] for _ in range(N_PROBE)]
    probe = memo["probe"]
    scores = []
    for d, target in new:
        best = 0.0
        for o in old:
            if d.fingerprint_hash and d.fingerprint_hash == o.fingerprint_hash:
                best = 1.0
                break
            model = past_model(project, problem.space, o)
            if model is None:
                best = max(best, UNKNOWN_DEVICE_SIMILARITY)
                continue
            if ("new", d.device) not in memo:
                memo["new", d.device] = np.asarray(target.model.predict_many(probe), float)
            rho = _spearman(memo["new", d.device], np.asarray(model.predict_many(probe), float))
            best = max(best, max(rho, 0.0))
        scores.append(best)
    return float(min(scores))


def hamming(space: Any, a: Any, b: Any) -> int:
    return int(np.sum(space.to_genes(a) != space.to_genes(b)))


def diverse(space: Any, ranked: list[Any], n: int, min_distance: int | None = None) -> list[int]:
    """Indices of up to ``n`` of ``ranked`` (best first): at least ``min_distance`` genes apart, then filled."""
    return list(itertools.islice(diverse_order(space, ranked, min_distance), n))


def diverse_order(space: Any, ranked: list[Any], min_distance: int | None = None) -> Iterator[int]:
    """Every index of ``ranked`` (best first), lazily: first those at least ``min_distance`` genes from every
    one yielded before, then the rest in rank order. A caller that needs a few takes a few: the whole order
    of 2,000 candidates took 32 s (every pair compared), the first ten take a millisecond."""
    min_distance = MIN_DISTANCE if min_distance is None else min_distance
    if not ranked:
        return
    genes = np.stack([np.asarray(space.to_genes(a)) for a in ranked])
    kept = np.empty_like(genes)
    n_kept, taken = 0, np.zeros(len(ranked), dtype=bool)
    for i in range(len(ranked)):
        if n_kept == 0 or (kept[:n_kept] != genes[i]).sum(axis=1).min() >= min_distance:
            kept[n_kept], n_kept, taken[i] = genes[i], n_kept + 1, True
            yield i
    yield from (int(i) for i in np.flatnonzero(~taken))


#: why a past run is not used by a search that optimises a validation column (``_ranks_by_test``)
TEST_LEAK = ("optimised a test column; its best architectures would let test accuracy choose this run's "
             "(it optimises validation accuracy and reports the test one)")


def _ranks_by_test(request: Any, run: RunRecord) -> bool:
    """Whether ``run``'s evaluations, best first by its objective, rank by a test column while the new
    search optimises a table's validation column: transferring them would leak test accuracy into it."""
    from edgenas.search.task import is_test_column, request_getter

    get = request_getter(request)
    objective = str(get("objective") or "")
    return bool(get("table")) and not is_test_column(objective) and is_test_column(run.objective)


def plan_warm_start(db: ExperimentDB, project: Project, problem: Any, request: Any, sources: Sequence[str],
                    *, n: int, min_similarity: float = MIN_SIMILARITY, transfer_ratio: float = TRANSFER_RATIO,
                    seed: int = 0, exclude: Sequence[str] = ()) -> tuple[list[Any], dict[str, Any]]:
    """(architectures to seed the first population with, the JSON record of the plan)."""
    from edgenas.search.record import describe_device
    from edgenas.search.task import describe_task

    if not 0.0 <= min_similarity <= 1.0:
        raise InputError(f"--min-similarity must be in [0, 1], got {min_similarity}")
    space = problem.space
    auto = list(sources) == ["auto"]
    runs = list_runs(db, space=space.name) if auto else [get_run(db, s) for s in sources]
    for r in runs:
        if r.space != space.name:
            raise InputError(f"run {r.id} searched space '{r.space}', not '{space.name}'",
                             hint="warm-start from runs of the same space")
    runs = [r for r in runs if r.id not in set(exclude) and r.n_evaluations > 0]
    task = describe_task(request)
    mine = [describe_device(project, t) for t in problem.devices]
    scored, memo = [], {}
    for r in runs:
        ts = task_similarity(task, r.task)
        ds = device_similarity(project, problem, mine, r, memo) if ts > 0 else 0.0
        scored.append((ts * ds, ts, ds, r))
    scored.sort(key=lambda x: (-x[0], -x[3].created_at))
    leaks = {r.id for _, _, _, r in scored if _ranks_by_test(request, r)}
    used = [x for x in scored if x[0] >= min_similarity and x[3].id not in leaks]
    record: dict[str, Any] = {
        "schema": WARM_SCHEMA, "mode": "auto" if auto else "runs", "min_similarity": min_similarity,
        "transfer_ratio": transfer_ratio, "slots": n,
        "candidates": [{"run_id": r.id, "similarity": round(s, 4), "task_similarity": round(ts, 4),
                        "device_similarity": round(ds, 4), "dataset": r.task.get("dataset"),
                        "used": s >= min_similarity and r.id not in leaks,
                        **({"excluded": TEST_LEAK} if r.id in leaks else {})} for s, ts, ds, r in scored],
        "transferred": [],
    }
    if not used or n <= 0:
        best = max((s for s, _, _, r in scored if r.id not in leaks), default=None)
        record["note"] = ("no past run of this space" if not scored else
                          "no slot to transfer into (--transfer-ratio 0): nothing transferred" if used else
                          f"no past run to transfer from: every one {TEST_LEAK}" if best is None else
                          f"no past run is similar enough (best {best:.4f} < {min_similarity}); "
                          "nothing transferred, the search starts from scratch")
        return [], record
    per_run = []
    for _, _, _, r in used:
        evs = [e for e in best_evaluations(db, r.id, 5 * n)  # the database's order, checked on what it gives
               if math.isfinite(float(e.objectives.get(r.objective, -math.inf)))]
        evs.sort(key=lambda e: (-float(e.objectives[r.objective]), e.number))
        per_run.append((r, evs[: 5 * n]))
    order, seen = [], set()
    for k in range(max(len(evs) for _, evs in per_run)):
        for r, evs in per_run:
            if k < len(evs):
                arch = row_arch(space, evs[k].arch, db.where, "evaluations", f"run {r.id}, evaluation {evs[k].number}",
                                hint=run_hint(r.out_dir))
                key = space.arch_id(arch)
                if key not in seen:
                    seen.add(key)
                    order.append((arch, r, evs[k]))
    archs = [a for a, _, _ in order]
    if problem.constrained and archs:  # feasible under the new budgets first, keeping the order
        v = np.asarray(problem.violation(archs), dtype=float)
        idx = [i for i in range(len(order)) if v[i] <= 0] + [i for i in range(len(order)) if v[i] > 0]
        order, archs = [order[i] for i in idx], [archs[i] for i in idx]
    rng = np.random.default_rng([seed, 7013])
    out: list[Any] = []
    taken: set[str] = set()
    for i in diverse_order(space, archs):
        if len(out) >= n:
            break
        arch, r, e = order[i]
        fixed = arch
        if problem.constrained and float(problem.violation([arch])[0]) > 0:
            fixed = repair_toward_anchor(space, problem, arch, rng)
        key = space.arch_id(fixed)
        if key in taken:
            continue
        taken.add(key)
        out.append(fixed)
        record["transferred"].append({"arch": space.to_dict(fixed), "from_run": r.id, "from_number": e.number,
                                      "source_value": float(e.objectives[r.objective]),
                                      "repaired": key != space.arch_id(arch)})
    record["note"] = (f"{len(out)} architectures from {len({t['from_run'] for t in record['transferred']})} "
                      f"past run(s) seed the first population")
    return out, record
