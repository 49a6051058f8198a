"""TensorRT engines built on the device (``fleet.engine``), on the ``local`` device with the real agent, or
with its ``build_engine`` answer replaced (``hostile.py``) where this machine has no TensorRT to build one."""

from __future__ import annotations

import importlib.util

import pytest

from edgenas.devices.answers import DeviceInfo
from edgenas.devices.session import open_session
from edgenas.errors import AgentError, RuntimeMissingError
from edgenas.fleet.engine import build_engine_on_device, fallback_runtime, require_tensorrt, timing_cache_path
from edgenas.project import Project
from tests.fleet.hostile import answering, hostile_agent, use_agent, write_profile

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _info(**runtimes) -> DeviceInfo:
    return DeviceInfo(device="d", fingerprint={}, fingerprint_hash="a" * 64, runtimes=runtimes)


def test_the_fallback_is_onnxruntime_then_torch_then_none():
    assert fallback_runtime(_info(tensorrt=None, torch={"version": "2"}, onnxruntime={"version": "1"})) == "onnxruntime"
    assert fallback_runtime(_info(onnxruntime=None, torch={"version": "2"})) == "torch"
    assert fallback_runtime(_info(onnxruntime=None, torch=None, tensorrt={"version": "10"})) == "none"


def test_the_timing_cache_is_named_by_the_devices_tensorrt_fingerprint(tmp_path):
    with open_session(Project(tmp_path), "local") as s:
        fp = s.info("tensorrt").fingerprint_hash
        assert timing_cache_path(s) == f"cache/trt-timing-{fp[:16]}.cache"


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: the local device can build engines")
def test_a_local_device_without_tensorrt_is_refused_and_nothing_is_created(tmp_path):
    project = Project(tmp_path / "proj")
    with pytest.raises(RuntimeMissingError, match="cannot build a TensorRT engine") as exc:
        require_tensorrt(project, "local")
    assert exc.value.device == "local" and "--format onnx" in exc.value.hint
    assert not project.root.exists()


def _model(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx: the agent's build_engine is replaced")
    return onnx


def test_an_engine_build_sends_the_precision_and_timing_cache_and_returns_the_checked_answer(tmp_path, monkeypatch):
    # the replaced build names its engine after what it was sent, so the test sees the call's parameters
    patch = ("def build_engine(w, p, pr):\n"
             "    name = '%s-%s' % (p['precision'], p['timing_cache'].replace('/', '_'))\n"
             "    return {'engine': 'engines/%s.plan' % name, 'sha256': 'ab' * 32, 'build_s': 2}\n"
             "M['build_engine'] = build_engine\n")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    project = Project(tmp_path / "proj")
    with open_session(project, "local") as s:
        cache = timing_cache_path(s).replace("/", "_")
    got = build_engine_on_device(project, "local", _model(tmp_path), precision="fp16")
    assert got == {"engine": f"engines/fp16-{cache}.plan", "sha256": "ab" * 32, "build_s": 2.0}
    # no precision given: the profile's (local: fp32)
    assert build_engine_on_device(project, "local", _model(tmp_path))["engine"] == f"engines/fp32-{cache}.plan"


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: the local device can build engines")
def test_an_engine_build_on_a_device_without_tensorrt_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeMissingError, match="cannot build a TensorRT engine") as exc:
        build_engine_on_device(Project(tmp_path / "proj"), "local", _model(tmp_path))
    assert exc.value.device == "local" and "--format onnx" in exc.value.hint


def test_another_agent_error_of_an_engine_build_is_not_called_a_missing_tensorrt(tmp_path, monkeypatch):
    patch = ("from edgenas_agent.errors import AgentFault\n"
             "def build_engine(w, p, pr):\n"
             "    raise AgentFault('BuildFailed', 'the parser rejected the graph')\n"
             "M['build_engine'] = build_engine\n")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    with pytest.raises(AgentError, match="the parser rejected the graph") as exc:
        build_engine_on_device(Project(tmp_path / "proj"), "local", _model(tmp_path))
    assert exc.value.type == "BuildFailed" and not isinstance(exc.value, RuntimeMissingError)


@pytest.mark.ssh
def test_a_device_over_ssh_is_asked_whether_it_has_tensorrt(sshd, tmp_path, monkeypatch):
    project = Project(tmp_path / "proj")
    sshd.trust(project)
    write_profile(project, sshd.profile("dev"))
    if not HAVE_TRT:  # the real agent runs on this machine's Python
        with pytest.raises(RuntimeMissingError, match="cannot build a TensorRT engine") as exc:
            require_tensorrt(project, "dev")
        assert exc.value.device == "dev"
    patch = answering("info", "r['runtimes']['tensorrt'] = {'version': '10.3'}")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    assert require_tensorrt(project, "dev") is None  # a device that says it has TensorRT goes on
