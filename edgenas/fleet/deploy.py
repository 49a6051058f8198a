"""Deploy an architecture to a device and measure it: the closed loop's measuring half.

export (or reuse the export) -> push the ONNX file (hash-checked) -> build a TensorRT engine on the
device when its runtime is TensorRT -> time the whole model with the winner protocol (several
windows, median of window medians, cold start apart) -> compare with the LUT prediction -> store a
``Measurement`` record (the calibration fits on these).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgenas.devices.answers import DeviceInfo
from edgenas.devices.session import open_session
from edgenas.errors import EdgenasError, InputError, RuntimeMissingError
from edgenas.fleet.calibrate import CalibrationResult, refit_calibration
from edgenas.fleet.engine import fallback_runtime
from edgenas.fleet.measure import (
    Progress, check_model_suffix, current_lut_or_none, measure_model, measurement_stats, model_file, predict_for,
    reference_model)
from edgenas.io import sha256_file
from edgenas.outdirs import disk_error
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
    from edgenas.devices.profiles import DeviceProfile, load_profile
    from edgenas.devices.session import runtime_params
    from edgenas.export import check_export, default_export_dir, export_arch
    from edgenas.store import check_db_url, open_store

    # what the host can refuse (device name, runtime, export folder) is refused before a session starts: bad
    # input writes nothing, not even the agent's install in .edgenas/
    profile = device if isinstance(device, DeviceProfile) else load_profile(project, device)
    wanted = runtime_params(profile, runtime)["runtime"]
    out_dir = export_dir or default_export_dir(project, space, arch)
    check_export(space, arch, out_dir)
    from edgenas.fleet.fewshot import check_record

    check_record(project, profile.name, space)  # a damaged or linked few-shot record: refused before any file
    if store is None:
        check_db_url(None, project)  # where the measurement goes: refused before the device measures
    with open_session(project, profile) as s:  # the device is checked before anything is written
        rt_name, note = choose_runtime(s.device, wanted, s.info(wanted))
        info = s.info(rt_name)
        why = info.unmeasurable(s.runtime_params(rt_name))
        if why:  # a provider it lacks, a precision its TensorRT cannot build: before the export, not after
            raise RuntimeMissingError(s.device, why, hint="install it on the device, or deploy with a runtime and "
                                                          "settings it has (--runtime, the device profile)")
        mode_note = info.power_mode_note(profile.power_mode)
        note = "; ".join(x for x in (note, f"warning: {mode_note}" if mode_note else "") if x)
        fingerprint, fp_hash = info.fingerprint, info.fingerprint_hash
        ref_path = reference_model(project, rt_name)
        exp = export_arch(space, arch, out_dir, progress=progress)
        timed = model_file(rt_name, space, arch, exp)  # the ONNX file, or for torch the TorchScript beside it
        out = measure_model(s, timed, runtime=rt_name, progress=progress, reference=ref_path)
        rt = s.runtime_params(rt_name)
        other = rt != s.runtime_params()  # --runtime or the TensorRT fallback: the device did not change
    lut, pnote = current_lut_or_none(project, s.device, space, fp_hash, remember=not other, fingerprint=fingerprint)
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
        elif fewshot is not None and fewshot.model.runtime == rt["runtime"] and not other:
            pnote = (f"no prediction: the few-shot model of '{s.device}' was fitted at fingerprint "
                     f"{fewshot.model.fingerprint_hash[:12]} and the device now reports {fp_hash[:12]} (an edgenas "
                     f"upgrade changes the agent's version, which is part of it); measure it again: edgenas device "
                     f"add {s.device} --fewshot {fewshot.model.n_points} --space {space.name}"
                     + (" --table TABLE (the table it was made with)" if fewshot.model.table is not None else ""))
    compare = nominal if nominal is not None else float(stats["median_ms"])
    rel = None if predicted is None else (predicted - compare) / compare
    m = Measurement(device=s.device, space=space.name, arch=space.to_dict(arch),
                    artifact_sha256=sha256_file(timed), runtime=rt["runtime"], precision=rt["precision"],
                    fingerprint_hash=fp_hash, stats=stats, cold_start=dict(out.cold_start),
                    state=dict(out.state), predicted_raw_ms=raw, predicted_ms=predicted,
                    lut_fingerprint=lut.fingerprint_hash if lut is not None else None)
    store = store or open_store(project)
    store.add(m)
    recalibrated = None
    if calibrate and lut is not None:  # the closed loop: the table's calibration learns from this measurement
        try:
            recalibrated = refit_calibration(project, s.device, space, fp_hash, rt["runtime"], store)
        except (EdgenasError, OSError) as exc:  # a profile rewriting the table, a full disk: the measurement is
            # kept (an OSError of the table's write was the CLI's "run it again", which stored it a second time)
            pnote = (f"the calibration was not refitted: {_why(exc, 'the table')}; the measurement is stored, so "
                     f"`edgenas lut calibrate {s.device} --space {space.name}` fits it later")
    elif calibrate:  # no LUT yet: a few-shot model (if any) learns from this measurement
        from edgenas.fleet.fewshot import refit_after_deploy

        try:
            if refit_after_deploy(project, s.device, space, fp_hash, rt["runtime"], store):
                pnote = "no LUT yet; the few-shot model was refitted with this measurement"
        except (EdgenasError, OSError) as exc:  # as above: the command failed, and running it again stored a copy
            pnote = (f"the few-shot model was not refitted: {_why(exc, 'the few-shot model')}; the measurement is "
                     "stored, so the next deploy refits it with every stored measurement")
    return DeployResult(m, exp.onnx_path, rel, n_cal, "; ".join(x for x in (note, pnote) if x), nominal,
                        recalibrated)


def _why(exc: Exception, what: str) -> str:
    """What a failed refit after a stored measurement says: the error's message, or a write's disk error."""
    return exc.message if isinstance(exc, EdgenasError) else disk_error(exc, what).message


def measure_onnx(project: Project, device: Any, model: Path, *, runtime: str | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Check a model file (ONNX, or TorchScript with its input shapes for the torch runtime), then measure
    it on ``device`` (no prediction, no record)."""
    from edgenas.devices.profiles import DeviceProfile, load_profile
    from edgenas.devices.session import runtime_params

    profile = device if isinstance(device, DeviceProfile) else load_profile(project, device)
    rt = runtime_params(profile, runtime)["runtime"]  # an unknown runtime or a file of the other format is
    check_model_suffix(rt, Path(model))                # refused before the device is touched, and so is a
    check_model_file(Path(model), rt)                  # model the device could not feed or load
    with open_session(project, profile) as s:
        have = s.info(rt).available_runtimes()
        if rt not in have:  # asked for by name: no fallback, and nothing pushed to the device
            raise RuntimeMissingError(s.device, f"runtime '{rt}' is not available; the device has: "
                                                f"{', '.join(have) or 'none'}", hint="pass --runtime with one it has")
        out = measure_model(s, Path(model), runtime=rt, progress=progress, reference=reference_model(project, rt))
        return {"device": s.device, "model_path": str(model), **out.to_dict()}


