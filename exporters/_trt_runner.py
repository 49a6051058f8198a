"""Deserialize a TensorRT engine, run it and time it on the GPU (device side, Python 3.8).

CUDA is driven through cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in older
releases) or pycuda, whichever is importable; neither gives ``TensorRTMissing`` with a hint. Only
the TensorRT >= 8.5 tensor-name API is used (``set_tensor_address`` + ``execute_async_v3``).
Timing uses CUDA events around ``execute_async_v3`` alone (no host copies), like trtexec's GPU
compute time; the statistics and the stopping rule belong to the agent's measurement protocol.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Dict, List, Optional

from exporters.errors import ExportCheckError, TensorRTMissing

CUDA_HINT = "pip install cuda-python (matching the CUDA version) or pip install pycuda"
INSTALL_HINT = (
    "on Jetson it comes with JetPack (sudo apt install python3-libnvinfer); elsewhere "
    "pip install tensorrt; or use the onnxruntime runtime in the device profile"
)


def import_tensorrt():
    """The ``tensorrt`` module, or ``TensorRTMissing`` with an install hint."""
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or a broken install raising OSError on libnvinfer
        raise TensorRTMissing(
            "TensorRT is not installed on this device (import tensorrt failed: {}: {})".format(
                type(exc).__name__, exc
            ),
            hint=INSTALL_HINT,
        ) from exc


class _CudaPython:
    name = "cuda-python"

    def __init__(self, cudart) -> None:
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())
        self.handle = int(self.stream)

    def _ok(self, result):
        err, rest = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            raise ExportCheckError("CUDA call failed: {}".format(err))
        return rest[0] if len(rest) == 1 else None

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def htod(self, ptr: int, host) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, kind))

    def dtoh(self, host, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpy(host.ctypes.data, ptr, host.nbytes, kind))

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))

    def time_ms(self, fn) -> float:
        start, end = self._ok(self.rt.cudaEventCreate()), self._ok(self.rt.cudaEventCreate())
        self._ok(self.rt.cudaEventRecord(start, self.stream))
        fn()
        self._ok(self.rt.cudaEventRecord(end, self.stream))
        self._ok(self.rt.cudaEventSynchronize(end))
        ms = float(self._ok(self.rt.cudaEventElapsedTime(start, end)))
        self._ok(self.rt.cudaEventDestroy(start))
        self._ok(self.rt.cudaEventDestroy(end))
        return ms

    def close(self) -> None:
        self._ok(self.rt.cudaStreamDestroy(self.stream))


class _PyCuda:
    name = "pycuda"

    def __init__(self, drv) -> None:
        self.drv = drv
        drv.init()
        self.ctx = drv.Device(0).make_context()
        self.stream = drv.Stream()
        self.handle = self.stream.handle
        self._allocs = {}  # pointer -> DeviceAllocation (keeps it alive)

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def htod(self, ptr: int, host) -> None:
        self.drv.memcpy_htod(ptr, host)

    def dtoh(self, host, ptr: int) -> None:
        self.drv.memcpy_dtoh(host, ptr)

    def sync(self) -> None:
        self.stream.synchronize()

    def time_ms(self, fn) -> float:
        start, end = self.drv.Event(), self.drv.Event()
        start.record(self.stream)
        fn()
        end.record(self.stream)
        end.synchronize()
        return float(end.time_since(start))

    def close(self) -> None:
        self.ctx.pop()


def _cuda_backend():
    for mod in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return _CudaPython(importlib.import_module(mod))
        except ImportError:
            pass
    try:
        return _PyCuda(importlib.import_module("pycuda.driver"))
    except ImportError:
        raise TensorRTMissing(
            "no CUDA Python binding to run TensorRT engines (neither cuda-python nor pycuda)",
            hint=CUDA_HINT,
        ) from None


class EngineRunner:
    """Run and time one engine: ``with EngineRunner(path) as r: r.run(); r.time(100)``."""

    def __init__(self, engine_path, *, batch: Optional[int] = None) -> None:
        trt = import_tensorrt()
        try:
            import numpy as np
        except ImportError:
            raise TensorRTMissing("numpy is needed to run TensorRT engines", hint="pip install numpy") from None
        self._np, self._trt = np, trt
        path = Path(engine_path)
        if not path.is_file():
            raise ExportCheckError("engine file {} does not exist".format(path))
        self.cuda = _cuda_backend()
        t0 = time.perf_counter()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            self.cuda.close()
            raise ExportCheckError(
                "TensorRT cannot deserialize {}".format(path.name),
                hint="engines only run on the GPU and TensorRT version that built them; rebuild",
            )
        self.context = self.engine.create_execution_context()
        self.inputs = {}  # type: Dict[str, object]
        self.outputs = {}  # type: Dict[str, object]
        self._ptrs = {}  # type: Dict[str, int]
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        for name in names:
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = list(self.engine.get_tensor_shape(name))
                if shape and shape[0] == -1:
                    shape[0] = int(batch or 1)
                if any(d < 0 for d in shape):
                    raise ExportCheckError("input {!r} has dynamic dims {}".format(name, shape))
                self.context.set_input_shape(name, shape)
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.zeros(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[name] = host
            self._ptrs[name] = self.cuda.malloc(host.nbytes)
            self.context.set_tensor_address(name, self._ptrs[name])
        rng = np.random.default_rng(0)
        for name, host in self.inputs.items():
            host[...] = rng.standard_normal(host.shape).astype(host.dtype)
            self.cuda.htod(self._ptrs[name], host)
        load_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        self._execute()
        self.cuda.sync()
        self.cold_start = {"engine_ms": load_ms, "first_run_ms": (time.perf_counter() - t0) * 1000.0}
        self.session = {
            "runtime": "tensorrt",
            "version": str(getattr(trt, "__version__", "unknown")),
            "cuda_binding": self.cuda.name,
            "inputs": {n: list(h.shape) for n, h in self.inputs.items()},
        }

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.cuda.handle):
            raise ExportCheckError("TensorRT execute_async_v3 failed")

    def run(self, feeds: Optional[Dict[str, object]] = None) -> Dict[str, object]:
        for name, value in (feeds or {}).items():
            host = self.inputs[name]
            host[...] = self._np.asarray(value, dtype=host.dtype).reshape(host.shape)
            self.cuda.htod(self._ptrs[name], host)
        self._execute()
        self.cuda.sync()
        for name, host in self.outputs.items():
            self.cuda.dtoh(host, self._ptrs[name])
        return {name: host.copy() for name, host in self.outputs.items()}

    def time(self, iterations: int = 100, warmup: int = 10) -> List[float]:
        """GPU milliseconds of each of ``iterations`` executions, after ``warmup`` untimed ones."""
        for _ in range(int(warmup)):
            self._execute()
        self.cuda.sync()
        return [self.cuda.time_ms(self._execute) for _ in range(int(iterations))]

    def timer(self, k: int) -> float:
        """Seconds (GPU time, CUDA events) for ``k`` back-to-back executions: the agent protocol."""

        def burst() -> None:
            for _ in range(int(k)):
                self._execute()

        return self.cuda.time_ms(burst) / 1000.0

    def close(self) -> None:
        if self.context is None:
            return
        for ptr in self._ptrs.values():
            self.cuda.free(ptr)
        self._ptrs = {}
        self.context = self.engine = None
        self.cuda.close()

    def __enter__(self) -> "EngineRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
