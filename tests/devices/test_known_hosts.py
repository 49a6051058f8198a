"""Host-key policy without a server: which recorded keys count for a host, and the error for every other key.

Real known_hosts files and real paramiko keys (ECDSA, which paramiko generates in milliseconds); the
tests against a real sshd are in ``test_trust.py``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import FrozenInstanceError
from pathlib import Path

import paramiko
import pytest

from edgenas.devices.known_hosts import (KnownKey, StrictHostKeyPolicy, changed_key_error, key_fingerprint,
                                         known_host_name, load_known_hosts, names_host, revoked_key_error,
                                         unknown_key_error, user_known_hosts_path, verify_host_key)
from edgenas.errors import HostKeyError
from edgenas.project import Project

HOST = "[10.0.0.7]:2222"


@pytest.fixture(scope="module")
def keys() -> dict[str, paramiko.PKey]:
    """Two keys of one type (a host's key and the key it was replaced by) and one of another type."""
    return {"a": paramiko.ECDSAKey.generate(bits=256), "b": paramiko.ECDSAKey.generate(bits=256),
            "c": paramiko.ECDSAKey.generate(bits=384)}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(tmp_path / "user_known_hosts"))
    return Project(tmp_path / "proj")


def line(names: str, key: paramiko.PKey) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}"


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))
    return path


def sha256(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def test_names_are_openssh_s_and_the_fingerprint_is_ssh_keygen_s(keys):
    assert known_host_name("jetson.lab", 22) == "jetson.lab"
    assert known_host_name("10.0.0.7", 2222) == HOST
    assert key_fingerprint(keys["a"]) == sha256(keys["a"]) and len(sha256(keys["a"])) == 7 + 43


def test_the_users_known_hosts_is_in_ssh_unless_the_environment_names_another(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("EDGENAS_USER_KNOWN_HOSTS", raising=False)
    assert user_known_hosts_path() == tmp_path / ".ssh" / "known_hosts"
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(tmp_path / "kh"))
    assert user_known_hosts_path() == tmp_path / "kh"
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", "")  # empty: not set
    assert user_known_hosts_path() == tmp_path / ".ssh" / "known_hosts"


def test_a_host_list_names_a_host_plainly_or_hashed():
    hashed = paramiko.HostKeys.hash_host(HOST)
    assert names_host(["other", HOST], HOST) and names_host((hashed,), HOST)
    assert not names_host(["10.0.0.7", "[10.0.0.7]:22"], HOST)
    assert not names_host([paramiko.HostKeys.hash_host("[10.0.0.7]:2223")], HOST)
    assert not names_host([], HOST)


def test_the_project_s_key_of_a_type_wins_and_each_type_counts_once(project, keys):
    write(project.known_hosts, line(HOST, keys["b"]))
    write(project.root.parent / "user_known_hosts", line(HOST, keys["a"]), line(f"x,{HOST}", keys["c"]),
          line("elsewhere", keys["c"]))
    store = load_known_hosts(project)
    assert [(k.key, k.path) for k in store.for_host(HOST)] == [(keys["b"], project.known_hosts),
                                                                 (keys["c"], user_known_hosts_path())]
    assert [k.hostnames for k in store.keys] == [(HOST,), (HOST,), ("x", HOST), ("elsewhere",)]
    assert store.for_host("nowhere") == [] and store.revoked == ()


def test_lines_that_cannot_be_used_are_skipped_and_the_rest_read(project, keys):
    raw = (f"# {line(HOST, keys['b'])}\n#{line(HOST, keys['b'])}\n\n   \n"
           f"@cert-authority * {keys['b'].get_name()} {keys['b'].get_base64()}\n"
           f"{HOST} ssh-ed25519 AAAAbroken\n{HOST} ssh-foo AAAA\n"
           f"h\xe9st {keys['b'].get_name()} {keys['b'].get_base64()}\n"
           f"  {HOST}\t{keys['a'].get_name()}   {keys['a'].get_base64()}  \n")
    project.root.mkdir(parents=True)
    project.known_hosts.write_bytes(raw.encode("latin-1"))
    (project.root.parent / "user_known_hosts").mkdir()  # a folder, not a file: nothing to read
    store = load_known_hosts(project)
    assert [(k.hostnames, k.key) for k in store.keys] == [((HOST,), keys["a"])] and store.revoked == ()
    with pytest.raises(FrozenInstanceError):
        store.keys[0].path = user_known_hosts_path()
    with pytest.raises(FrozenInstanceError):
        store.revoked = store.keys


def test_a_users_known_hosts_that_cannot_be_looked_at_is_skipped(project, keys, monkeypatch):
    """Not even ``is_file`` works on a name longer than the file system allows (ENAMETOOLONG)."""
    write(project.known_hosts, line(HOST, keys["a"]))
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(project.root / ("k" * 300)))
    assert [k.key for k in load_known_hosts(project).for_host(HOST)] == [keys["a"]]


