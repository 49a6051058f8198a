"""The embedded ``local`` device: the agent as a subprocess of this machine.

``LocalTransport`` installs the zipapp by hash in ``<project>/.edgenas/devices/local/agent/`` and starts
``PYTHON agent.pyz serve --workdir W`` in a session of its own. Two background threads drain the agent's stdout
(into a bounded queue of lines: ``transport.LineQueue``) and stderr (into a bounded tail), so stderr cannot fill up
and deadlock, and a flood of lines waits for the host. Closing stops the agent and its process group. Files move by
atomic copy, checked by SHA-256.
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from edgenas.errors import DeviceError, InputError
from edgenas.devices import transport
from edgenas.devices.transport import AgentChannel, Transport
from edgenas.io import sha256_file
from edgenas.project import Project

_STDERR_KEEP = 16 * 1024


class LocalChannel(AgentChannel):
    """A local agent subprocess's line streams."""

    def __init__(self, proc: subprocess.Popen, device: str, *, own_group: bool = False) -> None:
        self.proc = proc
        self.device = device
        self._group = proc.pid if own_group else None  # the process group the agent leads (its session's)
        self._lines = transport.LineQueue()
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self._stderr_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._pump_stdout, daemon=True, name=f"{device}-stdout"),
                         threading.Thread(target=self._pump_stderr, daemon=True, name=f"{device}-stderr")]
        for t in self._threads:
            t.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        limit = transport.MAX_LINE_BYTES
        for raw in iter(lambda: self.proc.stdout.readline(limit + 1), b""):  # type: ignore[union-attr]
            # at most ``limit`` bytes before the newline, as over SSH; the rest is not read: the agent is
            # stopped when the channel closes
            if len(raw) > limit and not raw.endswith(b"\n"):
                self._lines.end(transport.LINE_TOO_LONG)
                return
            # waits while the queue is full; once the channel is closed, read on to the end, keeping nothing
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"), len(raw))
        self._lines.end(transport.OUTPUT_ENDED)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            with self._stderr_lock:
                self._stderr.append(chunk)
                self._stderr_size += len(chunk)
                while self._stderr_size > _STDERR_KEEP and len(self._stderr) > 1:
                    self._stderr_size -= len(self._stderr.popleft())

    def _exited(self) -> DeviceError:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        for t in self._threads[1:]:
            t.join(timeout=1)
        return DeviceError(self.device, "agent exited" + (f" with code {code}" if code is not None else "")
                           + (f"; stderr: {self.stderr_tail()[-1500:]}" if self.stderr_tail() else ""))

    def send_line(self, line: str) -> None:
        if self.proc.stdin is None or self.proc.poll() is not None:
            raise self._exited()
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._exited() from None

    def recv_line(self, timeout_s: float) -> str | None:
        return self._lines.line(timeout_s, self.device, self._exited)

    def stderr_tail(self) -> str:
        with self._stderr_lock:
            data = b"".join(self._stderr)
        return data[-_STDERR_KEEP:].decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        """Send ``sig`` to the agent's process group (what it started goes too), or to the agent alone."""
        try:
            if self._group is not None:
                os.killpg(self._group, sig)
            else:
                self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        self._lines.close()  # a reader waiting for room in the queue reads on
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()  # EOF: the agent's loop ends by itself
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait()
        # a process the agent started may still hold its pipes (a runtime's worker): its group is killed. A pipe
        # is closed only once its reader has ended: closing it under a reader blocks, or fails that reader
        readers = {self.proc.stdout: self._threads[0], self.proc.stderr: self._threads[1]}
        for t in readers.values():
            t.join(timeout=0.5)
        if any(t.is_alive() for t in readers.values()) and self._group is not None:
            self._signal(signal.SIGKILL)  # a member of the group holds the pipe, most likely: the id is still its
            for t in readers.values():
                t.join(timeout=2)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None and not (stream in readers and readers[stream].is_alive()):
                    stream.close()
            except OSError:
                pass


def _copy_verified(src: Path, dst: Path, device: str, max_bytes: int | None = None) -> str:
    """Copy ``src`` to ``dst`` atomically (temp file, fsync, rename) and check both hashes; a source
    over ``max_bytes`` is refused (before and while copying)."""
    if max_bytes is not None and src.stat().st_size > max_bytes:
        raise transport.file_too_large(device, str(src), max_bytes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            done = 0
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                done += len(chunk)
                if max_bytes is not None and done > max_bytes:
                    raise transport.file_too_large(device, str(src), max_bytes)
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if sha256_file(tmp) != h.hexdigest():
            raise DeviceError(device, f"copy of {src} to {dst} is corrupt (SHA-256 mismatch)")
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return h.hexdigest()


class LocalTransport(Transport):
    """This machine as a device: the agent runs as ``python zipapp serve`` in the device's own work dir
    (``project.local_workdir_of``: ``.edgenas/devices/NAME``)."""

    def __init__(self, project: Project, device: str = "local", python: str = sys.executable) -> None:
        self.project = project
        self.device = device
        self.python = python
        self.workdir = project.local_workdir_of(device)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._channels: list[LocalChannel] = []

    def _inside(self, remote_rel: str) -> Path:
        path = (self.workdir / remote_rel).resolve()
        if path != self.workdir.resolve() and self.workdir.resolve() not in path.parents:
            raise InputError(f"path {remote_rel!r} leaves the work dir of device '{self.device}'")
        return path

    def install_agent(self, zipapp: Path, version: str) -> Path:
        dest = self.workdir / "agent" / f"edgenas-agent-{version}.pyz"
        if dest.is_file() and sha256_file(dest) == version:
            return dest
        got = _copy_verified(Path(zipapp), dest, self.device)
        if got != version:
            dest.unlink(missing_ok=True)
            raise DeviceError(self.device, f"agent zipapp {zipapp} has SHA-256 {got}, expected {version}",
                              hint="rebuild the agent bundle")
        return dest

    def start_agent(self, zipapp: Path, version: str) -> LocalChannel:
        dest = self.install_agent(zipapp, version)
        if shutil.which(self.python) is None and not os.access(self.python, os.X_OK):
            raise DeviceError(self.device, f"python {self.python!r} not found", hint="fix the device's python")
        try:
            proc = subprocess.Popen([self.python, str(dest), "serve", "--workdir", str(self.workdir)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=str(self.workdir), start_new_session=True)
        except OSError as exc:
            raise DeviceError(self.device, f"cannot start the agent: {exc}") from None
        channel = LocalChannel(proc, self.device, own_group=True)
        self._channels.append(channel)
        return channel

    def put_file(self, local: Path, remote_rel: str) -> str:
        return _copy_verified(Path(local), self._inside(remote_rel), self.device)

    def remove_file(self, remote_rel: str) -> None:
        name = Path(remote_rel).name
        if name in ("", ".", ".."):
            raise InputError(f"path {remote_rel!r} names no file of the work dir of device '{self.device}'")
        folder = self._inside(str(Path(remote_rel).parent))  # the folder resolved; a link in it removed as is
        try:
            os.unlink(folder / name)
        except FileNotFoundError:
            pass

    def get_file(self, remote_rel: str, local: Path, max_bytes: int | None = None) -> str:
        src = self._inside(remote_rel)
        if not src.is_file():
            raise DeviceError(self.device, f"no file {remote_rel!r} in the work dir")
        return _copy_verified(src, Path(local), self.device, max_bytes)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
