"""Fixtures for the agent tests: a real zipapp, a real agent subprocess, a tiny real ONNX model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from edgenas.devices.agent_bundle import ensure_agent_bundle
from edgenas.devices.local import LocalTransport
from edgenas.devices.rpc import AgentClient
from edgenas.project import Project

SAMPLES = Path(__file__).parent / "samples"
FAST = {"warmup_min_n": 3, "warmup_min_s": 0.02, "min_n": 10, "min_s": 0.05, "max_s": 0.6,
        "max_cov": 0.5, "max_ci_rel": 0.5}


def tiny_conv_onnx(path: Path, channels: int = 8, size: int = 16, seed: int = 0) -> str:
    """Conv 3x3 + Relu on a 1 x C x H x W input; returns the file's SHA-256."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, channels, 3, 3)).astype("float32")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "proj")


@pytest.fixture()
def bundle(project: Project) -> tuple[Path, str]:
    return ensure_agent_bundle(project)


@pytest.fixture()
def transport(project: Project):
    with LocalTransport(project) as t:
        yield t


@pytest.fixture()
def client(transport: LocalTransport, bundle: tuple[Path, str]):
    path, version = bundle
    c = AgentClient(transport.start_agent(path, version), "local", expect_version=version)
    yield c
    c.close()


@pytest.fixture()
def model_rel(transport: LocalTransport, tmp_path: Path) -> str:
    """A tiny ONNX model uploaded into the work dir as models/<sha>.onnx."""
    src = tmp_path / "tiny.onnx"
    sha = tiny_conv_onnx(src)
    rel = f"models/{sha}.onnx"
    assert transport.put_file(src, rel) == sha
    return rel


@pytest.fixture()
def make_onnx():
    """``make_onnx(path, channels=8, size=16, seed=0) -> sha256``: writes a tiny Conv+Relu model."""
    return tiny_conv_onnx


@pytest.fixture()
def bench_models(tmp_path: Path, monkeypatch):
    """``bench_models(n) -> (work, opened, closed)``: a work dir with ``models/m0..m{n-1}.onnx`` and a
    speed reference ``models/ref.onnx``, tiny real models; ``opened`` / ``closed`` list the file name of
    every runtime session the agent opens and closes from then on."""
    from device_agents.edgenas_agent import runtimes

    opened: list[str] = []
    closed: list[str] = []
    real = runtimes.open_runner

    def counting(runtime, model, settings):
        runner = real(runtime, model, settings)
        name = model.rsplit("/", 1)[-1]
        opened.append(name)
        close = runner.close
        runner.close = lambda: (closed.append(name), close())[1]
        return runner

    monkeypatch.setattr(runtimes, "open_runner", counting)

    def make(n: int):
        work = tmp_path / "work"
        (work / "models").mkdir(parents=True)
        for i in range(n):
            tiny_conv_onnx(work / "models" / f"m{i}.onnx", channels=4 + i, size=8, seed=i)
        tiny_conv_onnx(work / "models" / "ref.onnx", channels=16, size=16, seed=9)
        return work, opened, closed

    return make


@pytest.fixture()
def fast() -> dict:
    """A short measurement protocol for tests (loose spread limits, 0.6 s cap)."""
    return dict(FAST)
