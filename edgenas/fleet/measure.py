"""What the device jobs share to measure: protocols, block export, the speed reference and overhead
models, timing one model on an open session, the nominal-speed conversion, and the host's and the
device's copies of a LUT.

``profiler`` (build a LUT), ``deploy`` (measure a winner), ``calibrate`` (fit the LUT to whole-model
measurements) and ``refresh`` (re-time sentinels) stand side by side on this module instead of
borrowing from each other.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from edgenas.devices.answers import BenchAnswer, engine_answer
from edgenas.devices.session import Session
from edgenas.errors import BadAnswerError, InputError
from edgenas.fleet.engine import timing_cache_path
from edgenas.io import atomic_write_bytes, sha256_file
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore, lut_filename
from edgenas.limits import is_whole, open_regular
from edgenas.project import Project
from edgenas.spaces.base import SearchSpace

Progress = Callable[[str, int, int], None]

#: the LUT protocol the agent applies to the blocks (see device_agents/PROTOCOL.md)
#: Issue 17, part 3: blocks are timed in ``sessions`` sweeps, a fresh runtime session per block per
#: sweep: a session's speed for a block is fixed when it is created and differs between sessions by a
#: few percent on these blocks (up to 20-50% for single blocks), so one long session (Once-for-All's 500
#: runs) measures the session, not the block. Each session: a warm-up of 10 runs and 1 ms, then at
#: least 30 single runs and 3 ms (within a session 100-run windows agree to 0.3%, sessions differ
#: by 0.8-1.6%, so runs beyond that buy little; with 50, three sessions and the extra budget cost more
#: than a third of fixed-500 on blocks over about 0.2 ms, most of ofa-mbv3's on a slow VM); the speed
#: reference in a fresh session of its own before each sweep. After the third sweep each block stops
#: on its own once it has 90 samples and the distribution-free 95% CI of its pooled median (samples
#: and reference ratios) is within 2% (or CoV <= 5%); otherwise it gets
#: another session, until its own time reaches the ``max_s`` cap (``stable: false``), within a
#: budget: a batch's extra sweeps take at most ``extra_share`` (15%) of the time of its first three
#: (on a VM whose long-reference passes disagreed by 6-35%, unbudgeted extra sessions made the
#: protocol only 1.3-2.7x faster than fixed-500). Figures: bench/lut_protocol.py, bench/RESULTS.md.
LUT_PROTOCOL: dict[str, Any] = {
    "warmup_min_n": 10, "warmup_min_s": 0.001, "sample_target_ms": 0.0, "min_n": 90, "min_s": 0.0,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 0.1, "sessions": 3, "session_min_n": 30, "session_min_s": 0.003,
    "extra_share": 0.15,
}
#: runs per sample where a runtime's calls overlap on the device (torch on CUDA, TensorRT): a block timed
#: one call at a time includes the wait for its last kernel and the timing events, which a block inside a
#: network does not pay (the next block's launches overlap it); in runs of 10 that wait is a tenth per run.
#: The LUT's ``sync`` entry (the trivial model timed one call at a time) adds it back once per inference.
OVERLAP_RUNS_PER_SAMPLE = 10
#: the LUT protocol for those runtimes: the same sweeps, with fewer samples of 10 runs each (30 samples
#: pooled over at least 3 sessions: 300 runs a block, against 90 single runs), a warm-up of 100 calls per
#: session (a fresh TorchScript session on CUDA ran its first 5 calls a median 1.35x slower, some up to
#: call 100). On an H200 (mbv3-small, TorchScript, bench/RESULTS.md) the single-call protocol's LUT sum
#: was 1.32x the measured models (two more builds, scored in another table's nominal units, 1.73x and
#: 2.31x); this one's (with a 0.15 s cap) 1.06x, within ±10% for 4 of 6, and 0.87-0.94x since. The cap is 0.5 s: a session is 200 runs, so at 0.15 s blocks over about 0.25 ms (a
#: Jetson's TensorRT blocks) lost their later sessions; the extra sweeps stay bounded by ``extra_share``.
LUT_PROTOCOL_OVERLAPPING: dict[str, Any] = dict(
    LUT_PROTOCOL, runs_per_sample=OVERLAP_RUNS_PER_SAMPLE, warmup_min_n=100, min_n=30, session_min_n=10, max_s=0.5)


def lut_protocol_for(params: Mapping[str, Any]) -> dict[str, Any]:
    """The LUT protocol for a call's runtime settings (``session.runtime_params``): in runs of
    ``OVERLAP_RUNS_PER_SAMPLE`` where the runtime's calls overlap on the device, else ``LUT_PROTOCOL``."""
    from edgenas.devices.runtimes import calls_overlap

    overlap = calls_overlap(str(params.get("runtime")), params.get("provider"))
    return dict(LUT_PROTOCOL_OVERLAPPING if overlap else LUT_PROTOCOL)


