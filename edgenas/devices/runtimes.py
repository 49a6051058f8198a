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
    providers: tuple[str, ...] = ()  # where it can run (a profile's ``provider``); the first is the default
    #: where its calls overlap on the device (``provider_for``'s value; None: the runtime's only place): a
    #: call launches GPU work and returns, so a model timed one call at a time includes the wait for its
    #: last kernel, which a block inside a network does not pay (``fleet.measure.lut_protocol_for``)
    overlaps_on: tuple[str | None, ...] = ()


RUNTIMES: Registry[Runtime] = Registry("runtime")
#: every precision a runtime can measure in (``precisions_for`` gives each runtime's own)
PRECISIONS = ("fp32", "fp16", "int8")
#: the most threads a profile, and so a table timed with it, may name
MAX_THREADS = 1024

for _rt in (
    Runtime("onnxruntime", False, "ONNX Runtime on the CPU, or its CUDA/TensorRT execution provider "
                                  "(profile: provider = \"cuda\")", ("cpu", "cuda", "tensorrt")),
    Runtime("tensorrt", True, "TensorRT engine built on the device from the ONNX file (NVIDIA devices)",
            overlaps_on=(None,)),
    Runtime("torch", False, "PyTorch, a TorchScript file traced on the host, on the device's CPU or CUDA "
                            "(profile: provider = \"cuda\")", ("cpu", "cuda"), overlaps_on=("cuda",)),
):
    RUNTIMES.register(_rt.name, _rt, help=_rt.description)


def runtime_names() -> list[str]:
    return RUNTIMES.names()


def provider_for(runtime: str, provider: str | None) -> str | None:
    """What a call with ``runtime`` sends as ``provider`` for a profile's ``provider``: None for the CPU
    (so a CPU profile's fingerprint is the same with or without ``provider = "cpu"``) and for TensorRT
    (always the GPU); a GPU provider a runtime lacks becomes its GPU (torch: ``tensorrt`` -> ``cuda``)."""
    providers = RUNTIMES.get(runtime).providers
    if provider in (None, "cpu") or not providers:
        return None
    return provider if provider in providers else "cuda"


def calls_overlap(runtime: str, provider: str | None) -> bool:
    """Whether ``runtime``'s calls on ``provider`` (as ``provider_for`` gives it) overlap on the device:
    torch on CUDA and TensorRT launch work and return; ONNX Runtime's ``run`` copies its outputs back to
    the host, so each call ends when the device is done, on any provider."""
    return provider in RUNTIMES.get(runtime).overlaps_on


def precisions_for(runtime: str, provider: str | None) -> tuple[str, ...]:
    """The precisions ``runtime`` on ``provider`` (as ``provider_for`` gives it) really measures: ONNX
    Runtime runs the exported fp32 graph as it is, except through its TensorRT provider (fp16 too); torch
    halves model and inputs for fp16; a TensorRT engine is built in any of the three."""
    if runtime == "tensorrt":
        return ("fp32", "fp16", "int8")
    if runtime == "torch" or provider == "tensorrt":
        return ("fp32", "fp16")
    return ("fp32",)
