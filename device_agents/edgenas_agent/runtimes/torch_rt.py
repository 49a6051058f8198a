"""PyTorch: a TorchScript file via ``torch.jit.load``; CUDA events time the runs when on the GPU.

The input shapes come from ``settings["input_shapes"]`` (a list of shapes) or, when that is absent, from
the file itself: the host's exports (``exporters/torchscript_export.py``) store them as the extra file
``edgenas.json`` (``{"input_shapes": [[1, 3, 224, 224]]}``), so that one ``bench_many`` call can time
blocks of different shapes and the speed reference. ``provider: "cuda"`` puts model and inputs on the
GPU (``"cpu"`` or none: the CPU); ``precision: "fp16"`` halves them.
"""

from __future__ import annotations

import importlib.util
import json
import time
import warnings
from typing import Any, Mapping

from ..errors import AgentFault
from . import runtime_missing


def probe() -> Any:
    if importlib.util.find_spec("torch") is None:
        return None
    try:  # version without importing torch (seconds on a Jetson)
        from importlib.metadata import version

        return {"version": version("torch")}
    except Exception:
        return {"version": None}


_PROVIDERS = (None, "cpu", "cuda")
#: the extra file of a TorchScript archive that holds its input shapes
EXTRA_FILE = "edgenas.json"
_MAX_DIMS, _MAX_ELEMENTS = 8, 1 << 28


def _is_shapes(shapes: Any) -> bool:
    """A non-empty list of shapes, each a list of 1-8 positive integers, none over 2^28 elements."""
    if not isinstance(shapes, list) or not shapes or len(shapes) > 64:
        return False
    for shape in shapes:
        if not isinstance(shape, list) or not 0 < len(shape) <= _MAX_DIMS:
            return False
        size = 1
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                return False
            size *= d
        if size > _MAX_ELEMENTS:
            return False
    return True


def _stored_shapes(text: Any, model_path: str) -> Any:
    if not text:
        return None
    try:
        meta = json.loads(text)
    except (TypeError, ValueError):
        raise AgentFault("InvalidModel", "%s in %s is not JSON" % (EXTRA_FILE, model_path))
    return meta.get("input_shapes") if isinstance(meta, dict) else None


class TorchRunner:
    def __init__(self, model_path: str, settings: Mapping[str, Any]) -> None:
        try:
            import torch
        except ImportError as exc:
            raise runtime_missing("torch", str(exc))
        provider = settings.get("provider")
        if provider not in _PROVIDERS:
            raise AgentFault("BadRequest", "unknown torch provider %r (use cpu or cuda)" % (provider,))
        cuda = provider == "cuda"
        if cuda and not torch.cuda.is_available():
            raise AgentFault("RuntimeMissing", "torch has no CUDA device here")
        if settings.get("threads"):
            torch.set_num_threads(int(settings["threads"]))
        device = torch.device("cuda" if cuda else "cpu")
        precision = settings.get("precision") or "fp32"
        if precision not in ("fp32", "fp16"):
            raise AgentFault("BadRequest", "runtime torch measures fp32 or fp16, not %r" % (precision,))
        half = precision == "fp16"
        t0 = time.perf_counter()
        extra = {EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch 2.14 warns that TorchScript is deprecated
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(model_path, map_location=device, _extra_files=extra).eval()
        except Exception as exc:
            raise AgentFault("InvalidModel", "torch cannot load %s: %s" % (model_path, exc))
        shapes = settings.get("input_shapes")
        if shapes is None:
            shapes = _stored_shapes(extra[EXTRA_FILE], model_path)
        if not _is_shapes(shapes):
            raise AgentFault("BadRequest", "runtime torch needs input_shapes, e.g. [[1, 3, 224, 224]], "
                                           "in the request or stored in the file (%s)" % EXTRA_FILE)
        if half:
            model = model.half()
        gen = torch.Generator().manual_seed(int(settings.get("seed") or 0))
        self._inputs = [torch.randn(*s, generator=gen).to(device, torch.float16 if half else torch.float32)
                        for s in shapes]
        session_ms = (time.perf_counter() - t0) * 1000.0
        self._torch, self._model, self._cuda = torch, model, cuda
        t0 = time.perf_counter()
        self.timer(1)
        self.cold_start = {"session_ms": session_ms, "first_run_ms": (time.perf_counter() - t0) * 1000.0}
        self.session = {"runtime": "torch", "version": torch.__version__, "device": str(device),
                        "threads": torch.get_num_threads(), "precision": "fp16" if half else "fp32"}

    def timer(self, k: int) -> float:
        torch, model, inputs = self._torch, self._model, self._inputs
        with torch.inference_mode():
            if not self._cuda:
                t0 = time.perf_counter()
                for _ in range(k):
                    model(*inputs)
                return time.perf_counter() - t0
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(k):
                model(*inputs)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

    def close(self) -> None:
        self._model = None


def open_runner(model_path: str, settings: Mapping[str, Any]) -> TorchRunner:
    return TorchRunner(model_path, settings)
