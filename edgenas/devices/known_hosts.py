"""Host-key policy: which SSH host keys edgenas accepts, and the errors for the others.

The keys edgenas accepts are those in the project's ``known_hosts`` (``project.known_hosts``, written
only by ``trust.trust_host``) and in the user's ``~/.ssh/known_hosts`` (read, never written). Unlike
fabric, which auto-adds unknown keys, ``StrictHostKeyPolicy`` (paramiko's ``RejectPolicy`` with edgenas'
messages) rejects a key found in neither file; a key that differs from the recorded one is refused
with both fingerprints.

Entries are named like OpenSSH's: ``host`` on port 22, ``[host]:port`` otherwise, where ``host`` is the
address actually connected to (after ``~/.ssh/config`` ``HostName`` resolution).
"""

from __future__ import annotations

import os
from pathlib import Path

import paramiko

from edgenas.errors import HostKeyError
from edgenas.project import Project

def known_host_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def user_known_hosts_path() -> Path:
    """The user's own known_hosts (read-only for edgenas); ``$EDGENAS_USER_KNOWN_HOSTS`` overrides."""
    return Path(os.environ.get("EDGENAS_USER_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts")


def known_hosts_files(project: Project) -> list[Path]:
    return [p for p in (user_known_hosts_path(), project.known_hosts) if p.is_file()]


def load_host_keys(paths: list[Path]) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    for path in paths:
        try:
            keys.load(str(path))
        except (OSError, UnicodeDecodeError):  # an unreadable user file must not stop edgenas
            continue
    return keys


def key_fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:<base64 without padding>", as ssh-keygen -l prints it


def _trust_hint(device: str) -> str:
    return (f"check the fingerprint out of band (on the device: ssh-keygen -lf "
            f"/etc/ssh/ssh_host_ed25519_key.pub), then trust it explicitly: `edgenas device trust {device}` "
            f"or edgenas.devices.trust.trust_host(project, profile)")


def unknown_key_error(device: str, name: str, key: paramiko.PKey) -> HostKeyError:
    return HostKeyError(device, f"unknown SSH host key for {name}: {key.get_name()} {key_fingerprint(key)}",
                        host=name, key_type=key.get_name(), fingerprint=key_fingerprint(key), hint=_trust_hint(device))


def changed_key_error(device: str, name: str, key: paramiko.PKey, known: list[paramiko.PKey],
                      known_hosts: Path) -> HostKeyError:
    old = ", ".join(f"{k.get_name()} {key_fingerprint(k)}" for k in known)
    return HostKeyError(
        device, f"the SSH host key of {name} CHANGED: recorded {old}; offered now {key.get_name()} "
        f"{key_fingerprint(key)}. Someone may be intercepting the connection, or the device was reinstalled",
        hint=f"if the change is expected, verify the new fingerprint on the device, then replace it "
             f"deliberately: `edgenas device trust {device} --replace --fingerprint {key_fingerprint(key)}` "
             f"(trust_host(..., expected_fingerprint=..., replace=True)); or delete the line for {name} "
             f"from {known_hosts}",
        host=name, key_type=key.get_name(), fingerprint=key_fingerprint(key),
        known_fingerprints=tuple(key_fingerprint(k) for k in known))


def verify_host_key(project: Project, device: str, name: str, key: paramiko.PKey) -> None:
    """Return if ``key`` is a recorded key of ``name``; otherwise raise ``HostKeyError`` (unknown or changed)."""
    entry = load_host_keys(known_hosts_files(project)).lookup(name)
    known = list(entry.values()) if entry else []
    if any(k == key for k in known):
        return
    if known:
        raise changed_key_error(device, name, key, known, project.known_hosts)
    raise unknown_key_error(device, name, key)


class StrictHostKeyPolicy(paramiko.RejectPolicy):
    """paramiko's safe RejectPolicy, with edgenas' messages: called for keys the client did not find."""

    def __init__(self, project: Project, device: str) -> None:
        self.project, self.device = project, device

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        verify_host_key(self.project, self.device, hostname, key)