#: the most input elements (all inputs together, dynamic sizes counted as 1, as the agent draws them) a model
#: may ask the device to draw and hold for one inference: 2^28, 1 GiB as float32, the agent's own cap per input
#: of the torch runtime (``torch_rt._MAX_ELEMENTS``). An edge model takes an image or a few: a 4K RGB frame is
#: 25M elements, a batch of eight of them 200M. More is a mistyped size, which the device would only fail to
#: allocate (a Jetson Orin Nano has 8 GiB for CPU and GPU together) after the model was pushed to it.
MAX_INPUT_ELEMENTS = 1 << 28
#: the input types the agent can draw (``onnxruntime_rt._DTYPES``): floats from a seeded generator, the others 0
_FEEDABLE = ("FLOAT", "FLOAT16", "DOUBLE", "INT64", "INT32", "INT8", "UINT8", "BOOL")
#: the operator domains onnxruntime runs: standard ONNX, ONNX-ML and its own contrib ops (TensorRT may load
#: other domains' operators as plugins, so the check is onnxruntime's alone)
_ORT_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
#: how to put external weights back inside an ONNX file
_RESAVE = "python -c \"import onnx; onnx.save_model(onnx.load('{model}'), '{out}')\""


def check_model_file(model: Path, runtime: str = "onnxruntime") -> None:
    """An ONNX file must pass ``onnx.checker`` and be one the device can load and feed for ``runtime`` (see
    ``check_onnx_for_device``); a ``.pt`` file must be TorchScript that holds its input shapes (as ``edgenas
    export --format torchscript`` and the deploy exports write it), shapes the agent can draw."""
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
        check_input_shapes(meta["input_shapes"], model)
        return
    check_onnx_for_device(model, runtime)
    try:
        load_checked(model)
    except ExportCheckError as exc:
        raise InputError(str(exc)) from None


def check_input_shapes(shapes: Any, model: Path) -> None:
    """TorchScript input shapes as the agent takes them (a list of 1-64 shapes, each 1-8 positive whole
    numbers), together within ``MAX_INPUT_ELEMENTS``."""
    why = _bad_shapes(shapes)
    if why:
        import json

        shown = json.dumps(shapes)
        shown = shown if len(shown) <= 80 else shown[:80] + "…"
        raise InputError(f"{model.name} stores input_shapes {shown}: {why}",
                         hint="re-export it with: edgenas export ARCH.json --format torchscript, which stores "
                              "shapes such as [[1, 3, 224, 224]]")


def _bad_shapes(shapes: Any) -> str:
    """Why ``shapes`` cannot be drawn ("" when they can)."""
    if not isinstance(shapes, list) or not 1 <= len(shapes) <= 64:
        return "expected a list of 1 to 64 shapes"
    total = 0
    for shape in shapes:
        if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
            return "each shape must be a list of 1 to 8 sizes"
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
            return "each size must be a whole number of at least 1"
        total += math.prod(shape)
    if total > MAX_INPUT_ELEMENTS:
        return f"{_count_text(total)} input elements, over the limit of {MAX_INPUT_ELEMENTS:,} (1 GiB as float32)"
    return ""


