"""TensorRT, through ``exporters.tensorrt`` (shipped inside the agent zipapp), imported lazily.

``build_engine`` turns an ONNX file into a serialized engine; ``bench`` with ``runtime: "tensorrt"``
times an engine file (``engines/<...>.plan``) with CUDA events (``EngineRunner.timer``). A missing
``tensorrt`` package, CUDA binding or exporters module (``ImportError`` or exporters'
``TensorRTMissing``) becomes ``RuntimeMissing``; any other build failure is ``EngineBuildFailed``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import time
from typing import Any, Dict, Mapping

from ..errors import AgentFault
from . import runtime_missing


#: distributions that install the ``tensorrt`` module, the runtime's own first: since TensorRT 10 the pip
#: package ``tensorrt`` is a metapackage (absent with ``pip install tensorrt-cu12``, and ``tensorrt==10.0.1``
#: once installed bindings 10.1.0)
_DISTRIBUTIONS = ("tensorrt-cu12-bindings", "tensorrt-cu11-bindings", "tensorrt-cu13-bindings", "tensorrt-bindings",
                  "tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13")
_VERSION_RE = re.compile(r"^__version__\s*=\s*['\"]([0-9][0-9A-Za-z.+_-]{0,40})['\"]", re.M)


def probe() -> Any:
    """The version of the ``tensorrt`` module Python would import (it goes into the fingerprint: a TensorRT
    upgrade must change it): its own ``__version__`` line, read without importing it (slow, and it loads
    CUDA), else the version of the distribution that installed it; ``None`` when neither says."""
    spec = importlib.util.find_spec("tensorrt")
    if spec is None:
        return None
    return {"version": _module_version(spec) or _distribution_version()}


def _module_version(spec: Any) -> Any:
    try:
        with open(spec.origin, encoding="utf-8", errors="replace") as fh:
            m = _VERSION_RE.search(fh.read(1 << 20))
    except (OSError, TypeError, ValueError):
        return None
    return m.group(1) if m else None


def _distribution_version() -> Any:
    from importlib.metadata import PackageNotFoundError, version

    for name in _DISTRIBUTIONS:
        for spelling in (name, name.replace("-", "_")):
            try:
                return version(spelling)
            except (PackageNotFoundError, ValueError):
                continue
    return None


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
