"""The inference runtimes a device profile can name, as a registry that ``edgenas list`` shows.

The agent detects and drives the runtimes on the device (``device_agents/edgenas_agent/runtimes``);
this is the host's side of the same names: what a profile may say, and what each runtime needs from
the host before it can measure (an ONNX file, or a TensorRT engine built on the device from one).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.registry import Registry


@dataclass(frozen=True)
class Runtime:
    name: str
    builds_engine: bool  # the device builds an engine from the ONNX file before it can measure
    description: str


RUNTIMES: Registry[Runtime] = Registry("runtime")

for _rt in (
    Runtime("onnxruntime", False, "ONNX Runtime (CPU, or CUDA/TensorRT execution providers where present)"),
    Runtime("tensorrt", True, "TensorRT engine built on the device from the ONNX file (NVIDIA devices)"),
    Runtime("torch", False, "PyTorch eager, on the device's CPU or CUDA"),
):
    RUNTIMES.register(_rt.name, _rt, help=_rt.description)


def runtime_names() -> list[str]:
    return RUNTIMES.names()
