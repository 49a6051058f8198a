"""``edgenas profile DEVICE``: build the device's LUT for a space."""

from __future__ import annotations

import typer

from edgenas.cli._common import emit_json, out, progress_bar, project, warn
from edgenas.textsafe import counted, esc

#: whole models to measure for the calibration the hint after a GPU profile suggests (the H200 runs of
#: bench/RESULTS.md calibrated on five to seven)
CALIBRATE_N = 8


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(device: str = typer.Argument("local", help="profile name (profiles/NAME.toml) or 'local'"),
                space: str = typer.Option("mbv3-small", "--space", help="search space to profile"),
                force: bool = typer.Option(False, "--force", help="re-time even if a LUT for this fingerprint exists"),
                json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Build a device's latency LUT for a space.

        Times every block the space can produce on the device and writes the LUT to luts/.
        """
        from edgenas.fleet.profiler import profile_device

        with progress_bar(quiet=json_out) as bar:
            res = profile_device(project(), device, space, force=force, progress=bar)
        if json_out:
            emit_json(res.to_dict())
            return
        what = "reused existing LUT" if res.reused_lut else (
            f"measured {res.measured} blocks" + (f", resumed {res.resumed}" if res.resumed else ""))
        out.print(f"[green]{esc(res.device)}[/green] / {esc(res.space)}: {res.n_entries} entries, {what}, "
                  f"{res.unstable} unstable, {res.wall_s:.1f} s")
        out.print(f"LUT: {esc(res.lut_path)}")
        if res.power_mode_note:
            warn(f"{esc(res.power_mode_note)}: the table was timed in this mode")
        if res.recalibrated:
            r = res.recalibrated
            out.print(f"LUT calibration fitted on the device's {counted(r.n_points, 'stored measurement')}"
                      f": within ±10% {100 * r.within10_raw:.0f}% raw, "
                      f"{100 * r.within10_calibrated:.0f}% calibrated")
        if res.calibration_note:
            out.print(f"[yellow]not fitted on the stored measurements ({esc(res.calibration_note)}); "
                      f"fit it later: edgenas lut calibrate {esc(res.device)} --space {esc(res.space)}[/yellow]")
        if res.runs_per_sample > 1 and not res.calibrated:
            # on an H200 such tables summed 0.86-1.06x the whole models (bench/RESULTS.md); a profile fits
            # the table at once when the device has stored measurements, so this is a first profile's line
            out.print(f"[yellow]timed in runs of {res.runs_per_sample} calls (this runtime's calls overlap on the "
                      "device): the blocks of such a table can sum to 10% or more off whole models; "
                      f"fit it to whole models: edgenas lut calibrate {esc(res.device)} --space {esc(res.space)} "
                      f"--measure {CALIBRATE_N} (each deploy refits it too)[/yellow]")
