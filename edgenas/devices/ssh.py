"""``SSHTransport``: a device over SSH: SFTP with SHA-256 checks, agent install, agent line streams.

``SSHTransport(profile, project)`` logs in on construction (``connect.open_connection``: strict host
keys, timeouts, key file or ssh-agent, optional ProxyJump). Files move by SFTP through a temporary name
and are renamed only after the device itself hashed them; the agent zipapp is uploaded to
``WORKDIR/agent/edgenas-agent-<version>.pyz`` only when the device lacks a file with its hash.
``start_agent`` runs ``PYTHON PYZ serve --workdir WORKDIR`` on an exec channel (command line built with
``shlex.quote``; a POSIX login shell is assumed) and returns an ``SSHAgentChannel`` whose stdout and
stderr are drained by two threads, so neither stream can fill up and block the other (stdout into a bounded
queue of lines: a flood waits for the host). paramiko waits for the answer to an exec or subsystem request
with no time limit: each waits at most ``connect_timeout_s`` here (``_answered``).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import paramiko

from edgenas.errors import DeviceError, InputError
from edgenas.devices.login import open_connection
from edgenas.devices.profiles import DeviceProfile
from edgenas.devices import transport
from edgenas.devices.transport import AgentChannel, Transport
from edgenas.io import sha256_file
from edgenas.project import Project
from edgenas.safenames import SHA256_RE
from edgenas.textsafe import clean

_HASH_SCRIPT = """import hashlib, json, sys
if sys.version_info < (3, 8):  # the agent's oldest; this script itself runs on Python 2 too
    sys.stderr.write('edgenas-old-python %d.%d\\n' % sys.version_info[:2])
    sys.exit(3)
out = {}
for p in sys.argv[1:]:
    try:
        h = hashlib.sha256()
        with open(p, 'rb') as f:
            for b in iter(lambda: f.read(1 << 20), b''):
                h.update(b)
        out[p] = h.hexdigest()
    except (IOError, OSError):
        out[p] = None
