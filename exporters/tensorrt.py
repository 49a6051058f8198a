"""ONNX -> TensorRT engine, and a runner that times an engine.

Runs ON the device: the agent ships this module in its zipapp and runs it on the device's Python
(3.8 on JetPack 5). So: no torch, no edgenas, no 3.9+ syntax at run time; ``tensorrt`` and the CUDA
bindings are imported lazily and their absence gives ``TensorRTMissing`` with an install hint.

Precision by TensorRT major version (see ``builder_flags_for``):

* 8.x: explicit-batch network; ``fp16`` sets BuilderFlag.FP16, ``int8`` sets INT8 and FP16
  (INT8 without a calibrator needs an explicitly quantized, Q/DQ, ONNX graph).
* 9.x-10.x: explicit batch is the default; same precision flags (weakly typed network).
* 11+: the weak-typing flags are gone; the network is created STRONGLY_TYPED and every layer runs in
  the type the ONNX graph gives it, so an FP16 engine needs an FP16 ONNX export. edgenas exports fp32
  graphs, so fp16 and int8 are refused there (they were built as fp32 and recorded as fp16).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from exporters._io import atomic_write_bytes, sha256_bytes
from exporters._trt_runner import INSTALL_HINT, EngineRunner
from exporters._trt_runner import import_tensorrt as _import_trt
from exporters.errors import ExportCheckError, TensorRTMissing

PRECISIONS = ("fp32", "fp16", "int8")
MIN_VERSION = (8, 5)  # tensor-name I/O API (execute_async_v3), memory pool limits
def tensorrt_available() -> Tuple[bool, str]:
    """``(True, "TensorRT 10.3.0")`` or ``(False, why not)``; never raises."""
    try:
        trt = _import_trt()
    except TensorRTMissing as exc:
        return False, str(exc)
    return True, "TensorRT {}".format(getattr(trt, "__version__", "unknown"))


def parse_version(version: str) -> Tuple[int, int]:
    try:
        parts = [int(p) for p in str(version).split(".")[:2]]
    except ValueError:
        raise ExportCheckError("cannot parse TensorRT version {!r}".format(version)) from None
    return (parts[0], parts[1] if len(parts) > 1 else 0)


def builder_flags_for(version: str, precision: str) -> List[str]:
    """Flags to set for ``precision`` on TensorRT ``version``, as ``"Enum.MEMBER"`` names.

    ``NetworkDefinitionCreationFlag.*`` go to ``builder.create_network``; ``BuilderFlag.*`` to
    ``config.set_flag``. Pure, so the version logic is testable without TensorRT.
    """
    if precision not in PRECISIONS:
        raise ExportCheckError(
            "unknown precision {!r}".format(precision), hint="use one of {}".format(PRECISIONS)
        )
    major_minor = parse_version(version)
    if major_minor < MIN_VERSION:
        raise ExportCheckError(
            "TensorRT {} is too old".format(version),
            hint="edgenas needs TensorRT >= {}.{} (JetPack 5.1+)".format(*MIN_VERSION),
        )
    major = major_minor[0]
    if major >= 11:
        if precision != "fp32":  # it built an fp32 engine from edgenas's fp32 graph and called it fp16
            raise ExportCheckError(
                "TensorRT {} builds every layer in the type its ONNX graph gives it, and edgenas exports fp32 "
                "graphs: a {} engine cannot be built".format(version, precision),
                hint='set precision = "fp32" in the device profile, or use TensorRT 10 for fp16/int8',
            )
        return ["NetworkDefinitionCreationFlag.STRONGLY_TYPED"]
    flags = ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH"] if major < 10 else []
    if precision == "fp16":
        flags.append("BuilderFlag.FP16")
    elif precision == "int8":
        flags += ["BuilderFlag.INT8", "BuilderFlag.FP16"]
    return flags


def _resolve(trt, name: str):
    enum_name, member = name.split(".")
    return getattr(getattr(trt, enum_name), member)


def _parse(trt, network, logger, onnx_path: Path):
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportCheckError(
            "TensorRT cannot parse {}: {}".format(onnx_path.name, " | ".join(errors) or "no details"),
            hint="check the opset and the ops against the TensorRT ONNX operator support matrix",
        )
    return parser


def _add_profile(builder, network, config, dynamic_batch: Sequence[int]) -> Dict[str, list]:
    if len(dynamic_batch) != 3 or not (0 < dynamic_batch[0] <= dynamic_batch[1] <= dynamic_batch[2]):
        raise ExportCheckError(
            "dynamic_batch must be (min, opt, max) with 0 < min <= opt <= max, got {}".format(
                tuple(dynamic_batch)
            )
        )
    profile = builder.create_optimization_profile()
    shapes = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if dims[0] != -1:
            raise ExportCheckError(
                "input {!r} has a static batch {}; export the ONNX with dynamic_batch=True".format(
                    tensor.name, dims[0]
                )
            )
        if any(d < 0 for d in dims[1:]):
            raise ExportCheckError("input {!r}: only the batch may be dynamic, got {}".format(tensor.name, dims))
        mins, opts, maxs = ([b] + dims[1:] for b in dynamic_batch)
        profile.set_shape(tensor.name, mins, opts, maxs)
        shapes[tensor.name] = [mins, opts, maxs]
    config.add_optimization_profile(profile)
    return shapes


def build_engine(
    onnx_path,
    engine_path,
    *,
    precision: str = "fp16",
    workspace_mb: int = 1024,
    opt_level: int = 3,
    timing_cache=None,
    dynamic_batch: Optional[Sequence[int]] = None,
) -> dict:
    """Build a serialized engine from ``onnx_path`` and write it atomically to ``engine_path``.

    ``timing_cache`` is a file path chosen by the caller (name it after the device fingerprint: a
    cache is only valid for the same GPU and TensorRT); it is loaded when it exists and saved after
    the build. ``dynamic_batch=(min, opt, max)`` adds an optimisation profile over dimension 0.
    Returns a JSON-friendly record of what was built.
    """
    trt = _import_trt()
    version = str(trt.__version__)
    flags = builder_flags_for(version, precision)
    if not 0 <= int(opt_level) <= 5:
        raise ExportCheckError("opt_level must be 0..5, got {}".format(opt_level))
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ExportCheckError("ONNX file {} does not exist".format(onnx_path))

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    for name in flags:
        if name.startswith("NetworkDefinitionCreationFlag."):
            net_flags |= 1 << int(_resolve(trt, name))
    network = builder.create_network(net_flags)
    parser = _parse(trt, network, logger, onnx_path)  # keep the parser alive until the build
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    notes = []
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(opt_level)
    else:
        notes.append("builder_optimization_level unsupported by TensorRT {}".format(version))
    for name in flags:
        if name.startswith("BuilderFlag."):
            config.set_flag(_resolve(trt, name))

    cache_loaded = False
    if timing_cache is not None:
        cache_path = Path(timing_cache)
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        # set_timing_cache answers False when TensorRT refuses the cache (made on another GPU or TensorRT):
        # then the build starts from an empty one, which is written back
        accepted = config.set_timing_cache(config.create_timing_cache(blob), False) is not False
        cache_loaded = bool(blob) and accepted
        if not accepted:
            notes.append("the timing cache {} was made for another GPU or TensorRT: not used".format(cache_path.name))
            config.set_timing_cache(config.create_timing_cache(b""), False)
    shapes = _add_profile(builder, network, config, dynamic_batch) if dynamic_batch else {}

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    if serialized is None:
        raise ExportCheckError(
            "TensorRT failed to build an engine from {}".format(onnx_path.name),
            hint="see the TensorRT log above; try a larger workspace_mb or another precision",
        )
    data = bytes(serialized)
    atomic_write_bytes(engine_path, data)
    if timing_cache is not None:
        atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
    del parser
    return {
        "engine_path": str(engine_path),
        "sha256": sha256_bytes(data),
        "size_bytes": len(data),
        "build_s": round(build_s, 3),
        "tensorrt": version,
        "precision": precision,
        "flags": flags,
        "opt_level": int(opt_level),
        "workspace_mb": int(workspace_mb),
        "timing_cache": str(timing_cache) if timing_cache is not None else None,
        "timing_cache_loaded": cache_loaded,
        "profile_shapes": shapes,
        "notes": notes,
    }


def open_runner(model_path, settings=None):
    """The device agent's runtime entry point: an ``EngineRunner`` for a serialized engine.

    ``settings`` may give ``batch`` (for engines built with a dynamic batch profile).
    """
    settings = dict(settings or {})
    return EngineRunner(model_path, batch=settings.get("batch"))
