"""The GPU paths end to end on a machine with an NVIDIA GPU: profile, deploy and calibrate per runtime.

For each device profile (all ``transport = "local"``, so the agent runs as a subprocess of this machine):
``cpu-ort`` (ONNX Runtime on the CPU: the default ``local`` device, the baseline), ``cpu-torch``,
``gpu-torch`` (TorchScript on CUDA, fp32), ``gpu-torch-fp16`` and ``gpu-ort`` (ONNX Runtime's CUDA
provider): build the LUT of the space (time and entries), deploy ``--n`` seeded random architectures
(whole-model winner protocol), and compare the LUT-sum prediction with the measurement (share within
±10%, Spearman), raw and after ``lut calibrate`` on those measurements (in-sample: the calibration is
fitted on the same architectures). A runtime the machine lacks is reported with the device's one-line
error. Also: the environment (GPU, driver, torch, ONNX Runtime providers, TensorRT), and zero-cost
proxy scores on ``cuda`` vs ``cpu`` (agreement and time).

    python bench/gpu_runtimes.py --space mbv3-small --n 8 --seed 0 [--lut-protocol KEY=VALUE ...] [--out FILE]

``--compare-single``: for each device whose runtime's calls overlap on the device (torch on CUDA,
TensorRT), also build the table the way it was built before ``runs_per_sample`` (every sample one call,
no ``sync`` entry: the protocol override ``SINGLE_CALL``) under a twin profile ``<name>-single``, and
score its LUT sums on the same deployed measurements. ``--variant LABEL:KEY=VALUE,...`` (repeatable)
does the same for any protocol overrides, under ``<name>-LABEL`` (after the deployments, in order). Every
table also gets a leave-one-out calibrated figure: the log-linear calibration fitted on the other ``n - 1``
deployments, scored on the one left out, and the figures of its LUT sums from the entries' own medians
(``from_entry_medians``: without the speed reference's scaling) beside the reference's nominal time and
the median of its times during the entries (an entry's median over its ratio): where two builds' levels
differ, these say whether the blocks' timings or the reference's moved. ``--redeploy`` deploys the same
models once more after the twins and scores every table on that round too (``against_redeploy``): did the
machine's speed move, or the tables? A deployment is stored at the nominal speed of the table current then
(its ratio to the reference x that table's reference time), a twin's values at its own: ``in_own_units``
scores a twin on the deployments re-expressed in its units, as the product compares a rebuilt table.

Prints JSON (``--out`` rewrites the file after every device). On a machine without CUDA the GPU profiles
report the error and the CPU ones still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROFILES = {
    "cpu-ort": {"runtime": "onnxruntime"},
    "cpu-torch": {"runtime": "torch"},
    "gpu-torch": {"runtime": "torch", "provider": "cuda"},
    "gpu-torch-fp16": {"runtime": "torch", "provider": "cuda", "precision": "fp16"},
    "gpu-ort": {"runtime": "onnxruntime", "provider": "cuda"},
}


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {}
    try:
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        env["nvidia_smi"] = f"unavailable: {exc}"
    import torch

    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    env["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    import onnxruntime as ort

    env["onnxruntime"] = ort.__version__
    env["onnxruntime_providers"] = ort.get_available_providers()
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except Exception as exc:  # noqa: BLE001 - report whatever stops it
        env["tensorrt"] = f"unavailable: {type(exc).__name__}: {exc}"
    return env


def write_profiles(root: Path, threads: int, labels: list[str]) -> None:
    from edgenas.devices.runtimes import calls_overlap, provider_for

    (root / "profiles").mkdir(parents=True, exist_ok=True)
    twins = {f"{n}-{label}": s for n, s in PROFILES.items()
             if calls_overlap(s["runtime"], provider_for(s["runtime"], s.get("provider"))) for label in labels}
    for name, settings in dict(PROFILES, **twins).items():
        lines = ["[device]", f'name = "{name}"', 'transport = "local"', f"threads = {threads}"]
        lines += [f'{k} = "{v}"' for k, v in settings.items()]
        (root / "profiles" / f"{name}.toml").write_text("\n".join(lines) + "\n")


#: the LUT protocol of overlapping runtimes before ``runs_per_sample`` (``fleet.measure.LUT_PROTOCOL``,
#: one call per sample): the baseline of ``--compare-single``, as overrides of ``LUT_PROTOCOL_OVERLAPPING``
SINGLE_CALL = {"runs_per_sample": 1, "warmup_min_n": 10, "min_n": 90, "session_min_n": 30, "max_s": 0.1}


def loo_within10(pred: np.ndarray, measured: np.ndarray) -> float:
    """Share within ±10% of the log-linear calibration fitted on the other points (leave one out)."""
    from edgenas.latency.calibration import apply_calibration, fit_calibration

    hits = []
    for i in range(len(pred)):
        keep = np.arange(len(pred)) != i
        cal = fit_calibration(pred[keep], measured[keep])
        hits.append(abs(float(apply_calibration(cal, pred[i:i + 1])[0]) / measured[i] - 1) <= 0.10)
    return float(np.mean(hits))


def table_figures(lut: Any, space: Any, archs: list[Any], measured: np.ndarray,
                  again: np.ndarray | None = None, basis_ms: float | None = None) -> dict[str, Any]:
    """A table's LUT sums on the deployed architectures against their measurements (and, given ``again``,
    against the same architectures deployed once more at the end).

    A deployment's ``nominal_ms`` is its ratio to the speed reference x the nominal reference time of the
    table current at the deploy (``basis_ms``), and a table's values are ratios x its own nominal time: a
    twin built later has its own. ``in_own_units`` re-expresses the measurements in the twin's units, as
    the product does for a rebuilt table (``fleet.calibrate.nominal_now``)."""
    from scipy.stats import spearmanr

    from edgenas.fleet.measure import runs_per_sample
    from edgenas.latency.predictor import LatencyPredictor

    p = LatencyPredictor(lut.with_calibration(None), space).predict_many(archs)
    # the same table without the speed reference's scaling (each entry's own median): where two builds'
    # levels differ, this says whether the blocks' timings or the reference's moved
    raw = LatencyPredictor(replace(lut.with_calibration(None), reference=None), space).predict_many(archs)
    # the reference's time during each entry, as its ratio implies (median / ratio)
    ref_ms = [e.median_ms / e.ratio for e in lut.entries.values() if e.ratio]
    extra: dict[str, Any] = {}
    if basis_ms and lut.reference:
        own = float(lut.reference["ms"]) / basis_ms
        extra["in_own_units"] = {"measured_scale": own, "median_ratio_lut_sum_to_measured":
                                 float(np.median(p / (own * measured))), "within10_raw": within10(p, own * measured)}
        if again is not None:
            extra["in_own_units"]["against_redeploy"] = {
                "median_ratio_lut_sum_to_measured": float(np.median(p / (own * again))),
                "within10_raw": within10(p, own * again)}
    if again is not None:
        extra["against_redeploy"] = {
            "median_ratio_lut_sum_to_measured": float(np.median(p / again)), "within10_raw": within10(p, again),
            "from_entry_medians": {"median_ratio_lut_sum_to_measured": float(np.median(raw / again)),
                                   "within10_raw": within10(raw, again)}}
    return extra | {"runs_per_sample": runs_per_sample(lut.protocol), "overhead_ms": lut.overhead_ms,
            "reference_nominal_ms": lut.reference["ms"] if lut.reference else None,
            "reference_entry_median_ms": float(np.median(ref_ms)) if ref_ms else None,
            "entry_median_ms": float(np.median([e.median_ms for e in lut.entries.values()])),
            "from_entry_medians": {"median_ratio_lut_sum_to_measured": float(np.median(raw / measured)),
                                   "within10_raw": within10(raw, measured),
                                   "spearman": float(spearmanr(raw, measured)[0])},
            "sync_extra_ms": lut.sync_extra_ms, "unstable": len(lut.unstable_keys),
            "block_median_ms": float(np.median([lut.value_ms(e) for e in lut.entries.values()])),
            "lut_sum_ms": [round(float(x), 4) for x in p], "within10_raw": within10(p, measured),
            "spearman": float(spearmanr(p, measured)[0]),
            "median_ratio_lut_sum_to_measured": float(np.median(p / measured)),
            "within10_calibrated_leave_one_out": loo_within10(p, measured)}


def within10(pred: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - measured) / measured <= 0.10))


def run_device(proj: Any, name: str, space: Any, archs: list[Any],
               protocol: dict[str, Any] | None = None, variants: dict[str, dict[str, Any]] | None = None,
               redeploy: bool = False) -> dict[str, Any]:
    from scipy.stats import spearmanr

    from edgenas.errors import EdgenasError
    from edgenas.fleet.calibrate import calibrate_device
    from edgenas.fleet.deploy import deploy
    from edgenas.fleet.profiler import profile_device
    from edgenas.latency.lut import Lut

    out: dict[str, Any] = {"profile": PROFILES[name]}
    try:
        t0 = time.perf_counter()
        prof = profile_device(proj, name, space.name, protocol=protocol)
        out["lut_build_s"] = round(time.perf_counter() - t0, 2)
        lut = Lut.load(prof.lut_path)
        out["lut"] = {"entries": prof.n_entries, "unstable": prof.unstable, "overhead_ms": lut.overhead_ms,
                      "settings": lut.fingerprint.get("settings"),
                      "block_median_ms": float(np.median([e.median_ms for e in lut.entries.values()]))}
        measured, measured_raw, predicted, cold = [], [], [], []
        t0 = time.perf_counter()
        for arch in archs:
            res = deploy(proj, name, space, arch, calibrate=False)  # calibrated below, on all of them
            stats = res.measurement.stats
            measured.append(float(stats.get("nominal_ms") or stats["median_ms"]))
            measured_raw.append(float(stats["median_ms"]))
            predicted.append(float(res.measurement.predicted_raw_ms))
            cold.append(float(res.measurement.cold_start.get("session_ms", float("nan"))))
        out["deploy_s"] = round(time.perf_counter() - t0, 2)
        m, p = np.array(measured), np.array(predicted)
        twins = {}
        for label, overrides in (variants or {}).items():
            twin = f"{name}-{label}"
            if not (proj.root / "profiles" / f"{twin}.toml").is_file():
                continue  # not a runtime whose calls overlap
            t0 = time.perf_counter()
            built = profile_device(proj, twin, space.name, protocol=dict(protocol or {}, **overrides))
            twins[label] = (Lut.load(built.lut_path), overrides, round(time.perf_counter() - t0, 2))
        again = None
        if redeploy:  # the same models once more, after the twins: did the machine or the tables move?
            stats2 = [deploy(proj, name, space, a, calibrate=False).measurement.stats for a in archs]
            again = np.array([float(s.get("nominal_ms") or s["median_ms"]) for s in stats2])
            out["measured_again_ms"] = [round(float(x), 4) for x in again]
            out["measured_again_raw_ms"] = [round(float(s["median_ms"]), 4) for s in stats2]
            out["median_ratio_again_to_first"] = float(np.median(again / m))
        basis = float(lut.reference["ms"]) if lut.reference else None  # the deployments' nominal units
        out["table"] = table_figures(lut, space, archs, m, again, basis)
        for label, (other, overrides, build_s) in twins.items():
            out[f"{label}_table"] = dict(table_figures(other, space, archs, m, again, basis), overrides=overrides,
                                         lut_build_s=build_s)
        cal = calibrate_device(proj, name, space.name)
        out.update({
            "measured_ms": [round(x, 4) for x in measured], "measured_raw_ms": [round(x, 4) for x in measured_raw],
            "lut_sum_ms": [round(x, 4) for x in predicted],
            "within10_raw": within10(p, m), "spearman": float(spearmanr(p, m)[0]),
            "median_ratio_lut_sum_to_measured": float(np.median(p / m)),
            "within10_calibrated_in_sample": cal.within10_calibrated, "calibration": cal.params,
            "cold_start_session_ms_median": float(np.median(cold)),
        })
    except EdgenasError as exc:
        out["error"] = str(exc).splitlines()[0][:300]
    return out


def proxies(space: Any, n: int, seed: int) -> dict[str, Any]:
    import torch

    from edgenas.evaluate.base import make_evaluator

    if not torch.cuda.is_available():
        return {"error": "no CUDA device"}
    torch.set_num_threads(4)
    archs = [space.sample(np.random.default_rng(seed + i)) for i in range(n)]
    out: dict[str, Any] = {}
    for proxy in ("synflow", "naswot"):
        row: dict[str, Any] = {}
        scores = {}
        for device in ("cpu", "cuda"):
            ev = make_evaluator(proxy, space, seed=seed, device=device)
            ev.evaluate(archs[:1])  # warm-up (CUDA context, cuDNN)
            t0 = time.perf_counter()
            scores[device] = np.array(ev.evaluate(archs), dtype=float)
            row[f"{device}_s"] = round(time.perf_counter() - t0, 3)
        rel = np.abs(scores["cuda"] - scores["cpu"]) / np.maximum(np.abs(scores["cpu"]), 1e-12)
        from scipy.stats import spearmanr

        row.update({"max_rel_diff": float(rel.max()), "spearman_cpu_cuda": float(spearmanr(scores["cpu"],
                                                                                              scores["cuda"])[0])})
        out[proxy] = row
    return out


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbv3-small")
    ap.add_argument("--n", type=int, default=8, help="architectures deployed per device")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every profile (local's default: 1)")
    ap.add_argument("--devices", nargs="*", default=list(PROFILES))
    ap.add_argument("--proxies", type=int, default=16, help="architectures scored per proxy on cpu and cuda")
    ap.add_argument("--lut-protocol", nargs="*", default=[], metavar="KEY=VALUE",
                    help="LUT protocol overrides (numbers), e.g. sample_target_ms=1.0 (k runs a sample)")
    ap.add_argument("--compare-single", action="store_true",
                    help="also build overlapping runtimes' tables one call per sample, as before (see above)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL:KEY=VALUE,...",
                    help="also build overlapping runtimes' tables with these protocol overrides (see above)")
    ap.add_argument("--redeploy", action="store_true",
                    help="deploy the same models again at the end and score every table on both rounds")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    protocol = {k: _number(v) for k, v in (kv.split("=", 1) for kv in args.lut_protocol)}
    variants = {"single": dict(SINGLE_CALL)} if args.compare_single else {}
    for spec in args.variant:
        label, _, pairs = spec.partition(":")
        variants[label] = {k: _number(v) for k, v in (kv.split("=", 1) for kv in pairs.split(",") if kv)}

    from edgenas.project import Project
    from edgenas.spaces import get_space

    t_all = time.perf_counter()
    result: dict[str, Any] = {"bench": "gpu_runtimes", "space": args.space, "n": args.n, "seed": args.seed,
                              "threads": args.threads, "lut_protocol": protocol, "variants": variants,
                              "environment": environment(), "devices": {}}
    root = Path(tempfile.mkdtemp(prefix="edgenas-gpu-"))
    write_profiles(root, args.threads, list(variants))
    proj = Project(root)
    space = get_space(args.space)
    archs = [space.sample(np.random.default_rng(args.seed * 1000 + i)) for i in range(args.n)]
    for name in args.devices:
        result["devices"][name] = run_device(proj, name, space, archs, protocol or None, variants,
                                             args.redeploy)
        print(json.dumps({name: result["devices"][name]}), file=sys.stderr, flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.proxies:
        result["proxies_cpu_vs_cuda"] = proxies(space, args.proxies, args.seed)
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
