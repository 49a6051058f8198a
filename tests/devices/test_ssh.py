"""SSHTransport against a real OpenSSH sshd: failures name the device, files are hash-checked, the agent
is installed once and reused, and a dead connection or agent is reported promptly."""

from __future__ import annotations

import getpass
import glob
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgenas.errors import DeviceError, HostKeyError, InputError
from edgenas.devices.login import SSHTarget, jump_profile, resolve_target
from edgenas.devices.profiles import DeviceProfile, load_profile
from edgenas.devices.session import open_session, open_transport
from edgenas.devices.ssh import SSHTransport
from edgenas.devices.trust import fetch_host_key
from edgenas.project import Project
from tests.procs import descendants, running

pytestmark = pytest.mark.ssh


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path / "proj")


@pytest.fixture
def device(sshd, project) -> DeviceProfile:
    sshd.trust(project)
    return sshd.profile()


@pytest.fixture(scope="session")
def agent_pyz(tmp_path_factory) -> tuple[Path, str]:
    build = pytest.importorskip("device_agents.build", reason="the agent zipapp builder is not there yet")
    path, sha = build.build_zipapp(tmp_path_factory.mktemp("agent"))
    return Path(path), sha


def client_for(transport, agent_pyz):
    from edgenas.devices.rpc import AgentClient
    return AgentClient(transport.start_agent(*agent_pyz), transport.device)


def tiny_model(path: Path, size: int = 64) -> Path:
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], f"relu{size}", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return path


# -- connection failures ----------------------------------------------------------------------------

def test_wrong_user_key_is_an_auth_error_naming_the_device(sshd, project, tmp_path):
    sshd.trust(project)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(DeviceError) as exc:
        SSHTransport(sshd.profile("orin", key_file=str(other)), project)
    assert not isinstance(exc.value, HostKeyError) and exc.value.device == "orin"
    assert "device 'orin': authentication failed" in str(exc.value) and str(other) in str(exc.value)
    assert "authorized_keys" in exc.value.hint
    with pytest.raises(DeviceError, match="key file .*missing_key not found"):
        SSHTransport(sshd.profile("orin", key_file=str(tmp_path / "missing_key")), project)


def test_connection_refused_is_clear_and_fast(project):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        SSHTransport(DeviceProfile(name="gone", host="127.0.0.1", port=port, connect_timeout_s=5), project)
    assert time.monotonic() - t0 < 3
    assert "device 'gone': connection refused by" in str(exc.value) and f"127.0.0.1:{port}" in str(exc.value)
    assert "sshd running" in exc.value.hint


def test_connect_timeout_when_nothing_answers(project):
    with socket.socket() as server:  # accepts TCP (backlog) but never sends an SSH banner
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        profile = DeviceProfile(name="mute", host="127.0.0.1", port=server.getsockname()[1], connect_timeout_s=1)
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as exc:
            SSHTransport(profile, project)
        elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4, elapsed
    assert "device 'mute': no SSH handshake from" in str(exc.value) and "within 1 s" in str(exc.value)


def test_shell_characters_in_host_names_never_reach_the_ssh_config_lookup(project, match_exec_config):
    """A host (from Python, or a ProxyJump out of ~/.ssh/config) with ';' or '$(...)' was handed to paramiko's
    config lookup, whose ``Match exec "... %h ..."`` ran it in a shell on this machine; a HostName or User the
    config gives back is checked before it is used."""
    import paramiko

    marker = match_exec_config
    evil = f"x;touch${{IFS}}{marker};true"
    paramiko.SSHConfig.from_path(os.environ["EDGENAS_SSH_CONFIG"]).lookup(evil)
    assert marker.exists()  # the config is dangerous for such a name: the checks below are what prevents it
    marker.unlink()
    with pytest.raises(InputError, match="device 'api': host .* must be a host name"):
        SSHTransport(DeviceProfile(name="api", host=evil, port=22, connect_timeout_s=1), project)
    with pytest.raises(InputError, match="proxy_jump .*host .*must be a host name"):
        SSHTransport(DeviceProfile(name="api", host="h", proxy_jump=f"u@j$(touch${{IFS}}{marker})"), project)
    config = Path(os.environ["EDGENAS_SSH_CONFIG"])
    config.write_text(config.read_text() + f"Host viajump\n  ProxyJump u@j$(touch${{IFS}}{marker})\n"
                      "Host badname\n  HostName a;b\nHost baduser\n  User u$(id)\n")
    for host, needle in (("viajump", "ProxyJump in"), ("badname", "HostName in"), ("baduser", "User in")):
        with pytest.raises(InputError, match=needle) as exc:
            SSHTransport(DeviceProfile(name="cfg", host=host, connect_timeout_s=1), project)
        assert str(config) in str(exc.value)
    assert not marker.exists()


def test_the_host_name_user_port_and_key_of_the_ssh_config_are_the_ones_used(tmp_path, monkeypatch):
    """What ~/.ssh/config gives for a profile's host fills in what the profile leaves out (no server needed)."""
    config = tmp_path / "ssh_config"
    config.write_text("Host myjet\n  HostName 10.0.0.7\n  User jetson\n  Port 2222\n  IdentityFile /keys/jet\n"
                      "  ProxyJump admin@bastion\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    assert resolve_target(DeviceProfile(name="cfg", host="myjet")) == SSHTarget(
        "10.0.0.7", 2222, "jetson", ("/keys/jet",), "admin@bastion", f"ProxyJump in {config} for myjet")
    mine = DeviceProfile(name="cfg", host="myjet", user="me", port=22, key_file="/keys/mine", proxy_jump="none")
    assert resolve_target(mine) == SSHTarget("10.0.0.7", 22, "me", ("/keys/mine",), None,
                                             "device 'cfg': proxy_jump")


@pytest.mark.parametrize("port", ["abc", "0", "65536", "70000", "0" * 4400 + "22"])  # past int()'s 4300 digits
def test_a_bad_port_in_ssh_config_is_one_input_error_naming_the_file(project, tmp_path, monkeypatch, port):
    """``Port abc`` in ~/.ssh/config ended every SSH command as ``internal error: ValueError``."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host myjet\n  HostName 127.0.0.1\n  Port {port}\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    with pytest.raises(InputError, match=f"Port '{port[:40]}' in {config} for myjet is not a port number 1-65535"):
        SSHTransport(DeviceProfile(name="cfg", host="myjet", connect_timeout_s=1), project)


def test_a_chain_of_jump_hosts_in_ssh_config_is_refused_without_sending_the_user_there(project, tmp_path,
                                                                                         monkeypatch):
    """A ProxyJump chain configured in ~/.ssh/config was refused with "configure them in ~/.ssh/config"."""
    config = tmp_path / "ssh_config"
    config.write_text("Host myjet\n  ProxyJump a,b\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    with pytest.raises(InputError, match="is a chain of jump hosts") as exc:
        SSHTransport(DeviceProfile(name="cfg", host="myjet", connect_timeout_s=1), project)
    assert str(config) in str(exc.value) and "configure them" not in str(exc.value)


def test_a_peer_that_closes_at_once_is_not_reported_as_a_timeout(project):
    """A server that closed the connection before its banner was reported as "no SSH handshake within 3 s
    ... raise connect_timeout_s" (after 0.6 s)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)

        def close_each() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                conn.close()

        closer = threading.Thread(target=close_each, daemon=True)
        closer.start()
        profile = DeviceProfile(name="closer", host="127.0.0.1", port=server.getsockname()[1], connect_timeout_s=3)
        for attempt in (lambda: SSHTransport(profile, project), lambda: fetch_host_key(profile, project)):
            with pytest.raises(DeviceError) as exc:
                attempt()
            assert "closed the connection before the SSH banner" in str(exc.value), str(exc.value)
            assert "connect_timeout_s" not in str(exc.value)
        closer.join(5)


