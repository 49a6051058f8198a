"""TensorRT engines are built ON the device (they do not move between GPUs or TensorRT versions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgenas.devices.answers import DeviceInfo, engine_answer
from edgenas.errors import AgentError, RuntimeMissingError
from edgenas.project import Project


def fallback_runtime(info: DeviceInfo) -> str:
    """The runtime a device without TensorRT uses instead (what ``info`` says it has)."""
    have = info.available_runtimes()
    for name in ("onnxruntime", "torch"):
        if name in have:
            return name
    return "none"


def timing_cache_path(session: Any) -> str:
    """TensorRT timing cache on the device, keyed by its fingerprint (stale when the device changes)."""
    fp = session.info("tensorrt").fingerprint_hash
    return f"cache/trt-timing-{fp[:16]}.cache"


def require_tensorrt(project: Project, device: str) -> None:
    """Refuse, before anything is exported, a device whose agent reports no TensorRT."""
    from edgenas.devices.session import open_session

    with open_session(project, device) as s:
        info = s.info("tensorrt")
        if "tensorrt" not in info.available_runtimes():
            raise _missing(s.device, info)


def _missing(device: str, info: DeviceInfo) -> RuntimeMissingError:
    return RuntimeMissingError(device, f"TensorRT is missing on this device; deploy will use "
                                       f"{fallback_runtime(info)} instead",
                               hint="install TensorRT (JetPack ships it) or export with --format onnx")


def build_engine_on_device(project: Project, device: str, onnx_path: Path, *, out_dir: Path | None = None,
                           precision: str | None = None) -> dict[str, Any]:
    """Push ``onnx_path`` and build an engine on ``device``; returns the agent's answer."""
    from edgenas.devices.session import open_session

    with open_session(project, device) as s:
        remote = s.push(onnx_path)
        try:
            return engine_answer(s.device, s.call("build_engine", {
                "model": remote, "precision": precision or s.profile.precision, "timing_cache": timing_cache_path(s)}))
        except AgentError as exc:
            if exc.type != "RuntimeMissing":
                raise
            raise _missing(s.device, s.info("onnxruntime")) from None
