"""``edgenas search``: latency-constrained architecture search."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from edgenas.cli._common import emit_json, note, out, progress_bar, project, warn
from edgenas.errors import InputError
from edgenas.once import both_set, check_once
from edgenas.textsafe import counted, esc


def _key_values(pairs: list[str], what: str, example: str, floats: bool = True) -> dict[str, object]:
    """``KEY=VALUE`` flags as a dict: integers, floats (when ``floats``), else strings. A key given twice is
    refused (the last value was kept without a word); the flag is the one ``example`` shows."""
    opts: dict[str, object] = {}
    given: list[tuple[str, str]] = []
    for p in pairs:
        if "=" not in p:
            raise InputError(f"{what} option '{p}' is not KEY=VALUE", hint=f"e.g. {example}")
        k, v = p.split("=", 1)
        if not k.strip():
            raise InputError(f"{what} option '{p}' has no KEY before '='", hint=f"e.g. {example}")
        given.append((k, v))
        opts[k] = v
        for conv in (int, float) if floats else (int,):
            try:
                opts[k] = conv(v)
                break
            except ValueError:
                pass
    check_once(example.split(" ", 1)[0], given)
    return opts


def _options(pairs: list[str]) -> dict[str, object]:
    # decimals stay text (column=1e3 names a column): an evaluator converts the options it takes as numbers
    return _key_values(pairs, "evaluator", "--eval-opt batch_size=32", floats=False)


def _strategy_options(pairs: list[str]) -> dict[str, object]:
    return _key_values(pairs, "strategy", "--strategy-opt lambda_lr=0.01")


def _say(message: str) -> None:
    """Notes of the library (which LUT, a capped budget) on stderr; ``warning: ...`` ones in yellow."""
    if message.startswith("warning: "):
        warn(esc(message[len("warning: "):]))
    else:
        note(esc(message))


def _llm_settings(model: str | None, adapter: str | None, fallback: bool, pairs: list[str]) -> dict[str, object]:
    opts = _key_values(pairs, "LLM", "--llm-opt think_tokens=16")
    for flag, key, given, value in (("--llm-model", "model", model is not None, model),
                                    ("--llm-adapter", "adapter", adapter is not None, adapter),
                                    ("--llm-fallback", "fallback", fallback, None)):
        if given and key in opts:  # the flag's value replaced the option's below, without a word
            raise both_set(flag, value, "--llm-opt", key, opts[key], f"the language model's {key}")
    if model is not None:
        opts["model"] = model
    if adapter is not None:
        opts["adapter"] = adapter
    if fallback:
        opts["fallback"] = True
    return opts


#: what ``--resume`` or ``--rerun`` may still set: where the evaluations run, the database, the output
_ANY_RUN = frozenset({"resume", "rerun", "db", "json_out", "executor", "workers", "ray_address"})
#: options of one strategy only (the rest of its options come through --strategy-opt)
_OWN_FLAGS = {"data": "darts", "epochs": "darts", "latency_weight": "darts", "skip_dropout": "darts",
              "eta": "sh or hyperband"}
#: flags a strategy ignores, and what sizes its run instead (DARTS trains for --epochs; the default --budget
#: it was recorded with is harmless, an explicit one was a promise nothing kept)
_IGNORED_FLAGS = {"darts": {"budget": "--epochs"}}


def _given(ctx: typer.Context) -> list[str]:
    """The options the user set (command line or environment), as their first flag, in declared order."""
    # by name: the enum is click's or the copy of click that typer ships, whichever built the context
    return [p.opts[0] for p in ctx.command.params
            if getattr(ctx.get_parameter_source(p.name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")]


def _check_flags(ctx: typer.Context, strategy: str) -> None:
    """Refuse options that would be silently ignored: with ``--resume`` or ``--rerun`` the settings are
    the recorded run's; a strategy's own flags with another strategy."""
    names = {p.opts[0]: p.name for p in ctx.command.params}
    given = _given(ctx)
    for mode, flag, allowed in (("resume", "--resume", _ANY_RUN | {"time_budget"}),
                                ("rerun", "--rerun", _ANY_RUN | {"out_dir"})):
        if flag in given:
            extra = [f for f in given if names[f] not in allowed]
            if extra:
                what = ("resumes with the settings in the run folder's request.json" if mode == "resume"
                        else "repeats a recorded search with its settings")
                raise InputError(f"{flag} {what}; {', '.join(extra)} cannot change them",
                                 hint=f"drop {', '.join(extra)}, or start a new search with --space and --out")
    if "--objective" in given and "--table" not in given:
        raise InputError("--objective names an accuracy column of --table; without --table it would be ignored",
                         hint="add --table, or drop --objective")
    for f in given:
        owner = _OWN_FLAGS.get(names[f])
        if owner is not None and strategy not in owner.split(" or "):
            raise InputError(f"{f} is an option of --strategy {owner}, not '{strategy}'",
                             hint=f"drop {f}, or use --strategy {owner.split(' or ')[0]}")
        instead = _IGNORED_FLAGS.get(strategy, {}).get(names[f])
        if instead is not None:
            raise InputError(f"--strategy {strategy} does not read {f}", hint=f"drop {f}; size the run with {instead}")
    if "--population" in given and "--resume" not in given and "--rerun" not in given:
        _check_population(strategy, warm="--warm-start" in given)


def _check_population(strategy: str, *, warm: bool) -> None:
    """``--population`` sizes a strategy's population, or a warm start's share of the first asks; a strategy
    without one (random, tpe, sh, ...) recorded it and read nothing."""
    from edgenas.search.base import STRATEGIES, is_driver

    if "population" in STRATEGIES.get(strategy).options or (warm and not is_driver(strategy)):
        return
    raise InputError(f"--strategy {strategy} has no population: --population would be ignored",
                     hint="drop --population (with --warm-start it sizes the transferred share of the first asks)")


def _darts_options(given: list[str], sopts: dict[str, object], flags: dict[str, object]) -> dict[str, object]:
    """The darts strategy's options: its flags' values (``--epochs``), and ``--strategy-opt`` over them. A flag
    given with its ``--strategy-opt`` twin is refused: the option won, and the flag was ignored without a word."""
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if flag in given and key in sopts:
            raise both_set(flag, value, "--strategy-opt", key, sopts[key], f"darts's {key}")
    return {**flags, **sopts}


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(ctx: typer.Context,
               space: str = typer.Option(None, "--space", help="search space (edgenas list)"),
               device: list[str] = typer.Option([], "--device", help="device whose LUT predicts latency (repeatable)"),
               max_latency_ms: list[float] = typer.Option([], "--max-latency-ms",
                                                          help="latency budget per --device (or one for all)"),
               max_latency_quantile: float = typer.Option(None, "--max-latency-quantile",
                                                          help="budget = this quantile of random "
                                                               "architectures' latency"),
               strategy: str = typer.Option(None, "--strategy", show_default=False,
                                            help="search strategy (edgenas list; default tpe, the search suite's "
                                                 "best), e.g. evolution, hgm, gp, cmaes, llm-evolution; "
                                                 "sh | hyperband (multi-fidelity); darts"),
               budget: int = typer.Option(100, "--budget", help="number of evaluations"),
               time_budget: float = typer.Option(None, "--time-budget",
                                                 help="stop after this many seconds; with --resume, this many more "
                                                      "(ask/tell strategies; not sh, hyperband, darts)"),
               seed: int = typer.Option(0, "--seed", help="random seed (same seed, same search)"),
               population: int = typer.Option(None, "--population", help="population size"),
               evaluator: str = typer.Option(None, "--evaluator",
                                             help="accuracy evaluator (default compression; tabular with --table)"),
               eval_opt: list[str] = typer.Option([], "--eval-opt", help="evaluator option KEY=VALUE (repeatable)"),
               table: list[str] = typer.Option([], "--table", help="benchmark CSV (nb201 format); repeat to join "
                                                                    "tables on index (arch checked)"),
               objective: str = typer.Option("cifar10_test", "--objective",
                                             help="accuracy column of --table to optimise"),
               report: list[str] = typer.Option([], "--report", help="column of --table to record and report "
                                                                     "(not optimised; repeatable), e.g. cifar10_test"),
               latency_column: str = typer.Option(None, "--latency-column", help="*_ms column of --table"),
               minimise: list[str] = typer.Option([], "--minimise",
                                                  help="extra objective: params or flops (repeatable)"),
               llm_share: float = typer.Option(None, "--llm-share",
                                               help="share of children the language model proposes "
                                                    "(evolution, ri-iwoa)"),
               llm_model: str = typer.Option(None, "--llm-model", help="model folder, .gguf file or smollm2 (default)"),
               llm_adapter: str = typer.Option(None, "--llm-adapter", help="LoRA adapter folder to start from"),
               llm_fallback: bool = typer.Option(False, "--llm-fallback",
                                                 help="if the model fails, go on with the usual operators"),
               llm_opt: list[str] = typer.Option([], "--llm-opt",
                                                 help="LLM option KEY=VALUE, e.g. think_tokens=16 (repeatable)"),
               ladder: list[str] = typer.Option([], "--ladder",
                                                help="multi-fidelity rung EVAL[:k=v,...,keep=N,cost=C], cheapest "
                                                     "first (repeatable; --strategy sh|hyperband)"),
               eta: int = typer.Option(3, "--eta",
                                       help="multi-fidelity: keep 1/eta of each rung unless keep= is given"),
               executor: str = typer.Option("inprocess", "--executor",
                                            help="where evaluations run: inprocess | process | ray"),
               workers: int = typer.Option(None, "--workers",
                                           help="worker processes (process executor) or local Ray CPUs"),
               ray_address: str = typer.Option(None, "--ray-address",
                                               help="Ray cluster address (ray executor), e.g. 127.0.0.1:6379"),
               data: str = typer.Option("digits", "--data",
                                        help="darts: training data (digits, a .npz file or an image folder)"),
               epochs: int = typer.Option(10, "--epochs", help="darts: training epochs"),
               latency_weight: float = typer.Option(0.0, "--latency-weight",
                                                    help="darts without a budget: loss penalty per ms of expected "
                                                         "latency"),
               skip_dropout: float = typer.Option(0.0, "--skip-dropout",
                                                  help="darts: P-DARTS dropout on skip connections (collapse remedy)"),
               strategy_opt: list[str] = typer.Option([], "--strategy-opt", help="strategy option KEY=VALUE "
                                                      "(repeatable; edgenas list shows each strategy's options)"),
               out_dir: Path = typer.Option(None, "--out", help="run folder (default runs/SPACE-STRATEGY-sSEED)"),
               resume: Path = typer.Option(None, "--resume", help="resume the run in this folder"),
               warm_start: list[str] = typer.Option([], "--warm-start",
                                                    help="seed from past runs: auto, or a run id / run folder "
                                                         "(repeatable)"),
               transfer_ratio: float = typer.Option(0.5, "--transfer-ratio",
                                                    help="share of the first population transferred by --warm-start"),
               min_similarity: float = typer.Option(0.6, "--min-similarity",
                                                    help="past runs less similar than this are not used"),
               rerun: str = typer.Option(None, "--rerun",
                                         help="repeat this run (id), warm-started from it (after its device's "
                                              "table changed: edgenas runs stale)"),
               db: str = typer.Option(None, "--db", help="experiment database URL (default $EDGENAS_DB, "
                                                         "else .edgenas/edgenas.db)"),
               json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Search architectures under latency budgets.

        Accuracy from an evaluator, latency from each device's LUT; writes best.json and pareto.json.
        """
        from edgenas.evaluate.executor import make_executor
        from edgenas.search.launch import DEFAULT_STRATEGY, SearchRequest, launch_search

        strategy = strategy or DEFAULT_STRATEGY  # resolved here: the CLI's start-up does not import the search stack
        _check_flags(ctx, strategy)
        proj = project()
        sopts = _strategy_options(strategy_opt)
        if strategy == "darts":  # its flags are options of the darts strategy
            sopts = _darts_options(_given(ctx), sopts, {"data": data, "epochs": epochs,
                                                        "latency_weight": latency_weight, "skip_dropout": skip_dropout})
        # checked before a re-run too: it runs where --executor says (it ignored these flags)
        if ray_address is not None and executor != "ray":
            raise InputError("--ray-address needs --executor ray")
        if workers is not None and executor == "inprocess":  # it evaluates in this process: one worker
            raise InputError("--workers needs --executor process or ray",
                             hint="add --executor process, or drop --workers")
        req = rerun_of = None
        if rerun is not None:
            if resume is not None or space:
                raise InputError("--rerun repeats a recorded search; give no --space or --resume with it")
            from edgenas.search.rerun import rerun_request

            req, folder, rerun_of = rerun_request(proj, rerun, db_url=db, out_dir=out_dir)
        elif resume is None:
            if not space:
                raise InputError("missing --space", hint="e.g. --space mbv3-small (edgenas list shows all)")
            req = SearchRequest(space=space, devices=tuple(device), max_latency_ms=tuple(max_latency_ms),
                                max_latency_quantile=max_latency_quantile, strategy=strategy, budget=budget,
                                max_wall_s=time_budget, seed=seed, population=population, evaluator=evaluator,
                                evaluator_options=_options(eval_opt),
                                table=(table[0] if len(table) == 1 else tuple(table)) or None, objective=objective,
                                report=tuple(report),
                                latency_column=latency_column, minimise=tuple(minimise),
                                warm_start=tuple(warm_start), transfer_ratio=transfer_ratio,
                                min_similarity=min_similarity,
                                llm_share=llm_share, llm=_llm_settings(llm_model, llm_adapter, llm_fallback, llm_opt),
                                ladder=tuple(ladder), eta=eta, strategy_options=sopts)
        if rerun is None:
            folder = resume or out_dir or proj.runs_dir / f"{space}-{strategy}-s{seed}"
        opts = {"address": ray_address} if executor == "ray" else {}
        # stdout carries this command's output only (with --json, one JSON document): what a library prints
        # there while the search runs goes to stderr. Ray's driver prints a lost worker's error on stdout,
        # from a thread of its own that ``ex.close()`` (``ray.shutdown``) ends.
        with contextlib.redirect_stdout(sys.stderr):
            ex = make_executor(executor, workers=workers, **opts)
            try:
                with progress_bar(quiet=json_out) as bar:
                    problem, config, result = launch_search(proj, req, folder, resume=resume is not None, db_url=db,
                                                            rerun_of=rerun_of,
                                                            progress=lambda d, t: bar("search", d, t), note=_say,
                                                            executor=ex,
                                                            more_wall_s=time_budget if resume is not None else None)
            finally:
                ex.close()
        _print(problem, config, result, json_out)


