"""Host-key trust against a real sshd: unknown keys rejected, trusting is explicit, changes refused."""

from __future__ import annotations

import dataclasses
import errno
import getpass
import io
import json
import os
import sys
from pathlib import Path

import paramiko
import pytest

from edgenas.errors import DeviceError, HostKeyError, InputError, OutputError
from edgenas.devices.ssh import SSHTransport
from edgenas.devices.known_hosts import KnownKey
from edgenas.devices.login import SSHTarget
from edgenas.devices.trust import (OfferedKey, TrustedKey, _record, fetch_host_key, has_jump_host,
                                   trust_host)
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


def test_trust_asks_the_host_for_its_key_once_when_that_key_is_the_one(sshd, project):
    """Each key fetch is one more SSH handshake that never logs in (two through a jump host; fail2ban counts
    them): other key types are asked for only while an expected fingerprint is still not found."""
    before = sshd.log.count("Connection from")
    trust_host(project, sshd.profile())
    trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint)
    assert sshd.log.count("Connection from") - before == 2


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
    assert "CHANGED" in msg and old in msg and new in msg and "--replace" in msg and "jump host" not in msg
    assert exc.value.known_fingerprints == [old] and exc.value.fingerprint == new
    with pytest.raises(HostKeyError, match="CHANGED"):
        trust_host(project, profile)  # trusting again is not enough: replacing must be deliberate
    recorded = project.known_hosts.read_text()
    with pytest.raises(HostKeyError, match="needs the new key's fingerprint") as exc:
        trust_host(project, profile, replace=True)  # and done against the fingerprint the owner gave
    assert f"--fingerprint {new}" in exc.value.hint and project.known_hosts.read_text() == recorded
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
    assert fetch_host_key(profile, project) == ("ssh-ed25519", target.fingerprint)  # through the trusted jump host
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


# -- known_hosts files as OpenSSH reads them ---------------------------------------------------------

def write_profile(project: Project, prof) -> None:
    """``profiles/NAME.toml`` of ``prof`` (fields left at None stay out, as a user would write it)."""
    fields = ("name", "host", "port", "user", "key_file", "proxy_jump", "python", "workdir", "connect_timeout_s")
    lines = [f"{f} = {json.dumps(getattr(prof, f))}" for f in fields if getattr(prof, f) is not None]
    project.profiles_dir.mkdir(parents=True, exist_ok=True)
    (project.profiles_dir / f"{prof.name}.toml").write_text("[device]\n" + "\n".join(lines) + "\n")


@pytest.fixture
def user_known_hosts(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "user_known_hosts"
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(path))
    return path


def test_unusable_user_known_hosts_lines_are_skipped(sshd, project, user_known_hosts, cli, monkeypatch):
    """An ``@cert-authority`` line, a broken key, an unknown key type or a byte that is not UTF-8 in
    ~/.ssh/known_hosts ended every SSH command and `device trust` with an internal error (exit 70)."""
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBUDq/6MSPondHX30HsiyVzlgFZ2g8x5D7+UTgVAU0vz"
    user_known_hosts.write_bytes(f"@cert-authority *.example.com {other}\notherhost ssh-ed25519 AAAAbroken\n"
                                 f"weird ssh-foo AAAA\nlatin1-h\xe9st {other}\n".encode("latin-1")
                                 + f"{sshd.known_hosts_line()}\n".encode())
    with SSHTransport(sshd.profile(), project) as t:
        assert t.run(["true"])[0] == 0
    assert fetch_host_key(sshd.profile(), project) == ("ssh-ed25519", sshd.fingerprint)
    write_profile(project, sshd.profile())
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "trust", "dev", "--yes")
    assert res.code == 0 and "internal error" not in res.err, res.err


def test_a_revoked_key_is_never_accepted(sshd, project, user_known_hosts):
    """An ``@revoked`` line crashed edgenas; a key marked @revoked must be refused even where a plain line
    of the same file records it."""
    line = sshd.known_hosts_line()
    user_known_hosts.write_text(f"{line}\n@revoked * {line.split(' ', 1)[1]}\n")
    with pytest.raises(HostKeyError, match="@revoked") as exc:
        SSHTransport(sshd.profile(), project)
    assert str(user_known_hosts) in str(exc.value)
    with pytest.raises(HostKeyError, match="never accepted"):
        trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint)
    assert not project.known_hosts.exists()


