"""edgenas device agent: runs ON the device, standard library only, Python 3.8+.

Shipped as one zipapp whose SHA-256 is its version: the agent hashes its own archive at start
(``agent_version()``), so the version it reports can never disagree with the file the host installed.
Run from a source checkout it reports ``"dev"``.
"""

from __future__ import annotations

import hashlib
import os

AGENT_NAME = "edgenas-agent"
PROTOCOL = 1

_version_cache = []


def archive_path():
    """The zipapp this package was imported from, or None when run from sources."""
    archive = getattr(globals().get("__loader__"), "archive", None)
    return archive if archive and os.path.isfile(archive) else None


def agent_version() -> str:
    if not _version_cache:
        path = archive_path()
        if path is None:
            _version_cache.append("dev")
        else:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            _version_cache.append(h.hexdigest())
    return _version_cache[0]
