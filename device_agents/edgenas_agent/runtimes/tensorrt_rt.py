"""TensorRT, through ``exporters.tensorrt`` (shipped inside the agent zipapp), imported lazily.

``build_engine`` turns an ONNX file into a serialized engine; ``bench`` with ``runtime: "tensorrt"``
times an engine file (``engines/<...>.plan``) with CUDA events (``EngineRunner.timer``). A missing
``tensorrt`` package, CUDA binding or exporters module (``ImportError`` or exporters'
``TensorRTMissing``) becomes ``RuntimeMissing``; any other build failure is ``EngineBuildFailed``.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from typing import Any, Dict, Mapping

from ..errors import AgentFault
from . import runtime_missing


def probe() -> Any:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        from importlib.metadata import version

        return {"version": version("tensorrt")}
    except Exception:
        return {"version": None}


def _api() -> Any:
    if probe() is None:
        raise runtime_missing("tensorrt", "the tensorrt Python package is not installed")
    try:
        return importlib.import_module("exporters.tensorrt")
    except ImportError as exc:
        raise runtime_missing("tensorrt", str(exc))


def _fault(exc: Exception, what: str) -> AgentFault:
    if isinstance(exc, ImportError) or type(exc).__name__ == "TensorRTMissing":
        return runtime_missing("tensorrt", str(exc))
    return AgentFault("EngineBuildFailed" if what == "build" else "InvalidModel", "%s: %s" % (type(exc).__name__, exc))


def build_engine(onnx_path: str, engine_path: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    api = _api()
    try:
        return api.build_engine(onnx_path, engine_path, **dict(options))
    except AgentFault:
        raise
    except Exception as exc:
        raise _fault(exc, "build")


class TrtRunner:
    """Adds the agent's ``cold_start`` and ``session`` to exporters' ``EngineRunner``."""

    def __init__(self, engine_path: str, settings: Mapping[str, Any]) -> None:
        api = _api()
        t0 = time.perf_counter()
        try:
            self._runner = api.open_runner(engine_path, dict(settings))
            session_ms = (time.perf_counter() - t0) * 1000.0
            first_ms = self._runner.timer(1) * 1000.0
        except AgentFault:
            raise
        except Exception as exc:
            raise _fault(exc, "run")
        self.cold_start = {"session_ms": session_ms, "first_run_ms": first_ms}
        self.session = {"runtime": "tensorrt", "version": (probe() or {}).get("version"), "timing": "cuda-events"}

    def timer(self, k: int) -> float:
        return self._runner.timer(k)

    def close(self) -> None:
        self._runner.close()


def open_runner(model_path: str, settings: Mapping[str, Any]) -> TrtRunner:
    return TrtRunner(model_path, settings)