def test_key_file_folder_and_no_key_at_all_say_what_to_do(sshd, project, tmp_path, monkeypatch):
    """A key_file that is a folder was "not found"; with no key_file, agent or ~/.ssh key the error was
    paramiko's "No authentication methods available" with a generic hint."""
    sshd.trust(project)
    with pytest.raises(DeviceError, match=f"key file {tmp_path} is a folder, not a key file"):
        SSHTransport(sshd.profile(key_file=str(tmp_path)), project)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh keys; the fixture unset SSH_AUTH_SOCK
    with pytest.raises(DeviceError, match="no SSH key to log in") as exc:
        SSHTransport(sshd.profile(key_file=None), project)
    assert "key_file" in exc.value.hint and "ssh-agent" in exc.value.hint


def test_open_transport_picks_local_or_ssh(device, project):
    assert load_profile(project, "local").is_local
    with open_transport(project, device) as t:
        assert isinstance(t, SSHTransport) and t.workdir == device.workdir
    assert jump_profile(device.__class__(name="x", host="h", proxy_jump="bob@bastion:2200")).port == 2200


# -- files ------------------------------------------------------------------------------------------

def test_put_and_get_are_hash_checked_and_quoted(device, project, tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    with SSHTransport(device, project) as t:
        sha = t.put_file(src, "models/with space/it's.bin")
        assert sha == hashlib.sha256(data).hexdigest()
        on_device = Path(device.workdir) / "models" / "with space" / "it's.bin"
        assert on_device.read_bytes() == data
        assert [p.name for p in on_device.parent.iterdir()] == ["it's.bin"]  # no temp files left
        back = tmp_path / "back" / "blob.bin"
        assert t.get_file("models/with space/it's.bin", back) == sha and back.read_bytes() == data
        with pytest.raises(DeviceError, match="does not exist on the device"):
            t.get_file("models/nope.bin", tmp_path / "nope.bin")
        assert not (tmp_path / "nope.bin").exists() and not list(back.parent.glob(".*part"))
        assert t.run(["sh", "-c", "echo out; echo oops >&2; exit 3"]) == (3, "out\n", "oops\n")
        with pytest.raises(DeviceError, match="sleep did not finish within 1 s"):
            t.run(["sleep", "5"], timeout_s=1)
        with pytest.raises(InputError):
            t.put_file(src, "../escape.bin")
        # removal: the file goes, a missing one is no error, a link goes and what it points at stays
        victim = tmp_path / "victim.txt"
        victim.write_text("keep")
        (on_device.parent / "link.bin").symlink_to(victim)
        t.remove_file("models/with space/it's.bin")
        t.remove_file("models/with space/it's.bin")
        t.remove_file("models/with space/link.bin")
        assert list(on_device.parent.iterdir()) == [] and victim.read_text() == "keep"
        with pytest.raises(InputError):
            t.remove_file("../victim.txt")
        status, out, _ = t.run(["printf", "%s", "$(touch pwned); `id` 'q' \"x\""])
        assert (status, out) == (0, "$(touch pwned); `id` 'q' \"x\"")
        assert not Path(device.workdir, "pwned").exists()


# -- the agent ------------------------------------------------------------------------------------

def test_agent_installed_once_then_reused(sshd, project, agent_pyz):
    sshd.trust(project)
    profile = sshd.profile(workdir=str(sshd.dir / "work dir 'q'"))  # quoting of the start command
    pyz, version = agent_pyz
    installed = Path(profile.workdir) / "agent" / f"edgenas-agent-{version}.pyz"
    with SSHTransport(profile, project) as t, client_for(t, agent_pyz) as client:
        assert t.uploads == [str(installed)]
        info = client.info()
        assert len(info["fingerprint_hash"]) == 64 and info["fingerprint"]
        assert info["workdir"] == profile.workdir
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == hashlib.sha256(pyz.read_bytes()).hexdigest()
    os.utime(installed, (1_000_000, 1_000_000))
    with SSHTransport(profile, project) as t, client_for(t, agent_pyz) as client:
        assert client.ping() and t.uploads == []  # same hash on the device: no upload
    assert installed.stat().st_mtime == 1_000_000
    installed.write_bytes(b"corrupted")  # a different hash is replaced
    with SSHTransport(profile, project) as t, client_for(t, agent_pyz) as client:
        assert client.ping() and t.uploads == [str(installed)]
    assert installed.read_bytes() == pyz.read_bytes()


def test_session_closes_agent_and_connection(device, project):
    with open_session(project, device) as s:
        assert s.call("info", s.runtime_params())["fingerprint_hash"]
    assert not s.client.channel.alive() and not s.transport._conn.is_active()


def test_sshd_killed_mid_call_is_reported_promptly(sshd, device, project, agent_pyz, tmp_path):
    with SSHTransport(device, project) as t, client_for(t, agent_pyz) as client:
        model = t.put_file(tiny_model(tmp_path / "m.onnx"), "models/m.onnx")
        assert len(model) == 64
        threading.Timer(1.0, sshd.kill).start()
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as exc:
            client.call("bench", {"model": "models/m.onnx", "runtime": "onnxruntime", "threads": 1,
                                  "protocol": {"min_s": 30, "max_s": 30, "max_cov": 0.0}}, timeout_s=60)
        assert time.monotonic() - t0 < 6
    assert exc.value.device == "dev" and "lost the SSH connection" in str(exc.value)


def test_agent_crash_is_a_device_error(device, project, agent_pyz):
    with SSHTransport(device, project) as t:
        channel = t.start_agent(*agent_pyz)
        from edgenas.devices.rpc import AgentClient
        client = AgentClient(channel, "dev")
        assert client.ping() and channel.alive()
        os.kill(channel.remote_pid, signal.SIGKILL)
        with pytest.raises(DeviceError) as exc:
            client.ping(timeout_s=10)
        assert "killed by a signal" in str(exc.value) and exc.value.device == "dev"
        assert not channel.alive()


def test_agent_that_dies_at_start_shows_its_stderr(device, project, tmp_path):
    bad = tmp_path / "bad.pyz"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("__main__.py", "import sys\nsys.stderr.write('boom: no runtime\\n')\nsys.exit(3)\n")
    with SSHTransport(device, project) as t:
        channel = t.start_agent(bad, "bad")
        with pytest.raises(DeviceError) as exc:
            channel.recv_line(10)
    assert "exited with status 3" in str(exc.value) and "boom: no runtime" in str(exc.value)
    with SSHTransport(device.__class__(**{**device.__dict__, "python": "/nonexistent/python3"}), project) as t:
        with pytest.raises(DeviceError, match="set python in the profile"):
            t.start_agent(bad, "bad")


def test_bench_many_partial_file_survives_sshd_kill(sshd, device, project, agent_pyz, tmp_path):
    items = [{"key": f"relu{n}", "model": f"models/relu{n}.onnx"} for n in (8, 16, 32)]
    params = {"items": items, "runtime": "onnxruntime", "threads": 1, "partial": "partial/run.jsonl",
              "protocol": {"warmup_min_n": 1, "warmup_min_s": 0, "min_n": 5, "min_s": 1.0, "max_s": 1.0}}
    partial = Path(device.workdir) / "partial" / "run.jsonl"
    with SSHTransport(device, project) as t, client_for(t, agent_pyz) as client:
        for n in (8, 16, 32):
            t.put_file(tiny_model(tmp_path / f"relu{n}.onnx", n), f"models/relu{n}.onnx")

        def kill_after_first_entry() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (partial.exists() and partial.read_text().count("\n")):
                time.sleep(0.05)
            sshd.kill()

        threading.Thread(target=kill_after_first_entry, daemon=True).start()
        with pytest.raises(DeviceError, match="lost the SSH connection"):
            client.call("bench_many", params, timeout_s=60)
    done = partial.read_text().count("\n")
    assert 1 <= done < 3
    sshd.start()  # same port, same host key
    with SSHTransport(device, project) as t, client_for(t, agent_pyz) as client:
        result = client.call("bench_many", params, timeout_s=60)
    assert len(result["reused"]) >= 1 and set(result["reused"]) < {"relu8", "relu16", "relu32"}
    assert set(result["results"]) == {"relu8", "relu16", "relu32"}
    assert partial.read_text().count("\n") == 3


# -- the login: defaults, refusals and what a failed or ended login leaves running ---------------------

def _transports(before: set | None = None) -> set:
    """The paramiko connections whose thread runs (with ``before``: waits up to 5 s for the others to end)."""
    import paramiko
    deadline = time.monotonic() + 5
    while True:
        alive = {t for t in threading.enumerate() if isinstance(t, paramiko.Transport) and t.is_alive()}
        if before is None or alive <= before or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_ssh_config_defaults_edges_and_refusals_without_a_server(tmp_path, monkeypatch):
    """Port 22 when neither the profile nor ~/.ssh/config sets one; ports 1 and 65535 are ports; a chain of
    jump hosts is refused by ``resolve_target`` itself; a config that is not text is one InputError."""
    config = tmp_path / "ssh_config"
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))  # not there: an empty config
    assert resolve_target(DeviceProfile(name="cfg", host="myjet")).port == 22
    for port in (1, 65535):
        config.write_text(f"Host myjet\n  Port {port}\n")
        assert resolve_target(DeviceProfile(name="cfg", host="myjet")).port == port
    config.write_text(f"Host myjet\n  Port {'9' * 60}\n")  # the value is shown cut to 40 characters
    with pytest.raises(InputError, match=f"Port '{'9' * 40}' in {config}"):
        resolve_target(DeviceProfile(name="cfg", host="myjet"))
    config.write_text("Host myjet\n  ProxyJump a,b\n")
    with pytest.raises(InputError, match="is a chain of jump hosts"):
        resolve_target(DeviceProfile(name="cfg", host="myjet"))
    with pytest.raises(InputError, match="device 'cfg' has no jump host"):
        jump_profile(DeviceProfile(name="cfg", host="other"))
    config.write_bytes(b"Host myjet\n  HostName \xff\xfe\n")
    with pytest.raises(InputError, match=f"cannot read SSH config {config}"):
        resolve_target(DeviceProfile(name="cfg", host="myjet"))


