"""``edgenas fleet status`` and ``edgenas fleet refresh``."""

from __future__ import annotations

from pathlib import Path

import typer

from edgenas.cli._common import emit_json, err, note, out, print_table, progress_bar, project, results_table, warn
from edgenas.textsafe import esc


def register(app: typer.Typer) -> None:
    fleet_app = typer.Typer(help="Fleet status and parallel LUT refresh.", no_args_is_help=True)
    app.add_typer(fleet_app, name="fleet", help="Fleet status and parallel LUT refresh.")

    @fleet_app.command("status")
    def status(inventory: Path = typer.Option(None, "--inventory", help="fleet.toml or Ansible YAML"),
               group: str = typer.Option(None, "--group", help="only this group"),
               space: list[str] = typer.Option(["mbv3-small"], "--space", help="spaces to check (repeatable)"),
               json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Per-device reachability and LUT freshness.

        Reachable, agent version, fingerprint, LUT fresh/stale/missing per space, last calibration.
        """
        from edgenas.fleet.inventory import load_inventory
        from edgenas.fleet.status import fleet_status

        proj = project()
        inv = load_inventory(proj, inventory)
        space = list(dict.fromkeys(space))  # a space given twice is one column
        rows = fleet_status(proj, inv.select(group), space)
        if json_out:
            emit_json([r.to_dict() for r in rows])
            return
        t = results_table("device", "reachable", "agent", "fingerprint", *[f"LUT {s}" for s in space],
                          "calibration")
        for r in rows:
            t.add_row(esc(r.device), "yes" if r.reachable else "[red]no[/red]", esc((r.agent_version or "-")[:12]),
                      esc((r.fingerprint_hash or "-")[:12]), *[esc(r.luts.get(s, "-")) for s in space],
                      esc(", ".join(f"{k}: {v['n_points']} pts" for k, v in r.last_calibration.items()) or "-"))
        print_table(t)
        for r in rows:
            if not r.reachable:
                out.print(f"[red]{esc(r.device)}: {esc(r.error)}[/red]")
            if r.power_mode_note:
                warn(f"{esc(r.device)}: {esc(r.power_mode_note)}")
            for s in (s for s in space if r.luts.get(s) == "damaged"):
                out.print(f"[red]{esc(r.device)}: its LUT for {esc(s)} is damaged[/red] (rebuild it: edgenas profile "
                          f"{esc(r.device)} --space {esc(s)} --force)")

    @fleet_app.command("refresh")
    def refresh(inventory: Path = typer.Option(None, "--inventory", help="fleet.toml or Ansible YAML"),
                group: str = typer.Option(None, "--group", help="only this group"),
                space: str = typer.Option("mbv3-small", "--space", help="search space whose LUTs to refresh"),
                concurrency: int = typer.Option(4, "--concurrency", help="devices refreshed at once"),
                only_failed: bool = typer.Option(False, "--only-failed", help="retry the devices that failed last time"),
                drift_floor: float = typer.Option(None, "--drift-floor",
                                                  help="smallest shape drift that rebuilds a table, a fraction "
                                                       "(default 0.05; raise it for shared or throttling machines)"),
                json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Rebuild stale or drifted LUTs, in parallel.

        Fingerprint changed: rebuild; else sentinel entries re-timed against the speed reference:
        shape drift > max(floor, 3 x CoV) twice rebuilds, a speed change seen twice in a row rescales,
        else verified. One row per device; non-zero exit if any failed.
        """
        from edgenas.fleet.inventory import load_inventory
        from edgenas.fleet.refresh import refresh_fleet
        from edgenas.spaces import get_space

        proj = project()
        inv = load_inventory(proj, inventory)
        with progress_bar(quiet=json_out) as bar:
            rows = refresh_fleet(proj, inv.select(group), space, concurrency=concurrency,
                                 only_failed=only_failed, progress=bar,
                                 **({} if drift_floor is None else {"drift_floor": drift_floor}))
        failed = [r for r in rows if r.failed]
        space = get_space(space).name  # refresh_fleet checked it: its name, not an alias, in the lines below
        if only_failed and not rows:
            _say_nothing_to_retry(proj, space, inventory, group)
        if json_out:
            emit_json([r.to_dict() for r in rows])
        else:
            t = results_table("device", "result", "reason", "time (s)")
            colour = {"refreshed": "cyan", "rescaled": "yellow", "verified": "green", "failed": "red"}
            for r in rows:
                t.add_row(esc(r.device), f"[{colour[r.status]}]{r.status}[/{colour[r.status]}]", esc(r.reason), f"{r.wall_s:.1f}")
            print_table(t)
            for r in rows:
                if r.power_mode_note:
                    table = "its new table was" if r.status == "refreshed" else "its table was checked and"
                    warn(f"{esc(r.device)}: {esc(r.power_mode_note)}: {table} timed in this mode")
        from edgenas.fleet.refresh import stale_runs_after

        n_stale = stale_runs_after(proj, rows)
        if n_stale:
            (err if json_out else out).print(f"[yellow]{n_stale} search run(s) went stale[/yellow] on the devices "
                                             "whose tables changed (see: edgenas runs stale)")
        if failed:  # one red line on stderr, as every error (the exit code alone said it)
            names = ", ".join(r.device for r in failed[:10]) + (", ..." if len(failed) > 10 else "")
            err.print(f"[bold red]error:[/bold red] [red]{len(failed)} of {len(rows)} device(s) failed: {esc(names)} "
                      f"(see their rows; retry them: {esc(_retry_command(space, inventory, group))})[/red]")
            raise typer.Exit(code=3)


def _retry_command(space: str, inventory: Path | None, group: str | None) -> str:
    """The command that retries a refresh's failed devices: ``--only-failed`` reads the failures of one space
    (``--space``, whose default is mbv3-small), among the devices of the inventory and group given."""
    import shlex

    args = ["edgenas", "fleet", "refresh", "--only-failed", "--space", space]
    args += ["--inventory", str(inventory)] if inventory is not None else []
    args += ["--group", group] if group is not None else []
    return shlex.join(args)


def _say_nothing_to_retry(proj, space: str, inventory: Path | None, group: str | None) -> None:
    """Why ``--only-failed`` retried no device: none failed the last refresh of this space, or those that did are
    not among the devices selected, or the failures were another space's (``--space`` was not repeated)."""
    from edgenas.fleet.refresh import failed_last_time

    failed = failed_last_time(proj)
    if space in failed:
        warn(f"no device to retry: the device(s) that failed the last refresh of {esc(space)} "
             f"({esc(', '.join(failed[space][:10]))}) are not in this inventory or group")
    elif failed:
        other = next(iter(failed))
        warn(f"no device failed the last refresh of {esc(space)}; the last refresh of {esc(other)} failed on "
             f"{esc(', '.join(failed[other][:10]))}: retry them with {esc(_retry_command(other, inventory, group))}")
    else:
        note(f"no device failed the last refresh of {esc(space)}: nothing to retry")