def test_the_projects_key_wins_over_an_old_one_in_the_users_known_hosts(sshd, project, user_known_hosts):
    """With the old key in ~/.ssh/known_hosts (read first; paramiko uses the first key of a type),
    `device trust --replace` said "trusted" but the device stayed refused, and the hint named the project's
    known_hosts, which did not hold the key."""
    user_known_hosts.write_text(sshd.known_hosts_line() + "\n")
    before = user_known_hosts.read_text()
    sshd.restart(new_host_key=True)
    with pytest.raises(HostKeyError, match="CHANGED") as exc:
        SSHTransport(sshd.profile(), project)
    assert f"from {user_known_hosts}" in exc.value.hint and str(project.known_hosts) not in exc.value.hint
    trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint, replace=True)
    with SSHTransport(sshd.profile(), project) as t:
        assert t.run(["true"])[0] == 0
    assert user_known_hosts.read_text() == before  # read, never written


def test_a_host_with_several_key_types_is_compared_by_type(sshd, project, user_known_hosts):
    """The user's file held the host's ECDSA key: connecting worked, but trust fetched the ed25519 key and
    reported it CHANGED; the genuine ed25519 fingerprint given as expected was refused."""
    ecdsa, rsa = sshd.add_host_key("ecdsa"), sshd.add_host_key("rsa")
    sshd.restart()
    user_known_hosts.write_text(sshd.known_hosts_line(ecdsa) + "\n")
    with SSHTransport(sshd.profile(), project) as t:
        assert t.run(["true"])[0] == 0
    trusted = trust_host(project, sshd.profile())
    assert (trusted.key_type, trusted.fingerprint) == ("ecdsa-sha2-nistp256", sshd.fingerprint_of(ecdsa))
    assert trusted.newly_recorded and project.known_hosts.read_text() == sshd.known_hosts_line(ecdsa) + "\n"
    before = sshd.log.count("Connection from")
    trusted = trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint)
    assert (trusted.key_type, trusted.newly_recorded) == ("ssh-ed25519", True)
    assert sshd.log.count("Connection from") - before == 2  # the recorded type, then ed25519: found, no more
    trusted = trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint_of(rsa))
    assert (trusted.key_type, trusted.newly_recorded) == ("ssh-rsa", True)  # asked past the types the host lacks


def test_replace_takes_only_the_replaced_name_off_a_shared_line(sshd, project):
    """`--replace` deleted the whole line ``[127.0.0.1]:A,[127.0.0.1]:B <key>``, untrusting the other name."""
    other = f"[127.0.0.1]:{sshd.port + 1}"
    line = sshd.known_hosts_line()
    project.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    project.known_hosts.write_text(f"{other},{line}\n")
    sshd.restart(new_host_key=True)
    trust_host(project, sshd.profile(), expected_fingerprint=sshd.fingerprint, replace=True)
    kept, added = project.known_hosts.read_text().splitlines()
    assert kept == f"{other} {line.split(' ', 1)[1]}" and added == sshd.known_hosts_line()


# -- device trust (the CLI) ---------------------------------------------------------------------------

def test_device_trust_handles_the_jump_host_first(sshd_factory, project, cli, monkeypatch):
    """`device trust tj` failed on the jump host's unknown key with a hint to run `device trust tj` again."""
    jump, target = sshd_factory(), sshd_factory()
    prof = target.profile("tj", proxy_jump=f"127.0.0.1:{jump.port}")
    write_profile(project, prof)
    with pytest.raises(HostKeyError, match=f"\\[127.0.0.1\\]:{jump.port} \\(jump host of 'tj'\\)") as exc:
        SSHTransport(prof, project)
    assert "edgenas device trust tj" in exc.value.hint and "jump host's key first" in exc.value.hint
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "trust", "tj", "--yes", "--jump-fingerprint", "SHA256:bogus")
    assert res.code == InputError.exit_code and "jump host of 'tj'" in res.err and not project.known_hosts.exists()
    res = cli("device", "trust", "tj", "--yes", "--jump-fingerprint", jump.fingerprint)
    assert res.code == 0, res.err
    assert f"jump host of 'tj' ({getpass.getuser()}@127.0.0.1:{jump.port}" in res.err and jump.fingerprint in res.err
    assert f"via {getpass.getuser()}@127.0.0.1:{jump.port}" in res.err and target.fingerprint in res.err
    with SSHTransport(prof, project) as t:
        assert t.run(["echo", "via jump"])[1] == "via jump\n"
    # only the jump host's key changes: --replace --yes with its fingerprint alone is enough (it asked for
    # --fingerprint, the device's, which had not changed)
    jump.restart(new_host_key=True)
    res = cli("device", "trust", "tj", "--replace", "--yes", "--jump-fingerprint", jump.fingerprint)
    assert res.code == 0, res.err
    with SSHTransport(prof, project) as t:
        assert t.run(["echo", "again"])[1] == "again\n"