def test_importing_the_login_quiets_paramikos_log():
    """paramiko logs a failed handshake with a traceback; with no logging configured Python printed it on
    stderr after edgenas' one-line error. A library user (no CLI) gets the NullHandler from the import."""
    code = ("import logging, edgenas.devices.login\n"
            "print([type(h).__name__ for h in logging.getLogger('paramiko').handlers])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['NullHandler']"


def test_a_passphrase_key_a_connect_timeout_and_ctrl_c_during_the_login(sshd, project, tmp_path, monkeypatch):
    import paramiko

    sshd.trust(project)
    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(locked)], check=True)
    with pytest.raises(DeviceError, match=f"key file {locked} is protected by a passphrase") as exc:
        SSHTransport(sshd.profile("orin", key_file=str(locked)), project)
    assert "ssh-add" in exc.value.hint

    def no_answer(*args, **kwargs):  # a TCP connect whose SYN is dropped
        raise socket.timeout("timed out")

    monkeypatch.setattr(socket, "create_connection", no_answer)
    with pytest.raises(DeviceError, match="device 'slow': connection to .* timed out after 2 s") as exc:
        fetch_host_key(sshd.profile("slow", connect_timeout_s=2.0), project)
    assert "connect_timeout_s" in exc.value.hint
    monkeypatch.undo()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(paramiko.SSHClient, "connect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        SSHTransport(sshd.profile(), project)


def test_the_keepalive_is_the_profiles_and_at_least_one_second(sshd, project, monkeypatch):
    import paramiko

    sshd.trust(project)
    asked, real = [], paramiko.Transport.set_keepalive

    def spy(self, interval):
        asked.append(interval)
        return real(self, interval)

    monkeypatch.setattr(paramiko.Transport, "set_keepalive", spy)
    for keepalive in (0.5, 7.9):
        with SSHTransport(sshd.profile(keepalive_s=keepalive), project):
            pass
    assert asked == [1, 7]


def test_a_login_that_fails_or_ends_leaves_no_ssh_connection_open(sshd_factory, project, tmp_path):
    """Every way out of a login (refused key, host-key fetch, closing, a jump host that cannot reach the
    target or a target with an unknown key behind it) closes its connections, the jump host's included."""
    jump, target = sshd_factory(), sshd_factory()
    jump.trust(project)
    before = _transports()
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(DeviceError, match="authentication failed"):
        SSHTransport(jump.profile(key_file=str(other)), project)
    assert _transports(before) == before
    assert fetch_host_key(jump.profile(), project)[1] == jump.fingerprint
    assert _transports(before) == before
    via = target.profile(proxy_jump=f"127.0.0.1:{jump.port}")
    assert fetch_host_key(via, project)[1] == target.fingerprint
    assert _transports(before) == before
    with pytest.raises(HostKeyError, match="unknown SSH host key"):
        SSHTransport(via, project)
    assert _transports(before) == before
    target.trust(project)
    with SSHTransport(via, project) as t:
        assert t.run(["true"])[0] == 0
    assert _transports(before) == before
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there
    with pytest.raises(DeviceError, match=f"jump host .*:{jump.port} could not reach 127.0.0.1:{closed}") as exc:
        SSHTransport(jump.profile("far", port=closed, proxy_jump=f"127.0.0.1:{jump.port}"), project)
    assert "AllowTcpForwarding" in exc.value.hint and "Connect failed" in str(exc.value), str(exc.value)
    assert _transports(before) == before
    with pytest.raises(DeviceError, match=f"connection refused by .*:{closed}"):
        fetch_host_key(jump.profile("far", port=closed), project)


def test_a_peer_closing_is_found_up_to_eight_causes_deep():
    from edgenas.devices.login import _closed_by_peer

    def chain(depth: int) -> BaseException:
        exc: BaseException = EOFError()
        for n in range(depth):
            outer = RuntimeError(n)
            outer.__cause__ = exc
            exc = outer
        return exc

    assert _closed_by_peer(chain(0)) and _closed_by_peer(chain(7))
    assert not _closed_by_peer(chain(8)) and not _closed_by_peer(RuntimeError())


def test_without_a_key_file_the_key_comes_from_ssh_agent(sshd, project, tmp_path, monkeypatch):
    sshd.trust(project)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh keys: only the agent has one
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True, capture_output=True)
        with SSHTransport(sshd.profile(key_file=None), project) as t:
            assert t.run(["echo", "via agent"])[1] == "via agent\n"
    finally:
        agent.terminate()
        agent.wait(10)


def test_a_host_that_no_longer_has_the_recorded_key_type_still_offers_its_key(sshd, project, tmp_path):
    """The recorded key types are asked for first, not only: an RSA key on record for a host that now has
    only an ed25519 key still gets its ed25519 key (which the trust rules then judge)."""
    old = tmp_path / "old_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(old)], check=True)
    project.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    project.known_hosts.write_text(sshd.known_hosts_line(old) + "\n")
    assert fetch_host_key(sshd.profile(), project) == ("ssh-ed25519", sshd.fingerprint)


