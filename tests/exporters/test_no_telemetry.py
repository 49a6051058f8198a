"""Issue 10: ONNX Runtime's telemetry events (model file names, paths, OS) are turned off before any
session is created, on the host (parity check) and in the agent (its onnxruntime runner). Real ONNX
Runtime; the two functions are wrapped only to record the order of the real calls."""

from __future__ import annotations

import pytest

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


@pytest.fixture
def calls(monkeypatch):
    seen: list[str] = []
    real_off, real_session = ort.disable_telemetry_events, ort.InferenceSession

    def off() -> None:
        seen.append("telemetry off")
        real_off()

    class Session(real_session):  # type: ignore[misc,valid-type]
        def __init__(self, *a, **k) -> None:
            seen.append("session")
            super().__init__(*a, **k)

    monkeypatch.setattr(ort, "disable_telemetry_events", off)
    monkeypatch.setattr(ort, "InferenceSession", Session)
    return seen


@pytest.fixture
def model(tmp_path):
    from exporters.onnx_export import export_onnx

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "m.onnx"
    export_onnx(net, (1, 3, 8, 8), path)
    return net, path


def test_host_parity_check_turns_telemetry_off_first(calls, model):
    from exporters.parity import check_parity

    net, path = model
    assert check_parity(net, path).passed
    assert calls and calls[0] == "telemetry off" and "session" in calls


def test_agent_runner_turns_telemetry_off_first(calls, model):
    from device_agents.edgenas_agent.runtimes import open_runner, probe_all

    _, path = model
    open_runner("onnxruntime", str(path), {"threads": 1})
    assert calls and calls[0] == "telemetry off" and "session" in calls
    calls.clear()
    probe_all()
    assert calls == ["telemetry off"]