def test_a_missing_identity_file_of_the_ssh_config_is_skipped_or_named(sshd, project, tmp_path, monkeypatch):
    """A missing IdentityFile from ~/.ssh/config was a raw FileNotFoundError; OpenSSH skips it and tries the
    others, and with none left the line names the config file."""
    sshd.trust(project)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n  IdentityFile {tmp_path}/nokey\n"
                      f"  IdentityFile {sshd.client_key}\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    prof = dataclasses.replace(sshd.profile("al", host="alias", port=None), key_file=None)
    with SSHTransport(prof, project) as t:
        assert t.run(["echo", "ok"])[1] == "ok\n"
    config.write_text(f"Host alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n  IdentityFile {tmp_path}/nokey\n")
    with pytest.raises(DeviceError, match=f"IdentityFile {tmp_path}/nokey in {config} for alias is not a file"):
        SSHTransport(prof, project)


def test_device_trust_shows_the_address_ssh_config_resolves_to(sshd, project, cli, tmp_path, monkeypatch):
    """The prompt showed "al (myjet:22)" while the key came from and is recorded for [127.0.0.1]:PORT."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host myjet\n  HostName 127.0.0.1\n  Port {sshd.port}\n")
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    write_profile(project, sshd.profile("al", host="myjet", port=None))
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    res = cli("device", "trust", "al", "--yes")
    assert res.code == 0, res.err
    assert f"127.0.0.1:{sshd.port}; known_hosts name [127.0.0.1]:{sshd.port})" in res.err
    assert "myjet:22" not in res.err


def test_device_trust_without_a_terminal_says_to_pass_yes(sshd, project, cli, monkeypatch):
    """On a stdin that is not a terminal `device trust` printed "aborted" (exit 130) and nothing else."""
    write_profile(project, sshd.profile())
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    res = cli("device", "trust", "dev")
    assert res.code == InputError.exit_code and "--yes" in res.err, res.err
    assert not project.known_hosts.exists()


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_known_hosts_that_is_a_folder_or_a_link_is_named_and_kept(sshd, project, tmp_path, kind):
    """A folder was reported by its temporary file (.known_hosts.XXXX.tmp); a link was silently replaced by a
    regular file."""
    project.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        project.known_hosts.mkdir()
    else:
        (tmp_path / "shared_kh").write_text("")
        project.known_hosts.symlink_to(tmp_path / "shared_kh")
    with pytest.raises(OutputError) as exc:
        trust_host(project, sshd.profile())
    assert str(project.known_hosts) in str(exc.value) and ".tmp" not in str(exc.value)
    assert ("is not a file" if kind == "folder" else "is a symbolic link") in str(exc.value)
    assert project.known_hosts.is_dir() if kind == "folder" else project.known_hosts.is_symlink()


# -- recording and comparing, without a server --------------------------------------------------------

@pytest.fixture(scope="module")
def keys():
    """Two keys of one type (a host's key and the key it was replaced by) and one of another type."""
    return {"a": paramiko.ECDSAKey.generate(bits=256), "b": paramiko.ECDSAKey.generate(bits=256),
            "c": paramiko.ECDSAKey.generate(bits=384)}


def _line(names: str, key) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}"