def _exhausted_note(problem, config, s, multifidelity: bool) -> str:
    """Why a search ended before its budget: random draws without replacement found nothing new that meets the
    budgets (every evaluation distinct; a multi-fidelity run's brackets drew fewer candidates than planned), or
    a strategy proposed only architectures it had evaluated, ``EXHAUSTED_AFTER`` times in a row. Under budgets on
    several devices with nothing found within them all, it says that none met them together (a new run under
    budgets that certainly exclude each other is refused before it starts: ``edgenas.search.joint``), not that
    every architecture within them had been drawn."""
    from edgenas.search.draws import DRAW_TRIES, listable
    from edgenas.search.run import EXHAUSTED_AFTER

    together = _budgets_together(s)
    if together and s["best"] is None:  # several budgets, and nothing met them all: not "every one was drawn"
        why = (f"no architecture of the space meets {together} together" if listable(problem.space)
               else f"no architecture that meets {together} together was found in {DRAW_TRIES} samples and a repair")
        if multifidelity:
            return f"warning: the brackets drew no candidate: {why}; loosen a budget"
        stop = f"warning: the search stopped after {s['evaluations']} of {config.budget_evals} evaluations"
        if s["distinct"] == s["evaluations"]:
            return f"{stop}: {why}; loosen a budget"
        return (f"{stop}: for {EXHAUSTED_AFTER} or more in a row it proposed only architectures it had already "
                f"evaluated ({s['distinct']} distinct in all), none of which meets {together} together; loosen a "
                "budget")
    what = ("architecture that meets the latency budget" if any(b is not None for b in s["budgets_ms"].values())
            else "architecture of the space")
    why = (f"every {what} has been drawn" if listable(problem.space)
           else f"no other {what} was found in {DRAW_TRIES} samples and a repair")
    if multifidelity:
        return (f"warning: the brackets drew {s['distinct']} distinct candidates, fewer than planned: random draws "
                f"are without replacement, and {why}")
    if s["distinct"] == s["evaluations"]:
        return (f"warning: the search stopped after {s['evaluations']} of {config.budget_evals} evaluations, all "
                f"distinct: random draws are without replacement, and {why}")
    return (f"warning: the search stopped after {s['evaluations']} of {config.budget_evals} evaluations: for "
            f"{EXHAUSTED_AFTER} or more in a row it proposed only architectures it had already evaluated "
            f"({s['distinct']} distinct in all). What meets the latency budget looks exhausted; a larger "
            "--budget would only repeat them")