#: the most runs per sample the agent accepts (its ``measure.K_MAX``)
MAX_RUNS_PER_SAMPLE = 100000


def runs_per_sample(protocol: Mapping[str, Any]) -> int:
    """A protocol's ``runs_per_sample`` (1 when absent or not a whole number in 1..``MAX_RUNS_PER_SAMPLE``,
    as a LUT file may say anything)."""
    value = protocol.get("runs_per_sample", 1)
    return int(value) if is_whole(value) and 1 <= value <= MAX_RUNS_PER_SAMPLE else 1


#: the interleaved protocol of issue 17's second pass (one session per block, 24 open at once, timed
#: round-robin in turns of 3 re-warming runs and 20 samples); kept for the bench
LUT_PROTOCOL_INTERLEAVED: dict[str, Any] = {
    "warmup_min_n": 10, "warmup_min_s": 0.002, "sample_target_ms": 0.0, "min_n": 100, "min_s": 0.0,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 0.05, "interleave": 24, "burst": 20, "burst_warmup_n": 3,
}
#: the first issue-17 protocol: one block after the other, one session each (kept for the bench)
LUT_PROTOCOL_SEQUENTIAL: dict[str, Any] = {
    "warmup_min_n": 20, "warmup_min_s": 0.003, "sample_target_ms": 0.0, "min_n": 150, "min_s": 0.003,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 0.4, "ref_every": 10,
}
#: the adaptive protocol before issue 17; its warm-up (10 runs, 50 ms) is the one the fixed-500 baseline
#: uses
LUT_PROTOCOL_BEFORE: dict[str, Any] = {
    "warmup_min_n": 10, "warmup_min_s": 0.05, "sample_target_ms": 1.0, "min_n": 15, "min_s": 0.1,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 1.5,
}
#: Once-for-All's fixed 500 repetitions after that warm-up: the baseline of bench/lut_protocol.py and
#: bench/profile_transport.py (issue 17 measured it at 21.4 s on mbv3-small), defined once so that the
#: two cannot drift apart
LUT_PROTOCOL_FIXED_500: dict[str, Any] = dict(LUT_PROTOCOL_BEFORE, fixed_n=500)

#: whole-model protocol for winners: longer windows than LUT entries
WINNER_PROTOCOL: dict[str, Any] = {
    "warmup_min_n": 20, "warmup_min_s": 0.3, "sample_target_ms": 1.0, "min_n": 30, "min_s": 0.4,
    "max_cov": 0.05, "max_ci_rel": 0.01, "max_s": 4.0, "windows": 5,
}


def model_suffix(runtime: str) -> str:
    """The file a runtime times: TorchScript for ``torch``, else ONNX (TensorRT builds its engine on the
    device from the ONNX file)."""
    return ".pt" if runtime == "torch" else ".onnx"


def block_model_path(project: Project, space: SearchSpace, key: str, runtime: str = "onnxruntime") -> Path:
    digest = hashlib.sha256(f"{space.name}\n{key}".encode()).hexdigest()[:24]
    return project.block_cache / space.name / f"{digest}{model_suffix(runtime)}"


#: ``torch.onnx.export`` keeps global state and is not thread-safe: exports in one process are serialised
#: (``fleet refresh`` also exports every block before its parallel phase, see ``refresh.prepare_blocks``)
_EXPORT_LOCK = threading.Lock()


