"""Which addresses and ``Host`` headers name this machine (``serve``'s bind rule and its DNS-rebinding guard)."""

from __future__ import annotations

import ipaddress
import re

LOOPBACK_NAMES = {"localhost"}

#: a host name: dot-separated labels of letters, digits, '-' (not first or last) and '_' (names in use break
#: RFC 1123 with it), at most 63 characters each and 253 in all, an optional final dot
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?\Z){_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)


def is_host(host: str) -> bool:
    """Whether ``host`` is an IP address (v4, v6, v6 with a zone ``%eth0``) or a well-formed host name: what
    ``serve --host`` takes (a control character, a space or a URL is neither)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _HOST_NAME.fullmatch(host) is not None


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
