"""Which addresses and ``Host`` headers name this machine (``serve``'s bind rule and its DNS-rebinding guard)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_is_loopback(header: str) -> bool:
    """Whether a request's ``Host`` header names this machine (``localhost``, ``127.0.0.1:8765``, ``[::1]``)."""
    name = header[1:header.find("]")] if header.startswith("[") else header.rsplit(":", 1)[0]
    return bool(name) and is_loopback(name.lower())
