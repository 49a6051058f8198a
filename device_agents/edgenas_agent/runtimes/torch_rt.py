"""PyTorch: a TorchScript file via ``torch.jit.load``; CUDA events time the runs when on the GPU.

TorchScript files carry no input shapes, so ``settings["input_shapes"]`` (a list of shapes) is
required. ``provider: "cuda"`` puts model and inputs on the GPU; ``precision: "fp16"`` halves them.
"""

from __future__ import annotations

import importlib.util
import time
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


class TorchRunner:
    def __init__(self, model_path: str, settings: Mapping[str, Any]) -> None:
        try:
            import torch
        except ImportError as exc:
            raise runtime_missing("torch", str(exc))
        shapes = settings.get("input_shapes")
        if not isinstance(shapes, list) or not shapes or not all(isinstance(s, list) for s in shapes):
            raise AgentFault("BadRequest", "runtime torch needs input_shapes, e.g. [[1, 3, 224, 224]]")
        cuda = settings.get("provider") == "cuda"
        if cuda and not torch.cuda.is_available():
            raise AgentFault("RuntimeMissing", "torch has no CUDA device here")
        if settings.get("threads"):
            torch.set_num_threads(int(settings["threads"]))
        device = torch.device("cuda" if cuda else "cpu")
        half = settings.get("precision") == "fp16"
        t0 = time.perf_counter()
        try:
            model = torch.jit.load(model_path, map_location=device).eval()
        except Exception as exc:
            raise AgentFault("InvalidModel", "torch cannot load %s: %s" % (model_path, exc))
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
