"""Runtimes other than the default: TorchScript through the agent, and registry behaviour."""

from pathlib import Path

import pytest

from device_agents.edgenas_agent import runtimes
from device_agents.edgenas_agent.errors import AgentFault
from edgenas.errors import AgentError

torch = pytest.importorskip("torch")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_bench(client, transport, tmp_path, fast):
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU()).eval()
    scripted = torch.jit.trace(model, torch.randn(1, 4, 8, 8))
    src = tmp_path / "m.pt"
    scripted.save(str(src))
    rel = "models/m.pt"
    transport.put_file(src, rel)
    r = client.call("bench", {"model": rel, "runtime": "torch", "threads": 1, "input_shapes": [[1, 4, 8, 8]],
                              "protocol": fast}, timeout_s=300)
    assert r["session"]["runtime"] == "torch" and r["session"]["threads"] == 1
    assert r["session"]["device"] == "cpu"
    assert r["stats"]["n"] >= fast["min_n"] and r["stats"]["median_ms"] > 0
    assert r["cold_start"]["session_ms"] > 0
    with pytest.raises(AgentError) as exc:  # TorchScript carries no shapes: they are required
        client.call("bench", {"model": rel, "runtime": "torch", "protocol": fast}, timeout_s=300)
    assert exc.value.type == "BadRequest" and "input_shapes" in exc.value.agent_message


def _exported(tmp_path, transport, name="e.pt", shape=(1, 4, 8, 8)):
    from exporters.torchscript_export import export_torchscript

    model = torch.nn.Sequential(torch.nn.Conv2d(shape[1], 4, 3, padding=1), torch.nn.ReLU())
    export_torchscript(model, shape, tmp_path / name)
    transport.put_file(tmp_path / name, f"models/{name}")
    return f"models/{name}"


def test_shapes_stored_in_the_file(client, transport, tmp_path, fast):
    """Files exported by the host carry their shapes: blocks of two shapes and no input_shapes in one call."""
    a = _exported(tmp_path, transport, "a.pt", (1, 4, 8, 8))
    b = _exported(tmp_path, transport, "b.pt", (1, 3, 16, 16))
    out = client.call("bench_many", {"items": [{"key": "a", "model": a}, {"key": "b", "model": b}],
                                     "runtime": "torch", "threads": 1, "protocol": fast,
                                     "partial": "partial/shapes.jsonl"}, timeout_s=300)
    assert set(out["results"]) == {"a", "b"} and all(r["median_ms"] > 0 for r in out["results"].values())


@pytest.mark.parametrize("params, kind, text", [
    ({"provider": "rocm"}, "BadRequest", "unknown torch provider"),
    ({"precision": "int8"}, "BadRequest", "measures fp32 or fp16"),
    ({"input_shapes": [[1, 0, 8, 8]]}, "BadRequest", "input_shapes"),
    ({"input_shapes": [[1, 4, 8, 8.5]]}, "BadRequest", "input_shapes"),
    ({"input_shapes": [[1 << 20, 1 << 20]]}, "BadRequest", "input_shapes"),
    ({"input_shapes": "1,4,8,8"}, "BadRequest", "input_shapes"),
])
def test_bad_settings_are_refused(client, transport, tmp_path, fast, params, kind, text):
    rel = _exported(tmp_path, transport)
    with pytest.raises(AgentError) as exc:
        client.call("bench", dict({"model": rel, "runtime": "torch", "protocol": fast}, **params), timeout_s=300)
    assert exc.value.type == kind and text in exc.value.agent_message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer of a machine without CUDA")
def test_cuda_missing(client, transport, tmp_path, fast):
    rel = _exported(tmp_path, transport)
    with pytest.raises(AgentError) as exc:
        client.call("bench", {"model": rel, "runtime": "torch", "provider": "cuda", "protocol": fast}, timeout_s=300)
    assert exc.value.type == "RuntimeMissing" and "no CUDA device" in exc.value.agent_message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_on_cuda(client, transport, tmp_path, fast, precision):
    rel = _exported(tmp_path, transport)
    r = client.call("bench", {"model": rel, "runtime": "torch", "provider": "cuda", "precision": precision,
                              "protocol": fast}, timeout_s=300)
    assert r["session"]["device"].startswith("cuda") and r["session"]["precision"] == precision
    assert r["stats"]["n"] >= fast["min_n"] and 0 < r["stats"]["median_ms"] < 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_torch_calls_overlap_on_cuda(client, transport, tmp_path, fast):
    """On the GPU a call only launches work: one call at a time pays the wait for the device each time,
    runs of 10 pay it once, so a sample of 10 runs is cheaper per run (the reason for ``runs_per_sample``)."""
    rel = _exported(tmp_path, transport)
    params = {"model": rel, "runtime": "torch", "provider": "cuda"}
    one, ten = (client.call("bench", dict(params, protocol=dict(fast, runs_per_sample=runs, sample_target_ms=0.0)),
                            timeout_s=300)["stats"] for runs in (1, 10))
    assert one["k"] == 1 and ten["k"] == 10
    assert ten["median_ms"] < one["median_ms"]