def test_a_server_that_speaks_another_ssh_version_is_named_as_it_is(project):
    """Not every SSH error is a missing handshake: a server that answers "SSH-1.5-..." is reported with
    paramiko's own reason, not as "no SSH handshake ... raise connect_timeout_s"."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)

        def answer_old_version() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"SSH-1.5-OldServer\r\n")
                time.sleep(2)

        threading.Thread(target=answer_old_version, daemon=True).start()
        profile = DeviceProfile(name="old", host="127.0.0.1", port=server.getsockname()[1], connect_timeout_s=5)
        with pytest.raises(DeviceError) as exc:
            fetch_host_key(profile, project)
    assert "device 'old': cannot connect to" in str(exc.value) and "Incompatible version" in str(exc.value)
    assert "no SSH handshake" not in str(exc.value)


def test_a_work_dir_of_the_home_or_under_it_is_the_sftp_home(sshd, project):
    import pwd

    sshd.trust(project)
    home = pwd.getpwuid(os.getuid()).pw_dir  # where sshd's sftp-server starts
    for workdir, want in (("~", home), ("~/edgenas work", f"{home}/edgenas work")):
        with SSHTransport(sshd.profile(workdir=workdir), project) as t:
            assert t.workdir == want


def test_without_a_key_file_or_agent_a_key_in_the_users_ssh_folder_is_used(sshd, project, tmp_path, monkeypatch):
    import shutil

    sshd.trust(project)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.client_key, home / ".ssh" / "id_ed25519")
    monkeypatch.setenv("HOME", str(home))  # the fixture unset SSH_AUTH_SOCK: no agent
    with SSHTransport(sshd.profile(key_file=None), project) as t:
        assert t.run(["echo", "via ~/.ssh"])[1] == "via ~/.ssh\n"


def test_an_upload_the_device_hashes_differently_is_removed_and_refused(device, project, tmp_path, monkeypatch):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"payload")
    with SSHTransport(device, project) as t:
        monkeypatch.setattr(t, "remote_sha256", lambda paths: {p: "0" * 64 for p in paths})
        with pytest.raises(DeviceError, match="upload of .*blob.bin arrived corrupted") as exc:
            t.put_file(src, "models/blob.bin")
        assert "retry" in exc.value.hint and t.uploads == []
    assert list((Path(device.workdir) / "models").iterdir()) == []  # neither the file nor its temporary copy


def test_a_download_too_large_or_hashed_differently_leaves_no_local_file(device, project, tmp_path, monkeypatch):
    on_device = Path(device.workdir) / "models" / "big.bin"
    on_device.parent.mkdir(parents=True)
    on_device.write_bytes(b"x" * 1000)
    local = tmp_path / "got" / "deep" / "big.bin"
    with SSHTransport(device, project) as t:
        with pytest.raises(DeviceError, match="big.bin on the device is larger than .* nothing was copied"):
            t.get_file("models/big.bin", local, max_bytes=999)
        assert t.get_file("models/big.bin", local, max_bytes=1000) and local.read_bytes() == b"x" * 1000
        local.unlink()
        real_stat = t._sftp.stat
        monkeypatch.setattr(t._sftp, "stat", lambda path: SimpleNamespace(st_size=None))  # no size: the copy stops
        with pytest.raises(DeviceError, match="big.bin on the device is larger than .* nothing was copied"):
            t.get_file("models/big.bin", local, max_bytes=999)
        assert t.get_file("models/big.bin", local, max_bytes=1000) and local.read_bytes() == b"x" * 1000
        local.unlink()
        monkeypatch.setattr(t._sftp, "stat", real_stat)
        monkeypatch.setattr(t, "remote_sha256", lambda paths: {p: "0" * 64 for p in paths})
        with pytest.raises(DeviceError, match="download of .*big.bin arrived corrupted"):
            t.get_file("models/big.bin", local)
    assert list(local.parent.iterdir()) == []  # no file and no temporary copy


def test_a_local_user_without_a_name_is_one_input_error(tmp_path, monkeypatch):
    """A uid with no passwd entry and no $USER (a container run with --user 1234) has no name for ssh's
    default login, nor for paramiko's config look-up (%u): getpass.getuser() raised, an internal error."""
    import pwd

    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(tmp_path / "none"))
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    for user in (None, "jetson"):
        with pytest.raises(InputError, match="device 'box': this machine's user has no name") as exc:
            resolve_target(DeviceProfile(name="box", host="10.0.0.7", user=user))
        assert exc.value.hint == "set USER in the environment, e.g. USER=me"
    monkeypatch.setenv("USER", "me")
    assert resolve_target(DeviceProfile(name="box", host="10.0.0.7")).user == "me"


class _FakeChannel:
    """What SSHAgentChannel reads from a paramiko channel: stdout in the given chunks, then the end, and an exit
    status of 3."""

    def __init__(self, chunks):
        self.chunks, self.status_event, self.closed = list(chunks), threading.Event(), False
        self.status_event.set()

    def settimeout(self, s):
        pass

    def recv(self, n):
        return self.chunks.pop(0) if self.chunks else b""

    def recv_stderr(self, n):
        return b""

    def exit_status_ready(self):
        return True

    def recv_exit_status(self):
        return 3


def _agent_lines(chunks, n):
    """The first ``n`` lines an SSH agent channel reads from ``chunks``, then the error of the next read."""
    from types import SimpleNamespace

    from edgenas.devices.ssh import SSHAgentChannel

    ch = SSHAgentChannel(_FakeChannel(chunks), "dev", SimpleNamespace(is_active=lambda: True, target="dev"))
    lines = [ch.recv_line(10) for _ in range(n)]
    with pytest.raises(DeviceError) as exc:
        ch.recv_line(10)
    return lines, str(exc.value)


def test_an_ssh_agent_channel_splits_lines_across_chunks_and_refuses_one_over_the_limit(monkeypatch):
    from edgenas.devices import transport

    monkeypatch.setattr(transport, "MAX_LINE_BYTES", 10)
    for chunks in ([b"ab\ncd", b"ef\r\n", b"0123456789\n", b"\n"], [b"ab\ncd", b"ef\r\n", b"0123456789", b"\n\n"]):
        lines, err = _agent_lines(chunks, 4)   # 10 bytes, whole or waiting for its newline: the longest line
        assert lines == ["ab", "cdef", "0123456789", ""] and "the agent exited with status 3" in err
    lines, err = _agent_lines([b"ok\n01234", b"567890\nnext\n"], 1)     # 11 bytes before the newline
    assert lines == ["ok"] and "the agent sent a line of more than" in err
    lines, err = _agent_lines([b"0123456789", b"0"], 0)                # 11 bytes and no newline yet: refused at once
    assert "the agent sent a line of more than" in err
    lines, err = _agent_lines([b'{"id": 1}'], 0)                       # output that ends with no newline: no answer
    assert "the agent exited with status 3 (the agent's output ended)" in err


class _NoStatusChannel(_FakeChannel):
    """A channel that closed with no exit status at all (the connection to sshd stayed up)."""

    def exit_status_ready(self):
        return False

    def recv_exit_status(self):
        raise AssertionError("no exit status to wait for")


def test_an_ssh_agent_channel_closed_with_no_exit_status_reads_as_killed():
    from types import SimpleNamespace

    from edgenas.devices.ssh import SSHAgentChannel

    ch = SSHAgentChannel(_NoStatusChannel([b"ok\n"]), "dev", SimpleNamespace(is_active=lambda: True, target="dev"))
    assert ch.recv_line(10) == "ok"
    with pytest.raises(DeviceError) as exc:
        ch.recv_line(10)
    assert "the agent was killed by a signal (the agent's output ended)" in str(exc.value)


class _OpenChannel(_FakeChannel):
    """A channel whose agent sent the given chunks and then stays up, sending nothing more; sendall fails as
    a broken pipe does."""

    def recv(self, n):
        if self.chunks or self.closed:
            return self.chunks.pop(0) if self.chunks else b""
        time.sleep(0.05)
        raise socket.timeout()

    def recv_stderr(self, n):
        if self.closed:
            return b""
        time.sleep(0.05)
        raise socket.timeout()

    def exit_status_ready(self):
        return False

    def sendall(self, data):
        raise BrokenPipeError("broken pipe")


