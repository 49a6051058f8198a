"""The SSH login under ``SSHTransport`` (and under ``trust.trust_host``'s key fetch).

The SSH login (``open_connection``) uses paramiko with strict host keys (``known_hosts.StrictHostKeyPolicy``,
a ``RejectPolicy``), ``connect_timeout_s`` for TCP connect, banner, authentication and channel opens,
the profile's key file or else ssh-agent, and optionally one ProxyJump host tunnelled in a
``direct-tcpip`` channel and checked by the same host-key rules, or else ``~/.ssh/config``'s ProxyCommand
(run by ``/bin/sh`` as OpenSSH runs it). Every failure is a ``DeviceError``
naming the device (``HostKeyError`` for host keys) that says what to do.
To open an agent on a device, use ``session.open_session``.
"""

from __future__ import annotations

import getpass
import os
import select
import shlex
import socket
import subprocess
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from edgenas.errors import DeviceError, HostKeyError, InputError
from edgenas.devices.ssh_config import read_config
from edgenas.devices.profiles import DeviceProfile, check_host, check_user, parse_jump
from edgenas.devices.known_hosts import StrictHostKeyPolicy, load_known_hosts, known_host_name, verify_host_key
from edgenas.limits import port_number
from edgenas.project import Project
from edgenas.quiet import silence_library_logs
from edgenas.textsafe import clean

silence_library_logs()  # paramiko logs handshake failures with tracebacks; ours is one line


@dataclass(frozen=True)
class SSHTarget:
    """Where a profile really points after ``~/.ssh/config`` is applied."""
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_jump: str | None
    jump_from: str = ""  # where proxy_jump was set, for messages
    proxy_command: str | None = None  # ~/.ssh/config's ProxyCommand, its %h %p %r expanded; not with a jump

    @property
    def known_name(self) -> str:
        return known_host_name(self.hostname, self.port)

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def ssh_config_path() -> Path:
    """The user's ``~/.ssh/config`` (read only); ``$EDGENAS_SSH_CONFIG`` overrides it."""
    return Path(os.environ.get("EDGENAS_SSH_CONFIG") or Path.home() / ".ssh" / "config")