def export_blocks(project: Project, space: SearchSpace, keys: list[str],
                  progress: Progress | None = None, runtime: str = "onnxruntime") -> tuple[dict[str, Path], int]:
    """Export each key once for ``runtime`` (ONNX, or TorchScript for torch; cached on disk by key);
    returns key -> path and how many were new."""
    from exporters.onnx_export import export_onnx
    from exporters.torchscript_export import export_torchscript

    write = export_torchscript if runtime == "torch" else export_onnx
    paths, new = {}, 0
    for i, key in enumerate(keys):
        path = block_model_path(project, space, key, runtime)
        if not path.exists():
            with _EXPORT_LOCK:
                if not path.exists():
                    write(space.build_block(key).eval(), tuple(space.block_input_shape(key)), path)
                    new += 1
        paths[key] = path
        if progress:
            progress("export blocks", i + 1, len(keys))
    return paths, new


def overhead_model(project: Project, runtime: str = "onnxruntime") -> Path:
    """A trivial model (one Relu on 8 floats) that times the runtime's per-call overhead."""
    from onnx import TensorProto, helper

    path = project.block_cache / f"overhead-relu8{model_suffix(runtime)}"
    if path.exists():
        return path
    if runtime == "torch":
        import torch
        from exporters.torchscript_export import export_torchscript

        export_torchscript(torch.nn.ReLU(), (1, 8), path)
        return path
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "overhead", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    atomic_write_bytes(path, model.SerializeToString())
    return path


REFERENCE_DESCRIPTION = "Conv 3x3 16->16 on 1x16x16x16 + Relu (fixed weights)"


def reference_model(project: Project, runtime: str = "onnxruntime") -> Path:
    """The speed reference timed in alternation with every measurement (deterministic weights; the ONNX
    file's bytes are deterministic too), as the file ``runtime`` times.

    A small convolution comparable to one block: ratios to it are immune to the speed drift of the
    machine (turbo, throttling, noisy neighbours), see ``device_agents/edgenas_agent/measure.py``.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    path = project.block_cache / f"reference-conv16{model_suffix(runtime)}"
    if path.exists():
        return path
    w = np.random.default_rng(12345).standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1
    if runtime == "torch":
        import torch
        from exporters.torchscript_export import export_torchscript

        conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
        export_torchscript(torch.nn.Sequential(conv, torch.nn.ReLU()), (1, 16, 16, 16), path)
        return path
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 16, 16])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16, 16, 16])
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["output"])]
    graph = helper.make_graph(nodes, "reference", [x], [y], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    atomic_write_bytes(path, model.SerializeToString())
    return path


def model_file(runtime: str, space: SearchSpace, arch: Any, exp: Any) -> Path:
    """The file ``runtime`` times for an export (``edgenas.export.ExportResult``) of ``arch``: its ONNX
    file, or for torch the TorchScript file traced beside it."""
    if runtime != "torch":
        return exp.onnx_path
    from edgenas.export import torchscript_beside

    return torchscript_beside(space, arch, exp)


def nominal_reference(results: list[dict[str, Any]], path: Path) -> dict[str, Any] | None:
    """The LUT's reference record: the reference's median time over the whole profile."""
    times = [float(r["ref_ms"]) for r in results if r.get("ref_ms") and r.get("ratio")]
    if len(times) < len(results):
        return None
    return {"sha256": sha256_file(path), "ms": statistics.median(times), "model": REFERENCE_DESCRIPTION}


def nominal_ms(stats: dict[str, Any], lut: Any, reference_sha: str) -> float | None:
    """A measurement at the device's nominal speed: its reference ratio x the LUT's reference time.

    None unless the LUT was timed against the same reference model (by SHA-256)."""
    if lut is None or not lut.normalised or lut.reference.get("sha256") != reference_sha or not stats.get("ratio"):
        return None
    return float(stats["ratio"]) * float(lut.reference["ms"])


def bench_many_results(device: str, out: Any, batch: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """A ``bench_many`` answer checked: the STATS of the batch's keys (each checked, unknown fields and
    keys that were not asked for dropped) and how many of them the agent reused from an earlier run.
    A key the agent did not answer is absent: the caller decides whether that is an error."""
    results = out.get("results") if isinstance(out, dict) else None
    reused = out.get("reused", []) if isinstance(out, dict) else None
    if not isinstance(results, dict) or not isinstance(reused, list):
        raise BadAnswerError(device, "the agent's bench_many answer is malformed (no 'results' object or no "
                                     "'reused' list)",
                             hint="reinstall the agent (it is replaced when its hash differs)")
    got: dict[str, dict[str, Any]] = {}
    for key in batch:
        if key in results:
            try:
                got[key] = EntryStats.check(results[key], f"entry {key}")
            except InputError as exc:
                raise BadAnswerError(device, f"the agent sent bad statistics for {exc.message}",
                                     hint="re-run the profile; if it persists, reinstall the agent") from None
    return got, sum(1 for key in set(batch) if key in reused and key in got)


def measurement_stats(stats: dict[str, Any], lut: Any, reference_sha: str) -> tuple[dict[str, Any], float | None]:
    """The STATS a ``Measurement`` stores: the agent's, plus ``nominal_ms`` where the LUT allows it, and with a
    ratio the SHA-256 of the reference it was timed against (``ref_sha256``). A measurement taken before the
    device had a table (``device add --fewshot``, a first ``deploy``) has no ``nominal_ms``; the reference's hash
    lets a later table's calibration count it at nominal speed all the same (``calibrate.nominal_now``)."""
    nominal = nominal_ms(stats, lut, reference_sha)
    out = {k: v for k, v in stats.items() if k != "ref_sha256"}  # the host's word on what it timed, not the agent's
    if out.get("ratio"):
        out["ref_sha256"] = reference_sha
    if nominal is not None:
        out["nominal_ms"] = nominal
    return out, nominal


