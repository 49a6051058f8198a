"""``build_engine`` against a stand-in ``tensorrt`` module (the one mock allowed in these tests).

It records what ``build_engine`` asks of TensorRT, so the version-dependent flags, workspace,
optimisation level, timing-cache round trip, optimisation profile and parse-error reporting are
checked on a machine without TensorRT. The network inputs come from the real exported ONNX file.
"""

from __future__ import annotations

import enum
import sys
import types

import onnx
import pytest

from exporters.errors import ExportCheckError
from exporters.tensorrt import build_engine


def _fake_trt(version: str, onnx_error: str | None = None):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 5})
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    log = trt.calls = {"flags": [], "profiles": []}

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Tensor:
        def __init__(self, vi):
            self.name = vi.name
            self.shape = [d.dim_value if d.HasField("dim_value") else -1
                          for d in vi.type.tensor_type.shape.dim]

    class Network:
        def __init__(self, flags):
            log["network_flags"] = flags
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class Error:
        def __str__(self):
            return onnx_error

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):
            if onnx_error:
                self.num_errors = 1
                return False
            self.network.inputs = [Tensor(v) for v in onnx.load(path).graph.input]
            return True

        def get_error(self, i):
            return Error()

    class Cache:
        def __init__(self, blob):
            self.blob = blob

        def serialize(self):
            return self.blob + b"+tuned"

    class Profile:
        def set_shape(self, name, mins, opts, maxs):
            log["profiles"].append((name, mins, opts, maxs))

    class Config:
        builder_optimization_level = None

        def set_memory_pool_limit(self, pool, nbytes):
            log["workspace"] = (pool, nbytes)

        def set_flag(self, flag):
            log["flags"].append(flag.name)

        def create_timing_cache(self, blob):
            log["cache_in"] = blob
            self.cache = Cache(blob)
            return self.cache

        def set_timing_cache(self, cache, ignore_mismatch):  # TensorRT answers whether it took the cache
            assert cache is self.cache and ignore_mismatch is False
            return not (getattr(trt, "reject_cache", False) and cache.blob)

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log["opt_level"] = config.builder_optimization_level
            return b"ENGINE" + version.encode()

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


@pytest.fixture
def use_trt(monkeypatch):
    def install(version, onnx_error=None):
        trt = _fake_trt(version, onnx_error)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


def test_trt10_fp16_dynamic_with_cache(use_trt, exported_dynamic, tmp_path):
    trt = use_trt("10.3.0")
    cache = tmp_path / "fp-1234.cache"
    info = build_engine(exported_dynamic.path, tmp_path / "e.engine", precision="fp16",
                        workspace_mb=256, opt_level=4, timing_cache=cache, dynamic_batch=(1, 4, 8))
    assert trt.calls["network_flags"] == 0
    assert trt.calls["flags"] == ["FP16"]
    assert trt.calls["workspace"] == (trt.MemoryPoolType.WORKSPACE, 256 << 20)
    assert trt.calls["opt_level"] == 4
    assert trt.calls["profiles"] == [("input", [1, 3, 32, 32], [4, 3, 32, 32], [8, 3, 32, 32])]
    assert (tmp_path / "e.engine").read_bytes() == b"ENGINE10.3.0"
    assert info["size_bytes"] == 12 and info["timing_cache_loaded"] is False
    assert cache.read_bytes() == b"+tuned"
    again = build_engine(exported_dynamic.path, tmp_path / "e2.engine", timing_cache=cache,
                         dynamic_batch=(1, 4, 8))
    assert trt.calls["cache_in"] == b"+tuned" and again["timing_cache_loaded"] is True
    assert cache.read_bytes() == b"+tuned+tuned"


def test_a_timing_cache_tensorrt_refuses_is_not_reported_loaded(use_trt, exported, tmp_path):
    """set_timing_cache's answer was ignored: a cache from another GPU or TensorRT counted as loaded."""
    trt = use_trt("10.3.0")
    cache = tmp_path / "fp.cache"
    cache.write_bytes(b"other-gpu")
    trt.reject_cache = True
    info = build_engine(exported.path, tmp_path / "e.engine", timing_cache=cache)
    assert info["timing_cache_loaded"] is False and any("timing cache" in n for n in info["notes"])
    assert cache.read_bytes() == b"+tuned"  # the build's own cache, from an empty one, replaces it


def test_trt8_int8_explicit_batch(use_trt, exported, tmp_path):
    trt = use_trt("8.6.2")
    info = build_engine(exported.path, tmp_path / "e.engine", precision="int8")
    assert trt.calls["network_flags"] == 1 << 0
    assert trt.calls["flags"] == ["INT8", "FP16"] and info["profile_shapes"] == {}


def test_trt11_strongly_typed(use_trt, exported, tmp_path):
    trt = use_trt("11.0.0")
    info = build_engine(exported.path, tmp_path / "e.engine", precision="fp32")
    assert trt.calls["network_flags"] == 1 << 5 and trt.calls["flags"] == [] and info["precision"] == "fp32"
    with pytest.raises(ExportCheckError, match="a fp16 engine cannot be built"):
        build_engine(exported.path, tmp_path / "f.engine", precision="fp16")
    assert not (tmp_path / "f.engine").exists()


def test_parse_errors_are_reported(use_trt, exported, tmp_path):
    use_trt("10.3.0", onnx_error="In node 3 (Foo): UNSUPPORTED_NODE: No importer registered for op: Foo")
    with pytest.raises(ExportCheckError, match=r"cannot parse tiny.onnx: .*No importer registered for op: Foo"):
        build_engine(exported.path, tmp_path / "e.engine")
    assert not (tmp_path / "e.engine").exists()


def test_dynamic_profile_needs_dynamic_onnx(use_trt, exported, tmp_path):
    use_trt("10.3.0")
    with pytest.raises(ExportCheckError, match="static batch 1.*dynamic_batch=True"):
        build_engine(exported.path, tmp_path / "e.engine", dynamic_batch=(1, 2, 4))
    with pytest.raises(ExportCheckError, match=r"\(min, opt, max\)"):
        build_engine(exported.path, tmp_path / "e.engine", dynamic_batch=(4, 2, 1))


def test_missing_onnx_and_bad_opt_level(use_trt, tmp_path):
    use_trt("10.3.0")
    with pytest.raises(ExportCheckError, match="does not exist"):
        build_engine(tmp_path / "nope.onnx", tmp_path / "e.engine")
    with pytest.raises(ExportCheckError, match="opt_level"):
        build_engine(tmp_path / "nope.onnx", tmp_path / "e.engine", opt_level=9)
