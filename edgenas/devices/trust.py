"""Trusting a device: fetch its SSH host key, show the fingerprint, record it on request.

A device whose key is in no known_hosts file cannot be reached (``known_hosts.StrictHostKeyPolicy``)
until someone looks at its fingerprint and calls ``trust_host`` (``edgenas device trust NAME``). A key
that differs from the recorded one is refused unless replacing it is deliberate (``replace=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import paramiko

from edgenas.devices.known_hosts import changed_key_error, key_fingerprint, known_hosts_files, load_host_keys
from edgenas.devices.login import fetch_server_key
from edgenas.errors import HostKeyError, InputError
from edgenas.io import atomic_write_text
from edgenas.project import Project


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


def _ssh_only(profile) -> None:
    if profile.is_local:
        raise InputError(f"device '{profile.name}' runs on this machine (transport local): it has no SSH host key "
                         "to trust", hint="trust applies to SSH devices (profiles/NAME.toml with a host)")


def fetch_host_key(profile, project: Project | None = None) -> tuple[str, str]:
    """Ask the device for its host key (nothing is authenticated or trusted): ``(key_type, "SHA256:...")``.

    ``project`` is needed only for a ProxyJump host, whose own key must already be trusted."""
    _ssh_only(profile)
    key, _ = fetch_server_key(profile, project or Project.default())
    return key.get_name(), key_fingerprint(key)


def trust_host(project: Project, profile, *, expected_fingerprint: str | None = None,
               replace: bool = False) -> TrustedKey:
    """Fetch the device's host key and record it in ``project.known_hosts``.

    With ``expected_fingerprint`` the key must match it (compare it with the one the device's owner
    gives you). A key that differs from the recorded one is refused unless ``replace=True``."""
    _ssh_only(profile)
    key, name = fetch_server_key(profile, project)
    fp = key_fingerprint(key)
    if expected_fingerprint is not None and expected_fingerprint.strip() != fp:
        raise HostKeyError(profile.name, f"host key of {name} is {key.get_name()} {fp}, not the expected "
                           f"{expected_fingerprint.strip()}; nothing was recorded",
                           host=name, key_type=key.get_name(), fingerprint=fp,
                           hint="check the fingerprint on the device and that you reach the right host")
    entry = load_host_keys(known_hosts_files(project)).lookup(name)
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
    entry = load_host_keys([project.known_hosts] if project.known_hosts.is_file() else []).lookup(name)
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
