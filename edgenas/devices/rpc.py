"""``AgentClient``: the host side of the agent protocol (``device_agents/PROTOCOL.md``) over any channel.

Every call has an id and a timeout. Progress notifications go to ``on_progress``; a structured agent
error becomes ``AgentError`` (``AgentRuntimeMissingError`` for ``RuntimeMissing``, which is also a
``RuntimeMissingError``); a timeout, a lost connection or an agent that exits become a ``DeviceError``
naming the device and the call, with the agent's stderr tail. After a timeout the agent is stopped (its
state is unknown and it would answer the late call first); open a new client to go on.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, Callable, Mapping

from edgenas.errors import AgentError, DeviceError, InputError, RuntimeMissingError
from edgenas.devices.transport import AgentChannel
from edgenas.limits import MAX_DEPTH, check_depth

PROTOCOL = 1
HELLO_TIMEOUT_S = 60.0
_POLL_S = 0.5


class AgentRuntimeMissingError(AgentError, RuntimeMissingError):
    """The agent answered ``RuntimeMissing``: the requested runtime or provider is absent."""


_TOO_DEEP = object()


def _loads(line: str) -> tuple[Any, str | None]:
    """A line parsed, and the first NaN, Infinity or -Infinity it holds (None where none): JSON has no such
    numbers and the agent sends null for them, but Python's parser takes them, and a device's NaN went on
    into its LUT file (which strict JSON readers then refuse)."""
    found: list[str] = []

    def constant(name: str) -> None:
        found.append(name)

    msg = json.loads(line, parse_constant=constant)
    return msg, (found[0] if found else None)


def _unreadable(msg: Any, nonfinite: str | None = None) -> str | None:
    """What makes a parsed line no agent message, or None: nesting deeper than ``MAX_DEPTH`` levels (no
    edgenas answer comes close), a number too large for a float, text that is not Unicode
    (``limits.check_depth``); each was an internal error deep in the host's checks of the answer. Also a
    ``nonfinite`` number (``_loads``), which the protocol sends as null."""
    if nonfinite is not None:
        return f"with the number {nonfinite} (the protocol sends null for a number that is not finite)"
    try:
        check_depth(msg, "answer")
        return None
    except InputError as exc:
        problem = exc.message.removeprefix("answer: ")
        return problem if problem.startswith("nested") else f"with {problem}"


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class AgentClient:
    """One running agent. ``AgentClient(channel, device)`` reads and checks the hello line."""

    def __init__(self, channel: AgentChannel, device: str, *, expect_version: str | None = None,
                 hello_timeout_s: float = HELLO_TIMEOUT_S) -> None:
        self.channel = channel
        self.device = device
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._closed = False
        self.hello = self._read_hello(hello_timeout_s)
        if expect_version is not None and self.hello.get("version") != expect_version:
            self.channel.close()
            raise DeviceError(device, f"agent reports version {self.hello.get('version')}, "
                                      f"expected {expect_version}", hint="reinstall the agent")

    # ------------------------------------------------------------------ errors
    def _fail(self, what: str, cause: str) -> DeviceError:
        tail = _tail(self.channel.stderr_tail())
        known = tail[-200:].strip() in cause  # the channel's own error may carry it already
        msg = f"{what}: {cause}" + (f"; agent stderr: {tail}" if tail and not known else "")
        return DeviceError(self.device, msg)

    def _strip(self, err: DeviceError) -> str:
        prefix = f"device '{self.device}': "
        return err.message[len(prefix):] if err.message.startswith(prefix) else err.message

    def _read_hello(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.channel.close()
                raise self._fail("agent start", f"no hello line within {timeout_s:g} s")
            try:
                line = self.channel.recv_line(min(remaining, _POLL_S))
            except DeviceError as exc:
                raise self._fail("agent start", self._strip(exc)) from None
            if line is None:
                continue
            try:
                msg, nonfinite = _loads(line)
            except (ValueError, RecursionError):
                continue  # e.g. a login banner before the agent starts (or junk nested too deeply to parse)
            hello = msg.get("hello") if isinstance(msg, dict) else None
            if not isinstance(hello, dict):
                continue
            problem = _unreadable(msg, nonfinite)
            if problem is not None:
                self.channel.close()
                raise self._fail("agent start", f"the agent sent a hello {problem}")
            if hello.get("protocol") != PROTOCOL:
                self.channel.close()
                raise DeviceError(self.device, f"agent speaks protocol {hello.get('protocol')!r}, "
                                               f"this host speaks {PROTOCOL}", hint="reinstall the agent")
            return hello

    # ------------------------------------------------------------------ calls
    @property
    def version(self) -> str:
        return str(self.hello.get("version"))

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, timeout_s: float = 600,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """Send one request and wait for its response (progress lines go to ``on_progress``)."""
        with self._lock:
            if self._closed or self._broken:
                raise DeviceError(self.device, f"call '{method}': agent connection is "
                                               f"{'closed' if self._closed else 'unusable: ' + str(self._broken)}",
                                  hint="open a new connection")
            req_id = next(self._ids)
            what = f"call '{method}' (id {req_id})"
            req = {"id": req_id, "method": method, "params": dict(params or {}), "timeout_s": timeout_s}
            try:
                self.channel.send_line(json.dumps(req, separators=(",", ":")))
            except DeviceError as exc:
                self._broken = "connection lost"
                raise self._fail(what, self._strip(exc)) from None
            deadline = time.monotonic() + timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._broken = f"{what} timed out"
                    err = self._fail(what, f"timed out after {timeout_s:g} s")
                    self.channel.close()
                    raise err
                try:
                    line = self.channel.recv_line(min(remaining, _POLL_S))
                except DeviceError as exc:
                    self._broken = "agent exited or connection lost"
                    raise self._fail(what, self._strip(exc)) from None
                if line is None:
                    continue
                try:
                    msg, nonfinite = _loads(line)
                except RecursionError:
                    msg, nonfinite = _TOO_DEEP, None
                except ValueError:
                    continue
                problem = f"nested more than {MAX_DEPTH} levels deep" if msg is _TOO_DEEP else \
                    _unreadable(msg, nonfinite) if isinstance(msg, dict) and msg.get("id") == req_id else None
                if problem is not None:
                    self._broken = "the agent sent a malformed answer"
                    err = self._fail(what, f"the agent sent an answer {problem}")
                    self.channel.close()
                    raise err
                if not isinstance(msg, dict) or msg.get("id") != req_id:
                    continue  # a stray line or a late answer to an earlier call
                if "progress" in msg:
                    if on_progress is not None and isinstance(msg["progress"], dict):  # other shapes: ignored
                        on_progress(msg["progress"])
                    continue
                if "error" in msg:
                    raise self._agent_error(method, msg["error"])
                if "result" in msg:
                    return msg["result"]

    def _agent_error(self, method: str, err: Any) -> AgentError:
        if not isinstance(err, dict):
            err = {"type": "Internal", "message": repr(err)}
        type_, message = str(err.get("type", "Internal")), f"{method}: {err.get('message', '')}"
        if type_ == "RuntimeMissing":
            return AgentRuntimeMissingError(self.device, type_, message,
                                            hint="install the runtime on the device or pick another runtime")
        return AgentError(self.device, type_, message)

    def info(self, **settings: Any) -> dict[str, Any]:
        """Fingerprint (hashed with ``settings``: runtime, threads, precision, provider) and state."""
        return self.call("info", settings, timeout_s=120)

    def ping(self, timeout_s: float = 30) -> bool:
        return bool(self.call("ping", timeout_s=timeout_s).get("pong"))

    def close(self, timeout_s: float = 10) -> None:
        """Ask the agent to shut down, then close the channel; idempotent."""
        if self._closed:
            return
        try:
            if not self._broken and self.channel.alive():
                self.call("shutdown", timeout_s=timeout_s)
        except DeviceError:
            pass
        finally:
            self._closed = True
            self.channel.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
