"""The NAS-Bench-201 search suite: tasks that still tell a good strategy from a great one. Prints JSON.

Every strategy claim of edgenas is measured here. Each task optimises one table column and reports
another for the architecture the search chose (the feasible evaluation with the best objective, the
earliest of tied ones; ``edgenas search`` now takes the fastest of tied ones, which on NAS-Bench-201 are
mostly isomorphic cells sharing every reported value); regret is the best reported value over the feasible
architectures of the whole table minus that. Strategies are built and driven exactly as ``edgenas search`` drives them
(``edgenas.search.run.build_strategy``: the user's default options, the same batch per ask/tell round),
only without the run folder. ``distinct``: how many different architectures a run evaluated (a repeat
spends a query and learns nothing).

Tasks (``TASKS``; the two tables are joined on ``index``):

* ``c10-valid``: the standard protocol, optimise ``cifar10_valid`` (200 epochs), report ``cifar10_test``;
* ``c10-12ep``, ``c100-12ep``, ``in16-12ep``: optimise the 12-epoch validation accuracy, report the
  200-epoch test accuracy;
* ``c100-test-50/100``, ``in16-test-50/100``: optimise and report the test accuracy, 50 and 100 queries;
* ``c10-valid@DEVICE``: the standard protocol under a latency budget at the 30th percentile of the
  device column (all 15,625 architectures), for each device of ``nb201_hw.csv``, and ``c10-valid@raspi4+pixel3``
  with both budgets at once.

Python (what other benchmarks and issues call)::

    from bench.search_suite import run_strategy, summarise
    res = run_strategy("evolution", seeds=range(30))              # every task, one strategy
    res = run_strategy("evolution", {"tournament": 10}, tasks=["c10-12ep"], seeds=range(1000, 1010))
    table = summarise({"evolution": res, "random": run_strategy("random")})

``strategy`` may also be a callable ``(space, rng, feasibility) -> Strategy`` for strategies that are not
registered. Command line (one JSON file per strategy, then one table over them)::

    python bench/search_suite.py run evolution --seeds 30 --out bench/suite/evolution.json
    python bench/search_suite.py table bench/suite/*.json --markdown
    python bench/search_suite.py table bench/search_suite_results.json bench/suite/tpe.json --markdown  # tpe run again
    python bench/search_suite.py run evolution --opt mutation=per-gene --label evolution-per-gene --out F.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgenas.evaluate.tabular import Table, TableLatency, TabularEvaluator, join_tables  # noqa: E402
from edgenas.search import DeviceTarget, Problem, SearchConfig  # noqa: E402
from edgenas.search.run import build_strategy  # noqa: E402
from edgenas.spaces import SPACES  # noqa: E402
from edgenas.spaces import nb201  # noqa: E402,F401

DATA = Path(__file__).resolve().parents[2] / "shared/data/nb201"
DEVICES = ("raspi4_ms", "pixel3_ms", "gold_6226_ms", "1080ti_1_ms", "titan_rtx_1_ms")
QUANTILE = 0.30
MIN_SEEDS_FOR_DEFAULT = 10


@dataclass(frozen=True)
class Task:
    name: str
    objective: str                 # the column the search optimises
    report: str                    # the column reported for the chosen architecture
    budget: int                    # queries
    devices: tuple[str, ...] = ()  # latency columns, each budgeted at its quantile
    quantile: float = QUANTILE     # of every architecture's latency on the device (the whole table)


TASKS: tuple[Task, ...] = (
    Task("c10-valid", "cifar10_valid", "cifar10_test", 100),
    Task("c10-12ep", "cifar10_valid_12ep", "cifar10_test", 100),
    Task("c100-12ep", "cifar100_valid_12ep", "cifar100_test", 100),
    Task("in16-12ep", "imagenet16_valid_12ep", "imagenet16_test", 100),
    Task("c100-test-50", "cifar100_test", "cifar100_test", 50),
    Task("c100-test-100", "cifar100_test", "cifar100_test", 100),
    Task("in16-test-50", "imagenet16_test", "imagenet16_test", 50),
    Task("in16-test-100", "imagenet16_test", "imagenet16_test", 100),
    *(Task(f"c10-valid@{d.removesuffix('_ms')}", "cifar10_valid", "cifar10_test", 100, (d,)) for d in DEVICES),
    Task("c10-valid@raspi4+pixel3", "cifar10_valid", "cifar10_test", 100, ("raspi4_ms", "pixel3_ms")),
)


def load_suite_table(data: str | os.PathLike = DATA) -> Table:
    return join_tables([Path(data) / "nb201_hw.csv", Path(data) / "nb201_valid.csv"])


def task_problem(task: Task, table: Table) -> tuple[Problem, dict[str, Any]]:
    """The task's problem and its facts (budgets in ms, feasible count, feasible optimum of ``report``)."""
    space = SPACES.get("nb201")
    ev = TabularEvaluator(space, table, task.objective, [task.report])
    budgets = {d: float(np.quantile(table.columns[d], task.quantile)) for d in task.devices}
    targets = [DeviceTarget(d, TableLatency(table, d, space), b) for d, b in budgets.items()]
    problem = Problem(space, ev, targets, accuracy_name=task.objective)
    ok = np.ones(len(table.archs), dtype=bool)
    for d, b in budgets.items():
        ok &= table.columns[d] <= b
    return problem, {"budgets_ms": budgets, "feasible": int(ok.sum()),
                     "optimum": float(table.columns[task.report][ok].max())}