def check_model_suffix(runtime: str, path: Path) -> None:
    """Refuse a file whose suffix is not the one ``runtime`` times (``.pt`` for torch, ``.onnx`` for the others),
    with a hint that fits the file: another runtime for the other format, a rename for an odd suffix."""
    want = model_suffix(runtime)
    if path.exists() and not path.is_file():  # a rename would not make a folder or /dev/zero a model
        raise InputError(f"{path} is {'a folder' if path.is_dir() else 'not a regular file'}, not a model file",
                         hint=f"give the path of a {want} file")
    if path.suffix != want:
        raise InputError(f"runtime {runtime} times {'TorchScript' if want == '.pt' else 'ONNX'} ({want}) files, "
                         f"not {path.name}", hint=_suffix_hint(runtime, path))


#: the first bytes of a TorchScript file (a zip archive)
_ZIP_MAGIC = b"PK\x03\x04"


def _suffix_hint(runtime: str, path: Path) -> str:
    """What to do with a file of the wrong suffix: the other format's runtime, or the suffix its content calls
    for (a TorchScript archive starts like a zip file; anything else may be ONNX)."""
    if path.suffix == ".pt":
        return "measure TorchScript files with --runtime torch"
    if path.suffix == ".onnx":
        return ("measure ONNX files with --runtime onnxruntime, or export TorchScript with: edgenas export "
                "ARCH.json --format torchscript")
    try:  # a regular file only: a FIFO named model.bin must not hang the hint
        with open_regular(path, "model") as fh:
            zipped = fh.read(4) == _ZIP_MAGIC
    except (OSError, InputError):
        zipped = False
    if zipped:
        return f"it looks like TorchScript: rename it to {path.stem}.pt" + (
            "" if runtime == "torch" else " and measure it with --runtime torch")
    if runtime == "torch":
        return f"if it is a TorchScript file, rename it to {path.stem}.pt"
    return f"if it is an ONNX model, rename it to {path.stem}.onnx"


