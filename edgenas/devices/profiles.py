"""Device profiles: ``profiles/NAME.toml`` -> a validated, frozen ``DeviceProfile``.

A profile says how to reach a device (host, port, user, key file or ssh-agent, optional ProxyJump) and
how to measure on it (python, work dir, runtime and its provider, precision, threads, expected power
mode, timeouts).
Validation is strict: unknown keys, wrong types and out-of-range values are one ``InputError`` naming
the file and the key. Passwords (or anything that looks like a secret) are refused outright.

Without ``profiles/local.toml`` the built-in ``local`` profile (this machine, agent as a subprocess,
ONNX Runtime on the CPU, fp32, one thread) is used, so everything works with no remote device.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgenas.devices.runtimes import (MAX_THREADS, PRECISIONS, RUNTIMES as RUNTIME_REGISTRY, precisions_for,
                                      provider_for, runtime_names)
from edgenas.errors import InputError
from edgenas.io import read_toml
from edgenas.project import Project
from edgenas.safenames import NAME_RE

RUNTIMES = tuple(runtime_names())  # the names in ``runtimes.RUNTIMES``
TRANSPORTS = ("ssh", "local")
_SECRET_RE = re.compile(r"pass|secret|token|credential|private_key", re.IGNORECASE)
#: control characters (ESC, newline, ...) and bidirectional overrides: a profile value ends up in commands,
#: paths and terminal lines, where they would run, hide or rewrite text
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: host and user names as ssh takes them. Nothing else may reach ``~/.ssh/config``: paramiko runs a
#: ``Match exec "... %h ..."`` command through a shell with the host name pasted in, so a ';' or '$(...)'
#: in a host name would run a command on this machine.
#: '+' (aliases such as nano+1) and a zone id on an IPv6 address (fe80::1%eth0) are shell-safe; a user
#: may be a domain login (john@corp.example, AD\john) or a machine account (HOST$): the user is never pasted
#: into a command, and none of these characters can start one
_HOST_NAME_RE = re.compile(r"(?!-)[A-Za-z0-9._+-]{1,253}")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9._-]{1,64})?")
_USER_NAME_RE = re.compile(r"(?![-@])[A-Za-z0-9._@\\$+-]{1,128}")
_JUMP_HOST_RE = re.compile(r"([^\[\]:]*|\[[^\[\]]*\])(?::([0-9]{1,5}))?")
_HOST_RULE = "letters, digits, '.', '_', '+' and '-' (not first), or an IPv6 address"
_USER_RULE = "letters, digits, '.', '_', '+', '@', '\\', '$' and '-' (not first)"
_CHAIN_HINT = ("reach the device through one jump host, or forward a port through the chain yourself "
               "(ssh -N -L 2222:DEVICE:22 ...) and point the profile at host 127.0.0.1, port 2222")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    host: str = ""
    port: int | None = None          # None: from ~/.ssh/config, else 22
    user: str | None = None          # None: from ~/.ssh/config, else the local user
    key_file: str | None = None      # None: ssh-agent (and the usual ~/.ssh/id_* keys)
    proxy_jump: str | None = None    # "[user@]host[:port]"
    python: str = "python3"
    workdir: str = "~/.edgenas"
    runtime: str = "onnxruntime"
    provider: str | None = None      # where the runtime runs: cpu (None) | cuda | tensorrt (onnxruntime only)
    precision: str = "fp32"
    threads: int = 1
    power_mode: str | None = None
    connect_timeout_s: float = 10.0
    call_timeout_s: float = 600.0
    keepalive_s: float = 15.0
    transport: str = "ssh"

    @property
    def is_local(self) -> bool:
        return self.transport == "local"


@dataclass(frozen=True)
class JumpHost:
    """One ProxyJump host, ``[user@]host[:port]``, with its parts checked."""
    host: str
    port: int | None
    user: str | None


def is_host_name(host: str) -> bool:
    """A DNS name (or an ssh config alias), an IPv4 address, or an IPv6 address (bare or in brackets, with
    a zone id or without)."""
    if _HOST_NAME_RE.fullmatch(host):
        return True
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not _IPV6_RE.fullmatch(bare):
        return False
    try:
        ipaddress.IPv6Address(bare)
    except ValueError:
        return False
    return True


def is_user_name(user: str) -> bool:
    return _USER_NAME_RE.fullmatch(user) is not None


def check_host(host: str, what: str, hint: str = "use a name from ~/.ssh/config, a DNS name or an IP address"
               ) -> str:
    """``host`` if it is a host name or address, else one ``InputError`` saying ``what`` it is."""
    if not isinstance(host, str) or not is_host_name(host):
        raise InputError(f"{what} {str(host)[:80]!r} must be a host name or address ({_HOST_RULE})", hint=hint)
    return host


def check_user(user: str, what: str, hint: str = "write the login name of the device's user") -> str:
    if not isinstance(user, str) or not is_user_name(user):
        raise InputError(f"{what} {str(user)[:80]!r} must be a user name ({_USER_RULE})", hint=hint)
    return user


def parse_jump(spec: str, what: str) -> JumpHost:
    """``[ssh://][user@]host[:port]`` as a checked ``JumpHost``; ``what`` names where ``spec`` came from."""
    if "," in spec:
        raise InputError(f"{what} {spec[:80]!r} is a chain of jump hosts; edgenas supports one", hint=_CHAIN_HINT)
    body = spec[len("ssh://"):] if spec.startswith("ssh://") else spec  # OpenSSH's URI form
    user, at, rest = body.rpartition("@")  # a domain login's own '@' stays in the user
    m = _JUMP_HOST_RE.fullmatch(rest)
    if m is None:
        raise InputError(f"{what} {spec[:80]!r} must be one '[user@]host[:port]' (an IPv6 address in brackets)")
    host, port = m.groups()
    user = user if at else None
    check_host(host, f"{what} {spec[:80]!r}: host", hint="write one '[user@]host[:port]'")
    if user is not None:
        check_user(user, f"{what} {spec[:80]!r}: user", hint="write one '[user@]host[:port]'")
    if port is not None and not 1 <= int(port) <= 65535:
        raise InputError(f"{what} {spec[:80]!r}: port {port} out of range 1-65535")
    return JumpHost(host=host.strip("[]"), port=int(port) if port else None, user=user)


LOCAL_PROFILE = DeviceProfile(name="local", transport="local", runtime="onnxruntime",
                              precision="fp32", threads=1, workdir="")

# key -> (accepted python types, description for messages)
_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"), "host": ((str,), "a string"), "port": ((int,), "an integer"),
    "user": ((str,), "a string"), "key_file": ((str,), "a path"), "proxy_jump": ((str,), "a string"),
    "python": ((str,), "a string"), "workdir": ((str,), "a string"), "runtime": ((str,), "a string"),
    "provider": ((str,), "a string"), "precision": ((str,), "a string"), "threads": ((int,), "an integer"),
    "power_mode": ((str, int), "a mode name or whole number"), "connect_timeout_s": ((int, float), "a number"),
    "call_timeout_s": ((int, float), "a number"), "keepalive_s": ((int, float), "a number"),
    "transport": ((str,), "a string"),
}


