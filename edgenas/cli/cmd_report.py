"""``edgenas report`` (one self-contained HTML file) and ``edgenas serve`` (API, pages, live view)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgenas.cli._common import emit_json, out, project
from edgenas.errors import InputError
from edgenas.textsafe import esc


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(runs: list[Path] = typer.Argument(None, help="run folder (several with --compare)"),
               compare: bool = typer.Option(False, "--compare", help="compare the given runs"),
               fleet: bool = typer.Option(False, "--fleet", help="the fleet: one row per device"),
               device: str = typer.Option(None, "--device", help="a device: LUT heat maps, calibration, drift"),
               probe: bool = typer.Option(False, "--probe", help="with --fleet: contact each device for reachability"),
               inventory: Path = typer.Option(None, "--inventory", help="with --fleet: fleet.toml or Ansible YAML"),
               out_path: Path = typer.Option(None, "--out", help="HTML file to write"),
               force: bool = typer.Option(False, "--force", help="replace --out even if it is not an edgenas report"),
               json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Write an HTML report that opens offline (plotly.js inlined).

        edgenas report RUN_DIR | --compare RUN RUN ... | --device NAME | --fleet
        """
        from edgenas.report import pages
        from edgenas.report.source import FolderSource, check_name, load_run_dir

        proj = project()
        source = FolderSource(proj)
        runs = list(runs or [])
        kinds = [k for k, on in (("compare", compare), ("fleet", fleet), ("device", device is not None)) if on]
        if len(kinds) > 1:
            raise InputError(f"give one of --compare, --fleet, --device (got {', '.join(kinds)})")
        kind = kinds[0] if kinds else "run"
        fleet_only = [f for f, on in (("--probe", probe), ("--inventory", inventory is not None)) if on]
        if fleet_only and kind != "fleet":
            raise InputError(f"{' and '.join(fleet_only)} {'go' if len(fleet_only) > 1 else 'goes'} with --fleet only",
                             hint="edgenas report --fleet --probe [--inventory FILE]")
        if kind in ("fleet", "device") and runs:
            raise InputError(f"--{kind} takes no run folder")
        if kind == "run" and len(runs) != 1:
            raise InputError("give one run folder (or --compare RUN RUN ..., --device NAME, --fleet)",
                             hint="e.g. edgenas report demo-run")
        if out_path is not None:  # before the runs are read and the page built (seconds for a long run)
            pages.check_html_out(out_path, force=force)
        if kind == "compare":
            loaded = [load_run_dir(r, columns=True) for r in runs]
            if len({r.id for r in loaded}) < len(loaded):
                loaded = [load_run_dir(r, str(r), columns=True) for r in runs]
            text, default = pages.compare_page(loaded), Path("compare-report.html")
        elif kind == "device":
            check_name(device, "device")
            text, default = pages.device_page(source, device), Path(f"device-{device}-report.html")
        elif kind == "fleet":
            names = None
            status = None
            if inventory is not None or probe:
                from edgenas.fleet.inventory import load_inventory

                profiles = load_inventory(proj, inventory).select(None)
                names = [p.name for p in profiles]
                if probe:
                    from edgenas.fleet.status import fleet_status

                    status = {s.device: s for s in fleet_status(proj, profiles, [])}
            text, default = pages.fleet_page(source, names, status), Path("fleet-report.html")
        else:
            run = load_run_dir(runs[0], columns=True)
            text, default = pages.run_page(run, source), runs[0] / "report.html"
        path = pages.write_html(text, out_path or default, force=force)
        if json_out:
            emit_json({"kind": kind, "report_path": str(path), "bytes": path.stat().st_size})
        else:
            out.print(f"report written: {esc(str(path))}")

    @app.command("serve")
    def serve(host: str = typer.Option("127.0.0.1", "--host", help="address to bind (others need a token)"),
              port: int = typer.Option(8765, "--port", help="TCP port"),
              token: str = typer.Option(None, "--token", help="require this token (or set EDGENAS_TOKEN)")) -> None:
        """Serve the read-only API (/api/..., docs at /docs), the report pages and a live view of running searches."""
        from edgenas.api.server import check_bind, serve as run_server

        proj = project()
        tok = check_bind(host, port, token)
        run_server(proj, host, port, tok,
                   ready=lambda: out.print(f"edgenas serving {esc(str(proj.root))} on http://{esc(host)}:{port}/ "
                                           "(API docs: /docs; Ctrl-C stops)"))