def _local_user(device: str) -> str:
    """This machine's user name: ssh's default login, and what paramiko's config look-up expands ``%u`` to
    (it asks whatever the config holds). A uid with no passwd entry and no $USER, as in a container run with
    ``--user 1234``, has none: Python raises KeyError or OSError, which was an internal error."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise InputError(f"device '{device}': this machine's user has no name (no passwd entry, no $USER), "
                         "which ssh needs", hint="set USER in the environment, e.g. USER=me") from None


def resolve_target(profile: DeviceProfile) -> SSHTarget:
    """Profile values win; missing ones come from ``~/.ssh/config`` (HostName, Port, User, IdentityFile,
    ProxyJump, ProxyCommand; ``Include`` lines read), then the defaults (port 22, the local user name, ssh-agent).

    The host is checked before the config is looked up (a ``Match exec`` runs with it in a shell), and
    what the config gives back is checked before it is used."""
    check_host(profile.host, f"device '{profile.name}': host")
    local_user = _local_user(profile.name)
    path = ssh_config_path()
    cfg = read_config(path).lookup(profile.host.strip("[]"))
    in_config = f"in {path} for {profile.host}"
    hostname = check_host(cfg.get("hostname", profile.host), f"HostName {in_config}", hint=f"fix {path}")
    user = profile.user or (check_user(cfg["user"], f"User {in_config}", hint=f"fix {path}")
                            if cfg.get("user") else local_user)
    key_files = (profile.key_file,) if profile.key_file else tuple(cfg.get("identityfile", ()))
    jump = profile.proxy_jump or cfg.get("proxyjump")
    jump_from = f"device '{profile.name}': proxy_jump" if profile.proxy_jump else f"ProxyJump {in_config}"
    if (jump or "").lower() in ("", "none"):
        jump = None
    else:
        parse_jump(jump, jump_from)  # a chain or a bad name is refused here, before anything looks it up
    command = cfg.get("proxycommand") if jump is None else None
    return SSHTarget(hostname=hostname.strip("[]"), port=profile.port or _config_port(cfg.get("port"), in_config),
                     user=user, key_files=tuple(os.path.expanduser(k) for k in key_files),
                     proxy_jump=jump, jump_from=jump_from,
                     proxy_command=command if (command or "").lower() not in ("", "none") else None)


def _config_port(value: str | None, in_config: str) -> int:
    if value is None:
        return 22
    port = port_number(value)
    if port is None:
        raise InputError(f"Port {value[:40]!r} {in_config} is not a port number 1-65535",
                         hint="fix the Port line there, or set port in the profile")
    return port


def jump_profile(profile: DeviceProfile) -> DeviceProfile:
    """The profile of ``profile``'s ProxyJump host (``[user@]host[:port]``), same key and timeouts."""
    target = resolve_target(profile)
    if target.proxy_jump is None:
        raise InputError(f"device '{profile.name}' has no jump host")
    jump = parse_jump(target.proxy_jump, target.jump_from)
    return replace(profile, name=f"{profile.name}-jump", host=jump.host, proxy_jump=None, port=jump.port,
                   user=jump.user)


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
    """A socket-like channel to ``target`` through its jump host or ProxyCommand, or ``(None, [])``."""
    if target.proxy_command:  # the user's own ~/.ssh/config line; the host in it was checked before look-up
        return _ProxyCommand("/bin/sh -c " + shlex.quote("exec " + target.proxy_command)), []
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
            what = "is a folder, not a key file" if os.path.isdir(key_file) else "not found"
            raise DeviceError(device, f"key file {key_file} {what}",
                              hint="fix key_file in the profile, or omit it to use ssh-agent")
    if not profile.key_file and target.key_files:  # IdentityFile lines of ~/.ssh/config: a missing one is
        found = tuple(k for k in target.key_files if os.path.isfile(k))  # skipped, as OpenSSH skips it
        if not found:
            raise DeviceError(device, f"IdentityFile {target.key_files[0]} in {ssh_config_path()} for "
                                      f"{profile.host} is not a file", hint=f"fix the IdentityFile line in "
                                      f"{ssh_config_path()}, or set key_file in the profile")
        target = replace(target, key_files=found)
    sock, hops = _tunnel(profile, project, target)
    client = paramiko.SSHClient()
    for known in load_known_hosts(project).for_host(target.known_name):  # the project's first: they win
        client.get_host_keys().add(target.known_name, known.key.get_name(), known.key)
    client.set_missing_host_key_policy(StrictHostKeyPolicy(project, device, jump=device != profile.name))
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
        proxy_ended = _proxy_ended(sock, exc)  # before closing the client ends it
        client.close()
        for hop in hops:
            hop.close()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if proxy_ended:
            raise _proxy_command_error(sock, device, target) from None
        raise _connect_error(exc, device, profile, target, project) from None
    client.get_transport().set_keepalive(max(1, int(profile.keepalive_s)))
    return SSHConnection(client, target, hops)


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's, but a command that has ended reads as the end of the stream at once (paramiko's ``recv``
    spun until the login's timeout), and its stderr is read as it comes, keeping the last 64 KiB (no one read
    paramiko's pipe: a chatty command, ``ssh -vvv -W``, stopped once it was full)."""

    def __init__(self, command_line: str):
        super().__init__(command_line)
        self.stderr_tail = bytearray()
        self._drain = threading.Thread(target=self._read_stderr, name="edgenas-proxy-stderr", daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        try:
            for chunk in iter(lambda: os.read(self.process.stderr.fileno(), 65536), b""):
                self.stderr_tail += chunk
                del self.stderr_tail[:-65536]
        except (OSError, ValueError):  # the pipe closed under us: nothing more to keep
            pass

    def stderr_text(self) -> str:
        """What the command wrote to stderr (its last 64 KiB), once it has ended."""
        self._drain.join(timeout=1.0)
        return bytes(self.stderr_tail).decode("utf-8", "replace").strip()

    def recv(self, size: int) -> bytes:
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not ready:
            raise socket.timeout()
        return os.read(self.process.stdout.fileno(), size)  # b"": the packetizer's EOFError


def _proxy_ended(sock: object, exc: BaseException) -> bool:
    """Whether a login failed because its ProxyCommand ended (waited for briefly: its output ends first)."""
    if not isinstance(sock, _ProxyCommand) or isinstance(exc, (
            KeyboardInterrupt, paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    try:
        sock.process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return False
    return True


def _proxy_command_error(sock: _ProxyCommand, device: str, target: SSHTarget) -> DeviceError:
    """The ProxyCommand ended before the login did: its status and the end of what it wrote to stderr."""
    err = sock.stderr_text()
    return DeviceError(device, f"ProxyCommand for {target} in {ssh_config_path()} exited with status "
                               f"{sock.process.returncode}" + (f": {clean(err[-500:], 500)}" if err else ""),
                       hint="run the ProxyCommand line by hand to see why, or fix it")


def _closed_by_peer(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the peer closing or resetting the connection."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _connect_error(exc: BaseException, device: str, profile: DeviceProfile, target: SSHTarget,
                   project: Project) -> DeviceError:
    where = f"{target}" + (f" (jump host of '{device}')" if device != profile.name else "")
    secs = profile.connect_timeout_s
    if isinstance(exc, DeviceError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        try:
            verify_host_key(project, device, target.known_name, exc.key, jump=device != profile.name)
        except HostKeyError as refused:  # revoked or changed, naming the file that holds the recorded key
            return refused
    if isinstance(exc, paramiko.PasswordRequiredException):
        return DeviceError(device, f"key file {target.key_files[0]} is protected by a passphrase",
                           hint="load it into ssh-agent (ssh-add) and remove key_file from the profile")
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"key {', '.join(target.key_files)}" if target.key_files else "ssh-agent / ~/.ssh keys"
        return DeviceError(device, f"authentication failed for {where} with {how}",
                           hint=f"check user, and that the public key is in ~{target.user}/.ssh/authorized_keys"
                                f" on the device (ssh-copy-id); passwords are not supported")
    if isinstance(exc, paramiko.SSHException) and "no authentication methods" in str(exc).lower():
        return DeviceError(device, f"no SSH key to log in to {where}: no key_file, and ssh-agent and ~/.ssh "
                           f"offer none", hint="set key_file in the profile, or load a key into ssh-agent (ssh-add)")
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
    if _closed_by_peer(exc):
        return DeviceError(device, f"{where} closed the connection before the SSH banner",
                           hint="is it an SSH server? sshd may refuse this address (MaxStartups, "
                                "hosts.deny, fail2ban): see its log")
    text = str(exc).lower()
    if isinstance(exc, paramiko.SSHException) and any(
            s in text for s in ("banner", "no existing session", "negotiation timed out")):
        # start_client gives up at the same deadline as the banner read: either way, no handshake
        return DeviceError(device, f"no SSH handshake from {where} within {secs:g} s (no banner or key exchange)",
                           hint="is an SSH server listening on that port? raise connect_timeout_s if slow")
    return DeviceError(device, f"cannot connect to {where}: {type(exc).__name__}: {exc}",
                       hint="check that `ssh` reaches the device with the same settings")


def fetch_server_key(profile: DeviceProfile, project: Project, *, key_types: tuple[str, ...] | None = None
                     ) -> tuple[paramiko.PKey, SSHTarget]:
    """Key exchange only (no authentication): the host key the device offers and where it came from.

    The key types already recorded for the host are asked for first, as ``open_connection`` does, so a
    host with several keys offers the one that can be compared; ``key_types`` asks for those types only."""
    target = resolve_target(profile)
    recorded = [k.key.get_name() for k in load_known_hosts(project).for_host(target.known_name)]
    sock, hops = _tunnel(profile, project, target)
    t = profile.connect_timeout_s
    transport = None
    try:
        if sock is None:
            sock = socket.create_connection((target.hostname, target.port), timeout=t)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = transport.handshake_timeout = t
        _prefer_key_types(transport, key_types or tuple(recorded), only=key_types is not None)
        transport.start_client(timeout=t)
        return transport.get_remote_server_key(), target
    except (paramiko.SSHException, OSError, EOFError) as exc:
        if _proxy_ended(sock, exc):
            raise _proxy_command_error(sock, profile.name, target) from None
        raise _connect_error(exc, profile.name, profile, target, project) from None
    finally:
        if transport is not None:
            transport.close()
        elif sock is not None:
            sock.close()
        for hop in hops:
            hop.close()


def host_key_algorithms(key_type: str) -> list[str]:
    """The host-key algorithms that make a server offer its key of ``key_type`` (an RSA key: the SHA-2 ones)."""
    return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if key_type == "ssh-rsa" else [key_type]


def _prefer_key_types(transport: paramiko.Transport, key_types: tuple[str, ...], *, only: bool) -> None:
    opts = transport.get_security_options()
    supported = list(opts.key_types)
    first = [a for k in key_types for a in host_key_algorithms(k) if a in supported]
    if first:
        opts.key_types = first + ([] if only else [a for a in supported if a not in first])
