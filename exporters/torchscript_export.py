"""PyTorch module -> TorchScript file for the devices' ``torch`` runtime, with its input shapes inside.

A TorchScript archive, unlike an ONNX file, does not say what it takes. The shapes are stored as the
archive's extra file ``edgenas.json`` (``{"input_shapes": [[1, 3, 224, 224]]}``), which the agent's
torch runtime reads (``device_agents/edgenas_agent/runtimes/torch_rt.py``), so blocks of different
shapes and the speed reference can be timed in one call. The saved archive is loaded back and its
output compared with the module's on a seeded input before the file is written (atomically).

torch is imported inside the functions only (see ``onnx_export``). torch 2.14 marks TorchScript as
deprecated in favour of ``torch.export``; TorchScript stays because the archives load in the older torch
releases devices run (JetPack's), which ``torch.export`` programs do not promise. Its deprecation
warnings are silenced for the duration of each call.
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from exporters._io import atomic_write_bytes, sha256_bytes
from exporters.errors import ExportCheckError
from exporters.onnx_export import _validate_shape

#: must match ``EXTRA_FILE`` of the agent's torch runtime
EXTRA_FILE = "edgenas.json"
#: largest |traced - eager| / (1 + max |eager|) accepted
TOLERANCE = 1e-4


@contextmanager
def quiet() -> Iterator[None]:
    """TorchScript's deprecation warnings off (torch.jit.trace/save/load warn on every call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def export_torchscript(module: Any, input_shape: Any, path: Path, *,
                       meta: Mapping[str, Any] | None = None) -> str:
    """Trace ``module`` (in eval mode, on the CPU) at ``input_shape`` and write ``path``; returns its
    SHA-256. ``meta`` is stored beside the shapes (e.g. the ONNX file it was made with)."""
    import torch

    shape = _validate_shape(input_shape)
    module = module.eval()
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), quiet():
        try:
            traced = torch.jit.trace(module, example, check_trace=False)
        except Exception as exc:  # noqa: BLE001 - tracing raises many types; one clear error
            raise ExportCheckError(f"TorchScript tracing failed: {type(exc).__name__}: {str(exc)[:200]}",
                                   hint="the module must be traceable (no data-dependent control flow)") from None
        want = module(example)
    extra = {EXTRA_FILE: json.dumps(dict(meta or {}, input_shapes=[list(shape)]), sort_keys=True)}
    buf = io.BytesIO()
    with quiet():
        torch.jit.save(traced, buf, _extra_files=extra)
    data = buf.getvalue()
    check_torchscript(data, example, want)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def check_torchscript(data: bytes, example: Any, want: Any) -> None:
    """Load the archive back and compare its output with ``want``; raises ``ExportCheckError``."""
    import torch

    with quiet():
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        got = loaded(example)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        raise ExportCheckError("the TorchScript file gives an output of another shape than the module",
                               hint="export modules with one tensor output")
    err = float((got - want).abs().max()) / (1.0 + float(want.abs().max()))
    if not err <= TOLERANCE:
        raise ExportCheckError(f"the TorchScript file differs from the module by {err:.2e} (limit {TOLERANCE})",
                               hint="check the module for randomness in eval mode")


def stored_meta(path: Path) -> dict[str, Any] | None:
    """The ``edgenas.json`` of a TorchScript file (None when it has none or it is not JSON)."""
    import torch

    extra = {EXTRA_FILE: ""}
    try:
        with quiet():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[EXTRA_FILE] or "null")
    except Exception:  # noqa: BLE001 - any unreadable file is "no metadata"
        return None
    return meta if isinstance(meta, dict) else None
