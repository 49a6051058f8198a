"""A free TCP port on 127.0.0.1 for a test's server (uvicorn, a Ray head)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports, held open together while they are drawn: two ``free_port()`` calls in a row
    can return the same port (the first is free again once its socket closes), and a Ray head given one port for
    two of its components refused to start ("is trying to use a port number ... used by other components")."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
