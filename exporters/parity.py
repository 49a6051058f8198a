"""Numerical parity between a PyTorch module and its ONNX export (ONNX Runtime, CPU EP).

Tolerances (module constants, recorded in every report):

FP32 -- elementwise ``|onnx - torch| <= FP32_ATOL * min(1, scale) + FP32_RTOL * |torch|`` (numpy
``allclose`` semantics, the absolute floor scaled down for small outputs; ``scale`` is the output's
largest ``|torch|``). Both sides compute in float32 but with different kernels (oneDNN/ATen vs. MLAS), a
different summation order in Conv/GEMM reductions (K up to a few thousand) and BatchNorm folded into
the Conv by constant folding. That noise is ~1e-7 * sqrt(K) * |activation|, i.e. 1e-6..1e-5 on the
O(1..10) activations of a classifier. ``atol = 1e-4`` keeps a 10-100x margin above it while a real
export bug (wrong padding, stale weights, wrong BN epsilon, a swapped activation) moves outputs by
1e-2 or more. ``rtol = 1e-3`` covers large logits, whose absolute rounding grows with magnitude. The
networks a search exports before training have logits of about 1e-3 (a classifier initialised at
N(0, 0.01)), where a fixed 1e-4 was a tenth of the output: an ONNX HardSigmoid with the wrong slope
(4.5% off) passed. Their noise scales with them (1e-9 measured), so the floor does too.

FP16 -- half precision has ~1e-3 relative resolution and errors accumulate layer by layer, so a
few elements can be far off while the model is fine. It is judged on the MEDIAN absolute error
(``<= FP16_MEDIAN_ATOL * min(1, scale)``, 1e-2 for outputs of 1 or more) plus a loose elementwise bound
(``FP16_MAX_ATOL * min(1, scale) + FP16_MAX_RTOL * |torch|``) that only catches gross breakage
(overflow to inf, NaN, a wrong layer). Both absolute terms shrink with small outputs as FP32's does:
unscaled, they were ten times the whole output of an untrained network, and zeros passed.

``max_rel`` is reported for information only: ``max |d| / max(|torch|, FP32_ATOL)`` (the floor keeps
near-zero reference values from producing meaningless ratios).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporters.checks import load_checked
from exporters.errors import ExportCheckError

FP32_ATOL = 1e-4
FP32_RTOL = 1e-3
FP16_MEDIAN_ATOL = 1e-2
FP16_MAX_ATOL = 1e-1
FP16_MAX_RTOL = 5e-2
PRECISIONS = ("fp32", "fp16")


def tolerances(precision: str) -> dict[str, float]:
    if precision == "fp32":
        return {"atol": FP32_ATOL, "rtol": FP32_RTOL}
    if precision == "fp16":
        return {"median_atol": FP16_MEDIAN_ATOL, "max_atol": FP16_MAX_ATOL, "max_rtol": FP16_MAX_RTOL}
    raise ExportCheckError(f"unknown precision {precision!r}", hint=f"use one of {PRECISIONS}")


@dataclass(frozen=True)
class OutputParity:
    name: str
    max_abs: float
    median_abs: float
    max_rel: float
    n_violations: int  # elements outside the elementwise bound
    n_elements: int
    passed: bool
    ref_max_abs: float  # scale of the reference output, to read the absolute errors against


def compare_arrays(name: str, ref: np.ndarray, out: np.ndarray, precision: str) -> OutputParity:
    """Judge ``out`` against the reference ``ref`` with the tolerances of ``precision``."""
    tol = tolerances(precision)
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ExportCheckError(f"output {name!r}: ONNX shape {out.shape} != PyTorch shape {ref.shape}")
    diff = np.abs(out - ref)
    diff = np.where(np.isnan(out) & np.isnan(ref), 0.0, diff)  # NaN on both sides agrees
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only is an infinite error
    scale = float(np.abs(ref[np.isfinite(ref)]).max()) if np.isfinite(ref).any() else 1.0
    small = min(1.0, scale)  # the absolute floors shrink with small outputs (an untrained network's)
    if precision == "fp32":
        bound = tol["atol"] * small + tol["rtol"] * np.abs(ref)
    else:
        bound = tol["max_atol"] * small + tol["max_rtol"] * np.abs(ref)
    n_viol = int(np.count_nonzero(~(diff <= bound)))
    median_abs = float(np.median(diff)) if diff.size else 0.0
    passed = n_viol == 0
    if precision == "fp16":
        passed = passed and median_abs <= tol["median_atol"] * small
    rel = diff / np.maximum(np.abs(ref), FP32_ATOL)
    return OutputParity(
        name=name,
        max_abs=float(diff.max()) if diff.size else 0.0,
        median_abs=median_abs,
        max_rel=float(rel.max()) if rel.size else 0.0,
        n_violations=n_viol,
        n_elements=int(diff.size),
        passed=bool(passed),
        ref_max_abs=float(np.abs(ref).max()) if ref.size else 0.0,
    )


@dataclass(frozen=True)
class ParityReport:
    onnx_path: str
    precision: str
    n_inputs: int
    seed: int
    batch: int
    tolerances: dict[str, float]
    outputs: tuple[OutputParity, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def median_abs(self) -> float:
        return max((o.median_abs for o in self.outputs), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = [asdict(o) for o in self.outputs]
        d.update(passed=self.passed, max_abs=self.max_abs, median_abs=self.median_abs)
        return d

    def summary(self) -> str:
        parts = [
            f"{o.name}: max_abs={o.max_abs:.3g} median_abs={o.median_abs:.3g} "
            f"max_rel={o.max_rel:.3g} violations={o.n_violations}/{o.n_elements}"
            for o in self.outputs
        ]
        tol = ", ".join(f"{k}={v:g}" for k, v in self.tolerances.items())
        return f"{'; '.join(parts)} [{self.precision} tolerance {tol}]"

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise ExportCheckError(
                f"ONNX/PyTorch parity failed for {self.onnx_path}: {self.summary()}",
                hint="the export does not compute what the module computes; re-export after the "
                "last weight change, or report the architecture",
            )


def _input_shape(model: Any, batch: int, path: Path) -> tuple[str, tuple[int, ...]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportCheckError(f"{path} has {len(inputs)} inputs; parity supports exactly one")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        elif i == 0:
            shape.append(int(batch))
        else:
            raise ExportCheckError(f"{path}: input dimension {i} is symbolic ({d.dim_param})")
    if shape and shape[0] != batch and dims[0].HasField("dim_value"):
        raise ExportCheckError(
            f"{path} has a static batch of {shape[0]}, parity was asked for batch {batch}",
            hint="export with dynamic_batch=True or pass the exported batch",
        )
    return inputs[0].name, tuple(shape)


def no_telemetry(ort: Any) -> None:
    """Turn ONNX Runtime's telemetry events off (they can carry model file names, paths and the OS);
    nothing edgenas runs may write outside the project."""
    off = getattr(ort, "disable_telemetry_events", None)
    if off is not None:
        off()


def check_parity(
    module: Any,
    onnx_path: str | Path,
    *,
    precision: str = "fp32",
    n_inputs: int = 3,
    seed: int = 0,
    batch: int = 1,
) -> ParityReport:
    """Run ``n_inputs`` seeded standard-normal inputs through PyTorch and ONNX Runtime and compare.

    The module runs in eval mode (its training flag is restored afterwards) on its own device and in
    its own floating dtype; ONNX Runtime runs on the CPU execution provider with inputs cast to the
    graph's input type. Outputs are compared in float64, aggregated per output over all inputs.
    """
    import onnxruntime as ort
    import torch

    no_telemetry(ort)
    tol = tolerances(precision)
    if n_inputs < 1 or batch < 1:
        raise ExportCheckError(f"n_inputs and batch must be >= 1, got {n_inputs} and {batch}")
    path = Path(onnx_path)
    model = load_checked(path)
    in_name, shape = _input_shape(model, batch, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # deterministic reductions, and kind to shared machines
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    np_type = np.float16 if "float16" in sess.get_inputs()[0].type else np.float32
    out_names = [o.name for o in sess.get_outputs()]

    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(n_inputs)]
    was_training = module.training
    module.eval()
    refs: list[list[np.ndarray]] = []
    try:
        param = next(iter(module.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        with torch.no_grad():
            for x in xs:
                y = module(torch.from_numpy(x).to(device=device, dtype=dtype))
                ys = list(y) if isinstance(y, (tuple, list)) else [y]
                refs.append([t.detach().float().cpu().numpy() for t in ys])
    finally:
        module.train(was_training)
    outs = [sess.run(out_names, {in_name: x.astype(np_type)}) for x in xs]
    if len(refs[0]) != len(out_names):
        raise ExportCheckError(
            f"{path} has {len(out_names)} outputs, the module returns {len(refs[0])}"
        )
    results = []
    for k, name in enumerate(out_names):
        ref = np.concatenate([r[k].reshape(-1) for r in refs])
        got = np.concatenate([o[k].astype(np.float32).reshape(-1) for o in outs])
        if any(r[k].shape != o[k].shape for r, o in zip(refs, outs)):
            raise ExportCheckError(
                f"output {name!r} of {path}: ONNX shape {outs[0][k].shape} != "
                f"PyTorch shape {refs[0][k].shape}"
            )
        results.append(compare_arrays(name, ref, got, precision))
    return ParityReport(
        onnx_path=str(path),
        precision=precision,
        n_inputs=n_inputs,
        seed=seed,
        batch=batch,
        tolerances=tol,
        outputs=tuple(results),
    )
