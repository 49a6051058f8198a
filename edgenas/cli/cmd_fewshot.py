"""``edgenas device add NAME --fewshot K [--table CSV]``: a latency model for a device from K measured architectures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from edgenas.cli._common import emit_json, out, progress_bar, project
from edgenas.textsafe import esc


def register(app: typer.Typer) -> None:
    group = next((g.typer_instance for g in app.registered_groups if g.name == "device"), None)
    if group is None:  # the device group is registered by cmd_device first
        raise RuntimeError("cmd_fewshot must be registered after cmd_device")

    @group.command("add")
    def add(name: str = typer.Argument(..., help="profile name or 'local'"),
            fewshot: int = typer.Option(20, "--fewshot", help="whole architectures to measure on the device"),
            space: str = typer.Option("mbv3-small", "--space", help="search space"),
            seed: int = typer.Option(0, "--seed", help="seed of the candidate pool and the choice"),
            table: Optional[Path] = typer.Option(
                None, "--table", help="a CSV of other devices' whole-model latencies (index, arch, *_ms "
                "columns, e.g. nb201_hw.csv) as the references instead of the fleet's LUTs (nb201 only)"),
            json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Measure K chosen architectures on a device and fit its few-shot latency model (minutes, not a
        full profile); search uses it until the device has a LUT, and deploys keep refining it."""
        from edgenas.fleet.fewshot import add_fewshot

        with progress_bar(quiet=json_out) as cb:
            res = add_fewshot(project(), name, space, fewshot, seed=seed, progress=cb, table=table)
        if json_out:
            emit_json(res.to_dict())
            return
        refs = ", ".join(res.references) or "none (architecture descriptors only)"
        out.print(f"{esc(res.device)}: few-shot model for {esc(res.space)} on {res.n_points} measurements "
                  f"({res.measured_now} new); references: {esc(refs)}")
        out.print(f"leave-one-out within 10%: {_share(res.loo_within10)}; saved {esc(res.model_path)}")


def _share(loo_within10: float) -> str:
    """The leave-one-out share as a percentage. Below 3 measurements none is left out (``fleet.fewshot._fit``)
    and the share is NaN: ``--json`` gives null, the text says so in words instead of "nan%"."""
    if not math.isfinite(loo_within10):
        return "n/a (fewer than 3 measurements)"
    return f"{loo_within10:.0%}"
