"""``edgenas lut ...``: list, pull, show, calibrate and import latency tables."""

from __future__ import annotations

from pathlib import Path

import typer

from edgenas.cli._common import emit_json, out, progress_bar, project, warn
from edgenas.textsafe import esc


def register(app: typer.Typer) -> None:
    lut_app = typer.Typer(help="LUTs: list, pull, show, calibrate, import.",
                          no_args_is_help=True)
    app.add_typer(lut_app, name="lut", help="LUTs: list, pull, show, calibrate, import.")

    @lut_app.command("list")
    def list_(device: str = typer.Argument("local", help="profile name or 'local'"),
              json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """List the LUTs on the device and in luts/."""
        from edgenas.fleet.lutsync import device_luts
        from edgenas.latency.store import LutStore

        proj = project()
        remote = device_luts(proj, device)
        local = [str(p.relative_to(proj.root)) for p in LutStore(proj.luts_dir).list(device)]
        if json_out:
            emit_json({"device": device, "on_device": remote, "in_project": local})
            return
        out.print(f"[bold]on {esc(device)}[/bold]")
        for e in remote:
            size, sha = e["size"], e["sha256"]
            out.print(esc(f"  {e['name']:<40} {'?' if size is None else size:>9} B  sha256 {(sha or '?')[:12]}…"))
        out.print("[bold]in project[/bold]")
        for p in local:
            out.print(f"  {esc(p)}")

    @lut_app.command("pull")
    def pull(device: str = typer.Argument(..., help="profile name"),
             name: str = typer.Option(None, "--name", help="one table (default: all the device holds)"),
             json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Copy the device's LUTs into luts/ (checked)."""
        from edgenas.fleet.lutsync import pull_luts

        pulled = pull_luts(project(), device, name=name)
        if json_out:
            emit_json(pulled)
            return
        for p in pulled:
            kept = " (kept the host's calibration: same timings, newer fit)" if p["kept_calibration"] else ""
            out.print(f"pulled {esc(p['name'])} -> {esc(p['lut_path'])}{kept}")
        if not pulled:
            out.print(f"{esc(device)} holds no LUT to pull (build one there with: edgenas profile {esc(device)})")

    @lut_app.command("show")
    def show(path: Path = typer.Argument(..., help="a LUT JSON file"),
             json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Validate a LUT file and summarise it."""
        import numpy as np

        from edgenas.fleet.measure import runs_per_sample
        from edgenas.latency.lut import Lut, utc

        lut = Lut.load(path)
        med = np.array([lut.value_ms(e) for e in lut.entries.values()])  # as predictions use them
        summary = {"device": lut.device, "space": lut.space, "fingerprint_hash": lut.fingerprint_hash,
                   "runtime": lut.runtime, "provider": _provider(lut), "precision": lut.precision,
                   "threads": lut.threads, "entries": len(lut.entries), "unstable": len(lut.unstable_keys),
                   "overhead_ms": lut.overhead_ms, "runs_per_sample": runs_per_sample(lut.protocol),
                   "sync_extra_ms": lut.sync_extra_ms, "median_entry_ms": float(np.median(med)),
                   "calibration": lut.calibration.to_dict() if lut.calibration else None}
        for w in lut.clock_warnings():  # read and used all the same (--json too: the warning is on stderr)
            warn(esc(w))
        if json_out:
            emit_json(summary)
            return
        if lut.calibration is not None:  # a date for people; --json keeps the number
            summary["calibration"] = dict(summary["calibration"], fitted_at=utc(lut.calibration.fitted_at))
        for k, v in summary.items():
            out.print(esc(f"{k:>18}: {v}", 1000))

    @lut_app.command("calibrate")
    def calibrate(device: str = typer.Argument("local", help="profile name or 'local'"),
                  space: str = typer.Option("mbv3-small", "--space", help="search space"),
                  measure: int = typer.Option(0, "--measure", help="first measure N diverse architectures"),
                  seed: int = typer.Option(0, "--seed", help="seed for choosing the architectures"),
                  json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Fit the LUT from whole-model measurements.

        A robust log-linear correction from LUT sums to measured latency, stored with the LUT.
        """
        from edgenas.fleet.calibrate import calibrate_device

        with progress_bar(quiet=json_out) as bar:
            res = calibrate_device(project(), device, space, measure=measure, seed=seed, progress=bar)
        if json_out:
            emit_json(res.to_dict())
            return
        out.print(f"[green]{esc(res.device)}[/green] / {esc(res.space)}: calibrated on {res.n_points} measurements "
                  f"({res.measured_now} new); within ±10%: raw {100 * res.within10_raw:.0f}% -> "
                  f"calibrated {100 * res.within10_calibrated:.0f}%")
        out.print(f"LUT: {esc(res.lut_path)}")

    @lut_app.command("import-ofa")
    def import_ofa(yaml_dir: Path = typer.Argument(..., help="folder of OFA's <res>_lookup_table.yaml"),
                   device: str = typer.Option("note10", "--device", help="device name to file it under"),
                   json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Import Once-for-All's published tables.

        OFA's Note10 YAML tables become a LUT for the ofa-mbv3-w12 space.
        """
        from edgenas.latency.ofa_import import import_ofa_lut
        from edgenas.latency.store import LutStore

        lut = import_ofa_lut(yaml_dir, device=device)
        path = LutStore(project().luts_dir).save(lut)
        if json_out:
            emit_json({"device": lut.device, "space": lut.space, "lut_path": str(path), "entries": len(lut.entries)})
            return
        out.print(f"imported {len(lut.entries)} entries for {esc(lut.space)} -> {esc(path)}")


def _provider(lut: object) -> str | None:
    """Where the table was measured, from its fingerprint's settings (a file value: only the known names);
    None for TensorRT engines, which always run on the GPU, and for tables edgenas did not measure (OFA's
    published ones, ``lut import-ofa``: a Note10's said "provider: cpu", which nothing recorded)."""
    from edgenas.latency.lut import IMPORTED_RUNTIME

    if getattr(lut, "runtime", None) in ("tensorrt", IMPORTED_RUNTIME):
        return None
    settings = getattr(lut, "fingerprint", {}).get("settings")
    provider = settings.get("provider") if isinstance(settings, dict) else None
    return "cpu" if provider in (None, "cpu") else provider if provider in ("cuda", "tensorrt") else "unknown"