def _count_text(n: int) -> str:
    """``n`` elements in 3 significant digits (1e+13); a count no float holds (sizes are whole numbers of any
    length) as the power of ten it reaches, where ``:.3g`` raised OverflowError."""
    return f"{n:.3g}" if n < 10 ** 308 else f"at least 1e+{math.floor(math.log10(n))}"


def check_onnx_for_device(model: Path, runtime: str = "onnxruntime") -> None:
    """Refuse on the host an ONNX file the device could only fail on after it was pushed: weights in external
    data files (only the .onnx file is sent), inputs the agent cannot draw (not a tensor, a type it does not
    feed, a size of 0, more than ``MAX_INPUT_ELEMENTS`` in all) and, for onnxruntime, operators of a custom
    domain. A file that does not even parse is left to ``load_checked``, whose error says so."""
    import onnx

    if not model.is_file():  # missing, a folder, a FIFO (read, it would block): load_checked names it
        return
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable: load_checked names the reason
        return
    _refuse_external_data(proto, model)
    _check_inputs(proto, model)
    if runtime == "onnxruntime":
        _check_domains(proto, model)


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph in it (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _refuse_external_data(proto: Any, model: Path) -> None:
    """The transport pushes one file, named by its SHA-256, and the agent loads it by that name: external data
    (found next to the model by its relative name) would be missing there, and the hash would not cover the
    weights, so two models with other weights would share a cache entry. Refused, with the one-line fix: an
    edge model's weights fit inside the .onnx file (protobuf's limit is 2 GiB)."""
    from onnx import TensorProto

    for graph in _graphs(proto.graph):
        tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
        for t in tensors:
            if t.data_location == TensorProto.EXTERNAL:
                where = next((e.value for e in t.external_data if e.key == "location"), "?")
                inline = model.with_name(f"{model.stem}-inline.onnx")
                raise InputError(f"{model.name} keeps weights in an external data file ({where[:80]}); only the "
                                 f".onnx file is sent to the device",
                                 hint="save it with the weights inside: " + _RESAVE.format(model=model, out=inline))


def _check_inputs(proto: Any, model: Path) -> None:
    """Every input the agent must draw is a tensor of a type it feeds, with no size 0, and all of them together
    hold at most ``MAX_INPUT_ELEMENTS`` (dynamic sizes are drawn as 1)."""
    from onnx import TensorProto

    fed = {t.name for t in proto.graph.initializer}
    total, biggest = 0, ("", 0, [])
    for inp in proto.graph.input:
        if inp.name in fed:
            continue
        name = inp.name[:60]
        if not inp.type.HasField("tensor_type"):
            raise InputError(f"{model.name}: input '{name}' is a {inp.type.WhichOneof('value') or 'value'} "
                             f"of no tensor type; the device feeds tensors only",
                             hint="measure a model whose inputs are tensors")
        tt = inp.type.tensor_type
        kind = TensorProto.DataType.Name(tt.elem_type) if tt.elem_type in TensorProto.DataType.values() else "?"
        if kind not in _FEEDABLE:
            raise InputError(f"{model.name}: input '{name}' has type {kind}, which the device cannot feed",
                             hint=f"give the model inputs of type {', '.join(_FEEDABLE).lower()}; cast inside "
                                  f"the model")
        sizes = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        if 0 in sizes:
            raise InputError(f"{model.name}: input '{name}' has a size 0 (shape {_shape_text(sizes)}), so it holds "
                             f"no data", hint="give that dimension a size, or a name for a dynamic size, drawn as 1")
        size = math.prod(max(d, 1) for d in sizes)
        total += size
        biggest = max(biggest, (name, size, sizes), key=lambda b: b[1])
    if total > MAX_INPUT_ELEMENTS:
        raise InputError(f"{model.name}: its inputs hold {_count_text(total)} elements per inference (input "
                         f"'{biggest[0]}' has shape {_shape_text(biggest[2])}), over the limit of "
                         f"{MAX_INPUT_ELEMENTS:,} (1 GiB as float32)",
                         hint="check the input sizes: an edge model takes an image or a few; dynamic sizes, given "
                              "as names, are drawn as 1")


def _shape_text(sizes: list[int]) -> str:
    text = "[" + ", ".join("?" if d < 0 else str(d) for d in sizes) + "]"
    return text if len(text) <= 80 else text[:80] + "…]"


def _check_domains(proto: Any, model: Path) -> None:
    """onnxruntime on the device loads no custom-op library: an operator outside its domains (and not a
    function the model defines itself) could only fail there."""
    local = {(f.domain, f.name) for f in proto.functions}
    for graph in _graphs(proto.graph):
        for node in graph.node:
            if node.domain not in _ORT_DOMAINS and (node.domain, node.op_type) not in local:
                raise InputError(f"{model.name} uses operator {node.op_type[:60]} of the custom domain "
                                 f"'{node.domain[:60]}', which onnxruntime cannot run",
                                 hint="export the model with standard ONNX operators only")