def _budgets_together(s) -> str | None:
    """The latency budgets of a summary, said as one phrase when there are two or more (None for one or none):
    what a search that found nothing within them all says it did not meet together. Not escaped for markup."""
    budgets = [(name, b) for name, b in s["budgets_ms"].items() if b is not None]
    if len(budgets) < 2:
        return None
    said = [f"'{name}' ({b:.4g} ms)" for name, b in budgets]
    return "the latency budgets of " + ", ".join(said[:-1]) + " and " + said[-1]


def _print(problem, config, result, json_out: bool) -> None:
    from edgenas.search.summary import summary
    from edgenas.search.mf_launch import MFResult, mf_summary

    if getattr(config, "to_json", lambda: {})().get("kind") == "darts":
        return _print_darts(result, json_out)
    s = mf_summary(problem, config, result) if isinstance(result, MFResult) else summary(problem, result)
    if s.get("stopped") == "exhausted":  # on stderr, so --json users see it too
        _say(_exhausted_note(problem, config, s, isinstance(result, MFResult)))
    if json_out:
        emit_json(s)
        return
    for name, b in s["budgets_ms"].items():
        if b is not None:
            fastest = s["min_latency_ms"].get(name, float("nan"))
            out.print(f"budget on {esc(name)}: {b:.4g} ms (fastest possible {fastest:.4g} ms)")
    if s["best"] is None:
        if s["evaluations"] == 0 and s.get("stopped") == "wall_time":  # nothing was infeasible: time ran out
            out.print("[yellow]the --time-budget ran out before the first evaluation; raise it (or resume with "
                      "--time-budget S)[/yellow]")
        elif together := _budgets_together(s):  # several budgets: what was not met is them together
            out.print(f"[yellow]no architecture found that meets {esc(together)} together; loosen a budget, or raise "
                      "the number of evaluations[/yellow]")
        else:
            out.print("[yellow]no feasible architecture found; raise the budget or the number of "
                      "evaluations[/yellow]")
    else:
        lat = esc(", ".join(f"{k} {v:.4g} ms" for k, v in s["latency_ms"].items()))
        what = s["metric"] if "metric" in s else s["objective"]
        pct = what.endswith(" (%)")
        value = f"{s['objective_value']:.4g}" + ("%" if pct else "")
        rep = "".join(f"; {esc(k)} = {v:.4g}" for k, v in (s.get("report") or {}).items() if v is not None)
        out.print(f"[green]best[/green] {esc(what[:-4] if pct else what)} = {value}{rep}; "
                  f"predicted latency: {lat or 'n/a (no --device)'}")
    if "ladder" in s:
        rungs = ", ".join(f"{esc(r)}: {n}" for r, n in zip(s["ladder"], s["evaluations_per_rung"]))
        out.print(f"{esc(s['mode'])} over the ladder (evaluations per rung) {rungs}; cost {s['cost']:.4g}")
    if s.get("warm_start"):
        out.print(f"warm start: {esc(s['warm_start'])}")
    if s.get("llm"):
        m = s["llm"]
        pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        over = "" if m.get("infeasible") is None else f", {m['infeasible']} of them over a latency budget"
        out.print(f"language model: {m['proposals']} proposals (valid {pct(m['valid'])}, novel "
                  f"{pct(m['novel'])}; {m['used']} children evaluated, improving {pct(m['improving'])}; "
                  f"{m['replaced']} replaced by usual mutations{over}), {m['lora_updates']} LoRA updates"
                  + (", fell back to the usual operators" if m["fallbacks"] else ""))
    fronts = esc(", ".join(f"{n} {counted(k, 'point')}" for n, k in s["front_sizes"].items()))
    out.print(f"{counted(s['evaluations'], 'evaluation')}; "
              f"Pareto front ({esc(s['objective'])} vs predicted latency): "
              f"{fronts or counted(s['pareto_size'], 'point')}; run folder {esc(s['out_dir'])} "
              "(best.json, pareto.json, evaluations.jsonl)" + (f", run id {s['run_id']}" if s.get("run_id") else ""))