print(json.dumps(out))
"""
#: The device user's shell may print before running a command (start-up files that write even when not
#: interactive): a command's own output starts after a line only this call could print, and the first line
#: of the agent's shell names a nonce the same way.
_PID_LINE = "edgenas-pid-{nonce} ([0-9]{{1,10}})"
#: the most output of a helper command (``run``) kept: enough for any hash listing, bounded against a flood
_RUN_OUTPUT_MAX = 1 << 20
#: the most bytes of quoted paths in one hashing command: the device's shell gets the whole command line as one
#: argument, and Linux takes at most 128 KiB in one (MAX_ARG_STRLEN); more paths go to further commands
_HASH_ARGS_MAX = 64 << 10
#: the most paths in one: its answer (each path JSON-escaped, up to 6 bytes a character, and a hash) stays well
#: within what ``run`` keeps of a command's output
_HASH_PATHS_MAX = 1000
_LOST_HINT = "check that the device is up and reachable, then retry; finished results on the device are kept"


def _answered(chan: paramiko.Channel, request: Callable[[], None], timeout_s: float) -> bool:
    """Send an exec or subsystem ``request`` on ``chan``; False if the device did not answer within ``timeout_s``
    (``chan`` is closed then, which ends paramiko's wait). A refusal raises as paramiko does."""
    lock, ended, late = threading.Lock(), threading.Event(), []

    def watch() -> None:
        if ended.wait(timeout_s):
            return
        with lock:
            if ended.is_set():
                return
            late.append(True)
        try:
            chan.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def finish() -> bool:
        with lock:
            ended.set()
            return not late

    threading.Thread(target=watch, daemon=True, name="edgenas-ssh-request").start()
    try:
        request()
    except (OSError, EOFError, paramiko.SSHException):
        if finish():
            raise
        return False
    return finish()


class SSHAgentChannel(AgentChannel):
    """The agent's stdin/stdout/stderr on a paramiko exec channel."""

    def __init__(self, chan: paramiko.Channel, device: str, conn) -> None:
        self.device, self._chan, self._conn = device, chan, conn
        self._lines = transport.LineQueue()
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self.remote_pid: int | None = None
        chan.settimeout(30.0)  # bounds sendall; the readers just retry on timeouts
        self._buf = bytearray()  # the line being received
        self._too_long = False
        self._threads = [threading.Thread(target=self._pump, args=pump, daemon=True, name=f"edgenas-{device}")
                         for pump in ((chan.recv, self._on_stdout), (chan.recv_stderr, self._on_stderr))]
        for t in self._threads:
            t.start()

    def _pump(self, recv, sink) -> None:
        try:
            while True:
                try:
                    data = recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                sink(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            sink(b"")

    def _on_stdout(self, data: bytes) -> None:
        if not data:
            self._lines.end(transport.OUTPUT_ENDED)
            return
        if self._too_long:
            return
        limit = transport.MAX_LINE_BYTES
        end = data.rfind(b"\n")
        if end < 0:  # a long line arrives in many chunks: appended, never split again (no quadratic cost)
            self._buf += data
            lines: list[bytes] = []
        else:
            self._buf += data[:end]
            lines = bytes(self._buf).split(b"\n")
            self._buf = bytearray(data[end + 1:])
        too_long = len(self._buf) > limit  # the unfinished line, after the complete ones are delivered
        for line in lines:
            if len(line) > limit:
                too_long = True
                break
            self._lines.put(line.decode("utf-8", "replace").rstrip("\r"), len(line))  # waits while the queue is full
        if too_long:
            self._too_long = True
            self._buf = bytearray()
            self._lines.end(transport.LINE_TOO_LONG)

    def _on_stderr(self, data: bytes) -> None:
        with self._lock:
            self._stderr += data
            del self._stderr[:-8192]

    def send_line(self, line: str) -> None:
        try:
            self._chan.sendall((line + "\n").encode("utf-8"))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._ended_error(f"sending to the agent failed ({type(exc).__name__})") from None

    def recv_line(self, timeout_s: float) -> str | None:
        return self._lines.line(timeout_s, self.device, lambda: self._ended_error("the agent's output ended"))

    def _ended_error(self, what: str) -> DeviceError:
        self._chan.status_event.wait(2.0)  # exit status, or the channel closing, follows EOF shortly
        self._threads[1].join(1.0)
        tail = self.stderr_tail().strip()[-1500:]
        detail = f"; agent stderr:\n{tail}" if tail else ""
        if not self._conn.is_active():
            return DeviceError(self.device, f"lost the SSH connection to {self._conn.target} ({what}){detail}",
                               hint=_LOST_HINT)
        status = self._chan.recv_exit_status() if self._chan.exit_status_ready() else None
        if status == 127:
            return DeviceError(self.device, f"the agent could not start: command not found{detail}",
                               hint="set python in the profile to a Python 3 on the device (e.g. /usr/bin/python3)")
        how = "was killed by a signal" if status in (None, -1) else f"exited with status {status}"
        return DeviceError(self.device, f"the agent {how} ({what}){detail}",
                           hint="see the agent's stderr above; retry, and report it if it persists")

    def stderr_tail(self) -> str:
        with self._lock:
            return bytes(self._stderr[-4096:]).decode("utf-8", "replace")

    def alive(self) -> bool:
        return self._conn.is_active() and not self._chan.closed and not self._chan.exit_status_ready()

    def close(self) -> None:
        """Close stdin (the agent exits on EOF), wait a little, then kill it by its pid and close."""
        self._lines.close()  # the reader reads on, keeping nothing
        if self._chan.closed:
            return
        try:
            self._chan.shutdown_write()
            if not self._chan.status_event.wait(3.0) and self.remote_pid and self._conn.is_active():
                chan = self._conn.transport.open_session(timeout=5.0)
                if _answered(chan, lambda: chan.exec_command(f"kill -9 {int(self.remote_pid)}"), 5.0):
                    chan.status_event.wait(5.0)
                chan.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self._chan.close()


class SSHTransport(Transport):
    """One device reached over SSH; connects (and may raise ``DeviceError``) on construction."""

    def __init__(self, profile: DeviceProfile, project: Project) -> None:
        self.profile, self.project, self.device = profile, project, profile.name
        self.uploads: list[str] = []  # remote paths written by put_file, in order
        self._dirs: set[str] = set()  # device folders made or seen by this connection (no SFTP stat again)
        self._channels: list[SSHAgentChannel] = []
        self._conn = open_connection(profile, project)
        try:
            with self._guard("opening SFTP"):  # as paramiko's open_sftp, with timeouts from the start
                chan = self._conn.transport.open_session(timeout=profile.connect_timeout_s)
                chan.settimeout(profile.call_timeout_s)
                self._request(chan, "start SFTP", lambda: chan.invoke_subsystem("sftp"))
                self._sftp = paramiko.SFTPClient(chan)
                self.workdir = self._expand_workdir(profile.workdir)
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except DeviceError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if not self._conn.is_active():
                raise DeviceError(self.device, f"lost the SSH connection to {self._conn.target} while {action}",
                                  hint=_LOST_HINT) from None
            if isinstance(exc, socket.timeout):
                raise DeviceError(self.device, f"timed out while {action}",
                                  hint="the device or network is slow; raise call_timeout_s") from None
            raise DeviceError(self.device, f"{action} failed: {type(exc).__name__}: {exc}",
                              hint="check free disk space and permissions of the work dir on the device") from None
        except paramiko.SFTPError as exc:  # not an OSError: what came is no SFTP, e.g. a login shell's greeting
            raise DeviceError(self.device, f"{action} failed: the device's SFTP server sent something other than "
                                           f"SFTP ({clean(str(exc), 100)})",
                              hint="a start-up file of the device user's shell (e.g. ~/.bashrc) that prints text "
                                   "also in non-interactive sessions breaks SFTP: make it print only in interactive "
                                   "ones") from None
        except UnicodeError:  # paramiko decodes the SFTP server's messages strictly: a broken or hostile server
            raise DeviceError(self.device, f"{action} failed: the device's SFTP server sent text that is not UTF-8",
                              hint="check the SSH server of the device (its sftp-server)") from None

    def _request(self, chan: paramiko.Channel, what: str, request: Callable[[], None]) -> None:
        """``_answered`` with the profile's ``connect_timeout_s``; no answer in time is a ``DeviceError``."""
        if not _answered(chan, request, self.profile.connect_timeout_s):
            raise DeviceError(self.device, f"the device's SSH server did not answer the request to {what} within "
                                           f"{self.profile.connect_timeout_s:g} s",
                              hint="the SSH server of the device is stuck or overloaded: check the device (log in "
                                   "by hand), or raise connect_timeout_s")

    def _expand_workdir(self, workdir: str) -> str:
        home = self._sftp.normalize(".")  # OpenSSH's sftp-server starts in the user's home
        if workdir in ("~", ""):
            return home
        return posixpath.normpath(posixpath.join(home, workdir[2:] if workdir.startswith("~/") else workdir))

    def _remote(self, rel: str) -> str:
        parts = Path(rel).parts
        if not rel or rel.startswith("/") or ".." in parts or "\n" in rel:
            raise InputError(f"remote path {rel!r} must be relative to the work dir, without '..'")
        return posixpath.join(self.workdir, rel)

    def _makedirs(self, path: str) -> None:
        """Make ``path``'s folders on the device, each looked at once per connection (an upload looked at every
        folder of its path again, one SFTP round trip each); an upload that finds one gone has them made again."""
        cur = ""
        for part in path.strip("/").split("/"):
            cur += "/" + part
            if cur in self._dirs:
                continue
            try:
                self._sftp.stat(cur)
            except FileNotFoundError:
                self._sftp.mkdir(cur)
            self._dirs.add(cur)

    def run(self, argv: list[str], timeout_s: float | None = None) -> tuple[int, str, str]:
        """Run a command (each argument quoted) on the device; ``(status, stdout, stderr)``."""
        timeout_s = timeout_s or self.profile.call_timeout_s
        nonce = uuid.uuid4().hex
        cmd = f"printf '\\nedgenas-{nonce}\\n' && " + " ".join(shlex.quote(a) for a in argv)
        tag = f"\nedgenas-{nonce}\n".encode()
        with self._guard(f"running {argv[0]}"):
            chan = self._conn.transport.open_session(timeout=self.profile.connect_timeout_s)
            try:
                chan.settimeout(timeout_s)
                self._request(chan, f"run {argv[0]}", lambda: chan.exec_command(cmd))
                out, err, deadline = bytearray(), bytearray(), time.monotonic() + timeout_s
                started = False  # the tag was seen: what follows is the command's own output
                while not (chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready()):
                    if time.monotonic() > deadline:
                        raise DeviceError(self.device, f"{argv[0]} did not finish within {timeout_s:g} s",
                                          hint="raise call_timeout_s in the profile")
                    if chan.recv_ready():
                        out += chan.recv(65536)
                        if not started:
                            at = out.find(tag)
                            started = at >= 0
                            del out[:at + len(tag) if started else -len(tag)]  # the shell's own text goes
                        del out[_RUN_OUTPUT_MAX:]  # read on (the command must not block), keep the start
                    elif chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                        del err[:-_RUN_OUTPUT_MAX]  # the end of stderr says what went wrong
                    elif chan.closed and not chan.exit_status_ready():
                        raise EOFError("channel closed")
                    else:
                        time.sleep(0.005)
                out = out if started else b""
                return chan.recv_exit_status(), out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
            finally:
                chan.close()

    def remote_sha256(self, paths: list[str]) -> dict[str, str | None]:
        """SHA-256 of absolute device paths, computed on the device (``None`` for missing files); as many paths
        as one command line takes per hashing command (a long list was one command that no shell ran)."""
        result: dict[str, str | None] = {}
        chunk: list[str] = []
        size = 0
        for path in dict.fromkeys(paths):
            if chunk and (size + len(shlex.quote(path)) + 1 > _HASH_ARGS_MAX or len(chunk) >= _HASH_PATHS_MAX):
                result.update(self._hash_chunk(chunk))
                chunk, size = [], 0
            chunk.append(path)
            size += len(shlex.quote(path)) + 1
        if chunk:
            result.update(self._hash_chunk(chunk))
        return result

    def _hash_chunk(self, paths: list[str]) -> dict[str, str | None]:
        status, out, err = self.run([self.profile.python, "-S", "-c", _HASH_SCRIPT, *paths])
        try:
            result = json.loads(out) if status == 0 else None
        except (ValueError, RecursionError):
            result = None
        if isinstance(result, dict):  # a hash is 64 hex digits or None (no such file); anything else: no answer
            wanted = set(paths)
            result = {p: h if isinstance(h, str) and SHA256_RE.match(h) else None for p, h in result.items()
                      if p in wanted}
            if len(result) != len(wanted):
                result = None
        old = re.search(r"^edgenas-old-python ([0-9]{1,3}\.[0-9]{1,3})$", err, re.M) if status == 3 else None
        if old:
            raise DeviceError(self.device, f"{self.profile.python} on the device is Python {old.group(1)}; the edgenas "
                              "agent needs Python 3.8 or newer",
                              hint="set python in the profile to a newer Python on the device (JetPack 4: "
                                   "apt install python3.8, then python: /usr/bin/python3.8)")
        if not isinstance(result, dict):
            raise DeviceError(self.device, f"hashing files with {self.profile.python} failed (status {status}): "
                              f"{err.strip()[-500:]}",
                              hint="set python in the profile to a Python 3 on the device")
        return result

    def put_file(self, local: Path, remote_rel: str) -> str:
        return self.put_files([(Path(local), remote_rel)])[0]

    def put_files(self, files: Sequence[tuple[Path, str]]) -> list[str]:
        """Each file to a temporary name beside its remote path, all of them hashed on the device by one command,
        then each renamed into place: one Python started on the device for the lot. Uploading a table's blocks
        one by one started one per block (most of the upload time of a profile over SSH). Any upload the device
        hashes differently: every temporary file is removed, nothing is renamed, ``DeviceError``."""
        staged: list[tuple[Path, str, str, str]] = []  # local, remote, temporary name, its SHA-256
        for local, rel in files:
            remote = self._remote(rel)
            staged.append((Path(local), remote, f"{remote}.part-{uuid.uuid4().hex[:8]}", sha256_file(local)))
        if not staged:
            return []
        placed = 0  # temporary files renamed into place
        try:
            for local, remote, tmp, _ in staged:
                with self._guard(f"uploading {local.name} to {remote}"):
                    self._makedirs(posixpath.dirname(remote))
                    try:
                        self._sftp.put(str(local), tmp)
                    except FileNotFoundError:  # a folder seen before was removed on the device since: made again
                        self._dirs.clear()
                        self._makedirs(posixpath.dirname(remote))
                        self._sftp.put(str(local), tmp)
            got = self.remote_sha256([tmp for *_, tmp, _ in staged])
            for local, _, tmp, want in staged:
                if got.get(tmp) != want:
                    raise DeviceError(self.device, f"upload of {local} arrived corrupted (sha256 {got.get(tmp)} "
                                                   f"!= {want})", hint="check the device's disk and retry")
            for local, remote, tmp, _ in staged:
                with self._guard(f"uploading {local.name} to {remote}"):
                    self._sftp.posix_rename(tmp, remote)
                placed += 1
                self.uploads.append(remote)
        except BaseException:
            self._remove_quietly([tmp for _, _, tmp, _ in staged[placed:]])
            raise
        return [want for *_, want in staged]

    def _remove_quietly(self, paths: Sequence[str]) -> None:
        """Remove what an upload left, best effort: not on a lost connection, and no more after one failure (each
        could wait the call timeout of a device that stopped answering)."""
        for path in paths:
            if not self._conn.is_active():
                return
            try:
                self._sftp.remove(path)
            except (OSError, EOFError, paramiko.SSHException):
                return

    def remove_file(self, remote_rel: str) -> None:
        remote = self._remote(remote_rel)
        with self._guard(f"removing {remote}"):
            try:
                self._sftp.remove(remote)  # SFTP REMOVE unlinks a link itself
            except FileNotFoundError:
                pass

    def get_file(self, remote_rel: str, local: Path, max_bytes: int | None = None) -> str:
        remote, local = self._remote(remote_rel), Path(local)
        want = self.remote_sha256([remote]).get(remote)
        if want is None:
            raise DeviceError(self.device, f"{remote} does not exist on the device", hint="check the path")
        if max_bytes is not None:
            with self._guard(f"reading the size of {remote}"):
                size = self._sftp.stat(remote).st_size or 0
            if size > max_bytes:
                raise transport.file_too_large(self.device, remote, max_bytes)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".part", dir=local.parent)
        try:
            with os.fdopen(fd, "wb") as fh, self._guard(f"downloading {remote}"), self._sftp.open(remote, "rb") as fr:
                if max_bytes is not None:  # read ahead only the size checked (getfo asks again and trusts the answer)
                    fr.prefetch(size)
                done = 0
                for chunk in iter(lambda: fr.read(1 << 20), b""):
                    done += len(chunk)
                    if max_bytes is not None and done > max_bytes:  # the file may grow while it is copied
                        raise transport.file_too_large(self.device, remote, max_bytes)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            got = sha256_file(tmp)
            if got != want:
                raise DeviceError(self.device, f"download of {remote} arrived corrupted (sha256 {got} != {want})",
                                  hint="retry; if it persists the file changed on the device while copying")
            os.replace(tmp, local)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return got

    def start_agent(self, zipapp: Path, version: str) -> SSHAgentChannel:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", version):
            raise InputError(f"agent version {version!r} is not a plain name")
        rel = f"agent/edgenas-agent-{version}.pyz"
        remote = self._remote(rel)
        if self.remote_sha256([remote]).get(remote) != sha256_file(zipapp):
            self.put_file(Path(zipapp), rel)
        argv = [self.profile.python, remote, "serve", "--workdir", self.workdir]
        nonce = uuid.uuid4().hex
        cmd = f"printf '\\nedgenas-pid-{nonce} %s\\n' $$ && exec " + " ".join(shlex.quote(a) for a in argv)
        with self._guard("starting the agent"):
            chan = self._conn.transport.open_session(timeout=self.profile.connect_timeout_s)
            self._request(chan, "start the agent", lambda: chan.exec_command(cmd))
        channel = SSHAgentChannel(chan, self.device, self._conn)
        self._channels.append(channel)
        pid_line, got, pid = re.compile(_PID_LINE.format(nonce=nonce)), None, None
        deadline = time.monotonic() + self.profile.connect_timeout_s
        for _ in range(1000):  # the shell's own lines come first, if any
            line = channel.recv_line(deadline - time.monotonic())
            got = got or line  # the first line with text: a shell says there what went wrong
            pid = pid_line.fullmatch(line) if line is not None else None
            if line is None or pid:
                break
        if pid is None:
            channel.close()
            raise DeviceError(self.device, f"the agent did not start (got {clean(repr(got), 200)})",
                              hint="check that a POSIX shell is the login shell of the device user")
        channel.remote_pid = int(pid.group(1))
        return channel

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._conn.close()
