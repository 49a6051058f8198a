"""LocalTransport: install by hash, a real subprocess channel, verified atomic file copies."""

import hashlib
import os
import time

import pytest

from edgenas.errors import DeviceError, InputError
from edgenas.devices.agent_bundle import ensure_agent_bundle
from edgenas.devices.local import LocalTransport
from edgenas.devices.rpc import AgentClient
from edgenas.devices.session import open_session


def test_local_session_end_to_end(project):
    with open_session(project, "local") as s:
        client = s.client
        assert client.ping()
        path, version = ensure_agent_bundle(project)
        assert client.version == version
        assert (project.local_workdir / "agent" / f"edgenas-agent-{version}.pyz").is_file()
        assert client.hello["workdir"] == str(project.local_workdir)
    assert not client.channel.alive()


def test_agent_installed_once_per_hash(project):
    path, version = ensure_agent_bundle(project)
    with LocalTransport(project) as t:
        installed = t.install_agent(path, version)
        mtime = installed.stat().st_mtime_ns
        time.sleep(0.01)
        assert t.install_agent(path, version) == installed and installed.stat().st_mtime_ns == mtime
        with pytest.raises(DeviceError) as exc:
            t.install_agent(path, "0" * 64)
        assert "expected" in str(exc.value) and "device 'local'" in str(exc.value)
        assert not (project.local_workdir / "agent" / f"edgenas-agent-{'0' * 64}.pyz").exists()


def test_put_and_get_file_verify_sha(project, tmp_path):
    src = tmp_path / "blob.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    src.write_bytes(data)
    with LocalTransport(project) as t:
        sha = t.put_file(src, "models/blob.bin")
        assert sha == hashlib.sha256(data).hexdigest()
        assert (project.local_workdir / "models/blob.bin").read_bytes() == data
        back = tmp_path / "out" / "blob.bin"
        assert t.get_file("models/blob.bin", back) == sha and back.read_bytes() == data
        assert not [p for p in (project.local_workdir / "models").iterdir() if p.name.endswith(".tmp")]
        with pytest.raises(InputError):
            t.put_file(src, "../outside.bin")
        with pytest.raises(DeviceError):
            t.get_file("models/absent.bin", back)


def test_large_stdout_and_stderr_do_not_deadlock(script_zipapp, project, tmp_path):
    agent = (
        "import sys, json\n"
        "sys.stderr.write('e' * (4 << 20)); sys.stderr.flush()\n"  # far more than a pipe buffer
        "print(json.dumps({'hello': {'protocol': 1, 'version': 'x'}}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    req = json.loads(line)\n"
        "    sys.stderr.write('f' * (1 << 20))\n"
        "    print(json.dumps({'id': req['id'], 'result': 'r' * (2 << 20)}), flush=True)\n"
        "    if req['method'] == 'shutdown': break\n"
    )
    path, version = script_zipapp(tmp_path, agent)
    with LocalTransport(project) as t:
        client = AgentClient(t.start_agent(path, version), "local", hello_timeout_s=30)
        assert len(client.call("anything", timeout_s=30)) == 2 << 20
        assert client.channel.stderr_tail().endswith("f" * 100)
        client.close()
        assert not client.channel.alive()


def test_missing_python_is_a_device_error(project):
    path, version = ensure_agent_bundle(project)
    with LocalTransport(project, python="/nonexistent/python3") as t:
        with pytest.raises(DeviceError) as exc:
            t.start_agent(path, version)
    assert "/nonexistent/python3" in str(exc.value)
