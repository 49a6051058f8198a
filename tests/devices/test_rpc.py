"""AgentClient over a real local agent (and real misbehaving subprocesses): handshake, errors, timeouts."""

import os
import signal
import time

import pytest

from edgenas.errors import AgentError, DeviceError
from edgenas.devices.agent_bundle import ensure_agent_bundle
from edgenas.devices.local import LocalTransport
from edgenas.devices.rpc import AgentClient


@pytest.fixture()
def transport(project):
    with LocalTransport(project, device="bench-box") as t:
        yield t


@pytest.fixture()
def client(transport, project):
    path, version = ensure_agent_bundle(project)
    c = AgentClient(transport.start_agent(path, version), "bench-box", expect_version=version)
    yield c
    c.close()


def test_handshake_and_calls(client):
    assert client.hello["protocol"] == 1 and len(client.version) == 64
    assert client.call("ping") == {"pong": True}
    ids_before = next(client._ids)
    client.call("ping")
    assert next(client._ids) == ids_before + 2  # every call gets a fresh id


def test_structured_error_is_agent_error_naming_device_and_call(client):
    with pytest.raises(AgentError) as exc:
        client.call("no.such.method")
    err = exc.value
    assert err.device == "bench-box" and err.type == "UnknownMethod"
    assert "no.such.method" in str(err) and "device 'bench-box'" in str(err)
    assert client.ping()  # a structured error leaves the connection usable


def test_protocol_mismatch_is_refused(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, "import json\nprint(json.dumps({'hello': {'protocol': 2}}), flush=True)\n"
                                            "import sys\nsys.stdin.read()\n")
    with pytest.raises(DeviceError) as exc:
        AgentClient(transport.start_agent(path, version), "bench-box")
    assert "protocol 2" in str(exc.value) and "bench-box" in str(exc.value)


def test_version_mismatch_is_refused(transport, project):
    path, version = ensure_agent_bundle(project)
    with pytest.raises(DeviceError) as exc:
        AgentClient(transport.start_agent(path, version), "bench-box", expect_version="f" * 64)
    assert "expected " + "f" * 64 in str(exc.value)


def test_agent_that_dies_before_hello_reports_stderr(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, "import sys\nsys.stderr.write('ImportError: no module named foo\\n')\n"
                                            "sys.exit(3)\n")
    with pytest.raises(DeviceError) as exc:
        AgentClient(transport.start_agent(path, version), "bench-box", hello_timeout_s=20)
    msg = str(exc.value)
    assert "bench-box" in msg and "code 3" in msg and "no module named foo" in msg


def test_agent_crash_mid_call_names_device_call_and_stderr(script_zipapp, transport, tmp_path):
    agent = ("import sys, json\nprint(json.dumps({'hello': {'protocol': 1}}), flush=True)\n"
             "sys.stdin.readline()\n"
             "sys.stderr.write('Fatal Python error: Segmentation fault\\n'); sys.stderr.flush()\n"
             "import os; os._exit(139)\n")
    path, version = script_zipapp(tmp_path, agent)
    c = AgentClient(transport.start_agent(path, version), "bench-box")
    with pytest.raises(DeviceError) as exc:
        c.call("bench", {"model": "m.onnx"}, timeout_s=30)
    msg = str(exc.value)
    assert "device 'bench-box'" in msg and "call 'bench'" in msg
    assert "139" in msg and "Segmentation fault" in msg
    with pytest.raises(DeviceError):
        c.call("ping")
    c.close()


def test_killed_real_agent_is_a_device_error(client):
    os.kill(client.channel.proc.pid, signal.SIGKILL)
    with pytest.raises(DeviceError) as exc:
        client.call("ping", timeout_s=10)
    assert "bench-box" in str(exc.value) and "ping" in str(exc.value)
    assert "-9" in str(exc.value)


def test_call_timeout_is_a_device_error_and_stops_the_agent(client, project, tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    (project.local_workdir_of("bench-box") / "models").mkdir(parents=True, exist_ok=True)
    (project.local_workdir_of("bench-box") / "models" / "relu.onnx").write_bytes(m.SerializeToString())
    slow = {"fixed_n": 10**7, "warmup_min_n": 1, "warmup_min_s": 0.0}  # minutes of work
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        client.call("bench", {"model": "models/relu.onnx", "protocol": slow}, timeout_s=1.0)
    assert time.monotonic() - t0 < 8
    assert "timed out after 1 s" in str(exc.value) and "call 'bench'" in str(exc.value)
    assert not client.channel.alive()
    with pytest.raises(DeviceError) as exc:
        client.call("ping")
    assert "unusable" in str(exc.value)


def test_progress_callbacks_arrive_before_the_result(client, project, tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    (project.local_workdir_of("bench-box") / "models").mkdir(parents=True, exist_ok=True)
    (project.local_workdir_of("bench-box") / "models" / "r.onnx").write_bytes(m.SerializeToString())
    fast = {"warmup_min_n": 2, "warmup_min_s": 0.0, "min_n": 5, "min_s": 0.0, "max_s": 0.3, "max_cov": 1.0}
    seen = []
    r = client.call("bench_many", {"items": [{"key": "a", "model": "models/r.onnx"},
                                             {"key": "b", "model": "models/r.onnx"}], "protocol": fast},
                    on_progress=seen.append)
    assert [s["key"] for s in seen] == ["a", "b"] and sorted(r["results"]) == ["a", "b"]


def test_close_is_polite_and_idempotent(client):
    proc = client.channel.proc
    client.close()
    assert proc.wait(timeout=5) == 0  # shutdown, not a kill
    client.close()
    with pytest.raises(DeviceError):
        client.call("ping")
