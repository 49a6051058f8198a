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
    """Refuse, before anything is exported or written, a device that cannot build a TensorRT engine.

    The local device's agent runs on this machine's Python, so the agent's own probe (is the ``tensorrt``
    package importable?) answers without starting it, and a refusal creates nothing, ``.edgenas/``
    included; any other device is asked over a session."""
    from edgenas.devices.profiles import load_profile
    from edgenas.devices.session import open_session

    profile = load_profile(project, device)
    if profile.is_local:
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            raise no_tensorrt(profile.name)
        return
    with open_session(project, profile) as s:
        if "tensorrt" not in s.info("tensorrt").available_runtimes():
            raise no_tensorrt(s.device)


def no_tensorrt(device: str) -> RuntimeMissingError:
    """The error of an engine asked of a device without TensorRT: what to do instead."""
    return RuntimeMissingError(device, "cannot build a TensorRT engine: TensorRT (with its CUDA binding) is not "
                                       "installed on this device",
                               hint="export ONNX instead with --format onnx, which deploy and measure time with "
                                    "onnxruntime, or build the engine on a device that has TensorRT, e.g. a Jetson")


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
            raise no_tensorrt(s.device) from None