def _print_darts(rec, json_out: bool) -> None:
    from edgenas.search.summary import run_id_of

    rec = {**rec, "run_id": run_id_of(rec["out_dir"])}
    if json_out:
        emit_json(rec)
        return
    lat = ", ".join(f"{k} {v:.4g} ms" + (f" (budget {rec['budgets_ms'][k]:.4g})" if rec["budgets_ms"].get(k) else "")
                    for k, v in rec["latency_ms"].items())
    if "skip_edges" not in rec:  # an mbv3 space: ProxylessNAS-style relaxation (darts_mbv3_train)
        a = rec["arch"]
        desc = esc(f"r={a['r']} d={a['d']} ks={a['ks']} e={a['e']}")
        how = ("" if rec["derivation"] == "argmax" else
               f" [yellow](the argmax network missed the budget: {esc(rec['derivation'])}, "
               f"{rec['repair_steps']} steps)[/yellow]")
        out.print(f"[green]derived[/green] {desc}; predicted latency: {lat or 'n/a'}{how}")
    else:
        how = {"budget": f" [yellow](the most probable cell, {esc(rec['argmax_arch'])}, missed the budget: the "
                         "most probable one within it)[/yellow]",
               "pt": " (chosen by perturbation, DARTS-PT)",
               "pt-budget": " [yellow](chosen by perturbation, DARTS-PT; the first choice missed the budget: the "
                            "best one within it)[/yellow]",
               "pt-latency": " (chosen by perturbation, DARTS-PT, among the cells no slower than the alpha-selected "
                             "one: the latency weight's trade-off)",
               "none met every budget": " [yellow](the most probable cell)[/yellow]"}.get(rec["derivation"], "")
        out.print(f"[green]derived[/green] {esc(rec['arch']['arch'])}; skip edges {rec['skip_edges']}; "
                  f"predicted latency: {lat or 'n/a'}{how}")
    if not rec["within_budget"]:
        out.print("[yellow]no cell meets every budget[/yellow]")
    out.print(f"run folder {esc(str(rec['out_dir']))} (best.json, history.json, checkpoint)"
              + (f", run id {rec['run_id']}" if rec["run_id"] else ""))
