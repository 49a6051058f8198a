"""The JSON-lines loop: a hello line, then one request per line, one response per request.

Calls run one at a time in arrival order. A line that is not a JSON request gets a ``BadRequest``
error (with ``id`` null when none could be read) and the loop goes on; an unexpected exception in a
method becomes an ``Internal`` error with its traceback on stderr. ``shutdown`` answers and then ends
the loop; so does EOF on stdin (the host went away).

The protocol owns file descriptor 1: ``serve_stdio`` moves it to a private descriptor and points fd 1
at stderr, so a runtime that prints (or a native library writing to fd 1) cannot corrupt the stream.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import threading
import traceback
from typing import Any, BinaryIO, Callable, Dict, Mapping

from . import AGENT_NAME, PROTOCOL, agent_version, bench, files, fingerprint, luts, runtimes
from .errors import AgentFault

Handler = Callable[[str, Dict[str, Any], Callable[[Dict[str, Any]], None]], Any]


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _info(workdir: str, params: Dict[str, Any], progress: Any) -> Dict[str, Any]:
    settings = {k: params[k] for k in ("runtime", "threads", "precision", "provider") if k in params}
    fp, digest, state = fingerprint.collect(settings, agent_version=agent_version())
    if params.get("tegrastats", True):
        tegra = fingerprint.tegrastats_once()
        if tegra is not None:
            state["tegrastats"] = tegra
    return {"fingerprint": fp, "fingerprint_hash": digest, "state": state,
            "runtimes": runtimes.probe_all(), "agent_version": agent_version(), "workdir": workdir}


METHODS: Dict[str, Handler] = {
    "ping": lambda w, p, pr: {"pong": True},
    "info": _info,
    "bench": bench.bench,
    "bench_many": bench.bench_many,
    "build_engine": bench.build_engine,
    "lut.put": lambda w, p, pr: luts.put(w, p),
    "lut.get": lambda w, p, pr: luts.get(w, p),
    "lut.list": lambda w, p, pr: luts.list_luts(w),
    "file.stat": lambda w, p, pr: files.stat(w, p),
    "shutdown": lambda w, p, pr: {"bye": True},
}


class Server:
    def __init__(self, workdir: str, out: BinaryIO) -> None:
        self.workdir = workdir
        self._out = out
        self._lock = threading.Lock()

    def send(self, obj: Mapping[str, Any]) -> None:
        line = json.dumps(_clean(obj), separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            self._out.write(line.encode("utf-8"))
            self._out.flush()

    def hello(self) -> None:
        self.send({"hello": {"agent": AGENT_NAME, "protocol": PROTOCOL, "version": agent_version(),
                             "python": platform.python_version(), "workdir": self.workdir,
                             "pid": os.getpid(), "methods": sorted(METHODS)}})

    def handle(self, raw: bytes) -> bool:
        """Answer one line; False when the loop should end (shutdown)."""
        req_id: Any = None
        try:
            try:
                req = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise AgentFault("BadRequest", "not a JSON line: %s" % exc)
            if not isinstance(req, dict):
                raise AgentFault("BadRequest", "a request must be a JSON object")
            req_id = req.get("id")
            method = req.get("method")
            if not isinstance(method, str):
                raise AgentFault("BadRequest", "request has no method")
            params = req.get("params") or {}
            if not isinstance(params, dict):
                raise AgentFault("BadRequest", "params must be an object")
            handler = METHODS.get(method)
            if handler is None:
                raise AgentFault("UnknownMethod", "unknown method %r (known: %s)" % (method, ", ".join(sorted(METHODS))))
            result = handler(self.workdir, params, lambda p: self.send({"id": req_id, "progress": p}))
            self.send({"id": req_id, "result": result})
            return method != "shutdown"
        except AgentFault as fault:
            self.send({"id": req_id, "error": fault.to_wire()})
        except FileNotFoundError as exc:
            self.send({"id": req_id, "error": {"type": "FileNotFoundError", "message": str(exc)}})
        except Exception as exc:  # the agent must survive any one bad call
            traceback.print_exc(file=sys.stderr)
            self.send({"id": req_id, "error": {"type": "Internal", "message": "%s: %s" % (type(exc).__name__, exc)}})
        return True

    def serve(self, stdin: BinaryIO) -> int:
        self.hello()
        for raw in iter(stdin.readline, b""):
            if not raw.strip():
                continue
            if not self.handle(raw):
                break
        return 0


def serve_stdio(workdir: str) -> int:
    proto_fd = os.dup(1)
    os.dup2(2, 1)  # stray writes to fd 1 now land on stderr
    sys.stdout = sys.stderr
    out = os.fdopen(proto_fd, "wb")
    try:
        return Server(workdir, out).serve(sys.stdin.buffer)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