def test_an_ssh_agent_channel_keeps_failing_after_the_first_failure_and_says_when_sending_fails(monkeypatch):
    """After an over-long line, or the end of the output, every later read raises again (it does not wait for a
    line that cannot come, nor return one sent after the over-long one); a failed send is a DeviceError."""
    from edgenas.devices import transport
    from edgenas.devices.ssh import SSHAgentChannel

    monkeypatch.setattr(transport, "MAX_LINE_BYTES", 10)
    conn, opened = SimpleNamespace(is_active=lambda: True, target="dev"), []

    def channel(kind, chunks):
        opened.append(kind(chunks))
        return SSHAgentChannel(opened[-1], "dev", conn)

    try:
        for kind in (_OpenChannel, _FakeChannel):
            ch = channel(kind, [b"ok\n01234", b"567890\n", b"next\n"])
            assert ch.recv_line(10) == "ok"
            for thread in ch._threads if kind is _FakeChannel else ():
                thread.join(5)  # every chunk read: "next" is not delivered all the same
            for _ in range(2):
                with pytest.raises(DeviceError, match="the agent sent a line of more than|the agent's output ended"):
                    ch.recv_line(0.5)
        ch = channel(_FakeChannel, [b"ok\n"])
        assert ch.recv_line(10) == "ok"
        for _ in range(2):
            with pytest.raises(DeviceError, match="the agent exited with status 3 .the agent's output ended."):
                ch.recv_line(0.5)
        with pytest.raises(DeviceError, match="sending to the agent failed .BrokenPipeError.") as exc:
            channel(_OpenChannel, []).send_line('{"id": 1}')
        assert exc.value.device == "dev"
        ch = channel(_OpenChannel, [b"01234567890"])
        for _ in range(2):
            with pytest.raises(DeviceError, match="the agent sent a line of more than"):
                ch.recv_line(0.5)
        ch = channel(_OpenChannel, [])  # an agent silent for longer than the channel's timeout is still heard
        for timeout_s in (0, -5):  # a deadline reached: no wait
            t0 = time.monotonic()
            assert ch.recv_line(timeout_s) is None and time.monotonic() - t0 < 0.5
        assert ch.recv_line(0.3) is None
        opened[-1].chunks.append(b"late\n")
        assert ch.recv_line(5) == "late"
    finally:
        for chan in opened:  # the reader threads end
            chan.closed = True


def test_the_pid_line_of_the_agents_shell_is_one_plain_process_number_after_this_starts_nonce():
    from edgenas.devices.ssh import _PID_LINE

    pid_line = re.compile(_PID_LINE.format(nonce="ab12"))
    assert pid_line.fullmatch("edgenas-pid-ab12 4194304").group(1) == "4194304"
    for bad in ("edgenas-pid-ab12 12 34", "edgenas-pid-ab12 1/2", "edgenas-pid-ab12 12345678901", "edgenas-pid-ab12 ",
                "edgenas-pid-ab12 -1", "banner edgenas-pid-ab12 1", "edgenas-pid-ab13 1", "edgenas-pid 1"):
        assert pid_line.fullmatch(bad) is None, bad


def test_a_helper_commands_output_is_kept_up_to_one_mb_the_start_of_stdout_and_the_end_of_stderr(device, project):
    script = "yes abcdefg | head -c 3000000; yes oops | head -c 3000000 >&2; echo LAST >&2"
    with SSHTransport(device, project) as t:
        status, out, err = t.run(["sh", "-c", script])
    assert status == 0 and out == ("abcdefg\n" * (1 << 17)) and len(err) == 1 << 20 and err.endswith("oops\nLAST\n")


_EXIT_WITH_AN_OPEN_CHANNEL = """
import socket, sys, threading, time
from types import SimpleNamespace
from edgenas.devices.ssh import SSHAgentChannel

class Silent:
    closed, status_event = False, threading.Event()
    def settimeout(self, s):
        pass
    def recv(self, n):
        time.sleep(0.05)
        raise socket.timeout()
    recv_stderr = recv

SSHAgentChannel(Silent(), "dev", SimpleNamespace(is_active=lambda: True, target="dev"))
print("started", flush=True)
"""


