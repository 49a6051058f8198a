"""Deploy an architecture to a device and measure it: the closed loop's measuring half.

export (or reuse the export) -> push the ONNX file (hash-checked) -> build a TensorRT engine on the
device when its runtime is TensorRT -> time the whole model with the winner protocol (several
windows, median of window medians, cold start apart) -> compare with the LUT prediction -> store a
``Measurement`` record (the calibration fits on these).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.devices.answers import DeviceInfo
from edgenas.devices.session import open_session
from edgenas.errors import EdgenasError, InputError, RuntimeMissingError
from edgenas.fleet.calibrate import CalibrationResult, refit_calibration
from edgenas.fleet.engine import fallback_runtime
from edgenas.fleet.measure import (
    Progress, check_model_suffix, current_lut_or_none, measure_model, measurement_stats, model_file, predict_for,
    reference_model)
from edgenas.io import sha256_file
from edgenas.project import Project
from edgenas.spaces.base import SearchSpace
from edgenas.store import Measurement


@dataclass(frozen=True)
class DeployResult:
    """A deployment: the stored ``Measurement`` (what ran where, its statistics and the prediction), the
    exported file, and how the prediction compares."""

    measurement: Measurement
    onnx_path: Path
    rel_error: float | None
    calibration_points: int
    note: str = ""
    #: the measurement at the device's nominal speed (ratio to the reference x the LUT's reference
    #: time); what the prediction is compared with when the LUT was timed against the reference
    measured_nominal_ms: float | None = None
    #: the LUT's calibration refitted with this measurement (``lut calibrate``'s result), if it was
    recalibrated: CalibrationResult | None = None

    device = property(lambda self: self.measurement.device)
    space = property(lambda self: self.measurement.space)
    arch = property(lambda self: self.measurement.arch)
    artifact_sha256 = property(lambda self: self.measurement.artifact_sha256)
    runtime = property(lambda self: self.measurement.runtime)
    measured_ms = property(lambda self: self.measurement.measured_ms)
    predicted_ms = property(lambda self: self.measurement.predicted_ms)
    predicted_raw_ms = property(lambda self: self.measurement.predicted_raw_ms)
    stats = property(lambda self: self.measurement.stats)
    cold_start = property(lambda self: self.measurement.cold_start)
    measurement_id = property(lambda self: self.measurement.id)

    def to_dict(self) -> dict[str, Any]:
        m = self.measurement
        return {"device": m.device, "space": m.space, "arch": m.arch, "onnx_path": str(self.onnx_path),
                "artifact_sha256": m.artifact_sha256, "runtime": m.runtime, "measured_ms": m.measured_ms,
                "predicted_ms": m.predicted_ms, "predicted_raw_ms": m.predicted_raw_ms,
                "rel_error": self.rel_error, "calibration_points": self.calibration_points, "stats": m.stats,
                "cold_start": m.cold_start, "measurement_id": m.id, "note": self.note,
                "measured_nominal_ms": self.measured_nominal_ms,
                "recalibrated": self.recalibrated.to_dict() if self.recalibrated is not None else None}


def choose_runtime(device: str, wanted: str, info: DeviceInfo) -> tuple[str, str]:
    """(runtime to use, note). TensorRT missing falls back (with a note); any other missing runtime is
    an error listing what the device has."""
    have = info.available_runtimes()
    if wanted in have:
        return wanted, ""
    if wanted == "tensorrt" and fallback_runtime(info) != "none":
        alt = fallback_runtime(info)
        return alt, f"TensorRT is missing on device '{device}'; using {alt} instead"
    raise RuntimeMissingError(device, f"runtime '{wanted}' is not available; the device has: "
                              f"{', '.join(have) or 'none'}",
                              hint="install it on the device or pass --runtime with one it has")


def deploy(project: Project, device: Any, space: SearchSpace, arch: Any, *, runtime: str | None = None,
           export_dir: Path | None = None, store: Any = None, progress: Progress | None = None,
           calibrate: bool = True) -> DeployResult:
    """Measure ``arch`` on ``device`` and store the measurement; with ``calibrate`` (the default) the
    latency model learns from it: the LUT's calibration is refitted on every measurement of the device's
    fingerprint and runtime (as ``lut calibrate`` does), or, without a LUT, the few-shot model is."""
    from edgenas.export import default_export_dir, export_arch
    from edgenas.store import open_store

    with open_session(project, device) as s:  # the device is checked before anything is written
        rt_name, note = choose_runtime(s.device, runtime or s.profile.runtime, s.info(runtime))
        fp_hash = s.info(rt_name).fingerprint_hash
        ref_path = reference_model(project, rt_name)
        exp = export_arch(space, arch, export_dir or default_export_dir(project, space, arch), progress=progress)
        out = measure_model(s, model_file(rt_name, space, arch, exp), runtime=rt_name, progress=progress,
                            reference=ref_path)
        rt = s.runtime_params(rt_name)
        other = rt != s.runtime_params()  # --runtime or the TensorRT fallback: the device did not change
    lut, pnote = current_lut_or_none(project, s.device, space, fp_hash, remember=not other)
    if lut is None and other:
        pnote = (f"no prediction: the LUTs of '{s.device}' are per runtime and none was profiled with "
                 f"{rt['runtime']} ({rt['precision']}); profile a device whose profile says runtime = "
                 f"\"{rt['runtime']}\" to predict it")
    stats, nominal = measurement_stats(out.raw_stats, lut, sha256_file(ref_path))
    predicted, raw, n_cal = predict_for(lut, space, arch)
    if lut is None:
        from edgenas.fleet.fewshot import latency_model

        fewshot = latency_model(project, s.device, space)
        if fewshot is not None and (fewshot.model.fingerprint_hash, fewshot.model.runtime) == (fp_hash, rt["runtime"]):
            predicted, n_cal = fewshot.predict(arch), fewshot.calibration_points
            pnote = f"predicted by the few-shot model ({n_cal} measurements; no LUT yet)"
    compare = nominal if nominal is not None else float(stats["median_ms"])
    rel = None if predicted is None else (predicted - compare) / compare
    m = Measurement(device=s.device, space=space.name, arch=space.to_dict(arch),
                    artifact_sha256=exp.sha256, runtime=rt["runtime"], precision=rt["precision"],
                    fingerprint_hash=fp_hash, stats=stats, cold_start=dict(out.cold_start),
                    state=dict(out.state), predicted_raw_ms=raw, predicted_ms=predicted,
                    lut_fingerprint=lut.fingerprint_hash if lut is not None else None)
    store = store or open_store(project)
    store.add(m)
    recalibrated = None
    if calibrate and lut is not None:  # the closed loop: the table's calibration learns from this measurement
        try:
            recalibrated = refit_calibration(project, s.device, space, fp_hash, rt["runtime"], store)
        except EdgenasError as exc:  # a profile rewriting the table, a full disk: the measurement is kept
            pnote = (f"the calibration was not refitted: {exc.message}; the measurement is stored, so "
                     f"`edgenas lut calibrate {s.device} --space {space.name}` fits it later")
    elif calibrate:  # no LUT yet: a few-shot model (if any) learns from this measurement
        from edgenas.fleet.fewshot import refit_after_deploy

        if refit_after_deploy(project, s.device, space, fp_hash, rt["runtime"], store):
            pnote = "no LUT yet; the few-shot model was refitted with this measurement"
    return DeployResult(m, exp.onnx_path, rel, n_cal, "; ".join(x for x in (note, pnote) if x), nominal,
                        recalibrated)


def measure_onnx(project: Project, device: Any, model: Path, *, runtime: str | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Check a model file (ONNX, or TorchScript with its input shapes for the torch runtime), then measure
    it on ``device`` (no prediction, no record)."""
    from edgenas.devices.profiles import DeviceProfile, load_profile
    from edgenas.devices.session import runtime_params

    profile = device if isinstance(device, DeviceProfile) else load_profile(project, device)
    rt = runtime_params(profile, runtime)["runtime"]  # an unknown runtime or a file of the other format is
    check_model_suffix(rt, Path(model))                # refused before the device is touched
    check_model_file(Path(model))
    with open_session(project, profile) as s:
        out = measure_model(s, Path(model), runtime=rt, progress=progress, reference=reference_model(project, rt))
        return {"device": s.device, "model": str(model), **out.to_dict()}


def check_model_file(model: Path) -> None:
    """An ONNX file must pass ``onnx.checker``; a ``.pt`` file must be TorchScript that holds its input
    shapes (as ``edgenas export --format torchscript`` and the deploy exports write it)."""
    from exporters.checks import load_checked
    from exporters.errors import ExportCheckError

    if model.suffix == ".pt":
        from exporters.torchscript_export import stored_meta

        if not model.is_file():
            raise InputError(f"model file not found: {model}", hint="check the path")
        meta = stored_meta(model)
        if meta is None or "input_shapes" not in meta:
            raise InputError(f"{model} is not a TorchScript file with its input shapes (edgenas.json inside)",
                             hint="export it with: edgenas export ARCH.json --format torchscript")
        return
    try:
        load_checked(model)
    except ExportCheckError as exc:
        raise InputError(str(exc)) from None