def measure_model(session: Session, model_path: Path, *, runtime: str | None = None,
                  protocol: dict[str, Any] | None = None, progress: Progress | None = None,
                  reference: Path | None = None) -> BenchAnswer:
    """Push and time one model file on an open session (ONNX, or TorchScript for the torch runtime: see
    ``model_file``); builds a TensorRT engine when asked.

    With ``reference`` (``reference_model`` for the same runtime; not for TensorRT) it is timed in
    alternation, so the stats also carry the model's ratio to it."""
    params = session.runtime_params(runtime)
    for path in (model_path, reference):
        if path is not None:
            check_model_suffix(params["runtime"], Path(path))
    remote = session.push(model_path)
    if reference is not None and params["runtime"] != "tensorrt":
        params["reference"] = session.push(reference)
    model = remote
    if params["runtime"] == "tensorrt":
        built = engine_answer(session.device, session.call("build_engine", {
            "model": remote, "precision": params["precision"], "timing_cache": timing_cache_path(session)}))
        model = built["engine"]
    if progress:
        progress(f"measure on {session.device}", 0, 1)
    out = session.call("bench", dict(params, model=model, protocol=dict(WINNER_PROTOCOL, **(protocol or {})),
                                     winner=True))
    if progress:
        progress(f"measure on {session.device}", 1, 1)
    return BenchAnswer.from_answer(session.device, out)


def keep_on_device(session: Session, path: Path, lut: Lut) -> None:
    """Hand the agent a copy of the host's table (hash-checked upload, then an atomic ``lut.put``)."""
    name = lut_filename(lut.space, lut.fingerprint_hash)
    sha = session.transport.put_file(path, f"cache/{name}.upload")
    session.call("lut.put", {"name": name, "path": f"cache/{name}.upload", "sha256": sha})


def send_to_device(project: Project, session: Session, lut: Lut) -> None:
    """``keep_on_device`` for a table not yet on the host: written to a temporary file of the project's state
    folder (the bytes the host's copy will have), uploaded, removed."""
    import tempfile

    state = Path(project.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lut-upload-", suffix=".json", dir=state)
    os.close(fd)
    try:
        keep_on_device(session, lut.save(tmp), lut)
    finally:
        Path(tmp).unlink(missing_ok=True)


def device_has(session: Session, path: Path, lut: Lut) -> bool:
    """Whether the device's copy of the table is the host's file ``path``, byte for byte."""
    stat = session.call("file.stat", {"path": f"luts/{lut_filename(lut.space, lut.fingerprint_hash)}"},
                        timeout_s=session.quick_timeout_s)
    return isinstance(stat, dict) and stat.get("exists") is True and stat.get("sha256") == sha256_file(path)


def current_lut(project: Project, device: str, space_name: str, fingerprint_hash: str | None = None, *,
                remember: bool = True, fingerprint: Mapping[str, Any] | None = None) -> Lut:
    """The host's LUT for (device, space): the one matching ``fingerprint_hash`` when given, which is
    remembered as the device's last known fingerprint unless ``remember`` is false (a measurement with
    another runtime than the profile's: the device did not change, the settings did). The current
    ``fingerprint`` lets a missing table's error say what changed."""
    store = LutStore(project.luts_dir)
    if fingerprint_hash and remember:
        store.remember_fingerprint(device, fingerprint_hash)
    # the one policy (latency/store.py)
    return store.choose(device, space_name, fingerprint_hash or None, fingerprint).lut


def current_lut_or_none(project: Project, device: str, space: SearchSpace, fingerprint_hash: str, *,
                        remember: bool = True, fingerprint: Mapping[str, Any] | None = None
                        ) -> tuple[Lut | None, str]:
    """(the device's LUT for its current fingerprint or None, a note saying why there is none)."""
    try:
        return current_lut(project, device, space.name, fingerprint_hash, remember=remember,
                           fingerprint=fingerprint), ""
    except InputError as exc:
        return None, f"no prediction: {exc}"


def predict_for(lut: Lut | None, space: SearchSpace, arch: Any) -> tuple[float | None, float | None, int]:
    """(calibrated, raw, calibration points) from ``lut``; Nones when there is no LUT."""
    from edgenas.latency.predictor import LatencyPredictor

    if lut is None:
        return None, None, 0
    pred = LatencyPredictor(lut, space)
    raw = float(pred.predict_raw_many([arch])[0])
    return float(pred.predict_many([arch])[0]), raw, int(pred.calibration_points)
