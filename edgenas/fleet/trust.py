"""SSH host-key trust: unknown keys are rejected, changed keys are refused, trusting is explicit.

The keys edgenas accepts are those in the project's ``known_hosts`` (``project.known_hosts``, written
only by ``trust_host``) and in the user's ``~/.ssh/known_hosts`` (read, never written). Unlike fabric,
which auto-adds unknown keys, a device whose key is in neither file cannot be reached until someone
looks at its fingerprint and calls ``trust_host`` (``edgenas device trust NAME``). A key that differs from the
recorded one is refused with both fingerprints; replacing it is a deliberate ``replace=True``.

Entries are named like OpenSSH's: ``host`` on port 22, ``[host]:port`` otherwise, where ``host`` is the
address actually connected to (after ``~/.ssh/config`` ``HostName`` resolution).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from edgenas.errors import HostKeyError
from edgenas.io import atomic_write_text
from edgenas.project import Project


def known_host_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def user_known_hosts_path() -> Path:
    """The user's own known_hosts (read-only for edgenas); ``$EDGENAS_USER_KNOWN_HOSTS`` overrides."""
    return Path(os.environ.get("EDGENAS_USER_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts")


def known_hosts_files(project: Project) -> list[Path]:
    return [p for p in (user_known_hosts_path(), project.known_hosts) if p.is_file()]


def _load(paths: list[Path]) -> paramiko.HostKeys:
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
            f"or edgenas.fleet.trust.trust_host(project, profile)")


def unknown_key_error(device: str, name: str, key: paramiko.PKey) -> HostKeyError:
    err = HostKeyError(device, f"unknown SSH host key for {name}: {key.get_name()} {key_fingerprint(key)}",
                       hint=_trust_hint(device))
    err.host, err.key_type, err.fingerprint, err.known_fingerprints = name, key.get_name(), key_fingerprint(key), []
    return err


def changed_key_error(device: str, name: str, key: paramiko.PKey, known: list[paramiko.PKey],
                      known_hosts: Path) -> HostKeyError:
    old = ", ".join(f"{k.get_name()} {key_fingerprint(k)}" for k in known)
    err = HostKeyError(
        device, f"the SSH host key of {name} CHANGED: recorded {old}; offered now {key.get_name()} "
        f"{key_fingerprint(key)}. Someone may be intercepting the connection, or the device was reinstalled",
        hint=f"if the change is expected, verify the new fingerprint on the device, then replace it "
             f"deliberately: `edgenas device trust {device} --replace --fingerprint {key_fingerprint(key)}` "
             f"(trust_host(..., expected_fingerprint=..., replace=True)); or delete the line for {name} "
             f"from {known_hosts}")
    err.host, err.key_type, err.fingerprint = name, key.get_name(), key_fingerprint(key)
    err.known_fingerprints = [key_fingerprint(k) for k in known]
    return err


def verify_host_key(project: Project, device: str, name: str, key: paramiko.PKey) -> None:
    """Return if ``key`` is a recorded key of ``name``; otherwise raise ``HostKeyError`` (unknown or changed)."""
    entry = _load(known_hosts_files(project)).lookup(name)
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


@dataclass(frozen=True)
class TrustedKey:
    device: str
    host: str            # the known_hosts name, "host" or "[host]:port"
    key_type: str
    fingerprint: str     # "SHA256:..."
    newly_recorded: bool

    def __str__(self) -> str:
        state = "trusted" if self.newly_recorded else "already trusted"
        return f"device '{self.device}': {state} {self.host} {self.key_type} {self.fingerprint}"


def fetch_host_key(profile, project: Project | None = None) -> tuple[str, str]:
    """Ask the device for its host key (nothing is authenticated or trusted): ``(key_type, "SHA256:...")``.

    ``project`` is needed only for a ProxyJump host, whose own key must already be trusted."""
    key, _ = _fetch(profile, project or Project.default())
    return key.get_name(), key_fingerprint(key)


def _fetch(profile, project: Project) -> tuple[paramiko.PKey, str]:
    from edgenas.fleet.connect import fetch_server_key  # connect imports this module
    return fetch_server_key(profile, project)


def trust_host(project: Project, profile, *, expected_fingerprint: str | None = None,
               replace: bool = False) -> TrustedKey:
    """Fetch the device's host key and record it in ``project.known_hosts``.

    With ``expected_fingerprint`` the key must match it (compare it with the one the device's owner
    gives you). A key that differs from the recorded one is refused unless ``replace=True``."""
    key, name = _fetch(profile, project)
    fp = key_fingerprint(key)
    if expected_fingerprint is not None and expected_fingerprint.strip() != fp:
        err = HostKeyError(profile.name, f"host key of {name} is {key.get_name()} {fp}, not the expected "
                           f"{expected_fingerprint.strip()}; nothing was recorded",
                           hint="check the fingerprint on the device and that you reach the right host")
        err.host, err.key_type, err.fingerprint, err.known_fingerprints = name, key.get_name(), fp, []
        raise err
    entry = _load(known_hosts_files(project)).lookup(name)
    known = list(entry.values()) if entry else []
    if any(k == key for k in known) and not _project_lacks(project, name, key):
        return TrustedKey(profile.name, name, key.get_name(), fp, newly_recorded=False)
    if known and not any(k == key for k in known) and not replace:
        raise changed_key_error(profile.name, name, key, known, project.known_hosts)
    if known and not any(k == key for k in known) and expected_fingerprint is None:
        # replacing a changed key is only ever done against the fingerprint the owner gave (or the user saw)
        raise HostKeyError(profile.name, f"replacing the changed host key of {name} needs the new key's "
                           f"fingerprint; nothing was recorded",
                           hint=f"compare it with the device's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) "
                                f"and pass --fingerprint {fp}")
    _record(project.known_hosts, name, key, replace=replace)
    return TrustedKey(profile.name, name, key.get_name(), fp, newly_recorded=True)


def _project_lacks(project: Project, name: str, key: paramiko.PKey) -> bool:
    entry = _load([project.known_hosts] if project.known_hosts.is_file() else []).lookup(name)
    return not (entry and any(k == key for k in entry.values()))


def _record(path: Path, name: str, key: paramiko.PKey, *, replace: bool) -> None:
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if replace:
        lines = [ln for ln in lines if not _line_names(ln, name)]
    lines.append(f"{name} {key.get_name()} {key.get_base64()}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _line_names(line: str, name: str) -> bool:
    """Whether a known_hosts line is about ``name`` (plain or hashed ``|1|`` host names)."""
    if not line.strip() or line.lstrip().startswith("#"):
        return False
    entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
    if entry is None:
        return False
    return any(h == name or (h.startswith("|1|") and paramiko.HostKeys.hash_host(name, h) == h)
               for h in entry.hostnames)