def test_recording_with_replace_takes_the_name_off_every_line_and_keeps_the_rest(tmp_path, keys):
    """Comments, marker lines, other hosts' lines and the other names of a shared line stay as they were."""
    name = "[10.0.0.7]:2222"
    hashed = paramiko.HostKeys.hash_host(name)
    kept = ["# lab hosts", "", f"@revoked * {keys['c'].get_name()} {keys['c'].get_base64()}",
            _line("other", keys["a"]), "lonely-field", _line("[10.0.0.7]:2223", keys["a"])]
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(kept + [_line(name, keys["a"]), _line(f"a,{name},b", keys["a"]),
                                      _line(hashed, keys["c"]), _line(f"{name},[10.0.0.7]:22", keys["c"])]) + "\n")
    _record(path, name, keys["b"], replace=True)
    assert path.read_text().splitlines() == kept + [_line("a,b", keys["a"]), _line("[10.0.0.7]:22", keys["c"]),
                                                    _line(name, keys["b"])]
    _record(path, "new-host", keys["c"], replace=False)
    assert path.read_text().splitlines()[-2:] == [_line(name, keys["b"]), _line("new-host", keys["c"])]
    _record(tmp_path / "fresh", name, keys["a"], replace=True)  # no file yet
    assert (tmp_path / "fresh").read_text() == _line(name, keys["a"]) + "\n"


def test_a_known_hosts_that_cannot_be_written_is_one_output_error(tmp_path, keys):
    (tmp_path / "proj").write_text("a file where the project's folder should be\n")
    with pytest.raises(OutputError) as exc:
        _record(tmp_path / "proj" / "known_hosts", "h", keys["a"], replace=False)
    # the system's own words (making the folder: it exists, as a file), not the exception's class
    assert exc.value.message == f"cannot write {tmp_path / 'proj' / 'known_hosts'}: {os.strerror(errno.EEXIST)}"
    assert "check the permissions" in exc.value.hint


def test_a_known_hosts_that_is_not_utf8_is_named_and_kept(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_bytes(b"h\xe9st ssh-ed25519 AAAA\n")
    with pytest.raises(OutputError, match=f"cannot read {path}") as exc:
        _record(path, "h", keys["a"], replace=False)
    assert "trust again" in exc.value.hint and path.read_bytes() == b"h\xe9st ssh-ed25519 AAAA\n"


def test_an_offered_key_is_trusted_changed_unknown_or_revoked_by_its_type(tmp_path, keys):
    target = SSHTarget("10.0.0.7", 2222, "me", (), None)
    rec = tuple(KnownKey(("[10.0.0.7]:2222",), keys[k], tmp_path / "kh") for k in ("a", "c"))

    def offer(key, recorded=rec, revoked_in=None, jump=False, via=None):
        return OfferedKey("dev", jump, target, via, key, recorded, revoked_in)

    assert offer(keys["a"]).state == "trusted" and offer(keys["c"]).state == "trusted"
    assert offer(keys["b"]).state == "changed" and offer(keys["b"]).same_type == [rec[0]]
    assert offer(keys["b"], recorded=rec[1:]).state == "unknown" and offer(keys["b"], recorded=rec[1:]).same_type == []
    assert offer(keys["a"], revoked_in=tmp_path / "kh").state == "revoked"
    got = offer(keys["b"])
    assert (got.host, got.key_type) == ("[10.0.0.7]:2222", "ecdsa-sha2-nistp256")
    assert got.describe() == "dev (me@10.0.0.7:2222; known_hosts name [10.0.0.7]:2222)"
    assert offer(keys["b"], jump=True, via="me@bastion:22").describe() == (
        "jump host of 'dev' (me@10.0.0.7:2222 via me@bastion:22; known_hosts name [10.0.0.7]:2222)")
    trusted = TrustedKey("dev", "[10.0.0.7]:2222", "ecdsa-sha2-nistp256", "SHA256:x", newly_recorded=False)
    assert str(trusted) == "device 'dev': already trusted [10.0.0.7]:2222 ecdsa-sha2-nistp256 SHA256:x"
    assert str(dataclasses.replace(trusted, newly_recorded=True)).startswith("device 'dev': trusted [10.0.0.7]")
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.newly_recorded = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.key = keys["a"]


def test_a_local_device_has_no_host_key_to_trust(tmp_path):
    from edgenas.devices.profiles import LOCAL_PROFILE

    assert not has_jump_host(LOCAL_PROFILE)
    with pytest.raises(InputError, match="runs on this machine"):
        trust_host(Project(tmp_path), LOCAL_PROFILE)