def build(strategy: str | Callable[..., Any], problem: Problem, budget: int, seed: int,
          options: Mapping[str, Any] | None = None, hooks: Mapping[str, Any] | None = None) -> tuple[Any, int]:
    """The strategy as ``edgenas search`` builds it for this problem, and its batch per ask/tell round."""
    if callable(strategy):
        s = strategy(problem.space, np.random.default_rng(seed), problem if problem.constrained else None)
        return s, s.batch_hint or s.opts.get("population") or 1
    config = SearchConfig(space="nb201", strategy=strategy, budget_evals=budget, seed=seed,
                          devices=tuple((d.name, d.budget_ms) for d in problem.devices),
                          strategy_options=dict(options or {}))
    return build_strategy(config, problem, hooks)


def drive_built(s: Any, batch: int, problem: Problem, budget: int,
                trace: list[float] | None = None) -> tuple[list[dict[str, Any]], float, int]:
    """``drive`` with a strategy ``build`` made; ``trace``: each evaluation's CPU seconds appended (its round's
    ask + tell, shared evenly by the round's evaluations)."""
    recs: list[dict[str, Any]] = []
    spent, rounds = 0.0, 0
    while len(recs) < budget:
        t0 = time.process_time()
        archs = s.ask(min(batch, budget - len(recs)))
        round_s = time.process_time() - t0
        if not archs:  # draws without replacement (sampling): nothing new within the budget is left
            break
        got = [dict(r, arch_id=problem.space.arch_id(a)) for a, r in zip(archs, problem.evaluate(archs))]
        results = [problem.to_result(r) for r in got]
        t0 = time.process_time()
        s.tell(archs, results)
        round_s += time.process_time() - t0
        if trace is not None:
            trace += [round_s / len(archs)] * len(archs)
        spent, rounds = spent + round_s, rounds + 1
        recs += got
    return recs, spent, rounds


def drive(strategy: str | Callable[..., Any], problem: Problem, budget: int, seed: int,
          options: Mapping[str, Any] | None = None,
          hooks: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]], float, int]:
    """One search as ``edgenas search`` runs it: (evaluation records, each with the ``arch_id`` evaluated,
    CPU seconds in ask+tell, rounds).

    CPU time of this process (``time.process_time``), not wall time: the machines these run on are shared."""
    return drive_built(*build(strategy, problem, budget, seed, options, hooks), problem, budget)


