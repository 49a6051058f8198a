"""Shared fixtures. The main one starts REAL OpenSSH servers on 127.0.0.1 (no mocks).

``sshd_factory`` is a factory: ``server = sshd_factory()`` starts ``/usr/sbin/sshd -D -e -f CONFIG`` on
a free port with a fresh host key, logging in as the current user with a client key made for the test
session. ``server.profile(name)`` gives a ``DeviceProfile`` pointing at it (its own work dir under tmp,
this interpreter as the device's python), ``server.trust(project)`` records its host key the way a user
would, ``server.kill()`` kills the daemon and every session under it (a device dropping off the network),
``server.restart(new_host_key=...)`` brings it back on the same port. ``sshd`` is one started server.
Tests skip with a reason when ``/usr/sbin/sshd`` is absent (``.ci/run`` installs openssh-server).
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.procs import descendants

_KILL_LOCK = threading.Lock()
SSHD = Path(os.environ.get("EDGENAS_SSHD") or "/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SshdServer:
    dir: Path
    port: int
    client_key: Path
    proc: subprocess.Popen | None = None
    extra_config: str = ""  # more sshd_config lines, from the next (re)start
    host_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.host_key = self.dir / "ssh_host_ed25519_key"

    @property
    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")

    def new_host_key(self) -> None:
        for p in (self.host_key, self.host_key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)

    @property
    def extra_host_keys(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("ssh_host_*_key") if p != self.host_key)

    def add_host_key(self, key_type: str) -> Path:
        """One more host key (``ecdsa``, ``rsa``): the server offers it from its next (re)start."""
        path = self.dir / f"ssh_host_{key_type}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)], check=True)
        return path

    def known_hosts_line(self, key: Path | None = None) -> str:
        """The known_hosts line of this server's host key (``key``: another of its keys)."""
        key_type, b64 = Path(str(key or self.host_key) + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {b64}"

    @property
    def fingerprint(self) -> str:
        return self.fingerprint_of(self.host_key)

    @staticmethod
    def fingerprint_of(key: Path) -> str:
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key) + ".pub"],
                             check=True, capture_output=True, text=True).stdout
        return out.split()[1]

    def start(self) -> "SshdServer":
        if not self.host_key.exists():
            self.new_host_key()
        (self.dir / "authorized_keys").write_text(Path(str(self.client_key) + ".pub").read_text())
        host_keys = "".join(f"HostKey {k}\n" for k in [self.host_key, *self.extra_host_keys])
        (self.dir / "sshd_config").write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
{host_keys.rstrip()}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.dir}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxStartups 100
Subsystem sftp internal-sftp
LogLevel VERBOSE
{self.extra_config}""")
        log = open(self.dir / "sshd.log", "ab")
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sshd exited with {self.proc.returncode}:\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"sshd did not start on port {self.port}:\n{self.log}")

    def kill(self) -> None:
        """SIGKILL the daemon and every session process under it (connections drop at once)."""
        # a test may kill the daemon from a thread while teardown kills it too: take it once
        with _KILL_LOCK:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)

    def restart(self, *, new_host_key: bool = False) -> "SshdServer":
        self.kill()
        if new_host_key:
            self.new_host_key()
        return self.start()

    def kill_after_first_partial_entry(self, folder: Path, existing: set[Path], timeout_s: float) -> Path | None:
        """Wait until a ``*.jsonl`` in ``folder`` that is not in ``existing`` holds an entry, then kill this
        sshd (also when ``timeout_s`` passes first); returns that file, or None if none appeared."""
        deadline = time.monotonic() + timeout_s
        fresh: list[Path] = []
        while time.monotonic() < deadline:
            fresh = [p for p in folder.glob("*.jsonl") if p not in existing]
            if fresh and fresh[0].read_text().count("\n") >= 1:
                break
            time.sleep(0.02)
        self.kill()
        return fresh[0] if fresh else None

    def trust(self, project) -> None:
        """Record this server's host key in the project's known_hosts (what a user does once). A line
        for the same port from an earlier server is replaced: a project shared by several tests (module
        scope) can meet the same free port twice, and the first matching line is the one that counts."""
        key_type, b64 = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        path = Path(project.known_hosts)
        path.parent.mkdir(parents=True, exist_ok=True)
        host = f"[127.0.0.1]:{self.port}"
        kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
                if line.split(" ", 1)[0] != host]
        path.write_text("".join(f"{line}\n" for line in kept + [f"{host} {key_type} {b64}"]))

    def profile(self, name: str = "dev", **overrides):
        from edgenas.devices.profiles import DeviceProfile
        values = dict(name=name, host="127.0.0.1", port=self.port, user=getpass.getuser(),
                      key_file=str(self.client_key), python=sys.executable,
                      workdir=str(self.dir / f"device-{name}"), connect_timeout_s=5.0, call_timeout_s=60.0)
        values.update(overrides)
        return DeviceProfile(**values)


@pytest.fixture(scope="session")
def ssh_client_key(tmp_path_factory) -> Path:
    if not SSHD.exists():
        from edgenas.envflags import env_flag

        if env_flag("EDGENAS_REQUIRE_SSHD"):  # `make test`: the SSH tests must run, never skip
            pytest.fail(f"{SSHD} not found: apt-get install openssh-server (make test does it as root)",
                        pytrace=False)
        pytest.skip("needs OpenSSH's /usr/sbin/sshd (apt-get install openssh-server; .ci/run does it)")
    key = tmp_path_factory.mktemp("sshkeys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture
def sshd_factory(ssh_client_key, tmp_path_factory, monkeypatch):
    """``start() -> SshdServer``: each call starts one more real sshd on its own free port."""
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    # Hermetic: the user's own ~/.ssh/known_hosts and ~/.ssh/config must not influence the tests.
    monkeypatch.setenv("EDGENAS_USER_KNOWN_HOSTS", str(ssh_client_key.parent / "no_known_hosts"))
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(ssh_client_key.parent / "no_ssh_config"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    servers: list[SshdServer] = []

    def start() -> SshdServer:
        server = SshdServer(tmp_path_factory.mktemp("sshd"), _free_port(), ssh_client_key)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def sshd(sshd_factory) -> SshdServer:
    return sshd_factory()


@pytest.fixture
def match_exec_config(tmp_path, monkeypatch) -> Iterator[Path]:
    """An ~/.ssh/config with a ``Match exec`` that pastes ``%h`` into a shell command (a common pattern:
    paramiko's lookup runs it). Returns the marker file a host name ``x;touch${IFS}MARKER;true`` would create
    if it ever reached the lookup; tests assert that it never appears."""
    config = tmp_path / "ssh_config_match_exec"
    config.write_text('Match exec "test %h = never.example"\n  User nobody\n')
    monkeypatch.setenv("EDGENAS_SSH_CONFIG", str(config))
    devnull = open(os.devnull)  # invoke (which runs the command) reads stdin: pytest's capture refuses that
    monkeypatch.setattr(sys, "stdin", devnull)
    yield tmp_path / "MARKER"
    devnull.close()


class Result:
    """What one in-process CLI run gave: exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    from edgenas.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture()
def project(tmp_path: Path):
    """A fresh, empty project (tests that need files in it make their own)."""
    from edgenas.project import Project
    return Project(tmp_path / "proj")


def _script_zipapp(folder: Path, main_py: str) -> tuple[Path, str]:
    """A real zipapp running ``main_py``; its SHA-256 is its version, as for the real agent."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", main_py)
    data = buf.getvalue()
    version = hashlib.sha256(data).hexdigest()
    path = folder / f"script-{version[:8]}.pyz"
    path.write_bytes(data)
    return path, version


@pytest.fixture()
def script_zipapp() -> Callable[[Path, str], tuple[Path, str]]:
    """Agents that misbehave on purpose: ``script_zipapp(folder, main_py) -> (path, version)``."""
    return _script_zipapp