def test_a_command_that_ends_with_an_agent_channel_still_open_exits():
    """The readers of a channel nobody closed (an error on the way out) do not keep the command running."""
    res = subprocess.run([sys.executable, "-c", _EXIT_WITH_AN_OPEN_CHANNEL], capture_output=True, text=True,
                         timeout=30, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert (res.returncode, res.stdout) == (0, "started\n"), res.stderr


class _LateStderrChannel(_FakeChannel):
    """An agent whose output ends at once and whose last words on stderr arrive a moment later."""

    def __init__(self, chunks, stderr=b"Traceback: boom\n"):
        super().__init__(chunks)
        self.stderr = [stderr]

    def recv_stderr(self, n):
        time.sleep(0.3)
        return self.stderr.pop(0) if self.stderr else b""


def test_the_error_of_an_ended_agent_waits_a_moment_for_its_stderr_and_shows_its_last_1500_characters():
    from edgenas.devices.ssh import SSHAgentChannel

    conn = SimpleNamespace(is_active=lambda: True, target="dev")
    ch = SSHAgentChannel(_LateStderrChannel([]), "dev", conn)
    with pytest.raises(DeviceError, match="the agent exited with status 3 .the agent's output ended.; agent stderr:"
                                          "\nTraceback: boom"):
        ch.recv_line(10)
    ch = SSHAgentChannel(_LateStderrChannel([], b"x" * 10000 + b"END\n"), "dev", conn)
    with pytest.raises(DeviceError) as exc:
        ch.recv_line(10)
    assert "; agent stderr:\n" + "x" * 1497 + "END (" in str(exc.value)
    assert ch.stderr_tail() == "x" * 4092 + "END\n"


def _zipapp(path: Path, main: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__main__.py", main)
    return path


def test_closing_an_agent_channel_ends_the_agent_politely_or_by_its_pid(sshd, device, project, tmp_path):
    """Closing stdin ends an agent that reads it (no kill sent); one that does not is killed by the pid its
    shell gave, and the connection stays up for the next agent (the device is this machine: its processes are
    seen here, and sshd logs each command)."""
    polite = _zipapp(tmp_path / "polite.pyz", "import sys\nsys.stdin.read()\n")
    stubborn = _zipapp(tmp_path / "stubborn.pyz", "import time\ntime.sleep(60)\n")
    with SSHTransport(device, project) as t:
        for app, most, kills in ((polite, 2.5, 0), (stubborn, 12.0, 1)):
            channel = t.start_agent(app, app.stem)
            assert channel.alive() and running(channel.remote_pid)
            sessions, t0 = sshd.log.count("Starting session: command"), time.monotonic()
            channel.close()
            assert time.monotonic() - t0 < most and not channel.alive()
            assert sshd.log.count("Starting session: command") == sessions + kills
            deadline = time.monotonic() + 5
            while running(channel.remote_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not running(channel.remote_pid)
            channel.close()  # again: nothing to do
        assert t._conn.is_active()


class _NotFoundChannel(_FakeChannel):
    """A shell that could not find the agent's Python: status 127 and its complaint on stderr."""

    def __init__(self, chunks):
        super().__init__(chunks)
        self.stderr = [b"sh: 1: exec: /opt/py3: not found\n"]

    def recv_stderr(self, n):
        return self.stderr.pop(0) if self.stderr else b""

    def recv_exit_status(self):
        return 127


def test_an_agent_command_not_found_says_to_set_python_in_the_profile():
    from edgenas.devices.ssh import SSHAgentChannel

    ch = SSHAgentChannel(_NotFoundChannel([]), "dev", SimpleNamespace(is_active=lambda: True, target="dev"))
    with pytest.raises(DeviceError, match="the agent could not start: command not found; agent stderr:\n"
                                          "sh: 1: exec: /opt/py3: not found") as exc:
        ch.recv_line(10)
    assert exc.value.device == "dev" and "set python in the profile" in exc.value.hint


def test_a_device_whose_sftp_fails_is_one_device_error_and_leaves_no_connection(sshd, project):
    """sshd re-reads its configuration on SIGHUP: here one without the SFTP subsystem."""
    sshd.trust(project)
    _reconfigure(sshd, "Subsystem sftp internal-sftp\n", "")
    before = _transports()
    with pytest.raises(DeviceError, match="opening SFTP failed: ") as exc:
        SSHTransport(sshd.profile(), project)
    assert exc.value.device == "dev" and "permissions of the work dir" in exc.value.hint
    assert _transports(before) == before


def _reconfigure(sshd, old: str, new: str) -> None:
    """Change sshd's configuration and make it re-read it (SIGHUP: it restarts itself on the same port)."""
    config, listening = sshd.dir / "sshd_config", sshd.log.count("Server listening on")
    config.write_text(config.read_text().replace(old, new))
    os.kill(sshd.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while sshd.log.count("Server listening on") == listening:
        assert time.monotonic() < deadline, sshd.log
        time.sleep(0.05)


def test_a_file_operation_that_fails_says_so_or_that_the_connection_was_lost(sshd, device, project, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"payload")
    with SSHTransport(device, project) as t:
        Path(device.workdir).mkdir(parents=True, exist_ok=True)
        Path(device.workdir, "afile").write_text("a file where a folder is wanted")
        with pytest.raises(DeviceError, match=r"uploading blob.bin to .*/afile/blob.bin failed: \w+") as exc:
            t.put_file(src, "afile/blob.bin")
        assert "check free disk space" in exc.value.hint and t._conn.is_active()
        sshd.kill()
        deadline = time.monotonic() + 10
        while t._conn.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(DeviceError, match=r"lost the SSH connection to .* while uploading blob.bin to ") as exc:
            t.put_file(src, "models/blob.bin")
        assert "finished results on the device are kept" in exc.value.hint


#: an SFTP server's start, for the test servers below: a packet read and sent, the client's INIT answered
_SFTP_START = r"""
import os, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
def packet():
    size = inp.read(4)
    if len(size) < 4:
        sys.exit(0)
    return inp.read(struct.unpack(">I", size)[0])
def send(kind, body):
    out.write(struct.pack(">IB", len(body) + 1, kind) + body)
    out.flush()
packet()
send(2, struct.pack(">I", 3))  # VERSION 3
"""

_SFTP_SERVER = _SFTP_START + r"""
while True:  # every request: the test's answer
    request_id = packet()[1:5]
    ANSWER
"""


@pytest.mark.parametrize("answer, needle", [
    ("", "timed out while opening SFTP"),  # a server that never answers
    ("send(101, request_id + struct.pack('>I', 4) + struct.pack('>I', 4) + b'\\xff\\xfe\\xfd!' + struct.pack('>I', 0))",
     "opening SFTP failed: the device's SFTP server sent text that is not UTF-8")])
def test_an_sftp_server_that_never_answers_or_sends_text_that_is_not_utf8_is_one_device_error(sshd, project, tmp_path,
                                                                                               answer, needle):
    """A hostile or broken device: paramiko decodes the SFTP server's messages strictly, and the
    UnicodeDecodeError was an internal error of every command that logged in."""
    server = tmp_path / "sftp_server.py"
    server.write_text(_SFTP_SERVER.replace("ANSWER", answer or "pass"))
    sshd.trust(project)
    _reconfigure(sshd, "internal-sftp", f"{sys.executable} {server}")
    before = _transports()
    with pytest.raises(DeviceError, match=needle) as exc:
        SSHTransport(sshd.profile(call_timeout_s=1.0), project)
    assert exc.value.device == "dev"
    assert _transports(before) == before


def test_a_login_shell_that_prints_before_each_command_still_runs_the_agent(sshd, device, project, agent_pyz):
    """Start-up files that print for non-interactive shells (a banner in ~/.bashrc before its interactive check)
    put text before every command's own output: the agent and the device-side hashing still work."""
    home = sshd.dir / "home"  # bash run by sshd sources $HOME/.bashrc; sshd's SetEnv points HOME here
    home.mkdir()
    (home / ".bashrc").write_text("echo 'Welcome to the board'\necho '{\"not\": \"ours\"}'\necho edgenas-pid 1\n"
                                  "printf 'no newline'\n")
    sshd.extra_config = f"SetEnv HOME={home}\n"
    sshd.restart()
    with SSHTransport(device, project) as t:
        _, stdout, _ = t._conn.client.exec_command("true")
        assert stdout.read().startswith(b"Welcome to the board\n")  # the login shell does print
        assert t.run(["echo", "ours"])[:2] == (0, "ours\n") and t.run(["sh", "-c", "exit 3"])[:2] == (3, "")
        with client_for(t, agent_pyz) as client:
            assert client.ping() and t.uploads
    with SSHTransport(device, project) as t, client_for(t, agent_pyz) as client:
        assert client.ping() and t.uploads == []  # the device's hash was read: no second upload


def _old_pythons() -> list[str]:
    """Interpreters older than the agent's 3.8 (JetPack 4 ships 3.6), where this machine has them (pyenv)."""
    found = []
    for pattern in ("~/.pyenv/versions/2.7*/bin/python2.7", "~/.pyenv/versions/3.6*/bin/python3.6",
                    "~/.pyenv/versions/3.7*/bin/python3.7"):
        for exe in sorted(glob.glob(os.path.expanduser(pattern)))[:1]:
            if subprocess.run([exe, "-c", "import sys; assert sys.version_info < (3, 8)"],
                              capture_output=True, timeout=30).returncode == 0:
                found.append(exe)
    return found


@pytest.mark.skipif(not _old_pythons(), reason="no Python older than 3.8 on this machine (pyenv's 2.7, 3.6, 3.7)")
def test_a_device_python_older_than_the_agents_is_named_with_what_to_do(sshd, project, agent_pyz):
    """JetPack 4 (Jetson Nano) ships Python 3.6: the agent died with a SyntaxError and the hint 'retry'. The
    device user's start-up files may write to stderr first."""
    home = sshd.dir / "home"
    home.mkdir()
    (home / ".bashrc").write_text("echo 'conda: command not found' >&2\n")
    sshd.extra_config = f"SetEnv HOME={home}\n"
    sshd.restart()
    sshd.trust(project)
    for exe in _old_pythons():
        version = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        with SSHTransport(sshd.profile(python=exe), project) as t:
            with pytest.raises(DeviceError) as exc:
                t.start_agent(*agent_pyz)
            assert t.uploads == []
        assert f"{exe} on the device is Python {version}; the edgenas agent needs Python 3.8 or newer" in str(exc.value)
        assert "set python in the profile" in exc.value.hint


_RELAY = """
import os, socket, sys, threading
host, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(marker, "a") as f:
    f.write(host + "\\n")
if host == "dead.invalid":
    sys.exit("bastion: no route to " + host)
if host == "chatty.invalid":  # ssh -vvv -W: more debug lines than a pipe holds, before and during the session
    os.write(2, b"debug3: " * 40000)
conn = socket.create_connection(("127.0.0.1", port))

def upstream():
    for chunk in iter(lambda: os.read(0, 65536), b""):
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)

threading.Thread(target=upstream, daemon=True).start()
for chunk in iter(lambda: conn.recv(65536), b""):
    os.write(1, chunk)
"""


def test_a_proxycommand_of_the_ssh_config_carries_the_login_and_one_that_fails_says_so(sshd, project, agent_pyz,
                                                                                       tmp_path, monkeypatch):
    """A ProxyCommand line (ssh -W, cloudflared, AWS SSM) was ignored: edgenas dialled the host itself. And its
    stderr was a pipe no one read: past 64 KiB (``ssh -vvv -W``) the command stopped and the login hung."""
    relay, marker, config = tmp_path / "relay.py", tmp_path / "proxied", tmp_path / "ssh_config"
    relay.write_text(_RELAY)
    config.write_text(f"Host jet\n  HostName jet.invalid\nHost dead\n  HostName dead.invalid\n"
                      f"Host chatty\n  HostName chatty.invalid\n"
                      f"Host *\n  Port {sshd.port}\n  ProxyCommand {sys.executable} {relay} %h %p {marker}\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    key_type, b64 = Path(str(sshd.host_key) + ".pub").read_text().split()[:2]
    Path(project.known_hosts).parent.mkdir(parents=True, exist_ok=True)
    Path(project.known_hosts).write_text("".join(f"[{h}.invalid]:{sshd.port} {key_type} {b64}\n"
                                                 for h in ("jet", "chatty")))
    assert fetch_host_key(sshd.profile(host="jet"), project)[1] == sshd.fingerprint
    with SSHTransport(sshd.profile(host="jet"), project) as t, client_for(t, agent_pyz) as client:
        assert client.ping()
    assert marker.read_text().split() == ["jet.invalid", "jet.invalid"]
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        SSHTransport(sshd.profile(host="dead", connect_timeout_s=20.0), project)
    assert time.monotonic() - t0 < 10.0  # not the login's timeout
    assert f"ProxyCommand for {getpass.getuser()}@dead.invalid:{sshd.port} in {config} exited with status 1: " \
           "bastion: no route to dead.invalid" in str(exc.value)
    assert marker.read_text().split()[-1] == "dead.invalid"
    with SSHTransport(sshd.profile(host="chatty", connect_timeout_s=5.0), project) as t, \
            client_for(t, agent_pyz) as client:
        assert client.ping()  # after 320 KB of stderr
    assert marker.read_text().split()[-1] == "chatty.invalid"


def test_a_shell_that_never_prints_the_pid_line_is_a_clear_device_error_and_a_bad_agent_version_an_input_error(
        sshd, device, project, agent_pyz):
    """The start command's pid line is how the host knows the agent's shell ran it (a login shell that is not
    POSIX, or one that rewrites ``printf``, does not print it)."""
    home = sshd.dir / "home"
    home.mkdir()
    (home / ".bashrc").write_text('printf() { case "$1" in *edgenas-pid*) echo not-a-pid;; *) builtin printf "$@";; '
                                  "esac; }\n")
    sshd.extra_config = f"SetEnv HOME={home}\n"
    sshd.restart()
    with SSHTransport(replace(device, connect_timeout_s=2.0), project) as t:
        with pytest.raises(InputError, match="agent version '../x' is not a plain name"):
            t.start_agent(agent_pyz[0], "../x")
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match="the agent did not start \\(got 'not-a-pid'\\)") as exc:
            t.start_agent(*agent_pyz)
        assert time.monotonic() - t0 < 10.0  # the connect timeout (2 s) and the hash call, not for ever
        assert "POSIX shell" in exc.value.hint and all(not c.alive() for c in t._channels)


# -- a device that stalls, floods or lies: bounded in time and memory -------------------------------

def _within(seconds: float, fn):
    """``fn()``, run in a thread: its result or its error, or a test failure once it takes longer than ``seconds``
    (it waited for ever before; the thread is left to end when the server goes)."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.mark.parametrize("script, needle, hint", [
    ("cat >/dev/null", "timed out while opening SFTP", "raise call_timeout_s"),  # reads, never says its version
    ("echo 'Welcome to the board'\nexec PYTHON SERVER",
     "opening SFTP failed: the device's SFTP server sent something other than SFTP .Garbage packet received.",
     "prints text also in non-interactive sessions")], ids=["silent", "after-a-greeting"])
def test_an_sftp_server_that_never_starts_or_comes_after_a_greeting_is_one_device_error_in_time(
        sshd, project, tmp_path, script, needle, hint):
    """paramiko's ``open_sftp`` waited for the server's version with no time limit (the channel's timeout was set
    after it returned); and text a shell's start-up file prints (an echo in ~/.bashrc, run by the shell that starts
    the subsystem) made paramiko raise ``SFTPError``, no ``OSError``: an internal error (exit 70)."""
    server = tmp_path / "sftp_server.py"
    server.write_text(_SFTP_SERVER.replace("ANSWER", "pass"))
    subsystem = tmp_path / "sftp-subsystem"
    subsystem.write_text("#!/bin/sh\n" + script.replace("PYTHON", sys.executable).replace("SERVER", str(server)) + "\n")
    subsystem.chmod(0o755)
    sshd.trust(project)
    _reconfigure(sshd, "internal-sftp", str(subsystem))
    before, t0 = _transports(), time.monotonic()
    with pytest.raises(DeviceError, match=needle) as exc:
        _within(20, lambda: SSHTransport(sshd.profile(connect_timeout_s=2.0, call_timeout_s=2.0), project))
    assert time.monotonic() - t0 < 10 and exc.value.device == "dev" and hint in exc.value.hint
    assert _transports(before) == before


def test_a_device_that_never_answers_the_request_to_run_a_command_is_one_device_error_in_time(sshd, project,
                                                                                              tmp_path, monkeypatch):
    """paramiko waits for the answer to an exec request with no time limit: one stuck device held a whole
    ``fleet refresh``. Here the device's sshd stops (SIGSTOP) once a channel is open, before it answers."""
    from edgenas.io import sha256_file

    sshd.trust(project)
    app = _zipapp(tmp_path / "app.pyz", "")
    with SSHTransport(sshd.profile(connect_timeout_s=2.0, call_timeout_s=5.0), project) as t:
        real_open, stopped = t._conn.transport.open_session, []

        def open_then_stop(**kwargs):
            chan = real_open(**kwargs)
            stopped.extend(descendants(sshd.proc.pid))
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            return chan

        monkeypatch.setattr(t._conn.transport, "open_session", open_then_stop)
        try:
            for what, action in ((f"run {sys.executable}", lambda: t.run([sys.executable, "-c", "pass"])),
                                 ("start the agent", lambda: t.start_agent(app, "app"))):
                t0 = time.monotonic()
                with pytest.raises(DeviceError, match=f"SSH server did not answer the request to {re.escape(what)} "
                                                      "within 2 s") as exc:
                    _within(15, action)
                assert time.monotonic() - t0 < 6 and exc.value.device == "dev"
                assert "raise connect_timeout_s" in exc.value.hint
                for pid in stopped:
                    os.kill(pid, signal.SIGCONT)
                stopped.clear()
                monkeypatch.setattr(t, "remote_sha256", lambda paths: {p: sha256_file(app) for p in paths})
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)


_LYING_SFTP_SERVER = _SFTP_START + r"""
def string(data):
    return struct.pack(">I", len(data)) + data
def status(request_id, code):
    send(101, request_id + struct.pack(">I", code) + string(b"") + string(b""))
stats, files = 0, {}
while True:
    msg = packet()
    kind, request_id, body = msg[0], msg[1:5], msg[5:]
    name = body[4:4 + struct.unpack(">I", body[:4])[0]]  # the path, or the handle
    if kind == 16:  # REALPATH
        send(104, request_id + struct.pack(">I", 1) + string(b"/") + string(b"/") + struct.pack(">I", 0))
    elif kind in (7, 8, 17):  # LSTAT, FSTAT, STAT: the true size once, then CLAIM (the file 'grew' in between)
        stats += 1
        size = os.path.getsize(name) if stats == 1 else CLAIM
        send(105, request_id + struct.pack(">IQ", 1, size))
    elif kind == 3:  # OPEN
        files[b"h"] = open(name, "rb")
        send(102, request_id + string(b"h"))
    elif kind == 5:  # READ handle offset length: each offset asked for is logged
        offset, length = struct.unpack(">QI", body[4 + len(name):16 + len(name)])
        with open(LOG, "a") as f:
            f.write(f"{offset}\n")
        files[name].seek(offset)
        data = files[name].read(length)
        send(103, request_id + string(data)) if data else status(request_id, 1)  # EOF
    else:  # CLOSE, and what this test does not need
        status(request_id, 0 if kind == 4 else 8)
"""


def test_a_download_reads_ahead_no_further_than_the_size_checked(sshd, project, tmp_path):
    """``getfo`` asked the file's size again and read ahead all of what the device claimed then: a device that
    said 1 TiB the second time took the host to 3.9 GB of memory. Here it says 256 MiB; the limit is 200 kB."""
    log = tmp_path / "furthest-read"
    server = tmp_path / "lying_sftp_server.py"
    server.write_text(_LYING_SFTP_SERVER.replace("CLAIM", str(1 << 28)).replace("LOG", repr(str(log))))
    sshd.trust(project)
    _reconfigure(sshd, "internal-sftp", f"{sys.executable} {server}")
    device = sshd.profile(connect_timeout_s=5.0, call_timeout_s=10.0)
    content = os.urandom(100_000)
    (Path(device.workdir) / "luts").mkdir(parents=True)
    (Path(device.workdir) / "luts" / "t.json").write_bytes(content)
    with SSHTransport(device, project) as t:
        got = _within(30, lambda: t.get_file("luts/t.json", tmp_path / "t.json", max_bytes=200_000))
    assert got == hashlib.sha256(content).hexdigest() and (tmp_path / "t.json").read_bytes() == content
    assert max(int(offset) for offset in log.read_text().split("\n")[:-1]) <= len(content)  # whole lines only


def test_an_agent_that_floods_its_output_over_ssh_waits_for_the_host(device, project, tmp_path):
    """Lines nobody reads yet are held up to ``MAX_QUEUED_LINES``; then the reader stops and the SSH window fills
    up, and the agent waits. Unbounded, the host grew by hundreds of MB a second. Closing ends both readers."""
    from tests.fleet.hostile import FLOOD, check_flood_waits, hostile_agent

    with SSHTransport(device, project) as t:
        check_flood_waits(t.start_agent(*hostile_agent(tmp_path, FLOOD)))


def test_many_uploads_are_hashed_by_one_command_and_one_bad_one_places_none(device, project, tmp_path, monkeypatch):
    """``put_files``: one Python started on the device for a batch (it was one per file: most of a profile's upload
    time); an upload of the batch the device hashes differently leaves no file of the batch, final or temporary."""
    srcs = []
    for i in range(5):
        srcs.append(tmp_path / f"b{i}.bin")
        srcs[-1].write_bytes(b"payload %d" % i)
    models = Path(device.workdir) / "models"
    with SSHTransport(device, project) as t:
        real, hashed = t.remote_sha256, []
        monkeypatch.setattr(t, "remote_sha256", lambda paths: hashed.append(list(paths)) or real(paths))
        shas = t.put_files([(src, f"models/deep/b{i}.bin") for i, src in enumerate(srcs)])
        assert shas == [hashlib.sha256(src.read_bytes()).hexdigest() for src in srcs]
        assert len(hashed) == 1 and len(hashed[0]) == 5
        assert sorted(p.name for p in (models / "deep").iterdir()) == [f"b{i}.bin" for i in range(5)]
        assert t.uploads == [f"{device.workdir}/models/deep/b{i}.bin" for i in range(5)]

        def one_bad(paths):
            got = real(paths)
            return {p: "0" * 64 if p.startswith(f"{device.workdir}/models/b3.bin") else h for p, h in got.items()}

        monkeypatch.setattr(t, "remote_sha256", one_bad)
        with pytest.raises(DeviceError, match=r"upload of .*b3\.bin arrived corrupted"):
            t.put_files([(src, f"models/b{i}.bin") for i, src in enumerate(srcs)])
        assert len(t.uploads) == 5  # the first batch's only
    assert sorted(p.name for p in models.iterdir()) == ["deep"]  # no file of the bad batch, no temporary one


def test_a_session_pushes_a_batch_once_and_skips_what_the_device_has(sshd, device, project, agent_pyz, tmp_path,
                                                                     monkeypatch):
    from edgenas.devices.session import Session

    srcs = [tiny_model(tmp_path / f"relu{n}.onnx", n) for n in (1, 2, 3)]
    with SSHTransport(device, project) as t:
        s, s2 = Session(device, t, client_for(t, agent_pyz)), Session(device, t, client_for(t, agent_pyz))
        calls = []
        real = t.put_files
        monkeypatch.setattr(t, "put_files", lambda files: calls.append([r for _, r in files]) or real(files))
        first = s.push_many(srcs[:2])
        assert len(calls) == 1 and calls[0] == first and len(set(first)) == 2
        again = s.push_many([srcs[1], srcs[0], srcs[1], srcs[2]])  # one new: it alone goes up
        assert again == [first[1], first[0], first[1], again[3]] and calls[1] == [again[3]]
        assert s2.push_many(srcs) == [first[0], first[1], again[3]] and calls[2] == []  # the device has them all


def test_many_long_paths_are_hashed_in_several_commands(device, project, monkeypatch):
    """``remote_sha256`` of more paths than one command line takes (the device's shell said "Argument list too
    long" and the hashing "failed", hinting at the profile's python): as many commands as needed, all answered."""
    folder = Path(device.workdir) / "models"
    folder.mkdir(parents=True)
    names = [f"{'x' * 150}-{i}.onnx" for i in range(1200)]  # ~190 KiB of paths: over Linux's 128 KiB
    for name in names[:3]:
        (folder / name).write_bytes(name.encode())
    with SSHTransport(device, project) as t:
        real, commands = t.run, []
        monkeypatch.setattr(t, "run", lambda argv, timeout_s=None: commands.append(argv) or real(argv, timeout_s))
        paths = [f"{t.workdir}/models/{name}" for name in names]
        got = t.remote_sha256(paths + paths[:2])  # a path named twice is hashed once
    assert got == {p: hashlib.sha256(n.encode()).hexdigest() if i < 3 else None
                   for i, (p, n) in enumerate(zip(paths, names))}
    assert len(commands) >= 2 and sum(len(c) - 4 for c in commands) == 1200
    assert all(sum(len(a) + 3 for a in c) < 128 << 10 for c in commands)


def test_an_upload_after_the_device_removed_its_folder_makes_it_again(device, project, tmp_path):
    """The folders an upload made are not looked at again on this connection; one removed on the device since
    (its work dir cleaned during a long search) is made again, not a failed upload ("No such file")."""
    import shutil

    src = tmp_path / "a.bin"
    src.write_bytes(b"payload")
    models = Path(device.workdir) / "models"
    with SSHTransport(device, project) as t:
        t.put_files([(src, "models/deep/a.bin")])
        shutil.rmtree(models)
        assert t.put_files([(src, "models/deep/a.bin"), (src, "models/deep/b.bin")]) == \
            [hashlib.sha256(b"payload").hexdigest()] * 2
    assert sorted(p.name for p in (models / "deep").iterdir()) == ["a.bin", "b.bin"]
