"""How the host reaches a device: the ``Transport`` and ``AgentChannel`` interfaces.

A transport knows one device. It installs the agent zipapp in the device's work dir when the device
lacks that version (the zipapp's SHA-256 is its version), starts ``PYTHON agent.pyz serve --workdir W``
and hands back an ``AgentChannel``: the agent's stdin/stdout as JSON lines (stderr drained in the
background so large outputs never deadlock; stdout lines held in a bounded ``LineQueue``, so a flood
waits). Files move with ``put_file``/``get_file``, always checked by SHA-256. ``LocalTransport`` (a
subprocess, for the embedded ``local`` device) and ``SSHTransport`` (paramiko, strict host keys)
implement it; ``AgentClient`` (``edgenas.devices.rpc``) speaks the protocol
over any channel.
"""

from __future__ import annotations

import collections
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Sequence

from edgenas.errors import DeviceError
from edgenas.limits import MAX_JSON_BYTES, limit_text

#: the longest line an agent may send (every answer is one line): longer is a broken or hostile agent,
#: and reading on would only fill the host's memory; ``EDGENAS_MAX_INPUT_MB`` raises it
MAX_LINE_BYTES = MAX_JSON_BYTES
#: the most lines of an agent held on the host before they are read (the progress of a call, or a flood from a broken
#: or hostile agent): with as many waiting, a channel stops reading its agent's output, and the agent waits in turn
MAX_QUEUED_LINES = 4096
#: the same for bytes (a longer line still passes alone, up to ``MAX_LINE_BYTES``)
MAX_QUEUED_BYTES = 8 << 20


def file_too_large(device: str, remote: str, max_bytes: int) -> DeviceError:
    """The error ``get_file`` raises for a file over its ``max_bytes`` (nothing is kept on the host)."""
    return DeviceError(device, f"{remote} on the device is larger than {limit_text(max_bytes, before_limit=False)}, "
                               "the limit for this file; nothing was copied",
                       hint="check the file on the device; if it is really this large, raise EDGENAS_MAX_INPUT_MB")


def line_too_long(device: str) -> DeviceError:
    """The error a channel raises once its agent has sent a line over ``MAX_LINE_BYTES``."""
    return DeviceError(device, f"the agent sent a line of more than {limit_text(MAX_LINE_BYTES, before_limit=False)}, "
                               "the limit for one answer; the connection is closed",
                       hint="reinstall the agent; if its answers are really this large, raise EDGENAS_MAX_INPUT_MB")


#: what a channel's reader queues last (``LineQueue.end``): the agent's output ended, or it sent a line over
#: ``MAX_LINE_BYTES`` (the rest is not read)
OUTPUT_ENDED, LINE_TOO_LONG = object(), object()


class LineQueue:
    """The lines a channel's reader thread received and ``recv_line`` has not taken yet, at most
    ``MAX_QUEUED_LINES`` and ``MAX_QUEUED_BYTES``: ``put`` waits for room (so the reader stops reading and
    the agent's pipe or SSH window fills up) until ``close``, after which nothing more is kept. The reader ends
    it with ``end``; ``line`` then fails the same way at every later call."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[object, int]] = collections.deque()
        self._bytes = 0
        self._closed = False
        self._ended: object | None = None  # the end marker once taken
        self._cond = threading.Condition()

    def put(self, item: object, size: int = 0) -> bool:
        """Queue ``item`` of ``size`` bytes once there is room; False (nothing kept) once closed."""
        with self._cond:
            while not self._closed and self._items and (len(self._items) >= MAX_QUEUED_LINES
                                                        or self._bytes + size > MAX_QUEUED_BYTES):
                self._cond.wait()
            if self._closed:
                return False
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()
            return True

    def end(self, marker: object) -> None:
        """Queue the end of the output, ``OUTPUT_ENDED`` or ``LINE_TOO_LONG``, after the lines before it."""
        self.put(marker)

    def line(self, timeout_s: float, device: str, ended: Callable[[], DeviceError]) -> str | None:
        """The oldest line, waiting up to ``timeout_s`` for one; ``None`` if none came. Once the end is taken,
        this and every later call raise: ``line_too_long``, or ``ended()`` (the channel's own error)."""
        with self._cond:
            if self._ended is None:
                if not self._cond.wait_for(lambda: self._items, max(timeout_s, 0.0)):
                    return None
                item, size = self._items.popleft()
                self._bytes -= size
                self._cond.notify_all()
                if item is not OUTPUT_ENDED and item is not LINE_TOO_LONG:
                    return item  # type: ignore[return-value]
                self._ended = item
        if self._ended is LINE_TOO_LONG:
            raise line_too_long(device)
        raise ended()

    def close(self) -> None:
        """Drop what is queued and end every wait of ``put``; idempotent."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()


class AgentChannel(ABC):
    """A running agent's line streams."""

    @abstractmethod
    def send_line(self, line: str) -> None:
        """Write one JSON line (a newline is appended) to the agent's stdin."""

    @abstractmethod
    def recv_line(self, timeout_s: float) -> str | None:
        """Next stdout line without its newline; ``None`` on timeout. Raises ``DeviceError`` when the
        agent has exited or the connection is lost (the message includes the stderr tail)."""

    @abstractmethod
    def stderr_tail(self) -> str:
        """The last few KiB of the agent's stderr, for error messages."""

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def close(self) -> None:
        """Stop the agent (politely, then by force); idempotent."""


class Transport(ABC):
    """One device's connection; a context manager."""

    device: str

    @abstractmethod
    def start_agent(self, zipapp: Path, version: str) -> AgentChannel:
        """Install ``zipapp`` as ``agent/edgenas-agent-<version>.pyz`` in the work dir unless present
        with that hash, then start it and return its channel."""

    @abstractmethod
    def put_file(self, local: Path, remote_rel: str) -> str:
        """Copy a file into the work dir (path relative to it); verify and return its SHA-256."""

    def put_files(self, files: Sequence[tuple[Path, str]]) -> list[str]:
        """``put_file`` of each (local path, remote path) pair; their SHA-256s in order. A transport that can check
        several uploads at once (SSH: one hashing command on the device) does so."""
        return [self.put_file(Path(local), rel) for local, rel in files]

    @abstractmethod
    def get_file(self, remote_rel: str, local: Path, max_bytes: int | None = None) -> str:
        """Copy a file out of the work dir into ``local`` (atomically); verify and return its SHA-256.
        A file larger than ``max_bytes`` (checked before and while copying) is a ``DeviceError``."""

    @abstractmethod
    def remove_file(self, remote_rel: str) -> None:
        """Remove a file of the work dir (path relative to it; a link is removed, not what it points at);
        a file that is not there is no error."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
