"""Runtimes by name. Each module imports its library lazily and exposes ``probe()`` (version info or
None when the runtime is absent) and ``open_runner(model, settings) -> Runner``.

A ``Runner`` has ``timer(k) -> seconds`` (k back-to-back inferences), ``cold_start`` (session/engine
creation and first inference, ms) and ``session`` (what was actually configured).
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Mapping, Optional

from ..errors import AgentFault

_MODULES = {"onnxruntime": "onnxruntime_rt", "torch": "torch_rt", "tensorrt": "tensorrt_rt"}
NAMES = tuple(sorted(_MODULES))


def _module(name: str) -> Any:
    return importlib.import_module("." + _MODULES[name], __name__)


def probe_all() -> Dict[str, Optional[Dict[str, Any]]]:
    """``{name: info or None}`` for every known runtime; never raises."""
    out: Dict[str, Optional[Dict[str, Any]]] = {}
    for name in NAMES:
        try:
            out[name] = _module(name).probe()
        except Exception:  # a broken install counts as absent
            out[name] = None
    return out


def available() -> list:
    return [name for name, info in probe_all().items() if info is not None]


def runtime_missing(name: str, detail: str = "") -> AgentFault:
    have = available()
    msg = "runtime '%s' is not available on this device%s (available: %s)" % (
        name, (": " + detail) if detail else "", ", ".join(have) if have else "none")
    return AgentFault("RuntimeMissing", msg)


def open_runner(name: str, model_path: str, settings: Mapping[str, Any]) -> Any:
    if name not in _MODULES:
        raise AgentFault("BadRequest", "unknown runtime '%s' (known: %s)" % (name, ", ".join(NAMES)))
    return _module(name).open_runner(model_path, settings)