def test_registry_names_and_unknown_runtime():
    assert runtimes.NAMES == ("onnxruntime", "tensorrt", "torch")
    probed = runtimes.probe_all()
    assert probed["onnxruntime"]["providers"] and probed["tensorrt"] is None
    with pytest.raises(AgentFault) as exc:
        runtimes.open_runner("openvino", "m.onnx", {})
    assert exc.value.type == "BadRequest" and "onnxruntime" in exc.value.message


def test_runtime_missing_message_lists_available_runtimes():
    fault = runtimes.runtime_missing("tensorrt")
    assert fault.type == "RuntimeMissing"
    assert "tensorrt" in fault.message and "onnxruntime" in fault.message and "torch" in fault.message


def test_onnxruntime_inputs_are_drawn_once_per_signature_and_seed(tmp_path, make_onnx):
    """Sessions on models with the same inputs share one seeded draw, equal to a fresh one; another
    shape or seed draws its own; the session info is read from the open session."""
    import numpy as np

    from device_agents.edgenas_agent.runtimes import onnxruntime_rt as ort_rt

    for weights, (name, channels, size) in enumerate((("a", 8, 16), ("b", 8, 16), ("c", 8, 12))):
        make_onnx(tmp_path / f"{name}.onnx", channels=channels, size=size, seed=weights)  # different models
    ort_rt._FEEDS.clear()
    a = ort_rt.open_runner(str(tmp_path / "a.onnx"), {"threads": 1})
    b = ort_rt.open_runner(str(tmp_path / "b.onnx"), {"threads": 1})
    c = ort_rt.open_runner(str(tmp_path / "c.onnx"), {"threads": 1})
    b7 = ort_rt.open_runner(str(tmp_path / "b.onnx"), {"threads": 1, "seed": 7})
    (name, x), = a._feeds.items()
    assert b._feeds[name] is x and len(ort_rt._FEEDS) == 3
    fresh = np.random.default_rng(0).standard_normal(x.shape, dtype="float32")  # drawn in float32: half the memory
    assert np.array_equal(x, fresh)
    assert c._feeds[name].shape != x.shape
    assert np.array_equal(b7._feeds[name], np.random.default_rng(7).standard_normal(x.shape, dtype="float32"))
    assert a.session["intra_op_num_threads"] == 1 and a.session["providers"] == ["CPUExecutionProvider"]
    assert a.timer(3) > 0
    for runner in (a, b, c, b7):
        runner.close()
    with pytest.raises(RuntimeError):
        b.session  # never read while open: closed, it can no longer say what it was


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_onnxruntime_refuses_precisions_it_does_not_measure(client, model_rel, fast, precision):
    """ONNX Runtime on the CPU runs the fp32 graph: a table labelled fp16 would be fp32 times."""
    with pytest.raises(AgentError) as exc:
        client.call("bench", {"model": model_rel, "precision": precision, "protocol": fast})
    assert exc.value.type == "BadRequest" and "fp32 graph" in exc.value.agent_message


@pytest.mark.parametrize("module_line, dists, expected", [
    ('__version__ = "10.1.0"\n', {"tensorrt": "10.0.1"}, "10.1.0"),  # the metapackage pinned another version
    ("", {"tensorrt_cu12_bindings": "10.3.0", "tensorrt": "10.0.1"}, "10.3.0"),  # the runtime's own distribution
    ("", {"tensorrt_cu12_bindings": "10.3.0"}, "10.3.0"),  # pip install tensorrt-cu12: no `tensorrt` at all
    ("", {}, None),
])
def test_the_tensorrt_version_is_the_installed_modules(tmp_path, module_line, dists, expected):
    """The version came from the distribution named `tensorrt`, a metapackage since TensorRT 10: absent or
    another version than the runtime, so the fingerprint did not change when TensorRT did."""
    import json
    import subprocess
    import sys

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text("import ctypes\n" + module_line)
    for name, version in dists.items():
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    code = ("import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "from edgenas_agent.runtimes import tensorrt_rt\nprint(json.dumps(tensorrt_rt.probe()))")
    agent = Path(__file__).resolve().parents[2] / "device_agents"
    out = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path), str(agent)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"version": expected}

