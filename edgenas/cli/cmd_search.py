"""``edgenas search``: latency-constrained architecture search."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from edgenas.cli._common import emit_json, out, progress_bar, project
from edgenas.errors import InputError
from edgenas.search.launch import DEFAULT_STRATEGY


def _options(pairs: list[str]) -> dict[str, object]:
    opts: dict[str, object] = {}
    for p in pairs:
        if "=" not in p:
            raise InputError(f"evaluator option '{p}' is not KEY=VALUE", hint="e.g. --eval-opt batch_size=32")
        k, v = p.split("=", 1)
        opts[k] = int(v) if v.lstrip("-").isdigit() else v
    return opts


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(space: str = typer.Option(None, "--space", help="search space (edgenas list)"),
               device: list[str] = typer.Option([], "--device", help="device whose LUT predicts latency (repeatable)"),
               max_latency_ms: list[float] = typer.Option([], "--max-latency-ms",
                                                          help="latency budget per --device (or one for all)"),
               max_latency_quantile: float = typer.Option(None, "--max-latency-quantile",
                                                          help="budget = this quantile of random architectures' latency"),
               strategy: str = typer.Option(DEFAULT_STRATEGY, "--strategy",
                                            help="search strategy (edgenas list), e.g. evolution, hgm, tpe, gp, cmaes"),
               budget: int = typer.Option(100, "--budget", help="number of evaluations"),
               time_budget: float = typer.Option(None, "--time-budget", help="stop after this many seconds"),
               seed: int = typer.Option(0, "--seed", help="random seed (same seed, same search)"),
               population: int = typer.Option(None, "--population", help="population size"),
               evaluator: str = typer.Option(None, "--evaluator", help="accuracy evaluator (default compression; tabular with --table)"),
               eval_opt: list[str] = typer.Option([], "--eval-opt", help="evaluator option KEY=VALUE (repeatable)"),
               table: list[str] = typer.Option([], "--table", help="benchmark CSV (nb201 format); repeat to join "
                                                                    "tables on index (arch checked)"),
               objective: str = typer.Option("cifar10_test", "--objective", help="accuracy column of --table to optimise"),
               report: list[str] = typer.Option([], "--report", help="column of --table to record and report "
                                                                     "(not optimised; repeatable), e.g. cifar10_test"),
               latency_column: str = typer.Option(None, "--latency-column", help="*_ms column of --table"),
               minimise: list[str] = typer.Option([], "--minimise", help="extra objective: params or flops (repeatable)"),
               out_dir: Path = typer.Option(None, "--out", help="run folder (default runs/SPACE-STRATEGY-sSEED)"),
               resume: Path = typer.Option(None, "--resume", help="resume the run in this folder"),
               json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Search architectures under latency budgets.

        Accuracy from an evaluator, latency from each device's LUT; writes best.json and pareto.json.
        """
        from edgenas.search.launch import SearchRequest, launch_search, summary

        proj = project()
        req = None
        if resume is None:
            if not space:
                raise InputError("missing --space", hint="e.g. --space mbv3-small (edgenas list shows all)")
            req = SearchRequest(space=space, devices=tuple(device), max_latency_ms=tuple(max_latency_ms),
                                max_latency_quantile=max_latency_quantile, strategy=strategy, budget=budget,
                                max_wall_s=time_budget, seed=seed, population=population, evaluator=evaluator,
                                evaluator_options=_options(eval_opt),
                                table=(table[0] if len(table) == 1 else tuple(table)) or None, objective=objective,
                                report=tuple(report),
                                latency_column=latency_column, minimise=tuple(minimise))
        folder = resume or out_dir or proj.runs_dir / f"{space}-{strategy}-s{seed}"
        with progress_bar(quiet=json_out) as bar:
            problem, _, result = launch_search(proj, req, folder, resume=resume is not None,
                                               progress=lambda d, t: bar("search", d, t))
        s = summary(problem, result)
        if json_out:
            emit_json(s)
            return
        for name, b in s["budgets_ms"].items():
            if b is not None:
                out.print(f"budget on {name}: {b:.4g} ms (fastest possible {s['min_latency_ms'].get(name, float('nan')):.4g} ms)")
        if s["best"] is None:
            out.print("[yellow]no feasible architecture found; raise the budget or the number of evaluations[/yellow]")
        else:
            lat = ", ".join(f"{k} {v:.4g} ms" for k, v in s["latency_ms"].items())
            rep = "".join(f"; {escape(k)} = {v:.4g}" for k, v in s["report"].items() if v is not None)
            out.print(f"[green]best[/green] {s['objective']} = {s['objective_value']:.4g}{rep}; predicted latency: {lat}")
        fronts = ", ".join(f"{n} {k}" for n, k in s["front_sizes"].items())
        out.print(f"{s['evaluations']} evaluations; Pareto front ({s['objective']} vs predicted latency): "
                  f"{fronts or s['pareto_size']} points; run folder {s['out_dir']} "
                  "(best.json, pareto.json, evaluations.jsonl)")
