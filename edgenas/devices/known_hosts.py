"""Host-key policy: which SSH host keys edgenas accepts, and the errors for the others.

The keys edgenas accepts are those in the project's ``known_hosts`` (``project.known_hosts``, written
only by ``trust.trust_host``) and in the user's ``~/.ssh/known_hosts`` (read, never written). The project's
file takes precedence: for a host and key type the project's key is the one used, so replacing a changed key
in the project works even while the user's file still holds the old one. Unlike fabric, which auto-adds
unknown keys, ``StrictHostKeyPolicy`` (paramiko's ``RejectPolicy`` with edgenas' messages) rejects a key
found in neither file; a key that differs from the recorded one is refused with both fingerprints, and a key
marked ``@revoked`` is never accepted.

Like OpenSSH, lines that cannot be used are skipped (a broken key, an unknown key type, ``@cert-authority``,
a line that is not UTF-8): a file edgenas only reads must not stop it.

Entries are named like OpenSSH's: ``host`` on port 22, ``[host]:port`` otherwise, where ``host`` is the
address actually connected to (after ``~/.ssh/config`` ``HostName`` resolution).
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from edgenas.errors import HostKeyError
from edgenas.project import Project


def known_host_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def user_known_hosts_path() -> Path:
    """The user's own known_hosts (read-only for edgenas); ``$EDGENAS_USER_KNOWN_HOSTS`` overrides."""
    return Path(os.environ.get("EDGENAS_USER_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts")


#: a hashed name, ``|1|salt|hash``: two SHA-1 sizes (20 bytes) in base64
_HASHED_RE = re.compile(r"\|1\|[A-Za-z0-9+/]{27}=\|[A-Za-z0-9+/]{27}=")


def names_host(hostnames: tuple[str, ...] | list[str], name: str) -> bool:
    """Whether a known_hosts host list holds ``name``, plain or hashed (``|1|salt|hash``); a malformed hashed
    name holds none (paramiko's ``hash_host`` fails on it, and OpenSSH skips it)."""
    return any(h == name or (_HASHED_RE.fullmatch(h) is not None
                             and hmac.compare_digest(paramiko.HostKeys.hash_host(name, h), h))
               for h in hostnames)


@dataclass(frozen=True)
class KnownKey:
    """One usable line of a known_hosts file: its host list, its key, and the file that holds it."""
    hostnames: tuple[str, ...]
    key: paramiko.PKey
    path: Path


@dataclass(frozen=True)
class KnownHosts:
    """The keys of the project's and the user's known_hosts, the project's first; ``revoked`` from
    ``@revoked`` lines (a revoked key is refused for every host, whatever the line's host list says)."""
    keys: tuple[KnownKey, ...]
    revoked: tuple[KnownKey, ...]

    def for_host(self, name: str) -> list[KnownKey]:
        """The keys recorded for ``name``: the first of each key type (the project's win), none revoked."""
        out: dict[str, KnownKey] = {}
        for k in self.keys:
            if names_host(k.hostnames, name) and not self.revocation(k.key):
                out.setdefault(k.key.get_name(), k)
        return list(out.values())

    def revocation(self, key: paramiko.PKey) -> KnownKey | None:
        return next((r for r in self.revoked if r.key == key), None)


def load_known_hosts(project: Project) -> KnownHosts:
    keys: list[KnownKey] = []
    revoked: list[KnownKey] = []
    for path in (project.known_hosts, user_known_hosts_path()):
        for line in _usable_lines(path):
            marker, _, rest = line.partition(" ") if line.startswith("@") else ("", "", line)
            if marker not in ("", "@revoked"):
                continue  # @cert-authority: host certificates are not supported
            entry = _parse(rest, path)
            if entry is not None:
                (revoked if marker else keys).append(entry)
    return KnownHosts(tuple(keys), tuple(revoked))


def _usable_lines(path: Path) -> list[str]:
    """The non-blank, non-comment lines of ``path`` that are UTF-8; none if it cannot be read."""
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        return []
    lines = []
    for raw in data.splitlines():
        try:
            line = " ".join(raw.decode("utf-8").split())
        except UnicodeDecodeError:
            continue
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _parse(line: str, path: Path) -> KnownKey | None:
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
    except Exception:  # noqa: BLE001 - paramiko's parser raises many kinds for a broken key; OpenSSH skips the line
        return None
    if entry is None or entry.key is None:
        return None
    return KnownKey(tuple(entry.hostnames), entry.key, path)


def key_fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:<base64 without padding>", as ssh-keygen -l prints it


def _trust_hint(device: str, jump: bool) -> str:
    first = " (it shows the jump host's key first)" if jump else ""
    return (f"check the fingerprint out of band (on the host: ssh-keygen -lf "
            f"/etc/ssh/ssh_host_ed25519_key.pub), then trust it explicitly: `edgenas device trust {device}`{first} "
            f"or edgenas.devices.trust.trust_host(project, profile)")


def _label(name: str, device: str, jump: bool) -> str:
    return f"{name} (jump host of '{device}')" if jump else name


def unknown_key_error(device: str, name: str, key: paramiko.PKey, *, jump: bool = False,
                      other_types: list[str] | None = None) -> HostKeyError:
    others = f" (keys of other types are recorded for it: {', '.join(other_types)})" if other_types else ""
    return HostKeyError(device, f"unknown SSH host key for {_label(name, device, jump)}: {key.get_name()} "
                        f"{key_fingerprint(key)}{others}", host=name, key_type=key.get_name(),
                        fingerprint=key_fingerprint(key), hint=_trust_hint(device, jump))


def revoked_key_error(device: str, name: str, key: paramiko.PKey, revoked: KnownKey, *,
                      jump: bool = False) -> HostKeyError:
    return HostKeyError(device, f"{_label(name, device, jump)} offers the SSH host key {key.get_name()} "
                        f"{key_fingerprint(key)}, which {revoked.path} marks @revoked; it is never accepted",
                        hint="do not connect; ask the host's owner for its new key and why the old one was revoked",
                        host=name, key_type=key.get_name(), fingerprint=key_fingerprint(key))


def changed_key_error(device: str, name: str, key: paramiko.PKey, known: list[KnownKey], *,
                      jump: bool = False) -> HostKeyError:
    old = ", ".join(f"{k.key.get_name()} {key_fingerprint(k.key)}" for k in known)
    files = " and ".join(sorted({str(k.path) for k in known}))
    return HostKeyError(
        device, f"the SSH host key of {_label(name, device, jump)} CHANGED: recorded {old} (in {files}); offered "
        f"now {key.get_name()} {key_fingerprint(key)}. Someone may be intercepting the connection, or the host "
        f"was reinstalled",
        hint=f"if the change is expected, verify the new fingerprint on the host, then replace it "
             f"deliberately: `edgenas device trust {device} --replace "
             f"--{'jump-' if jump else ''}fingerprint {key_fingerprint(key)}` "
             f"(trust_host(..., expected_fingerprint=..., replace=True)); or delete the line for {name} from {files}",
        host=name, key_type=key.get_name(), fingerprint=key_fingerprint(key),
        known_fingerprints=tuple(key_fingerprint(k.key) for k in known))


def verify_host_key(project: Project, device: str, name: str, key: paramiko.PKey, *, jump: bool = False) -> None:
    """Return if ``key`` is a recorded key of ``name``; otherwise raise ``HostKeyError`` (revoked, changed or
    unknown)."""
    store = load_known_hosts(project)
    revoked = store.revocation(key)
    if revoked is not None:
        raise revoked_key_error(device, name, key, revoked, jump=jump)
    known = store.for_host(name)
    same_type = [k for k in known if k.key.get_name() == key.get_name()]  # a host has one key per type
    if any(k.key == key for k in same_type):
        return
    if same_type:
        raise changed_key_error(device, name, key, same_type, jump=jump)
    raise unknown_key_error(device, name, key, jump=jump, other_types=[k.key.get_name() for k in known])


class StrictHostKeyPolicy(paramiko.RejectPolicy):
    """paramiko's safe RejectPolicy, with edgenas' messages: called for keys the client did not find."""

    def __init__(self, project: Project, device: str, *, jump: bool = False) -> None:
        self.project, self.device, self.jump = project, device, jump

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        verify_host_key(self.project, self.device, hostname, key, jump=self.jump)
