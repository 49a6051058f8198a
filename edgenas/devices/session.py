"""A live connection to one device: transport + running agent + RPC client. The one way to open an agent.

``open_session(project, "orin-nano")`` loads the profile, opens the transport (local subprocess or
SSH), installs the agent if the device lacks this version, does the handshake, and gives a context
manager with ``call`` and ``push`` (content-addressed upload into ``models/``, skipped when the device
already has the file with that SHA-256). ``info(runtime)`` asks the agent once per session and runtime
and gives a typed ``DeviceInfo``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from edgenas.devices.agent_bundle import ensure_agent_bundle
from edgenas.devices.answers import DeviceInfo
from edgenas.devices.local import LocalTransport
from edgenas.devices.profiles import DeviceProfile, load_profile
from edgenas.devices.rpc import HELLO_TIMEOUT_S, AgentClient
from edgenas.devices.ssh import SSHTransport
from edgenas.devices.transport import Transport
from edgenas.errors import DeviceError, EdgenasError
from edgenas.io import sha256_file
from edgenas.project import Project

#: the longest wait for a call that does no work on the device (see ``Session.quick_timeout_s``)
QUICK_TIMEOUT_S = 60.0


@dataclass
class Session:
    profile: DeviceProfile
    transport: Transport
    client: AgentClient
    _pushed: dict[str, str] = field(default_factory=dict)
    _info: dict[str, DeviceInfo] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return self.profile.name

    @property
    def call_timeout_s(self) -> float:
        return float(getattr(self.profile, "call_timeout_s", 600))

    @property
    def quick_timeout_s(self) -> float:
        """The wait for a call that does no work on the device (a file's stat, the table list): 60 s, or
        the profile's ``call_timeout_s`` where that is shorter: a hung agent is given up as the profile says."""
        return min(QUICK_TIMEOUT_S, self.call_timeout_s)

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> Any:
        return self.client.call(method, params or {}, timeout_s=timeout_s or self.call_timeout_s,
                                on_progress=on_progress)

    def info(self, runtime: str | None = None, *, timeout_s: float | None = None) -> DeviceInfo:
        """The device's fingerprint, state and runtimes as measured for ``runtime`` (the profile's by
        default); asked once per session and runtime. The call waits ``timeout_s``, by default the
        profile's ``call_timeout_s`` like every other call: a fixed 120 s held a fleet slot that long for
        a hung agent whose group allows 8 s, and cut off a slow group that allows 900 s."""
        params = self.runtime_params(runtime)
        if params["runtime"] not in self._info:
            answer = self.call("info", params, timeout_s=timeout_s)
            self._info[params["runtime"]] = DeviceInfo.from_answer(self.device, answer)
        return self._info[params["runtime"]]

    def runtime_params(self, runtime: str | None = None) -> dict[str, Any]:
        """The runtime settings of a call: the profile's, or ``runtime`` (see ``runtime_params``)."""
        return runtime_params(self.profile, runtime)

    def push(self, local: Path, subdir: str = "models") -> str:
        """Upload a file named by its SHA-256 unless the device has it; returns the remote path."""
        return self.push_many([local], subdir)[0]

    def push_many(self, paths: Sequence[Path], subdir: str = "models") -> list[str]:
        """``push`` of several files (a batch of a table's blocks), their remote paths in order: what the device
        lacks goes up in one ``put_files`` (over SSH, checked by one hashing command on the device, not one per
        file)."""
        remotes, digests, missing = [], {}, {}  # missing: remote path -> local file
        for local in paths:
            digest = sha256_file(local)
            remote = f"{subdir}/{digest}{Path(local).suffix}"
            remotes.append(remote)
            if remote in self._pushed.values() or remote in digests:
                continue
            digests[remote] = digest
            stat = self.call("file.stat", {"path": remote}, timeout_s=self.quick_timeout_s)
            if not (isinstance(stat, dict) and stat.get("exists") is True and stat.get("sha256") == digest):
                missing[remote] = Path(local)
        got = self.transport.put_files([(local, remote) for remote, local in missing.items()])
        for (remote, local), sha in zip(missing.items(), got):
            if sha != digests[remote]:
                raise DeviceError(self.device, f"upload of {local} arrived corrupted (sha256 {sha[:12]}…)",
                                  hint="check the device's disk and retry")
        for local, remote in zip(paths, remotes):
            self._pushed[str(local)] = remote
        return remotes

    def forget(self, remote_rel: str) -> None:
        """Remove a file the host no longer needs from the device (a finished table's partial file); best
        effort: a file left behind costs disk, never a result, so a failure here fails nothing."""
        try:
            self.transport.remove_file(remote_rel)
        except (EdgenasError, OSError):
            pass


def runtime_params(profile: DeviceProfile, runtime: str | None = None) -> dict[str, Any]:
    """The runtime settings of ``profile``'s calls, or of ``runtime`` (a registered name; an unknown one is
    an ``InputError`` before anything is pushed to the device). ``provider`` is sent only when it is not
    the CPU, so CPU profiles keep their fingerprints (the settings are hashed into it); the precision is
    the profile's where the runtime measures it, else fp32."""
    from edgenas.devices.runtimes import RUNTIMES, precisions_for, provider_for

    name = RUNTIMES.canonical(runtime) if runtime is not None else profile.runtime
    provider = provider_for(name, profile.provider)
    # another runtime than the profile's (--runtime, or deploy's fallback when TensorRT is missing) measures
    # in fp32 where it cannot measure the profile's precision; the records say which precision was measured
    precision = profile.precision if profile.precision in precisions_for(name, provider) else "fp32"
    params: dict[str, Any] = {"runtime": name, "threads": profile.threads, "precision": precision}
    if provider is not None:
        params["provider"] = provider
    return params


def open_transport(project: Project, profile: DeviceProfile) -> Transport:
    """The transport for ``profile``: ``LocalTransport`` for ``local`` devices, else a connected
    ``SSHTransport`` (raises ``DeviceError``/``HostKeyError`` when the device cannot be reached)."""
    if profile.is_local:
        return LocalTransport(project, device=profile.name)
    return SSHTransport(profile, project)


@contextmanager
def open_session(project: Project, device: "str | DeviceProfile") -> Iterator[Session]:
    """``device`` is a profile name or a ``DeviceProfile``."""
    profile = device if isinstance(device, DeviceProfile) else load_profile(project, device)
    # connect first: an unreachable device (no key file, unknown host key, unknown name) leaves the
    # project as it was, without an agent build in .edgenas/
    transport = open_transport(project, profile)
    client = None
    try:
        zipapp, version = ensure_agent_bundle(project)
        channel = transport.start_agent(Path(zipapp), version)
        client = AgentClient(channel, profile.name, expect_version=version,
                             hello_timeout_s=min(HELLO_TIMEOUT_S, profile.call_timeout_s))
        yield Session(profile, transport, client)
    finally:
        try:
            if client is not None:
                client.close()
        finally:
            transport.close()
