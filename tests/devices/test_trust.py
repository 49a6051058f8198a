"""Host-key trust against a real sshd: unknown keys rejected, trusting is explicit, changes refused."""

from __future__ import annotations

import getpass

import pytest

from edgenas.errors import DeviceError, HostKeyError
from edgenas.devices.ssh import SSHTransport
from edgenas.devices.trust import fetch_host_key, trust_host
from edgenas.project import Project

pytestmark = pytest.mark.ssh


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path / "proj")


def test_first_contact_rejected_until_trusted(sshd, project):
    profile = sshd.profile()
    with pytest.raises(HostKeyError) as exc:
        SSHTransport(profile, project)
    err = exc.value
    assert "unknown SSH host key" in str(err) and sshd.fingerprint in str(err)
    assert err.device == "dev" and err.fingerprint == sshd.fingerprint and "edgenas device trust dev" in err.hint
    assert not project.known_hosts.exists()  # nothing was auto-added (unlike fabric)

    assert fetch_host_key(profile, project) == ("ssh-ed25519", sshd.fingerprint)
    trusted = trust_host(project, profile)
    assert (trusted.fingerprint, trusted.key_type, trusted.newly_recorded) == (sshd.fingerprint, "ssh-ed25519", True)
    assert sshd.fingerprint in str(trusted)
    line = project.known_hosts.read_text()
    assert line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")

    with SSHTransport(profile, project) as t:
        assert t.run(["echo", "hi"])[:2] == (0, "hi\n")
    again = trust_host(project, profile)
    assert not again.newly_recorded and project.known_hosts.read_text() == line


def test_expected_fingerprint_mismatch_records_nothing(sshd, project):
    with pytest.raises(HostKeyError, match="not the expected SHA256:bogus"):
        trust_host(project, sshd.profile(), expected_fingerprint="SHA256:bogus")
    assert not project.known_hosts.exists()
    assert trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint).newly_recorded


def test_changed_host_key_refused_then_replaced_deliberately(sshd, project):
    profile = sshd.profile()
    trust_host(project, profile)
    old = sshd.fingerprint
    sshd.restart(new_host_key=True)
    new = sshd.fingerprint
    assert old != new
    with pytest.raises(HostKeyError) as exc:
        SSHTransport(profile, project)
    msg = str(exc.value)
    assert "CHANGED" in msg and old in msg and new in msg and "--replace" in msg
    assert exc.value.known_fingerprints == [old] and exc.value.fingerprint == new
    with pytest.raises(HostKeyError, match="CHANGED"):
        trust_host(project, profile)  # trusting again is not enough: replacing must be deliberate
    assert trust_host(project, profile, expected_fingerprint=new, replace=True).fingerprint == new
    assert project.known_hosts.read_text().count(f"[127.0.0.1]:{sshd.port}") == 1
    with SSHTransport(profile, project) as t:
        assert t.run(["true"])[0] == 0


def test_user_known_hosts_is_read_not_written(sshd, project, tmp_path, monkeypatch):
    user_file = tmp_path / "user_known_hosts"
    key_type, b64 = (sshd.host_key.parent / (sshd.host_key.name + ".pub")).read_text().split()[:2]
    user_file.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {b64}\n")
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(user_file))
    before = user_file.read_text()
    with SSHTransport(sshd.profile(), project) as t:
        assert t.run(["true"])[0] == 0
    assert user_file.read_text() == before and not project.known_hosts.exists()


def test_jump_host_follows_the_same_rules(sshd_factory, project):
    jump, target = sshd_factory(), sshd_factory()
    profile = target.profile(proxy_jump=f"127.0.0.1:{jump.port}")
    with pytest.raises(HostKeyError, match=f"unknown SSH host key for \\[127.0.0.1\\]:{jump.port}"):
        trust_host(project, profile)  # the jump host must be trusted first
    jump.trust(project)
    with pytest.raises(HostKeyError, match=f"\\[127.0.0.1\\]:{target.port}"):
        SSHTransport(profile, project)
    assert trust_host(project, profile).fingerprint == target.fingerprint
    with SSHTransport(profile, project) as t:
        assert t.run(["echo", "via jump"])[1] == "via jump\n"
    jump.kill()  # the target is still up, but the only way to it is gone
    with pytest.raises(DeviceError) as exc:
        SSHTransport(profile, project)
    assert f"connection refused by root@127.0.0.1:{jump.port}" in str(exc.value).replace(getpass.getuser(), "root")
    assert "jump host of 'dev'" in str(exc.value)