def test_a_revoked_key_counts_for_no_host(project, keys):
    user = write(project.root.parent / "user_known_hosts", line(HOST, keys["a"]), line(HOST, keys["c"]),
                 "@revoked some.other.host " + line("", keys["a"]).strip())
    store = load_known_hosts(project)
    assert store.revocation(keys["a"]).path == user and store.revocation(keys["b"]) is None
    assert [k.key for k in store.for_host(HOST)] == [keys["c"]]
    with pytest.raises(HostKeyError) as exc:
        verify_host_key(project, "dev", HOST, keys["a"])
    assert f"{user} marks @revoked" in str(exc.value) and sha256(keys["a"]) in str(exc.value)
    assert exc.value.fingerprint == sha256(keys["a"]) and exc.value.host == HOST and "do not connect" in exc.value.hint


def test_a_recorded_key_passes_and_a_key_of_another_type_is_unknown_not_changed(project, keys):
    write(project.known_hosts, line(HOST, keys["a"]))
    assert verify_host_key(project, "dev", HOST, keys["a"]) is None
    assert StrictHostKeyPolicy(project, "dev").missing_host_key(None, HOST, keys["a"]) is None
    with pytest.raises(HostKeyError) as exc:
        verify_host_key(project, "dev", HOST, keys["c"])
    err = exc.value
    assert err.message == (f"device 'dev': unknown SSH host key for {HOST}: ecdsa-sha2-nistp384 {sha256(keys['c'])} "
                        f"(keys of other types are recorded for it: ecdsa-sha2-nistp256)")
    assert (err.device, err.host, err.key_type, err.fingerprint) == ("dev", HOST, "ecdsa-sha2-nistp384",
                                                                     sha256(keys["c"]))
    assert "`edgenas device trust dev`" in err.hint and "jump host" not in err.hint
    with pytest.raises(HostKeyError) as exc:
        verify_host_key(project, "dev", "[10.0.0.8]:2222", keys["a"])  # recorded, but for another host
    assert exc.value.message.endswith(f"[10.0.0.8]:2222: ecdsa-sha2-nistp256 {sha256(keys['a'])}")


def test_a_changed_key_names_both_fingerprints_and_the_file_that_records_the_old_one(project, keys):
    write(project.known_hosts, line(HOST, keys["a"]))
    user = write(project.root.parent / "user_known_hosts", line(HOST, keys["a"]))
    with pytest.raises(HostKeyError) as exc:
        StrictHostKeyPolicy(project, "dev").missing_host_key(None, HOST, keys["b"])
    err = exc.value
    assert (f"the SSH host key of {HOST} CHANGED: recorded ecdsa-sha2-nistp256 {sha256(keys['a'])} "
            f"(in {project.known_hosts}); offered now ecdsa-sha2-nistp256 {sha256(keys['b'])}") in str(err)
    assert err.known_fingerprints == [sha256(keys["a"])] and err.fingerprint == sha256(keys["b"])
    assert f"--replace --fingerprint {sha256(keys['b'])}" in err.hint and f"from {project.known_hosts}" in err.hint
    project.known_hosts.unlink()
    with pytest.raises(HostKeyError) as exc:
        verify_host_key(project, "dev", HOST, keys["b"])
    assert f"(in {user})" in str(exc.value)


def test_a_jump_host_s_key_errors_say_so(project, keys):
    policy = StrictHostKeyPolicy(project, "dev", jump=True)
    with pytest.raises(HostKeyError) as exc:
        policy.missing_host_key(None, HOST, keys["a"])
    assert f"for {HOST} (jump host of 'dev'):" in str(exc.value) and "jump host's key first" in exc.value.hint
    write(project.known_hosts, line(HOST, keys["b"]))
    with pytest.raises(HostKeyError) as exc:
        policy.missing_host_key(None, HOST, keys["a"])
    assert f"key of {HOST} (jump host of 'dev') CHANGED" in str(exc.value)
    assert "--replace --jump-fingerprint" in exc.value.hint
    write(project.known_hosts, line(HOST, keys["b"]), "@revoked * " + line("", keys["a"]).strip())
    with pytest.raises(HostKeyError, match=r"\(jump host of 'dev'\) offers .* marks @revoked"):
        policy.missing_host_key(None, HOST, keys["a"])


@pytest.mark.parametrize("bad", ["|1|abc|def", "|1|", "|1|a|b", "|1|YWJj|YWJj", "|1|!!!|x"])
def test_a_malformed_hashed_name_names_no_host_and_stops_nothing(project, keys, bad):
    """A hashed name that is not ``|1|<20 bytes>|<20 bytes>`` in base64 (a truncated or hand-edited line of
    ~/.ssh/known_hosts) ended every SSH command with an internal error (AssertionError, binascii.Error)."""
    write(project.root.parent / "user_known_hosts", line(bad, keys["b"]), line(HOST, keys["a"]))
    assert not names_host([bad], HOST)
    assert verify_host_key(project, "dev", HOST, keys["a"]) is None
    assert [k.key for k in load_known_hosts(project).for_host(HOST)] == [keys["a"]]


def test_the_errors_are_about_the_device_itself_unless_told_it_is_a_jump_host(project, keys):
    revoked = KnownKey((HOST,), keys["a"], project.known_hosts)
    for err in (unknown_key_error("dev", HOST, keys["a"]), revoked_key_error("dev", HOST, keys["a"], revoked),
                changed_key_error("dev", HOST, keys["b"], [revoked])):
        assert "'dev': " in str(err) and "jump" not in str(err) and "jump" not in err.hint
