"""Runtimes other than the default: TorchScript through the agent, and registry behaviour."""

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
