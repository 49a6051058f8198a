"""PyTorch module -> checked ONNX file.

torch is imported inside the functions only, so ``import exporters.onnx_export`` stays cheap and works
where torch is absent (the device side never exports). The TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) is used on purpose: for the small graphs a search space
produces it is ~50x faster than the torch.export-based one in torch 2.14 and gives the same graphs for
Conv/BN/activation/GEMM networks; its deprecation warnings are silenced for the duration of the call.

The written file is deterministic: the same module (same weights) and the same arguments give the
same bytes, so its SHA-256 identifies the artifact in manifests, on devices and in measurements.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from exporters._io import atomic_write_bytes, sha256_bytes
from exporters.errors import ExportCheckError

MIN_OPSET = 17  # LayerNormalization and friends; what TensorRT 8.6+ and ORT >= 1.14 all accept


@dataclass(frozen=True)
class ExportInfo:
    """What was written and what it contains."""

    path: Path
    sha256: str
    opset: int
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    n_nodes: int
    op_counts: dict[str, int]
    simplified: bool
    notes: tuple[str, ...] = field(default=())  # e.g. why simplification was skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "opset": self.opset,
            "input_shape": list(self.input_shape),
            "dynamic_batch": self.dynamic_batch,
            "n_nodes": self.n_nodes,
            "op_counts": dict(self.op_counts),
            "simplified": self.simplified,
            "notes": list(self.notes),
        }


def _validate_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ExportCheckError(
            f"input_shape must be a sequence of ints, got {input_shape!r}",
            hint="pass e.g. (1, 3, 224, 224) including the batch dimension",
        ) from None
    if not shape or any(d <= 0 for d in shape):
        raise ExportCheckError(
            f"input_shape must be non-empty with positive sizes, got {shape}",
            hint="pass e.g. (1, 3, 224, 224) including the batch dimension",
        )
    return shape


#: the graph simplifiers ``--simplify`` uses, the first one importable
SIMPLIFIERS = ("onnxslim", "onnxsim")


def simplifier_available() -> bool:
    """Whether ``--simplify`` can simplify here (one of ``SIMPLIFIERS`` is importable)."""
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in SIMPLIFIERS)


def _simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None, str]:
    """Run onnxslim or onnxsim if importable; returns (model, tool used or None, note)."""
    try:
        import onnxslim  # type: ignore[import-not-found]
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        return onnxslim.slim(model), "onnxslim", "simplified with onnxslim"
    try:
        import onnxsim  # type: ignore[import-not-found]
    except ImportError:
        onnxsim = None
    if onnxsim is not None:
        simplified, ok = onnxsim.simplify(model)
        if not ok:
            return model, None, "onnxsim could not validate its result; kept the unsimplified graph"
        return simplified, "onnxsim", "simplified with onnxsim"
    return model, None, (
        "simplification requested but skipped: neither onnxslim nor onnxsim is installed "
        "(pip install onnxslim)"
    )


def _count_outputs(out: Any) -> int:
    if isinstance(out, (tuple, list)):
        return len(out)
    return 1


def max_opset() -> int:
    """The newest opset the TorchScript exporter writes (torch's own constant; 20 in torch 2.14)."""
    import torch.onnx._constants as constants  # private, hence the fallback

    return int(getattr(constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", MIN_OPSET))


def check_opset(opset: int) -> None:
    """Refuse an opset outside [MIN_OPSET, max_opset()] before anything is exported."""
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ExportCheckError(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise ExportCheckError(f"opset {opset} is too old", hint=f"use opset >= {MIN_OPSET} (the default)")
    if opset > max_opset():
        raise ExportCheckError(f"opset {opset} is newer than this torch's exporter writes ({max_opset()})",
                               hint=f"use an opset from {MIN_OPSET} to {max_opset()}")


def export_onnx(
    module: Any,
    input_shape: tuple[int, ...],
    path: str | Path,
    *,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = False,
    simplify: bool = False,
    input_name: str = "input",
    output_name: str = "output",
) -> ExportInfo:
    """Export ``module`` (eval mode, no grad, constant folding) to ``path`` and check the result.

    ``input_shape`` includes the batch dimension; with ``dynamic_batch`` dimension 0 of the input and
    of every output is symbolic (``"batch"``). A module returning a tuple gets outputs named
    ``{output_name}_0, {output_name}_1, ...``. The graph passes ``onnx.checker`` (full check) and
    strict shape inference before it is written atomically. ``simplify=True`` runs onnxslim/onnxsim
    when importable; otherwise the export goes on, ``ExportInfo.simplified`` is False, a warning is
    issued and ``ExportInfo.notes`` says why.
    """
    import torch

    check_opset(opset)
    if not isinstance(module, torch.nn.Module):
        raise ExportCheckError(f"expected a torch.nn.Module, got {type(module).__name__}")
    shape = _validate_shape(input_shape)
    path = Path(path)

    was_training = module.training
    module.eval()
    try:
        try:
            param = next(module.parameters())
            device, dtype = param.device, param.dtype
        except StopIteration:
            device, dtype = torch.device("cpu"), torch.float32
        dummy = torch.zeros(shape, device=device, dtype=dtype)
        with torch.no_grad():
            try:
                n_out = _count_outputs(module(dummy))
            except Exception as exc:
                raise ExportCheckError(
                    f"the module fails on an input of shape {shape}: {type(exc).__name__}: {exc}",
                    hint="check input_shape (batch, channels, height, width) against the model",
                ) from exc
            out_names = [output_name] if n_out == 1 else [f"{output_name}_{i}" for i in range(n_out)]
            dyn = None
            if dynamic_batch:
                dyn = {name: {0: "batch"} for name in [input_name, *out_names]}
            buf = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                try:
                    torch.onnx.export(
                        module,
                        (dummy,),
                        buf,
                        dynamo=False,
                        export_params=True,
                        opset_version=int(opset),
                        do_constant_folding=True,
                        input_names=[input_name],
                        output_names=out_names,
                        dynamic_axes=dyn,
                    )
                except Exception as exc:
                    raise ExportCheckError(
                        f"torch.onnx.export failed for {path.name}: {type(exc).__name__}: {exc}",
                        hint="replace the unsupported operation or raise the opset",
                    ) from exc
    finally:
        module.train(was_training)

    model = onnx.load_from_string(buf.getvalue())
    notes: list[str] = []
    simplified = False
    if simplify:
        model, tool, note = _simplify(model)
        simplified = tool is not None
        notes.append(note)
        if not simplified:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
    try:
        onnx.checker.check_model(model, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        raise ExportCheckError(
            f"exported graph for {path.name} fails the ONNX checker: {exc}",
            hint="this is an exporter bug or an unsupported op; report it with the architecture",
        ) from exc

    data = model.SerializeToString(deterministic=True)
    atomic_write_bytes(path, data)
    counts = Counter(node.op_type for node in model.graph.node)
    return ExportInfo(
        path=path,
        sha256=sha256_bytes(data),
        opset=int(opset),
        input_shape=shape,
        dynamic_batch=bool(dynamic_batch),
        n_nodes=len(model.graph.node),
        op_counts=dict(sorted(counts.items())),
        simplified=simplified,
        notes=tuple(notes),
    )
