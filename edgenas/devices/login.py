"""The SSH login under ``SSHTransport`` (and under ``trust.trust_host``'s key fetch).

The SSH login (``open_connection``) uses paramiko with strict host keys (``known_hosts.StrictHostKeyPolicy``,
a ``RejectPolicy``), ``connect_timeout_s`` for TCP connect, banner, authentication and channel opens,
the profile's key file or else ssh-agent, and optionally one ProxyJump host tunnelled in a
``direct-tcpip`` channel and checked by the same host-key rules. Every failure is a ``DeviceError``
naming the device (``HostKeyError`` for host keys) that says what to do.
To open an agent on a device, use ``session.open_session``.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from edgenas.errors import DeviceError, InputError
from edgenas.devices.profiles import DeviceProfile
from edgenas.devices.known_hosts import StrictHostKeyPolicy, changed_key_error, known_host_name, known_hosts_files
from edgenas.project import Project
from edgenas.quiet import silence_library_logs

silence_library_logs()  # paramiko logs handshake failures with tracebacks; ours is one line


@dataclass(frozen=True)
class SSHTarget:
    """Where a profile really points after ``~/.ssh/config`` is applied."""
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_jump: str | None

    @property
    def known_name(self) -> str:
        return known_host_name(self.hostname, self.port)

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def _ssh_config() -> paramiko.SSHConfig:
    path = Path(os.environ.get("EDGENAS_SSH_CONFIG") or Path.home() / ".ssh" / "config")
    try:
        return paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()
    except (OSError, paramiko.ConfigParseError) as exc:
        raise InputError(f"cannot read SSH config {path}: {exc}") from None


def resolve_target(profile: DeviceProfile) -> SSHTarget:
    """Profile values win; missing ones come from ``~/.ssh/config`` (HostName, Port, User, IdentityFile,
    ProxyJump), then the defaults (port 22, the local user name, ssh-agent)."""
    cfg = _ssh_config().lookup(profile.host)
    key_files = (profile.key_file,) if profile.key_file else tuple(cfg.get("identityfile", ()))
    jump = profile.proxy_jump or cfg.get("proxyjump")
    return SSHTarget(hostname=cfg.get("hostname", profile.host),
                     port=profile.port or int(cfg.get("port", 22)),
                     user=profile.user or cfg.get("user") or getpass.getuser(),
                     key_files=tuple(os.path.expanduser(k) for k in key_files),
                     proxy_jump=None if (jump or "").lower() in ("", "none") else jump)


def jump_profile(profile: DeviceProfile) -> DeviceProfile:
    """The profile of ``profile``'s ProxyJump host (``[user@]host[:port]``), same key and timeouts."""
    spec = resolve_target(profile).proxy_jump
    m = re.fullmatch(r"(?:([^@\s:]+)@)?([^@\s:\[\]]+|\[[0-9a-fA-F:.]+\])(?::(\d{1,5}))?", spec or "")
    if not m:
        raise InputError(f"profile '{profile.name}': proxy_jump {spec!r} must be one '[user@]host[:port]'",
                         hint="chains of jump hosts are not supported; configure them in ~/.ssh/config")
    return replace(profile, name=f"{profile.name}-jump", host=m.group(2).strip("[]"), proxy_jump=None,
                   port=int(m.group(3)) if m.group(3) else None, user=m.group(1))


class SSHConnection:
    """An authenticated SSH client plus the jump connection under it (closed together)."""

    def __init__(self, client: paramiko.SSHClient, target: SSHTarget, hops: list["SSHConnection"]):
        self.client, self.target, self.hops = client, target, hops

    @property
    def transport(self) -> paramiko.Transport:
        return self.client.get_transport()

    def is_active(self) -> bool:
        t = self.client.get_transport()
        return t is not None and t.is_active()

    def close(self) -> None:
        self.client.close()
        for hop in self.hops:
            hop.close()


