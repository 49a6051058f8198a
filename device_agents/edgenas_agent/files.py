"""The work dir: path resolution, hashing and durable writes (standard library only)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Dict, List

from .errors import AgentFault

LAYOUT = ("agent", "models", "luts", "luts/history", "partial", "engines", "cache")


def init_workdir(workdir: str) -> str:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    for sub in LAYOUT:
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    return workdir


def resolve(workdir: str, path: Any, what: str = "path") -> str:
    """A params path: relative to the work dir unless absolute."""
    if not isinstance(path, str) or not path:
        raise AgentFault("BadRequest", "%s must be a non-empty string" % what)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(workdir, path))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def append_json_line(path: str, obj: Dict[str, Any]) -> None:
    """Append one JSON line and fsync it, so a crash loses at most the entry being written."""
    append_json_lines(path, [obj])


def append_json_lines(path: str, objs: List[Dict[str, Any]]) -> None:
    """Append one JSON line per object with one fsync (entries finished together are kept together)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    data = "".join(json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n" for obj in objs)
    with open(path, "ab") as fh:
        fh.write(data.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def stat(workdir: str, params: Dict[str, Any]) -> Dict[str, Any]:
    path = resolve(workdir, params.get("path"))
    if not os.path.isfile(path):
        return {"exists": False}
    return {"exists": True, "sha256": sha256_file(path), "size": os.path.getsize(path)}
