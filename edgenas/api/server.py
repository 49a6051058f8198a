"""``edgenas serve``: the API and pages on uvicorn; loopback by default, a token for anything else."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import threading
from typing import Any, Callable, Iterator

from edgenas.api.hosts import is_host, is_loopback
from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.textsafe import shown

#: what the requests import lazily, imported before serving: 60 requests at once out of file descriptors left
#: an import failed halfway and the next "cannot import name ..." (a 500 for the rest of the server's life)
PRELOAD = ("edgenas.api.live", "edgenas.fleet.refresh", "edgenas.latency.calibration", "edgenas.latency.lut",
           "edgenas.latency.predictor", "edgenas.report.compare_data", "edgenas.report.device_data",
           "edgenas.report.pages", "edgenas.report.run_data", "edgenas.search.record", "edgenas.search.run_files",
           "edgenas.search.stale", "edgenas.store", "edgenas.store.db")


def preload() -> None:
    import importlib

    from edgenas.spaces import SPACES
    from edgenas.store.db import known_revisions

    for module in PRELOAD:
        importlib.import_module(module)
    SPACES.load_builtins()
    known_revisions()  # read once (alembic reads its folder)


def check_bind(host: str, port: int, token: str | None) -> str | None:
    """The token to require (None: none); refuses a non-loopback address without one."""
    if not 0 < port < 65536:
        raise InputError(f"--port must be in 1..65535, got {port}")
    if host.startswith("[") and host.endswith("]"):  # URL notation: '[::1]' read as a remote name
        raise InputError(f"--host takes an address without brackets, got {host!r}", hint=f"--host {host[1:-1]}")
    if not is_host(host):  # checked before the token: '\x1b[31mhost' is no address, whether a token is given or not
        raise InputError(f"--host '{shown(host)}' is not an address: give an IP address or a host name",
                         hint="e.g. --host 127.0.0.1, or --host 0.0.0.0 with --token")
    token = token or os.environ.get("EDGENAS_TOKEN") or None
    if token is not None and len(token) < 8:
        raise InputError("the token is too short (fewer than 8 characters)", hint="use e.g. `openssl rand -hex 16`")
    if token is not None and not re.fullmatch(r"[!-~]+", token):
        raise InputError("the token holds spaces or characters other than printable ASCII",
                         hint="use e.g. `openssl rand -hex 16`")
    if not is_loopback(host) and not token:
        raise InputError(f"serving on {host} (not this machine only) needs a token",
                         hint="pass --token or set EDGENAS_TOKEN; every request must then carry it")
    return token


def build_app(project: Project, token: str | None = None, host: str | None = None) -> Any:
    """The app for ``project``; served on a loopback ``host`` without a token, it answers local names only."""
    from edgenas.api.app import create_app
    from edgenas.report.source import FolderSource

    return create_app(FolderSource(project), token, local_only=token is None and host is not None and is_loopback(host))


def check_database(project: Project) -> None:
    """Refuse, before serving, an experiment database that every reading command refuses (a newer edgenas's
    schema, another application's, a damaged file, an unreachable server): opened read-only once, as ``runs
    list`` opens it, for its one ``DatabaseError`` (exit 6). The server said it served, then answered 500 on the
    pages and API paths that read it. No database is no error: the server reads the run folders."""
    from edgenas.store import open_db
    from edgenas.store.db import database_exists

    if database_exists(project):
        open_db(None, project, readonly=True).close()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or one ``InputError`` (a port in use, an unknown address), so the
    command fails before it says it serves and before uvicorn logs an error of its own."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"--host {host} is not an address of this machine ({getattr(exc, 'strerror', exc)})",
                         hint="e.g. --host 127.0.0.1, or --host 0.0.0.0 with --token") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} is in use on {host}",
                             hint="choose another --port, or stop what listens there") from None
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="check --host (an address of this machine) and --port") from None
    return sock


def serve(project: Project, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          ready: Callable[[], None] | None = None) -> None:
    """Serve until Ctrl-C; ``ready`` is called once the address is bound (the CLI says where it serves)."""
    token = check_bind(host, port, token)
    try:
        import uvicorn
    except ImportError:
        raise InputError("edgenas serve needs uvicorn and fastapi", hint="pip install 'edgenas[serve]'") from None
    check_database(project)
    app = build_app(project, token, host)
    preload()
    server_class = _quiet_server()
    sock = bind(host, port)
    if ready is not None:
        ready()
    with sock, _sigterm_stops_quietly():
        server_class(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])


def _quiet_server() -> Any:
    """uvicorn's server with ``fdlimit.loop_errors`` as its event loop's exception handler: out of file
    descriptors, asyncio logged a traceback for each of up to 2048 failed accepts a time (thousands a second)."""
    import asyncio

    import uvicorn

    from edgenas.api.fdlimit import loop_errors

    class Server(uvicorn.Server):
        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            asyncio.get_running_loop().set_exception_handler(loop_errors)
            await super().serve(sockets)

    return Server


@contextlib.contextmanager
def _sigterm_stops_quietly() -> Iterator[None]:
    """SIGTERM (docker stop, systemd) stops the server as Ctrl-C does: uvicorn shuts down, then raises the
    signal again for the handler it found, which was the CLI's (an error line saying to run the command
    again, exit 143). A handler that does nothing lets the command end as after Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
