"""``edgenas serve``: the API and pages on uvicorn; loopback by default, a token for anything else."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from edgenas.errors import InputError
from edgenas.project import Project

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, token: str | None) -> str | None:
    """The token to require (None: none); refuses a non-loopback address without one."""
    if not 0 < port < 65536:
        raise InputError(f"--port must be in 1..65535, got {port}")
    token = token or os.environ.get("EDGENAS_TOKEN") or None
    if token is not None and len(token) < 8:
        raise InputError("the token is too short (fewer than 8 characters)", hint="use e.g. `openssl rand -hex 16`")
    if not is_loopback(host) and not token:
        raise InputError(f"serving on {host} (not this machine only) needs a token",
                         hint="pass --token or set EDGENAS_TOKEN; every request must then carry it")
    return token


def build_app(project: Project, token: str | None = None) -> Any:
    from edgenas.api.app import create_app
    from edgenas.report.source import FolderSource

    return create_app(FolderSource(project), token)


def serve(project: Project, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    token = check_bind(host, port, token)
    try:
        import uvicorn
    except ImportError:
        raise InputError("edgenas serve needs uvicorn and fastapi", hint="pip install 'edgenas[serve]'") from None
    uvicorn.run(build_app(project, token), host=host, port=port, log_level="warning")
