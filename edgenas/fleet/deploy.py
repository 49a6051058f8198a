"""Deploy an architecture to a device and measure it: the closed loop's measuring half.

export (or reuse the export) -> push the ONNX file (hash-checked) -> build a TensorRT engine on the
device when its runtime is TensorRT -> time the whole model with the winner protocol (several
windows, median of window medians, cold start apart) -> compare with the LUT prediction -> store a
``Measurement`` record (the calibration fits on these).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgenas.project import Project
from edgenas.spaces.base import SearchSpace

Progress = Callable[[str, int, int], None]

#: whole-model protocol for winners: longer windows than LUT entries
WINNER_PROTOCOL: dict[str, Any] = {
    "warmup_min_n": 20, "warmup_min_s": 0.3, "sample_target_ms": 1.0, "min_n": 30, "min_s": 0.4,
    "max_cov": 0.05, "max_ci_rel": 0.01, "max_s": 4.0, "windows": 5,
}


@dataclass(frozen=True)
class DeployResult:
    device: str
    space: str
    arch: dict[str, Any]
    onnx_path: Path
    artifact_sha256: str
    runtime: str
    measured_ms: float
    predicted_ms: float | None
    predicted_raw_ms: float | None
    rel_error: float | None
    calibration_points: int
    stats: dict[str, Any]
    cold_start: dict[str, Any]
    measurement_id: str | None
    note: str = ""
    #: the measurement at the device's nominal speed (ratio to the reference x the LUT's reference
    #: time); what the prediction is compared with when the LUT was timed against the reference
    measured_nominal_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["onnx_path"] = str(self.onnx_path)
        return d


def nominal_ms(stats: dict[str, Any], lut: Any, reference_sha: str) -> float | None:
    """A measurement at the device's nominal speed: its reference ratio x the LUT's reference time.

    None unless the LUT was timed against the same reference model (by SHA-256)."""
    if lut is None or not lut.normalised or lut.reference.get("sha256") != reference_sha or not stats.get("ratio"):
        return None
    return float(stats["ratio"]) * float(lut.reference["ms"])


def current_lut_or_none(project: Project, device: str, space: SearchSpace,
                        fingerprint_hash: str) -> tuple[Any, str]:
    """(the device's LUT for its current fingerprint or None, a note saying why there is none)."""
    from edgenas.errors import InputError
    from edgenas.fleet.profiler import current_lut

    try:
        return current_lut(project, device, space.name, fingerprint_hash), ""
    except InputError as exc:
        return None, f"no prediction: {exc}"


def predict_for(lut: Any, space: SearchSpace, arch: Any) -> tuple[float | None, float | None, int]:
    """(calibrated, raw, calibration points) from ``lut``; Nones when there is no LUT."""
    from edgenas.latency.predictor import LatencyPredictor

    if lut is None:
        return None, None, 0
    pred = LatencyPredictor(lut, space)
    raw = float(pred.predict_raw_many([arch])[0])
    return float(pred.predict_many([arch])[0]), raw, int(pred.calibration_points)


def measure_model(session: Any, onnx_path: Path, *, runtime: str | None = None,
                  protocol: dict[str, Any] | None = None, progress: Progress | None = None,
                  reference: Path | None = None) -> dict[str, Any]:
    """Push and time one ONNX model on an open session; builds a TensorRT engine when asked.

    With ``reference`` (an ONNX model; for ONNX-based runtimes) it is timed in alternation, so the
    stats also carry the model's ratio to it (see ``edgenas.fleet.profiler.reference_model``)."""
    params = session.runtime_params(runtime)
    remote = session.push(onnx_path)
    if reference is not None and params["runtime"] != "tensorrt":
        params["reference"] = session.push(reference)
    model = remote
    if params["runtime"] == "tensorrt":
        from edgenas.fleet.engine import timing_cache_path

        built = session.call("build_engine", {"model": remote, "precision": params["precision"],
                                              "timing_cache": timing_cache_path(session)})
        model = built["engine"]
    if progress:
        progress(f"measure on {session.device}", 0, 1)
    out = session.call("bench", dict(params, model=model, protocol=dict(WINNER_PROTOCOL, **(protocol or {})),
                                     winner=True))
    if progress:
        progress(f"measure on {session.device}", 1, 1)
    return out


def choose_runtime(device: str, wanted: str, info: dict[str, Any]) -> tuple[str, str]:
    """(runtime to use, note). TensorRT missing falls back (with a note); any other missing runtime is
    an error listing what the device has."""
    from edgenas.errors import RuntimeMissingError
    from edgenas.fleet.engine import fallback_runtime

    have = sorted(k for k, v in (info.get("runtimes") or {}).items() if v)
    if wanted in have:
        return wanted, ""
    if wanted == "tensorrt" and fallback_runtime(info) != "none":
        alt = fallback_runtime(info)
        return alt, f"TensorRT is missing on device '{device}'; using {alt} instead"
    raise RuntimeMissingError(device, f"runtime '{wanted}' is not available; the device has: "
                              f"{', '.join(have) or 'none'}",
                              hint="install it on the device or pass --runtime with one it has")


def deploy(project: Project, device: Any, space: SearchSpace, arch: Any, *, runtime: str | None = None,
           export_dir: Path | None = None, store: Any = None, progress: Progress | None = None) -> DeployResult:
    from edgenas.export import default_export_dir, export_arch
    from edgenas.fleet.profiler import reference_model
    from edgenas.fleet.session import open_session
    from edgenas.io import sha256_file
    from edgenas.store import Measurement, open_store

    ref_path = reference_model(project)
    with open_session(project, device) as s:  # the device is checked before anything is written
        info = s.call("info", s.runtime_params(runtime), timeout_s=120)
        rt_name, note = choose_runtime(s.device, runtime or s.profile.runtime, info)
        if rt_name != (runtime or s.profile.runtime):
            info = s.call("info", s.runtime_params(rt_name), timeout_s=120)
        fp_hash = str(info["fingerprint_hash"])
        exp = export_arch(space, arch, export_dir or default_export_dir(project, space, arch), progress=progress)
        out = measure_model(s, exp.onnx_path, runtime=rt_name, progress=progress, reference=ref_path)
        rt = s.runtime_params(rt_name)
    stats = dict(out["stats"])
    measured = float(stats["median_ms"])
    lut, pnote = current_lut_or_none(project, s.device, space, fp_hash)
    nominal = nominal_ms(stats, lut, sha256_file(ref_path))
    if nominal is not None:
        stats["nominal_ms"] = nominal
    predicted, raw, n_cal = predict_for(lut, space, arch)
    if lut is None:
        from edgenas.fleet.fewshot import latency_model

        fewshot = latency_model(project, s.device, space)
        if fewshot is not None:
            predicted, n_cal = fewshot.predict(arch), fewshot.calibration_points
            pnote = f"predicted by the few-shot model ({n_cal} measurements; no LUT yet)"
    compare = nominal if nominal is not None else measured
    rel = None if predicted is None else (predicted - compare) / compare
    m = Measurement(device=s.device, space=space.name, arch=space.to_dict(arch),
                    artifact_sha256=exp.sha256, runtime=rt["runtime"], precision=rt["precision"],
                    fingerprint_hash=fp_hash, stats=stats, cold_start=dict(out.get("cold_start") or {}),
                    state=dict(out.get("state") or {}), predicted_raw_ms=raw, predicted_ms=predicted)
    store = store or open_store(project)
    store.add(m)
    if lut is None:  # no LUT yet: a few-shot model (if any) learns from this measurement
        from edgenas.fleet.fewshot import refit_after_deploy

        if refit_after_deploy(project, s.device, space, fp_hash, rt["runtime"], store):
            pnote = "no LUT yet; the few-shot model was refitted with this measurement"
    return DeployResult(s.device, space.name, space.to_dict(arch), exp.onnx_path, exp.sha256, rt["runtime"],
                        measured, predicted, raw, rel, n_cal, stats, dict(out.get("cold_start") or {}),
                        m.id, "; ".join(x for x in (note, pnote) if x), nominal)


def measure_onnx(project: Project, device: Any, model: Path, *, runtime: str | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Check an ONNX file, then measure it on ``device`` (no prediction, no record)."""
    from exporters.checks import load_checked
    from exporters.errors import ExportCheckError

    from edgenas.errors import InputError
    from edgenas.fleet.session import open_session

    try:
        load_checked(model)
    except ExportCheckError as exc:
        raise InputError(str(exc)) from None
    from edgenas.fleet.profiler import reference_model

    with open_session(project, device) as s:
        out = measure_model(s, Path(model), runtime=runtime, progress=progress, reference=reference_model(project))
        return {"device": s.device, "model": str(model), **out}