def _tunnel(profile: DeviceProfile, project: Project, target: SSHTarget) -> tuple[object, list[SSHConnection]]:
    """A socket-like channel to ``target`` through its jump host, or ``(None, [])`` without one."""
    if not target.proxy_jump:
        return None, []
    hop = open_connection(jump_profile(profile), project, device=profile.name)
    try:
        chan = hop.transport.open_channel("direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                                          timeout=profile.connect_timeout_s)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        hop.close()
        raise DeviceError(profile.name, f"jump host {hop.target} could not reach {target.hostname}:"
                          f"{target.port}: {exc or type(exc).__name__}",
                          hint="check host/port as seen from the jump host, and AllowTcpForwarding there") from None
    return chan, [hop]


def open_connection(profile: DeviceProfile, project: Project, *, device: str | None = None) -> SSHConnection:
    """Connect and authenticate with strict host keys and the profile's timeouts."""
    device = device or profile.name
    target = resolve_target(profile)
    for key_file in target.key_files[:1] if profile.key_file else ():
        if not os.path.isfile(key_file):
            raise DeviceError(device, f"key file {key_file} not found",
                              hint="fix key_file in the profile, or omit it to use ssh-agent")
    sock, hops = _tunnel(profile, project, target)
    client = paramiko.SSHClient()
    for path in known_hosts_files(project):
        client.load_system_host_keys(str(path))  # "system" keys are never written back
    client.set_missing_host_key_policy(StrictHostKeyPolicy(project, device))
    t = profile.connect_timeout_s
    try:
        client.connect(target.hostname, target.port, username=target.user,
                       key_filename=list(target.key_files) or None, timeout=t, banner_timeout=t,
                       auth_timeout=t, channel_timeout=t, allow_agent=not profile.key_file,
                       look_for_keys=not target.key_files, sock=sock)
    except BaseException as exc:
        transport = client.get_transport()
        inner = getattr(transport, "saved_exception", None)
        if inner is not None and "no existing session" in str(exc).lower():
            exc = inner  # the real cause (e.g. the banner timeout) stayed in the transport thread
        client.close()
        for hop in hops:
            hop.close()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _connect_error(exc, device, profile, target, project) from None
    client.get_transport().set_keepalive(max(1, int(profile.keepalive_s)))
    return SSHConnection(client, target, hops)


def _connect_error(exc: BaseException, device: str, profile: DeviceProfile, target: SSHTarget,
                   project: Project) -> DeviceError:
    where = f"{target}" + (f" (jump host of '{device}')" if device != profile.name else "")
    secs = profile.connect_timeout_s
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return changed_key_error(device, target.known_name, exc.key, [exc.expected_key], project.known_hosts)
    if isinstance(exc, paramiko.PasswordRequiredException):
        return DeviceError(device, f"key file {target.key_files[0]} is protected by a passphrase",
                           hint="load it into ssh-agent (ssh-add) and remove key_file from the profile")
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"key {', '.join(target.key_files)}" if target.key_files else "ssh-agent / ~/.ssh keys"
        return DeviceError(device, f"authentication failed for {where} with {how}",
                           hint=f"check user, and that the public key is in ~{target.user}/.ssh/authorized_keys"
                                f" on the device (ssh-copy-id); passwords are not supported")
    errors = list(getattr(exc, "errors", {}).values()) or [exc]
    if all(isinstance(e, ConnectionRefusedError) for e in errors):
        return DeviceError(device, f"connection refused by {where}",
                           hint="is the device up, sshd running and the port right?")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return DeviceError(device, f"connection to {where} timed out after {secs:g} s",
                           hint="check the host name, network/VPN and firewall, or raise connect_timeout_s")
    if isinstance(exc, socket.gaierror):
        return DeviceError(device, f"cannot resolve host {target.hostname!r}: {exc}",
                           hint="check host in the profile, ~/.ssh/config or DNS")
    text = str(exc).lower()
    if isinstance(exc, paramiko.SSHException) and any(
            s in text for s in ("banner", "no existing session", "negotiation timed out")):
        # start_client gives up at the same deadline as the banner read: either way, no handshake
        return DeviceError(device, f"no SSH handshake from {where} within {secs:g} s (no banner or key exchange)",
                           hint="is an SSH server listening on that port? raise connect_timeout_s if slow")
    return DeviceError(device, f"cannot connect to {where}: {type(exc).__name__}: {exc}",
                       hint="check that `ssh` reaches the device with the same settings")


def fetch_server_key(profile: DeviceProfile, project: Project) -> tuple[paramiko.PKey, str]:
    """Key exchange only (no authentication): the host key the device offers and its known_hosts name."""
    target = resolve_target(profile)
    sock, hops = _tunnel(profile, project, target)
    t = profile.connect_timeout_s
    transport = None
    try:
        if sock is None:
            sock = socket.create_connection((target.hostname, target.port), timeout=t)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = transport.handshake_timeout = t
        transport.start_client(timeout=t)
        return transport.get_remote_server_key(), target.known_name
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _connect_error(exc, profile.name, profile, target, project) from None
    finally:
        if transport is not None:
            transport.close()
        elif sock is not None:
            sock.close()
        for hop in hops:
            hop.close()