def chosen(recs: Sequence[Mapping[str, Any]], task: Task) -> float:
    """The reported value of the feasible record with the best objective (earliest on ties); NaN if none."""
    best = None
    for r in recs:
        if r["feasible"] and (best is None or r["objectives"][task.objective] > best["objectives"][task.objective]):
            best = r
    if best is None:
        return float("nan")
    return float(best["objectives"][task.report] if task.report == task.objective else best["report"][task.report])


def stats(xs: Iterable[float]) -> dict[str, Any]:
    a = np.asarray(list(xs), dtype=float)
    ok = a[np.isfinite(a)]
    if not ok.size:
        return {"median": None, "iqr": None, "mean": None, "n": 0}
    q1, med, q3 = np.percentile(ok, [25, 50, 75])
    return {"median": round(float(med), 4), "iqr": [round(float(q1), 4), round(float(q3), 4)],
            "mean": round(float(ok.mean()), 4), "n": int(ok.size), "failed": int(a.size - ok.size)}


def run_strategy(strategy: str | Callable[..., Any], options: Mapping[str, Any] | None = None, *,
                 seeds: Iterable[int] = range(30), tasks: Sequence[str | Task] | None = None,
                 data: str | os.PathLike = DATA, hooks: Mapping[str, Any] | None = None,
                 progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Run one strategy over the suite: per task the reported values, regrets and ask/tell times."""
    table = load_suite_table(data)
    by_name = {t.name: t for t in TASKS}
    todo = [by_name[t] if isinstance(t, str) else t for t in (tasks or TASKS)]
    seeds = list(seeds)
    out: dict[str, Any] = {"strategy": strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "?"),
                           "options": dict(options or {}), "seeds": [seeds[0], seeds[-1]] if seeds else [],
                           "n_seeds": len(seeds), "tasks": {}}
    for task in todo:
        problem, facts = task_problem(task, table)
        values, distinct, spent, rounds, evals = [], [], 0.0, 0, 0
        for seed in seeds:
            recs, s_spent, s_rounds = drive(strategy, problem, task.budget, seed, options, hooks)
            values.append(chosen(recs, task))
            distinct.append(len({r["arch_id"] for r in recs}))
            spent, rounds, evals = spent + s_spent, rounds + s_rounds, evals + len(recs)
            if progress:
                progress(task.name, seed)
        v = np.asarray(values)
        out["tasks"][task.name] = {
            "task": asdict(task), **facts, "values": [round(x, 4) for x in values],
            "reported": stats(v), "regret": stats(facts["optimum"] - v),
            "distinct_values": distinct, "distinct": stats(distinct),
            "ms_per_round": round(1000 * spent / max(rounds, 1), 3),
            "ms_per_eval": round(1000 * spent / max(evals, 1), 3)}
    return out


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two ``run_strategy`` results of the same strategy (other seeds and/or other tasks), as one: the
    values of a task run in both are concatenated, a task run in one only is kept as it is."""
    if a["strategy"] != b["strategy"] or a["options"] != b["options"]:
        raise ValueError("merge runs of the same strategy and options only")
    out = {**a, "n_seeds": max(a["n_seeds"], b["n_seeds"]), "seeds": [a["seeds"], b["seeds"]],
           "tasks": {**b["tasks"], **a["tasks"]}}
    for t in set(a["tasks"]) & set(b["tasks"]):
        ta, tb = a["tasks"][t], b["tasks"][t]
        na, nb = len(ta["values"]), len(tb["values"])
        v = np.array(ta["values"] + tb["values"], dtype=float)
        distinct = list(ta.get("distinct_values", [])) + list(tb.get("distinct_values", []))
        out["tasks"][t] = {**ta, "values": list(ta["values"]) + list(tb["values"]), "reported": stats(v),
                           "regret": stats(ta["optimum"] - v), "distinct_values": distinct, "distinct": stats(distinct),
                           "ms_per_round": round((na * ta["ms_per_round"] + nb * tb["ms_per_round"]) / (na + nb), 3),
                           "ms_per_eval": round((na * ta["ms_per_eval"] + nb * tb["ms_per_eval"]) / (na + nb), 3)}
    out["n_seeds"] = max(len(x["values"]) for x in out["tasks"].values())
    return out


def row(result: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, Any]:
    """One strategy's row of the summary (its ranks are added by ``rank``)."""
    ts = result["tasks"]
    seeds = [len(ts[t].get("values", ())) or result["n_seeds"] for t in tasks]
    return {"n_seeds": max(seeds), "min_seeds": min(seeds), "options": result["options"],
            "ms_per_eval": round(float(np.median([ts[t]["ms_per_eval"] for t in tasks])), 3),
            "ms_per_round": round(float(np.median([ts[t]["ms_per_round"] for t in tasks])), 3),
            "tasks": {t: {"median": ts[t]["reported"]["median"], "iqr": ts[t]["reported"]["iqr"],
                          "regret": ts[t]["regret"]["median"]} for t in tasks}}


def rank(rows: Mapping[str, Mapping[str, Any]], optima: Mapping[str, float]) -> dict[str, Any]:
    """Ranks per task (1 = best median reported value, ties share the mean rank) and over the suite, of the
    tasks every row has."""
    names = list(rows)
    tasks = [t for t in rows[names[0]]["tasks"] if all(t in rows[n]["tasks"] for n in names)]
    ranks: dict[str, dict[str, float]] = {n: {} for n in names}
    for t in tasks:
        med = np.array([rows[n]["tasks"][t]["median"] or -np.inf for n in names])
        for i, n in enumerate(names):
            ranks[n][t] = float(np.sum(med > med[i]) + (np.sum(med == med[i]) + 1) / 2)
    out = {}
    for n in names:
        r = np.array([ranks[n][t] for t in tasks])
        out[n] = {"median_rank": float(np.median(r)), "mean_rank": round(float(r.mean()), 3), "ranks": ranks[n],
                  **{k: v for k, v in rows[n].items() if k not in ("median_rank", "mean_rank", "ranks", "tasks")},
                  "tasks": {t: rows[n]["tasks"][t] for t in tasks}}
    order = sorted(names, key=lambda n: (out[n]["median_rank"], out[n]["mean_rank"]))
    # the default of `edgenas search` is picked among strategies measured on enough seeds on every task
    enough = [n for n in order if out[n]["min_seeds"] >= MIN_SEEDS_FOR_DEFAULT] or order
    return {"tasks": tasks, "optima": {t: optima[t] for t in tasks}, "order": order, "best": enough[0],
            "best_rule": f"best median rank (then mean rank) among strategies with >= {MIN_SEEDS_FOR_DEFAULT} "
                         "seeds on every task", "strategies": out}


def summarise(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``rank`` over the rows of ``run_strategy`` results (the tasks every one has)."""
    names = list(results)
    tasks = [t for t in results[names[0]]["tasks"] if all(t in results[n]["tasks"] for n in names)]
    optima = {t: results[names[0]]["tasks"][t]["optimum"] for t in tasks}
    return rank({n: row(results[n], tasks) for n in names}, optima)


def markdown(summary: Mapping[str, Any]) -> str:
    """Tasks as rows, strategies (best median rank first) as columns: median (IQR) of the reported value."""
    order, rows = summary["order"], summary["strategies"]
    def label(n: str) -> str:
        lo, hi = rows[n].get("min_seeds", rows[n]["n_seeds"]), rows[n]["n_seeds"]
        return n if lo == hi == 30 else f"{n} ({hi} seeds)" if lo == hi else f"{n} ({lo}-{hi} seeds)"

    head = ["task", "optimum"] + [label(n) for n in order]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in summary["tasks"]:
        cells = []
        for n in order:
            c = rows[n]["tasks"][t]
            cells.append("-" if c["median"] is None else f"{c['median']:.2f} ({c['iqr'][0]:.2f}-{c['iqr'][1]:.2f})")
        lines.append(f"| {t} | {summary['optima'][t]:.2f} | " + " | ".join(cells) + " |")
    for label, key, fmt in (("median rank", "median_rank", "{:g}"), ("mean rank", "mean_rank", "{:.2f}"),
                            ("CPU ms per evaluation (ask+tell)", "ms_per_eval", "{:.2f}"),
                            ("CPU ms per ask/tell round", "ms_per_round", "{:.2f}")):
        lines.append(f"| **{label}** | | " + " | ".join(fmt.format(rows[n][key]) for n in order) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one strategy over the suite")
    r.add_argument("strategy")
    r.add_argument("--opt", action="append", default=[], help="strategy option KEY=VALUE (default: none)")
    r.add_argument("--seeds", type=int, default=30)
    r.add_argument("--seed-offset", type=int, default=0, help="1000 for tuning (never the reported seeds)")
    r.add_argument("--tasks", nargs="*", default=None, help="task names (default: all)")
    r.add_argument("--data", default=str(DATA), help="folder with nb201_hw.csv and nb201_valid.csv")
    r.add_argument("--out", help="write the JSON here as well")
    r.add_argument("--label", help="the strategy's name in `table` (one strategy with other options: "
                                   "evolution-one, evolution-per-gene)")
    r.add_argument("--quantile", type=float, help=f"budget the device tasks at this quantile instead of "
                                                  f"{QUANTILE} (tasks named TASK~qQ; tighter: more repairs)")
    r.add_argument("--queries", type=int, help="evaluations per run instead of each task's (tasks named TASK~nN)")
    t = sub.add_parser("table", help="ranks and a markdown table from `run` JSON files (and the rows of earlier "
                                     "`table --out` summaries, each replaced by a strategy's new run)")
    t.add_argument("files", nargs="+")
    t.add_argument("--markdown", action="store_true")
    t.add_argument("--out", help="write the summary JSON here and the markdown table next to it (.md)")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        try:  # the GP sampler runs torch: one thread, as everywhere torch runs in a loop here
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
        opts = {}
        for kv in args.opt:
            k, v = kv.split("=", 1)
            opts[k] = json.loads(v) if v[:1] in "0123456789-[{tf" else v
        t0 = time.time()
        tasks = [t for t in TASKS if not args.tasks or t.name in args.tasks]
        if args.quantile is not None:  # the device tasks asked for, at another budget
            tasks = [replace(t, name=f"{t.name}~q{args.quantile:g}", quantile=args.quantile) for t in tasks
                     if t.devices]
        if args.queries is not None:
            tasks = [replace(t, name=f"{t.name}~n{args.queries}", budget=args.queries) for t in tasks]
        res = run_strategy(args.strategy, opts, seeds=range(args.seed_offset, args.seed_offset + args.seeds),
                           tasks=tasks, data=args.data)
        if args.label:
            res["label"] = args.label
        res["seconds"] = round(time.time() - t0, 1)
        res["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
        text = json.dumps(res, indent=1)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n")
        print(text)
    else:
        results: dict[str, Any] = {}
        kept: dict[str, Any] = {}   # rows of an earlier summary, each replaced by a strategy run again
        optima: dict[str, float] = {}
        for f in args.files:   # files of the same strategy (other seeds) are merged
            d = json.loads(Path(f).read_text())
            if "strategies" in d:
                kept.update(d["strategies"])
                optima.update(d["optima"])
                continue
            key = d.get("label", d["strategy"])
            results[key] = merge(results[key], d) if key in results else d
        if results:
            new = summarise(results)
            optima.update(new["optima"])
            kept = {**{n: r for n, r in kept.items() if n not in results}, **new["strategies"]}
        s = rank(kept, optima)
        if args.out:
            Path(args.out).write_text(json.dumps(s, indent=1) + "\n")
            Path(args.out).with_suffix(".md").write_text(markdown(s) + "\n")
        print(markdown(s) if args.markdown else json.dumps(s, indent=1))


if __name__ == "__main__":
    main()
