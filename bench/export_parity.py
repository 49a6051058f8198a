"""Export + parity over random architectures of a search space; prints one JSON object.

    .venv/bin/python bench/export_parity.py --n 20 --seed 0 --space mbv3-small

For each sampled architecture: build the torch model (weights from ``torch.manual_seed(seed + i)``),
export it to ONNX (timed), check parity against ONNX Runtime on the CPU (timed). Summary: the max
of the per-architecture max abs diff, the median of the per-architecture median abs diff, export
and parity times (wall and CPU), and how many architectures passed the FP32 tolerance.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def run(n: int, seed: int, space_name: str, opset: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from edgenas.spaces import get_space
    from exporters.onnx_export import export_onnx
    from exporters.parity import FP32_ATOL, FP32_RTOL, check_parity

    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgenas-bench-") as tmp:
        for i in range(n):
            arch = space.sample(rng)
            torch.manual_seed(seed + i)
            model = space.build_model(arch).eval()
            shape = tuple(space.input_shape(arch))
            path = Path(tmp) / f"arch{i}.onnx"
            t0, c0 = time.perf_counter(), time.process_time()
            info = export_onnx(model, shape, path, opset=opset)
            t1, c1 = time.perf_counter(), time.process_time()
            report = check_parity(model, path, n_inputs=3, seed=seed)
            t2 = time.perf_counter()
            rows.append(
                {
                    "arch": space.to_dict(arch),
                    "input_shape": list(shape),
                    "n_params": int(sum(p.numel() for p in model.parameters())),
                    "n_nodes": info.n_nodes,
                    "onnx_bytes": path.stat().st_size,
                    "export_s": round(t1 - t0, 4),
                    "export_cpu_s": round(c1 - c0, 4),  # less sensitive to a loaded machine
                    "parity_s": round(t2 - t1, 4),
                    "max_abs": report.max_abs,
                    "median_abs": report.median_abs,
                    "max_rel": max(o.max_rel for o in report.outputs),
                    "ref_max_abs": max(o.ref_max_abs for o in report.outputs),
                    "passed": report.passed,
                }
            )
    export_s = [r["export_s"] for r in rows]
    return {
        "bench": "export_parity",
        "space": space_name,
        "n": n,
        "seed": seed,
        "opset": opset,
        "tolerance": {"atol": FP32_ATOL, "rtol": FP32_RTOL},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
        "summary": {
            "max_abs": max(r["max_abs"] for r in rows),
            "median_abs": statistics.median(r["median_abs"] for r in rows),
            "export_s_median": statistics.median(export_s),
            "export_s_max": max(export_s),
            "export_cpu_s_median": statistics.median(r["export_cpu_s"] for r in rows),
            "parity_s_median": statistics.median(r["parity_s"] for r in rows),
            "n_passed": sum(r["passed"] for r in rows),
            "ref_max_abs_min": min(r["ref_max_abs"] for r in rows),
        },
        "models": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="number of random architectures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default="mbv3-small")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 avoids OpenMP spin contention on shared machines)")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")
    result = run(args.n, args.seed, args.space, args.opset, args.threads)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if result["summary"]["n_passed"] == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