def _bad(where: str, msg: str, hint: str | None = None) -> InputError:
    return InputError(f"profile {where}: {msg}", hint=hint)


def profile_from_dict(data: dict[str, Any], *, where: str = "<dict>") -> DeviceProfile:
    """Validate the ``[device]`` table of a profile and build the dataclass."""
    if not isinstance(data, dict):
        raise _bad(where, "[device] must be a table")
    secrets = sorted(k for k in data if _SECRET_RE.search(k))
    if secrets:
        raise _bad(where, f"key(s) {', '.join(secrets)} not allowed: passwords and secrets are never "
                   "stored in profiles", hint="use key_file = \"~/.ssh/id_ed25519\" or omit it to use ssh-agent")
    unknown = sorted(set(data) - set(_SCHEMA))
    if unknown:
        raise _bad(where, f"unknown key(s) {', '.join(unknown)}",
                   hint=f"allowed keys: {', '.join(sorted(_SCHEMA))}")
    for key, value in data.items():
        types, desc = _SCHEMA[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _bad(where, f"{key} must be {desc}, got {type(value).__name__} {value!r}")
        if isinstance(value, str) and _CONTROL_RE.search(value):
            raise _bad(where, f"{key} {value[:80]!r} contains a control character",
                       hint=f"write {key} as plain text")
    values = dict(data)
    if isinstance(values.get("power_mode"), int):
        values["power_mode"] = _mode_number(where, values["power_mode"])
    name = values.get("name", "")
    if not NAME_RE.match(name):
        raise _bad(where, f"name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    transport = values.setdefault("transport", "local" if name == "local" else "ssh")
    _choice(where, "transport", transport, TRANSPORTS)
    runtime = values.get("runtime", "onnxruntime")
    _choice(where, "runtime", runtime, RUNTIMES)
    if "provider" in values:
        providers = RUNTIME_REGISTRY.get(runtime).providers
        if not providers:
            raise _bad(where, f"provider is not a setting of runtime {runtime!r} (it always runs on the GPU)",
                       hint="remove the provider line")
        _choice(where, "provider", values["provider"], providers)
    allowed = precisions_for(runtime, provider_for(runtime, values.get("provider")))
    if values.get("precision", "fp32") not in allowed:
        hint = ('use precision = "fp32", or provider = "tensorrt" (or runtime = "tensorrt") to measure fp16'
                if runtime == "onnxruntime" else 'use precision = "fp32" or "fp16"')
        raise _bad(where, f"precision {values['precision']!r} is not measured by runtime {runtime!r}"
                   + (f" on provider {values['provider']!r}" if values.get("provider") else "")
                   + f" (it measures {', '.join(allowed)})", hint=hint)
    _choice(where, "precision", values.get("precision", "fp32"), PRECISIONS)
    if transport == "ssh":
        _check_ssh_names(where, values)
    port = values.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise _bad(where, f"port {port} out of range 1-65535")
    if not 1 <= values.get("threads", 1) <= MAX_THREADS:
        raise _bad(where, f"threads {values['threads']} out of range 1-{MAX_THREADS}")
    for key in ("connect_timeout_s", "call_timeout_s", "keepalive_s"):
        if key in values and not 0 < values[key] <= 86400:
            raise _bad(where, f"{key} must be > 0 and at most 86400 seconds, got {values[key]}")
    if "python" in values and (not values["python"] or any(c.isspace() for c in values["python"])
                               or values["python"].startswith("-")):
        raise _bad(where, f"python {values['python']!r} must be one word without spaces")
    workdir = values.get("workdir", "~/.edgenas")
    if transport == "ssh" and (not workdir or "\n" in workdir or ".." in Path(workdir).parts
                               or (workdir.startswith("~") and not re.match(r"^~(/|$)", workdir))):
        raise _bad(where, f"workdir {workdir!r} must be '~/...', an absolute or a home-relative path "
                   "without '..'")
    for key in ("connect_timeout_s", "call_timeout_s", "keepalive_s"):
        if key in values:
            values[key] = float(values[key])
    return DeviceProfile(**values)


def _mode_number(where: str, mode: int) -> str:
    """``power_mode = 2``: the README calls the setting the mode's "name or number", and nvpmodel numbers its
    modes 0, 1, 2, ...; it is kept as the text it is compared as (``DeviceInfo.power_mode_mismatch``)."""
    if mode < 0:
        raise _bad(where, f"power_mode {mode} is no mode number (nvpmodel numbers them from 0)",
                   hint='write the mode\'s name or number, e.g. power_mode = "MAXN" or power_mode = 0')
    return str(mode)


def _check_ssh_names(where: str, values: dict[str, Any]) -> None:
    """host, user and proxy_jump of an SSH profile, each checked before anything looks it up."""
    try:
        check_host(values.get("host", ""), "host")
        if "user" in values:
            check_user(values["user"], "user")
        if "proxy_jump" in values:
            parse_jump(values["proxy_jump"], "proxy_jump")
    except InputError as exc:
        raise _bad(where, exc.message, hint=exc.hint) from None


def _choice(where: str, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _bad(where, f"{key} {value!r} is not one of {', '.join(allowed)}")


def load_profile_file(path: str | Path) -> DeviceProfile:
    path = Path(path)
    data = read_toml(path, what="device profile")
    where = str(path)
    extra = sorted(set(data) - {"device"})
    if "device" not in data or extra:
        raise _bad(where, "expected exactly one [device] table" + (f", found {', '.join(extra)}" if extra else ""))
    device = dict(data["device"]) if isinstance(data["device"], dict) else data["device"]
    if isinstance(device, dict):
        device.setdefault("name", path.stem)
        if device["name"] != path.stem:
            raise _bad(where, f"name {device['name']!r} differs from the file name {path.stem!r}",
                       hint=f"rename the file to {device['name']}.toml or fix the name")
    return profile_from_dict(device, where=where)


def list_profiles(project: Project) -> list[str]:
    """Names of the devices this project knows (always includes ``local``)."""
    names = {p.stem for p in project.profiles_dir.glob("*.toml") if _is_device_file(p)}
    return sorted(names | {"local"})


def _known(project: Project) -> str:
    """The device names a hint offers: ``list_profiles``' that are names (``device list`` shows the others as
    invalid; a file called ``a b.toml`` or one with an escape character in its name is no device to use)."""
    return ", ".join(n for n in list_profiles(project) if NAME_RE.match(n))


def _is_device_file(path: Path) -> bool:
    """A regular file of UTF-8 text with a ``[device]`` table (within the input size limit): a FIFO named
    ``x.toml`` blocked, for ever, every command that lists the devices (``device list``, each unknown-device
    hint), and a link to /dev/zero was read without end; ``load_profile`` says what is wrong with such a file."""
    from edgenas.limits import read_bytes_limited

    try:
        text = read_bytes_limited(path, "device profile").decode("utf-8")
    except (InputError, UnicodeDecodeError):
        return False
    return re.search(r"^\[device\]", text, re.MULTILINE) is not None


def load_profile(project: Project, name: str) -> DeviceProfile:
    """The profile ``profiles/NAME.toml`` (or the built-in ``local``); an unknown name lists the others."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError(f"invalid device name {name!r}", hint=f"known devices: {_known(project)}")
    path = project.profiles_dir / f"{name}.toml"
    if path.exists():
        return load_profile_file(path)
    if name == "local":
        return LOCAL_PROFILE
    raise InputError(f"unknown device {name!r}: no {path}",
                     hint=f"known devices: {_known(project)}; "
                          f"create profiles/{name}.toml (see profiles/orin-nano.toml)")


def profile_fields() -> list[str]:
    return [f.name for f in fields(DeviceProfile)]
