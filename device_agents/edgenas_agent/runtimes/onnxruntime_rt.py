"""ONNX Runtime: CPU execution provider by default; CUDA / TensorRT providers when present and asked for.

Sessions are configured explicitly so a LUT means one thing: ``intra_op_num_threads`` = the profile's
threads, ``inter_op_num_threads`` = 1, sequential execution, all graph optimisations. Inputs are
float32 (or the model's dtype) from a seeded generator, shaped from the model with dynamic dims = 1,
drawn once per input signature and seed and shared by later sessions (the LUT protocol opens several
sessions per block).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping

from ..errors import AgentFault
from . import runtime_missing

_PROVIDERS = {None: "CPUExecutionProvider", "cpu": "CPUExecutionProvider",
              "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
           "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def no_telemetry(ort: Any) -> None:
    """ONNX Runtime's telemetry events off: the agent writes nothing outside its work dir."""
    off = getattr(ort, "disable_telemetry_events", None)
    if off is not None:
        off()


def probe() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    no_telemetry(ort)
    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def os_threads() -> int:
    """Threads of this process (Linux), to show that the thread setting took effect."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _providers(ort: Any, provider: Any, precision: str) -> List[Any]:
    if provider not in _PROVIDERS:
        raise AgentFault("BadRequest", "unknown onnxruntime provider %r (use cpu, cuda or tensorrt)" % (provider,))
    want = _PROVIDERS[provider]
    have = ort.get_available_providers()
    if want not in have:
        raise AgentFault("RuntimeMissing", "onnxruntime provider %s is not available (available: %s)"
                         % (want, ", ".join(have)))
    if precision not in ("fp32", "fp16" if want == "TensorrtExecutionProvider" else "fp32"):
        raise AgentFault("BadRequest", "onnxruntime runs the model's own fp32 graph on %s, not %s (use fp32, or "
                                       "provider tensorrt for fp16)" % (want, precision))
    chain: List[Any] = []
    if want == "TensorrtExecutionProvider":
        chain.append((want, {"trt_fp16_enable": precision == "fp16"}))
    elif want != "CPUExecutionProvider":
        chain.append(want)
    chain.append("CPUExecutionProvider")
    return chain


#: input feeds by (seed, the inputs' names, types and shapes): drawing them costs 0.2-0.5 ms, a
#: sixth of opening a session on a small block, and the LUT protocol opens several sessions per block
_FEEDS: Dict[Any, Dict[str, Any]] = {}
_FEEDS_MAX = 64


def _inputs(np: Any, session: Any, seed: int) -> Dict[str, Any]:
    """The model's inputs from a generator seeded with ``seed``, dynamic dims = 1: the same values for
    every session of the same input signature (drawn once, kept; ONNX Runtime does not write to them)."""
    signature = tuple((inp.name, inp.type, tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape))
                      for inp in session.get_inputs())
    cached = _FEEDS.get((seed, signature))
    if cached is not None:
        return cached
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, typ, shape in signature:
        dtype = _DTYPES.get(typ)
        if dtype is None:
            raise AgentFault("InvalidModel", "input %s has unsupported type %s" % (name, typ))
        if dtype.startswith("float"):  # drawn in float32 (float64 for double), not float64 then cast: half the memory
            drawn = rng.standard_normal(list(shape), dtype="float64" if dtype == "float64" else "float32")
            feeds[name] = drawn.astype(dtype, copy=False)
        else:
            feeds[name] = np.zeros(list(shape), dtype=dtype)
    if len(_FEEDS) >= _FEEDS_MAX:
        _FEEDS.clear()
    _FEEDS[(seed, signature)] = feeds
    return feeds


class OrtRunner:
    def __init__(self, model_path: str, settings: Mapping[str, Any]) -> None:
        try:
            import numpy as np
            import onnxruntime as ort
        except ImportError as exc:
            raise runtime_missing("onnxruntime", str(exc))
        no_telemetry(ort)
        threads = int(settings.get("threads") or 0)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = _providers(ort, settings.get("provider"), str(settings.get("precision") or "fp32"))
        t0 = time.perf_counter()
        try:
            self._session = ort.InferenceSession(model_path, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise AgentFault("InvalidModel", "onnxruntime cannot load %s: %s" % (model_path, exc))
        session_ms = (time.perf_counter() - t0) * 1000.0
        self._feeds = _inputs(np, self._session, int(settings.get("seed") or 0))
        t0 = time.perf_counter()
        try:
            self._session.run(None, self._feeds)
        except Exception as exc:
            raise AgentFault("InvalidModel", "onnxruntime cannot run %s: %s" % (model_path, exc))
        self.cold_start = {"session_ms": session_ms, "first_run_ms": (time.perf_counter() - t0) * 1000.0}
        self._version = ort.__version__
        self._info: Any = None

    @property
    def session(self) -> Dict[str, Any]:
        """What was configured, read from the open session on first use (the LUT protocol's sweeps open
        several sessions per block and never ask; reading it costs about 0.15 ms)."""
        if self._info is None:
            if self._session is None:
                raise RuntimeError("session info is read before the runner is closed")
            opts = self._session.get_session_options()
            self._info = {"runtime": "onnxruntime", "version": self._version,
                          "providers": self._session.get_providers(),
                          "intra_op_num_threads": opts.intra_op_num_threads,
                          "inter_op_num_threads": opts.inter_op_num_threads, "os_threads": os_threads()}
        return self._info

    def timer(self, k: int) -> float:
        run, feeds = self._session.run, self._feeds
        t0 = time.perf_counter()
        for _ in range(k):
            run(None, feeds)
        return time.perf_counter() - t0

    def close(self) -> None:
        self._session = None


def open_runner(model_path: str, settings: Mapping[str, Any]) -> OrtRunner:
    return OrtRunner(model_path, settings)
