"""Predicted vs measured latency on the `local` device, end to end.

Profiles `local` for the space (or reuses the LUT), then exports N random architectures (seeded),
measures each whole model with the winner protocol and compares with the LUT prediction:

* ``within10_raw``: share of architectures whose raw LUT-sum prediction is within ±10% of measured;
* ``within10_cal_k``: the same after calibrating on k measured architectures (the first k of a seeded
  permutation), judged on the other N - k (the baseline in the same run is the raw LUT sum).

    python bench/e2e_local.py --space mbv3-small --n 100 --k 10 20 --seed 0 [--project DIR]

Prints JSON. nn-Meter's published figure for a mobile CPU is 99.0% within ±10%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbv3-small")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--k", type=int, nargs="*", default=[10, 20])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--project", default=None, help="project folder (default: a temporary one)")
    ap.add_argument("--repeat", action="store_true",
                    help="measure every model a second time, after all first measurements, to report the "
                         "repeatability of the measurement itself (the ceiling for any predictor)")
    args = ap.parse_args()

    from edgenas.export import export_arch
    from edgenas.fleet.measure import measure_model, nominal_ms, reference_model
    from edgenas.fleet.profiler import profile_device
    from edgenas.io import sha256_file
    from edgenas.devices.session import open_session
    from edgenas.latency.calibration import apply_calibration, fit_calibration
    from edgenas.latency.lut import Lut
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.project import Project
    from edgenas.spaces import get_space

    root = Path(args.project or tempfile.mkdtemp(prefix="edgenas-e2e-"))
    proj = Project(root)
    space = get_space(args.space)
    t0 = time.perf_counter()
    prof = profile_device(proj, "local", space.name)
    profile_s = time.perf_counter() - t0
    lut = Lut.load(prof.lut_path)
    pred = LatencyPredictor(lut, space)
    ref_path = reference_model(proj)
    ref_sha = sha256_file(ref_path)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    raw = pred.predict_raw_many(archs)
    measured, nominal, unstable, t1 = [], [], 0, time.perf_counter()
    with open_session(proj, "local") as s:
        for i, a in enumerate(archs):
            exp = export_arch(space, a, root / "exports" / f"e2e-{i:03d}")
            out = measure_model(s, exp.onnx_path, reference=ref_path)
            measured.append(out.median_ms)
            nominal.append(nominal_ms(out.raw_stats, lut, ref_sha))
            unstable += 0 if out.stats.stable else 1
        second, second_nominal = [], []
        if args.repeat:
            for i in range(args.n):
                out = measure_model(s, root / "exports" / f"e2e-{i:03d}" / "model.onnx", reference=ref_path)
                second.append(out.median_ms)
                second_nominal.append(nominal_ms(out.raw_stats, lut, ref_sha))
    measure_s = time.perf_counter() - t1
    measured = np.array(measured)
    raw_ms_measured = measured
    normalised = lut.normalised and all(v is not None for v in nominal)
    if normalised:  # compare at the device's nominal speed (ratio to the reference x its LUT time)
        measured = np.array(nominal, dtype=float)

    def within10(p, m):
        return float(np.mean(np.abs(p - m) / m <= 0.10))

    rel = (raw - measured) / measured
    result = {
        "compared_at": "nominal speed (reference-normalised)" if normalised else "raw milliseconds",
        "space": space.name, "n": args.n, "seed": args.seed, "device": "local",
        "threads": 1, "runtime": "onnxruntime (CPU EP)",
        "profile": {"entries": prof.n_entries, "reused": prof.reused_lut, "wall_s": round(profile_s, 1)},
        "measure_wall_s": round(measure_s, 1), "unstable_measurements": unstable,
        "measured_ms": {"min": float(measured.min()), "median": float(np.median(measured)),
                        "max": float(measured.max())},
        "baseline_raw_lut": {"within10": within10(raw, measured), "median_rel_error": float(np.median(rel)),
                             "median_abs_rel_error": float(np.median(np.abs(rel)))},
        "raw_ms_without_normalisation": {"within10": within10(raw, raw_ms_measured),
                                         "median_abs_rel_error": float(np.median(np.abs(raw - raw_ms_measured)
                                                                                 / raw_ms_measured))},
    }
    if second:
        raw_second = np.array(second, dtype=float)
        again = np.array(second_nominal, dtype=float) if normalised else raw_second
        result["repeatability"] = {
            "within10": within10(again, measured),
            "median_abs_rel_diff": float(np.median(np.abs(again - measured) / measured)),
            "raw_ms_within10": within10(raw_second, raw_ms_measured),
            "raw_ms_median_abs_rel_diff": float(np.median(np.abs(raw_second - raw_ms_measured) / raw_ms_measured)),
            "note": "the same models measured again later in the run: the ceiling for any predictor"}
    perm = np.random.default_rng(args.seed + 1).permutation(args.n)
    for k in args.k:
        if k >= args.n:
            continue
        fit, test = perm[:k], perm[k:]
        cal = fit_calibration(raw[fit], measured[fit])
        p = apply_calibration(cal, raw[test])
        result[f"calibrated_k{k}"] = {"within10": within10(p, measured[test]),
                                      "baseline_raw_within10_same_rows": within10(raw[test], measured[test]),
                                      "median_abs_rel_error": float(np.median(np.abs(p - measured[test]) / measured[test])),
                                      "params": cal.params, "n_test": int(len(test))}
    from scipy.stats import spearmanr

    result["spearman_raw"] = float(spearmanr(raw, measured).statistic)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
