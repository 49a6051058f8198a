"""``edgenas runs list|show|compare|import|stale`` and ``edgenas db upgrade``: the experiment database."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import typer
from rich.table import Column

from edgenas.cli._common import emit_json, out, print_table, project, results_table, warn
from edgenas.errors import InputError
from edgenas.textsafe import esc, one_line

DB_HELP = "experiment database URL (default $EDGENAS_DB, else .edgenas/edgenas.db)"


def _fmt(v: object, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return format(v, spec) if isinstance(v, float) else esc(v)


def _budgets(run) -> str:
    return ", ".join(f"{esc(d.device)}<={_fmt(d.budget_ms, 'g')}ms" for d in run.devices
                     if d.budget_ms is not None) or "-"


def _warm_use(cand: dict, gave: int, min_similarity: object) -> str:
    """What a warm start made of a past run: excluded (and why), below the similarity it needed, or
    drawn from, with how many of its architectures were transferred (0 where the others' were taken)."""
    if cand.get("excluded"):
        return f"excluded: {esc(one_line(cand['excluded'], 200))}"
    if not cand["used"]:
        return f"not used (similarity below {_fmt(min_similarity, 'g')})"
    return f"used: {gave} transferred"


def _best_report(run) -> dict | None:
    """The chosen evaluation's report columns (the standard protocol's test accuracy) from the run folder's
    ``best.json``: the database keeps the optimised objective only. None when the folder is gone, damaged
    or holds another run's best."""
    from edgenas.io import read_json
    from edgenas.limits import is_finite
    from edgenas.search.run_files import check_best

    path = Path(run.out_dir) / "best.json"
    try:
        best = check_best(read_json(path, "best.json"), path)
    except (InputError, OSError):
        return None
    rep = best.get("report")
    if best.get("number") != run.best_number or not isinstance(rep, dict):
        return None
    return {k: float(v) for k, v in rep.items() if isinstance(k, str) and is_finite(v)} or None


def _summary(run) -> dict:
    warm = run.warm_start or {}
    return {"id": run.id, "space": run.space, "dataset": run.task.get("dataset"), "strategy": run.strategy,
            "seed": run.seed, "status": run.status, "evaluations": run.n_evaluations, "objective": run.objective,
            "best_value": run.best_value, "best_number": run.best_number,
            "budgets_ms": {d.device: d.budget_ms for d in run.devices if d.budget_ms is not None},
            "transferred": len(warm.get("transferred", [])), "rerun_of": run.rerun_of, "out_dir": run.out_dir,
            "created_at": run.created_at}


def register(app: typer.Typer) -> None:
    runs_app = typer.Typer(help="Past search runs in the experiment database.", no_args_is_help=True)
    app.add_typer(runs_app, name="runs", help="Past search runs in the experiment database.")
    db_app = typer.Typer(help="The experiment database itself.", no_args_is_help=True)
    app.add_typer(db_app, name="db", help="The experiment database itself.")

    @runs_app.command("list")
    def list_(space: str = typer.Option(None, "--space", help="only runs of this space"),
              device: str = typer.Option(None, "--device", help="only runs on this device"),
              db: str = typer.Option(None, "--db", help=DB_HELP),
              json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Search runs, oldest first (a damaged record is listed as damaged, with what is wrong)."""
        from edgenas.store import open_db
        from edgenas.store.runs import scan_runs

        handle = open_db(db, project(), readonly=True)
        good, damaged = scan_runs(handle, space=space, device=device)
        rows = [_summary(r) | {"budgets": _budgets(r)} for r in good]
        if json_out:  # as GET /api/runs lists a damaged run folder
            emit_json([{k: v for k, v in r.items() if k != "budgets"} for r in rows]
                      + [{"id": rid, "status": "damaged", "error": one_line(exc)} for rid, exc in damaged])
            return
        t = results_table(Column("run", no_wrap=True, min_width=12), "space", "dataset", "strategy", "seed",
                          "status", "evals", "best", "budgets", "warm")
        for r in rows:
            t.add_row(esc(r["id"]), esc(r["space"]), _fmt(r["dataset"]), esc(r["strategy"]), _fmt(r["seed"]),
                      esc(r["status"]), _fmt(r["evaluations"]), _fmt(r["best_value"]), r["budgets"],
                      _fmt(r["transferred"] or "-"))
        for rid, _ in damaged:
            t.add_row(esc(rid), *["-"] * 4, "[red]damaged[/red]", *["-"] * 4)
        print_table(t)
        for _, exc in damaged:
            warn(esc(one_line(exc)))

    @runs_app.command("show")
    def show(run: str = typer.Argument(..., help="run id (or a unique prefix)"),
             db: str = typer.Option(None, "--db", help=DB_HELP),
             json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """One run: task, devices and tables, best architecture, fronts, warm start."""
        from edgenas.store import open_db
        from edgenas.store.runs import get_run, run_fronts

        handle = open_db(db, project(), readonly=True)
        r = get_run(handle, run)
        fronts = run_fronts(handle, r.id)
        reported = _best_report(r)
        if json_out:
            # 'evaluations' as runs list, compare, import, search and GET /api/runs/{id} (the record's field
            # is named after its database column)
            shown = {("evaluations" if k == "n_evaluations" else k): v for k, v in r.to_dict().items()}
            emit_json(dict(shown, fronts=fronts, best_report=reported))
            return
        out.print(f"run [bold]{esc(r.id)}[/bold] ({esc(r.status)}): {esc(r.space)} / {esc(r.strategy)} "
                  f"seed {_fmt(r.seed)}, {_fmt(r.n_evaluations)} evaluations; folder {esc(r.out_dir)}")
        task = r.task
        out.print(f"task: {_fmt(task.get('dataset'))} ({_fmt(task.get('classes'))} classes, "
                  f"{_fmt(task.get('input_size'))} px, {_fmt(task.get('samples'))} samples)")
        for d in r.devices:
            out.print(f"device {esc(d.device)} ({esc(d.kind)}): budget {_fmt(d.budget_ms)} ms, "
                      f"fingerprint {_fmt((d.fingerprint_hash or '-')[:16])}, table {_fmt((d.lut_hash or '-')[:12])}")
        arch = r.best_arch.get("arch", r.best_arch) if isinstance(r.best_arch, dict) else r.best_arch
        what = "best so far (the run stopped)" if r.status == "stopped" else "best"  # killed: of what it logged
        out.print(f"{what}: {esc(r.objective)} = {_fmt(r.best_value)} (#{_fmt(r.best_number)}) {_fmt(arch)}")
        if reported:
            said = ", ".join(f"{esc(k)} = {_fmt(v)}" for k, v in reported.items())
            out.print(f"reported for it (best.json): {said}")
        out.print("fronts: " + (", ".join(f"{esc(k)} {len(v)}" for k, v in fronts.items()) or "-"))
        if r.warm_start:
            out.print(f"warm start: {esc(r.warm_start.get('note') or '')}")
            gave = Counter(t.get("from_run") for t in r.warm_start.get("transferred", []))
            for c in r.warm_start.get("candidates", []):  # checked where the record is read (store.rows)
                out.print(f"  {esc(c['run_id'])}: similarity {c['similarity']:.2f} "
                          f"(task {c['task_similarity']:.2f}, device {c['device_similarity']:.2f}) "
                          f"{_warm_use(c, gave[c['run_id']], r.warm_start.get('min_similarity'))}")
        if r.rerun_of:
            out.print(f"re-run of {esc(r.rerun_of)}")

    @runs_app.command("compare")
    def compare(run: list[str] = typer.Argument(..., help="two or more run ids"),
                db: str = typer.Option(None, "--db", help=DB_HELP),
                json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Runs side by side: best value, when it was reached, budgets, warm start."""
        from edgenas.search.history import compare_runs
        from edgenas.store import open_db

        if len(run) < 2:
            raise InputError(f"runs compare needs two or more run ids, got {len(run)}",
                             hint="edgenas runs show RUN_ID shows one run")
        rows = compare_runs(open_db(db, project(), readonly=True), run)
        if json_out:
            emit_json(rows)
            return
        t = results_table(Column("run", no_wrap=True, min_width=12), "dataset", "strategy", "evals", "best",
                          Column("evals to best", no_wrap=True), "budgets", "transferred")
        for r in rows:
            t.add_row(esc(r["id"]), _fmt(r["dataset"]), esc(r["strategy"]), _fmt(r["evaluations"]),
                      _fmt(r["best_value"]), _fmt(r["best_reached_at"]),
                      ", ".join(f"{esc(k)}<={_fmt(v, 'g')}" for k, v in r["budgets_ms"].items()) or "-",
                      _fmt(r["transferred"] or "-"))
        print_table(t)

    @runs_app.command("import")
    def import_(folder: list[Path] = typer.Argument(..., help="run folders (the --out of a search)"),
                db: str = typer.Option(None, "--db", help=DB_HELP),
                json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Index run folders (e.g. made before the database) into the experiment database."""
        from edgenas.locks import run_read
        from edgenas.search.launch import read_import
        from edgenas.search.record import check_run_folder
        from edgenas.store import open_db
        from edgenas.store.db import database_exists
        from edgenas.store.runs import save_run

        for f in folder:  # every folder is checked before the database is opened (or created)
            check_run_folder(f)
        proj = project()
        with contextlib.ExitStack() as stack:
            for f in folder:  # none is a running search's (read, it was saved over the search's own final record)
                stack.enter_context(run_read(f))
            # every folder is read whole and checked before anything is saved (a damaged log or record must not
            # leave a new database behind, nor the folders before it imported) and what was read is saved; several
            # into a database are read again as each is saved, not held all at once
            several = len(folder) > 1 and database_exists(proj, db)
            read = None if several else [read_import(proj, f) for f in folder]
            if read is None:
                for f in folder:
                    read_import(proj, f)
            with open_db(db, proj) as handle:
                recs = ([save_run(handle, *r) for r in read] if read is not None
                        else [save_run(handle, *read_import(proj, f)) for f in folder])
        if json_out:
            emit_json([_summary(r) for r in recs])
            return
        for r in recs:
            out.print(f"imported run {esc(r.id)}: {esc(r.space)} / {esc(r.strategy)}, {_fmt(r.n_evaluations)} "
                      f"evaluations, from {esc(r.out_dir)}")

    @runs_app.command("stale")
    def stale(device: str = typer.Option(None, "--device", help="only runs on this device"),
              space: str = typer.Option(None, "--space", help="only runs of this space"),
              db: str = typer.Option(None, "--db", help=DB_HELP),
              json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Runs whose chosen architecture a device's new table invalidates.

        Over budget under the current table, or no longer the best feasible one it evaluated.
        Repeat one warm-started from itself with: edgenas search --rerun RUN_ID.
        """
        from edgenas.search.stale import find_stale
        from edgenas.store import open_db

        proj = project()
        rows, checked = find_stale(open_db(db, proj, readonly=True), proj, device=device, space=space)
        if json_out:
            emit_json({"checked": checked, "stale": [s.to_dict() for s in rows]})
            return
        out.print(f"{len(rows)} of {checked} finished runs are stale")
        for s in rows:
            out.print(f"[yellow]{esc(s.run_id)}[/yellow] ({esc(s.status)}): {esc(s.reason)}")
        if rows:
            out.print("re-run one with: edgenas search --rerun RUN_ID")

    @db_app.command("upgrade")
    def upgrade(db: str = typer.Option(None, "--db", help=DB_HELP),
                json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Migrate the database to this edgenas's schema; import measurements kept in older files."""
        from edgenas.store import ExperimentDB, import_legacy_measurements

        proj = project()
        with ExperimentDB(db, proj, migrate=False, check=False) as handle:  # closed (its WAL checkpointed) here
            before, after = handle.upgrade()
            n = import_legacy_measurements(handle, proj)
        res = {"database": handle.where, "revision_before": before, "revision": after, "imported_measurements": n}
        if json_out:
            emit_json(res)
            return
        what = "already at" if before == after else f"upgraded from {before or 'empty'} to"
        out.print(f"{esc(handle.where)}: {what} schema {after}" + (f"; imported {n} measurements" if n else ""))
