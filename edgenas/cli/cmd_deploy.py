"""``edgenas export`` and ``edgenas deploy``."""

from __future__ import annotations

from pathlib import Path

import typer

from edgenas.cli._common import emit_json, out, progress_bar, project
from edgenas.errors import InputError
from edgenas.textsafe import counted, esc


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(arch_file: Path = typer.Argument(..., help="architecture JSON (or a run's best.json)"),
               out_dir: Path = typer.Option(None, "--out", help="export folder (default exports/SPACE-HASH)"),
               fmt: str = typer.Option("onnx", "--format", help="onnx | torchscript (model.pt beside model.onnx) | "
                                                                "trt (built on --device)"),
               device: str = typer.Option(None, "--device", help="device that builds the TensorRT engine"),
               opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)"),
               dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="export a dynamic batch axis"),
               simplify: bool = typer.Option(False, "--simplify",
                                             help="simplify the graph (needs onnxslim or onnxsim)"),
               force: bool = typer.Option(False, "--force", help="overwrite a folder that is not this architecture's export"),
               json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Export an architecture to checked ONNX (and TorchScript or a TensorRT engine).

        onnx.checker, shape inference, parity with PyTorch, and a manifest with the SHA-256.
        """
        from edgenas.export import check_export, default_export_dir, export_arch
        from edgenas.spaces import load_arch

        if fmt not in ("onnx", "torchscript", "trt"):
            raise InputError(f"unknown format '{fmt}'", hint="use --format onnx, torchscript or trt")
        if fmt == "trt" and not device:
            raise InputError("--format trt needs --device", hint="TensorRT engines are built on the device")
        if simplify:
            from exporters.onnx_export import simplifier_available

            if not simplifier_available():  # it exported unsimplified, with a Python warning line
                raise InputError("--simplify needs onnxslim (or onnxsim), which is not installed",
                                 hint="pip install onnxslim, or drop --simplify")
        if device and fmt != "trt":
            raise InputError(f"--device is only used with --format trt, to build the TensorRT engine there; not "
                             f"with --format {fmt}", hint="drop --device, or pass --format trt to build an engine")
        space, arch = load_arch(arch_file)
        proj = project()
        dest = out_dir or default_export_dir(proj, space, arch)
        if fmt == "trt":
            from edgenas.fleet.engine import require_tensorrt

            check_export(space, arch, dest, opset=opset, force=force)  # bad flags start no device session
            require_tensorrt(proj, device)  # a device without TensorRT: one error and no export folder
        with progress_bar(quiet=json_out) as bar:
            res = export_arch(space, arch, dest, opset=opset,
                              dynamic_batch=dynamic_batch, simplify=simplify, force=force, progress=bar)
            engine = torchscript = None
            if fmt == "torchscript":
                from edgenas.export import torchscript_beside

                torchscript = torchscript_beside(space, arch, res)
            if fmt == "trt":
                from edgenas.fleet.engine import build_engine_on_device

                engine = build_engine_on_device(proj, device, res.onnx_path, out_dir=res.onnx_path.parent)
        if json_out:
            emit_json(dict(res.to_dict(), engine=engine, torchscript_path=str(torchscript) if torchscript else None))
            return
        out.print(f"ONNX: {esc(res.onnx_path)} ({'reused' if res.reused else 'exported'}, sha256 {res.sha256[:12]}…)")
        if torchscript:
            out.print(f"TorchScript: {esc(torchscript)} (input shape {list(res.input_shape)} stored inside)")
        p = res.parity
        out.print(f"parity vs PyTorch: max |diff| {p.get('max_abs', float('nan')):.2e}, "
                  f"median {p.get('median_abs', float('nan')):.2e} -> {'pass' if p.get('passed') else 'FAIL'}")
        if engine:
            out.print(f"TensorRT engine: {esc(engine['engine'])} on {esc(device)} (sha256 {engine['sha256'][:12]}…, "
                      f"built in {engine['build_s']:.1f} s)")

    @app.command("deploy")
    def deploy(device: str = typer.Argument(..., help="profile name or 'local'"),
               arch_file: Path = typer.Argument(..., help="architecture JSON (or a run's best.json)"),
               runtime: str = typer.Option(None, "--runtime", help="override the profile's runtime"),
               out_dir: Path = typer.Option(None, "--out", help="export folder"),
               no_calibrate: bool = typer.Option(False, "--no-calibrate",
                                                 help="store the measurement without refitting the LUT's calibration "
                                                      "(or the few-shot model)"),
               json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Measure an architecture on a device vs its LUT.

        Exports (or reuses the export), pushes, measures with the winner protocol, compares with the
        prediction, stores the measurement and refits the LUT's calibration on the device's measurements.
        """
        from edgenas.fleet.deploy import deploy as run_deploy
        from edgenas.spaces import load_arch

        space, arch = load_arch(arch_file)
        with progress_bar(quiet=json_out) as bar:
            res = run_deploy(project(), device, space, arch, runtime=runtime, export_dir=out_dir, progress=bar,
                             calibrate=not no_calibrate)
        if json_out:
            emit_json(res.to_dict())
            return
        s = res.stats
        out.print(f"[green]{esc(res.device)}[/green] ({esc(res.runtime)}): measured {res.measured_ms:.4g} ms "
                  f"(median of window medians; CoV {s.get('cov', 0):.3f}, "
                  f"{'stable' if s.get('stable', True) else 'UNSTABLE'})")
        if res.measured_nominal_ms is not None:
            out.print(f"at the device's nominal speed: {res.measured_nominal_ms:.4g} ms "
                      f"(ratio {s['ratio']:.3f} to the reference, CoV {s.get('ratio_cov', 0):.3f})")
        if res.note:
            out.print(f"[yellow]{esc(res.note)}[/yellow]")
        if res.predicted_ms is not None:
            n = res.calibration_points
            many = counted(n, "measurement")
            if res.measurement.lut_fingerprint is None:  # no LUT: the few-shot model predicted it
                cal = f"few-shot model on {many}"
            else:
                cal = f"calibrated on {many}" if n else "raw LUT sum"
            against = "the measurement at nominal speed" if res.measured_nominal_ms is not None else "the measurement"
            out.print(f"predicted {res.predicted_ms:.4g} ms ({cal}); "
                      f"error {100 * res.rel_error:+.1f}% against {against}")
        if res.recalibrated is not None:
            r = res.recalibrated
            out.print(f"LUT calibration refitted on {counted(r.n_points, 'measurement')}: "
                      f"within ±10% {100 * r.within10_raw:.0f}% raw, {100 * r.within10_calibrated:.0f}% calibrated")
        cs = res.cold_start
        if cs:
            out.print(f"cold start: session {cs.get('session_ms', float('nan')):.1f} ms, "
                      f"first run {cs.get('first_run_ms', float('nan')):.2f} ms")
        _print_accuracy(arch_file, res)

    @app.command("measure")
    def measure(device: str = typer.Argument(..., help="profile name or 'local'"),
                model: Path = typer.Argument(..., help="an ONNX file (a TorchScript .pt for --runtime torch)"),
                runtime: str = typer.Option(None, "--runtime", help="override the profile's runtime"),
                json_out: bool = typer.Option(False, "--json", help="print the result as JSON")) -> None:
        """Measure any ONNX model (or an exported TorchScript file) on a device."""
        from edgenas.fleet.deploy import measure_onnx

        with progress_bar(quiet=json_out) as bar:
            res = measure_onnx(project(), device, model, runtime=runtime, progress=bar)
        if json_out:
            emit_json(res)
            return
        s = res["stats"]
        out.print(f"[green]{esc(res['device'])}[/green]: median {s['median_ms']:.4g} ms, p90 {s['p90_ms']:.4g} ms, "
                  f"CoV {s['cov']:.3f} ({'stable' if s.get('stable', True) else 'UNSTABLE'}), n={s['n']}")


def _print_accuracy(arch_file: Path, res: object) -> None:
    """For a multi-fidelity run's best.json: the measured accuracy next to predicted/measured latency."""
    import math

    from edgenas.io import read_json

    try:
        best = read_json(arch_file, "architecture file")
        acc = float(best["objectives"][best["accuracy_name"]])
        metric = str(best["metric"])[:200]
    except (Exception,):  # not a multi-fidelity best.json: nothing to add
        return
    if not math.isfinite(acc):
        return
    pred = getattr(res, "predicted_ms", None)
    pred_s = f"predicted {pred:.4g} ms, " if pred is not None else ""
    nominal = getattr(res, "measured_nominal_ms", None)  # what the prediction's error is against
    measured = f"{nominal:.4g} ms at nominal speed" if nominal is not None else f"{getattr(res, 'measured_ms'):.4g} ms"
    pct = metric.endswith(" (%)")
    metric = metric[:-4] if pct else metric
    out.print(f"[bold]chosen network:[/bold] {esc(metric)} {acc:.1f}{'%' if pct else ''}; "
              f"latency {pred_s}measured {measured}")
