"""Trusting a device: fetch its SSH host key, show the fingerprint, record it on request.

A device whose key is in no known_hosts file cannot be reached (``known_hosts.StrictHostKeyPolicy``)
until someone looks at its fingerprint and calls ``trust_host`` (``edgenas device trust NAME``). A key
that differs from the recorded one is refused unless replacing it is deliberate (``replace=True``); a key
marked ``@revoked`` is never recorded. A device behind a ProxyJump host is reached only once the jump host's
key is trusted too: ``jump=True`` makes each function act on the jump host of the profile instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from edgenas.devices.known_hosts import (KnownKey, changed_key_error, key_fingerprint, load_known_hosts, names_host,
                                         revoked_key_error)
from edgenas.devices.login import SSHTarget, fetch_server_key, jump_profile, resolve_target
from edgenas.errors import DeviceError, HostKeyError, InputError, OutputError
from edgenas.io import atomic_write_text
from edgenas.project import Project

#: one key type per kind of host key paramiko can check, in its order of preference
_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


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


@dataclass(frozen=True)
class OfferedKey:
    """The host key a device (or its jump host) offers, where it came from, and what is recorded for it."""
    device: str
    jump: bool                     # the key of the device's jump host
    target: SSHTarget              # where the key came from, after ~/.ssh/config
    via: str | None                # the jump host it came through
    key: paramiko.PKey
    recorded: tuple[KnownKey, ...]  # the keys recorded for the host, the project's first
    revoked_in: Path | None        # the file marking this key @revoked

    @property
    def host(self) -> str:
        return self.target.known_name

    @property
    def key_type(self) -> str:
        return self.key.get_name()

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)

    @property
    def same_type(self) -> list[KnownKey]:
        """The recorded keys this key is compared with: a host has one key per type, and a key of a type
        not recorded yet is new, not changed (as in OpenSSH)."""
        return [k for k in self.recorded if k.key.get_name() == self.key_type]

    @property
    def state(self) -> str:
        """``revoked``, ``trusted``, ``changed`` (another key of its type is recorded) or ``unknown``."""
        if self.revoked_in is not None:
            return "revoked"
        if any(k.key == self.key for k in self.same_type):
            return "trusted"
        return "changed" if self.same_type else "unknown"

    def describe(self) -> str:
        who = f"jump host of '{self.device}'" if self.jump else self.device
        via = f" via {self.via}" if self.via else ""
        return f"{who} ({self.target}{via}; known_hosts name {self.host})"


def _ssh_only(profile) -> None:
    if profile.is_local:
        raise InputError(f"device '{profile.name}' runs on this machine (transport local): it has no SSH host key "
                         "to trust", hint="trust applies to SSH devices (profiles/NAME.toml with a host)")


def has_jump_host(profile) -> bool:
    return not profile.is_local and resolve_target(profile).proxy_jump is not None


def offered_key(project: Project, profile, *, jump: bool = False,
                expected_fingerprint: str | None = None) -> OfferedKey:
    """Ask the device (``jump``: its jump host) for its host key; nothing is authenticated or recorded.

    The key types recorded for the host are asked for first. With ``expected_fingerprint``, a host that
    offers a key of another type is asked for each type in turn, so the key that fingerprint names is the
    one compared (a host has one key per type)."""
    _ssh_only(profile)
    hop = jump_profile(profile) if jump else profile
    key, target = fetch_server_key(hop, project)
    want = (expected_fingerprint or "").strip()
    for key_type in _KEY_TYPES if want and key_fingerprint(key) != want else ():
        if key_type != key.get_name():
            try:
                other, _ = fetch_server_key(hop, project, key_types=(key_type,))
            except HostKeyError:
                raise
            except DeviceError:  # the host has no key of this type: try the next
                continue
            if key_fingerprint(other) == want:
                key = other
                break
    via = str(resolve_target(jump_profile(profile))) if target.proxy_jump else None
    store = load_known_hosts(project)
    revoked = store.revocation(key)
    return OfferedKey(profile.name, jump, target, via, key, tuple(store.for_host(target.known_name)),
                      revoked.path if revoked else None)


def fetch_host_key(profile, project: Project | None = None) -> tuple[str, str]:
    """Ask the device for its host key (nothing is authenticated or trusted): ``(key_type, "SHA256:...")``.

    ``project`` is needed only for a ProxyJump host, whose own key must already be trusted."""
    offered = offered_key(project or Project.default(), profile)
    return offered.key_type, offered.fingerprint


def trust_host(project: Project, profile, *, expected_fingerprint: str | None = None,
               replace: bool = False, jump: bool = False) -> TrustedKey:
    """Fetch the device's (``jump``: its jump host's) host key and record it in ``project.known_hosts``.

    With ``expected_fingerprint`` the key must match it (compare it with the one the device's owner
    gives you). A key that differs from the recorded one is refused unless ``replace=True``."""
    offered = offered_key(project, profile, jump=jump, expected_fingerprint=expected_fingerprint)
    device, name, fp = profile.name, offered.host, offered.fingerprint
    if expected_fingerprint is not None and expected_fingerprint.strip() != fp:
        raise HostKeyError(device, f"host key of {name} is {offered.key_type} {fp}, not the expected "
                           f"{expected_fingerprint.strip()}; nothing was recorded",
                           host=name, key_type=offered.key_type, fingerprint=fp,
                           hint="check the fingerprint on the device and that you reach the right host")
    if offered.state == "revoked":
        raise revoked_key_error(device, name, offered.key, KnownKey((name,), offered.key, offered.revoked_in),
                                jump=jump)
    if offered.state == "trusted" and not _project_lacks(project, name, offered.key):
        return TrustedKey(device, name, offered.key_type, fp, newly_recorded=False)
    if offered.state == "changed" and not replace:
        raise changed_key_error(device, name, offered.key, offered.same_type, jump=jump)
    if offered.state == "changed" and expected_fingerprint is None:
        # replacing a changed key is only ever done against the fingerprint the owner gave (or the user saw)
        raise HostKeyError(device, f"replacing the changed host key of {name} needs the new key's "
                           f"fingerprint; nothing was recorded",
                           hint=f"compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) "
                                f"and pass --{'jump-' if jump else ''}fingerprint {fp}")
    _record(project.known_hosts, name, offered.key, replace=replace)
    return TrustedKey(device, name, offered.key_type, fp, newly_recorded=True)


def _project_lacks(project: Project, name: str, key: paramiko.PKey) -> bool:
    return not any(k.path == project.known_hosts and k.key == key for k in load_known_hosts(project).for_host(name))


def _record(path: Path, name: str, key: paramiko.PKey, *, replace: bool) -> None:
    """Add ``name``'s key to the project's known_hosts (``replace``: after taking ``name`` off every line)."""
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; edgenas records host keys only in a file of its own",
                          hint=f"replace the link with a copy of the file it points to ({os.path.realpath(path)})")
    if path.exists() and not path.is_file():
        raise OutputError(f"{path} is not a file", hint="move it away; edgenas keeps its trusted host keys there")
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {exc}", hint="fix or move the file, then trust again") from None
    if replace:
        lines = [kept for line in lines if (kept := _without_name(line, name)) is not None]
    lines.append(f"{name} {key.get_name()} {key.get_base64()}")
    try:
        atomic_write_text(path, "\n".join(lines) + "\n")
    except OSError as exc:  # its own words, without the name of the temporary file it failed on
        raise OutputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}",
                          hint=f"check the permissions (and attributes, lsattr) of {path} and its folder") from None


def _without_name(line: str, name: str) -> str | None:
    """``line`` with ``name`` taken off its host list: unchanged if it does not hold it, None if nothing is left.
    Marker lines (``@revoked``, ``@cert-authority``) and comments stay as they are."""
    fields = line.split(None, 1)
    if len(fields) < 2 or line.lstrip().startswith(("#", "@")):
        return line
    hosts = fields[0].split(",")
    rest = [h for h in hosts if not names_host([h], name)]  # a hashed |1| entry holds one name
    if len(rest) == len(hosts):
        return line
    return f"{','.join(rest)} {fields[1]}" if rest else None
