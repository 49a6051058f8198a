"""Why a LUT's block sum over-predicts a GPU: each block alone, timed one call at a time and in runs.

On an H200 the LUT sum of TorchScript blocks on CUDA came out at 1.32x the measured whole model
(bench/RESULTS.md, "The GPU paths on an H200"). A GPU runs asynchronously: a call launches kernels and
the timer waits for them, so a block timed alone pays the wait for its last kernel and the timing
events once per call, while inside a network the next block's launches overlap the previous block's
kernels. This bench separates the parts, in one process through the agent's own torch runner
(``TorchRunner.timer``, CUDA events), for ``--n`` seeded architectures of the space:

- ``T1``: one call per sample (``timer(1)``), what the LUT protocol timed so far;
- ``P``: ``--runs`` back-to-back calls per sample (``timer(R) / R``), the block's cost in a pipeline;
- the whole model (``T1`` and ``P``), the trivial overhead model (one Relu on 8 floats, as
  ``fleet.measure.overhead_model``), and the blocks chained in one loop (each module's output fed to
  the next, one call of the chain per sample): the sum of its parts minus the one-graph effects.

Predictions compared with the whole model's ``T1`` (per-call latency, what ``deploy`` reports):

    single = T1(relu) + sum_b (T1(b) - T1(relu))      (the LUT before: entries and overhead one call each)
    runs   = T1(relu) + sum_b (P(b)  - P(relu))       (entries and overhead in runs; the wait once)

``--warmup-curve K``: K blocks (of the first architecture), each freshly loaded, timed call by call for
300 single calls: the median per-call time by position (calls 1-5, 6-10, 11-20, 21-50, 51-100,
101-300), to see how many calls a fresh session needs before its speed settles.

Each model is timed in its own freshly loaded runner, ``--samples`` samples after a warm-up of 20 calls;
medians. Prints JSON (``--out`` writes it too). Runs on the CPU as well (``--provider cpu``), where
calls do not overlap and the two predictions should agree.

    python bench/gpu_block_sum.py --space mbv3-small --n 6 --runs 10 --provider cuda [--precision fp16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _runner(path: Path, settings: dict[str, Any]) -> Any:
    from device_agents.edgenas_agent.runtimes.torch_rt import TorchRunner

    return TorchRunner(str(path), settings)


def _time(timer: Any, runs: int, samples: int) -> dict[str, float]:
    for _ in range(20):
        timer(1)
    t1 = [timer(1) for _ in range(samples)]
    p = [timer(runs) / runs for _ in range(max(5, samples // runs))]
    return {"T1_ms": statistics.median(t1) * 1e3, "P_ms": statistics.median(p) * 1e3}


def _time_file(path: Path, settings: dict[str, Any], runs: int, samples: int) -> dict[str, float]:
    r = _runner(path, settings)
    try:
        return _time(r.timer, runs, samples)
    finally:
        r.close()


def _chain_timer(mods: list[Any], x: Any, cuda: bool) -> Any:
    import torch

    def timer(k: int) -> float:
        with torch.inference_mode():
            if not cuda:
                t0 = time.perf_counter()
                for _ in range(k):
                    y = x
                    for m in mods:
                        y = m(y)
                return time.perf_counter() - t0
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(k):
                y = x
                for m in mods:
                    y = m(y)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

    return timer


def run(space_name: str, n: int, seed: int, runs: int, samples: int, provider: str, precision: str,
        threads: int) -> dict[str, Any]:
    import torch

    from edgenas.spaces import get_space
    from exporters.torchscript_export import export_torchscript, quiet

    torch.set_num_threads(threads)
    space = get_space(space_name)
    settings = {"provider": provider, "precision": precision, "threads": threads}
    cuda = provider == "cuda"
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    out: dict[str, Any] = {"space": space_name, "n": n, "seed": seed, "runs": runs, "samples": samples,
                           "provider": provider, "precision": precision, "threads": threads,
                           "device": torch.cuda.get_device_name(0) if cuda else "cpu", "archs": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        relu = root / "relu8.pt"
        export_torchscript(torch.nn.ReLU().eval(), (1, 8), relu)
        out["relu8"] = _time_file(relu, settings, runs, samples)
        block_time: dict[str, dict[str, float]] = {}
        block_file: dict[str, Path] = {}
        t_start = time.perf_counter()
        for i in range(n):
            arch = space.sample(np.random.default_rng(seed + i))
            keys = space.block_keys(arch)
            for key in keys:
                if key not in block_time:
                    path = block_file[key] = root / f"b{len(block_time)}.pt"
                    export_torchscript(space.build_block(key).eval(), tuple(space.block_input_shape(key)), path)
                    block_time[key] = _time_file(path, settings, runs, samples)
            model = root / f"m{i}.pt"
            export_torchscript(space.build_model(arch).eval(), tuple(space.input_shape(arch)), model)
            whole = _time_file(model, settings, runs, samples)
            row: dict[str, Any] = {"blocks": len(keys), "model": whole}
            rl = out["relu8"]
            row["single_ms"] = rl["T1_ms"] + sum(block_time[k]["T1_ms"] - rl["T1_ms"] for k in keys)
            row["runs_ms"] = rl["T1_ms"] + sum(block_time[k]["P_ms"] - rl["P_ms"] for k in keys)
            try:  # the blocks chained: each loaded module fed the previous one's output
                with quiet():
                    mods = [torch.jit.load(str(block_file[key]), map_location=dev).to(dtype).eval() for key in keys]
                x = torch.randn(*space.input_shape(arch)).to(dev, dtype)
                row["chain"] = _time(_chain_timer(mods, x, cuda), runs, samples)
            except Exception as exc:  # noqa: BLE001 - a space whose blocks do not chain says so
                row["chain"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            m = whole["T1_ms"]
            row["single_over_measured"] = row["single_ms"] / m
            row["runs_over_measured"] = row["runs_ms"] / m
            out["archs"].append(row)
            print(json.dumps({"arch": i, **{k: row[k] for k in ("single_over_measured", "runs_over_measured")}}),
                  file=sys.stderr, flush=True)
        out["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    single = np.array([a["single_over_measured"] for a in out["archs"]])
    runs_r = np.array([a["runs_over_measured"] for a in out["archs"]])
    out["summary"] = {
        "single_over_measured_median": float(np.median(single)),
        "runs_over_measured_median": float(np.median(runs_r)),
        "single_within10": float(np.mean(np.abs(single - 1) <= 0.10)),
        "runs_within10": float(np.mean(np.abs(runs_r - 1) <= 0.10)),
        "block_T1_over_P_median": float(np.median([b["T1_ms"] / b["P_ms"] for b in block_time.values()])),
        "model_T1_over_P_median": float(np.median([a["model"]["T1_ms"] / a["model"]["P_ms"]
                                                   for a in out["archs"]])),
        "blocks_timed": len(block_time),
    }
    return out


BINS = ((0, 5), (5, 10), (10, 20), (20, 50), (50, 100), (100, 300))


def warmup_curve(space_name: str, k: int, seed: int, provider: str, precision: str, threads: int) -> dict[str, Any]:
    import torch

    from edgenas.spaces import get_space
    from exporters.torchscript_export import export_torchscript

    torch.set_num_threads(threads)
    space = get_space(space_name)
    keys = list(dict.fromkeys(space.block_keys(space.sample(np.random.default_rng(seed)))))[:k]
    settings = {"provider": provider, "precision": precision, "threads": threads}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, key in enumerate(keys):
            path = Path(tmp) / f"w{i}.pt"
            export_torchscript(space.build_block(key).eval(), tuple(space.block_input_shape(key)), path)
            for session in range(2):  # two fresh sessions of the same block
                r = _runner(path, settings)
                try:
                    times = [r.timer(1) * 1e3 for _ in range(300)]
                finally:
                    r.close()
                rows.append({"key": key, "session": session, "first_ms": r.cold_start["first_run_ms"],
                             "bins_ms": {f"{a + 1}-{b}": statistics.median(times[a:b]) for a, b in BINS}})
    return {"blocks": len(keys), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbv3-small")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=10, help="back-to-back calls per sample for P")
    ap.add_argument("--samples", type=int, default=200, help="one-call samples per model (P: samples / runs)")
    ap.add_argument("--provider", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup-curve", type=int, default=0, metavar="K", help="only the warm-up curve of K blocks")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.warmup_curve:
        res = warmup_curve(args.space, args.warmup_curve, args.seed, args.provider, args.precision, args.threads)
    else:
        res = run(args.space, args.n, args.seed, args.runs, args.samples, args.provider, args.precision,
                  args.threads)
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
