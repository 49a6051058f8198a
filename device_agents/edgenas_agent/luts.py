"""LUT files on the device: ``lut.put`` validates before it replaces, and keeps the previous table.

A LUT arrives as an uploaded file; ``put`` checks its SHA-256 and structure, copies it next to its final
place, hard-links the table it replaces into ``luts/history/`` and only then renames the new one into
``luts/<name>``, so at every moment ``luts/<name>`` is a complete, validated table.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from typing import Any, Dict, List

from . import files
from .errors import AgentFault

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.json\Z")
_STATS = ("n", "median_ms", "mean_ms", "std_ms", "cov", "p90_ms", "p99_ms", "min_ms", "max_ms")


def _name(params: Dict[str, Any]) -> str:
    name = params.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise AgentFault("BadRequest", "LUT name must be a plain file name ending in .json, got %r" % (name,))
    return name


def validate(data: Any) -> None:
    """The structural checks the host's ``Lut.from_dict`` also makes (schema, fields, entry stats)."""
    if not isinstance(data, dict):
        raise AgentFault("InvalidLut", "a LUT must be a JSON object")
    if not isinstance(data.get("schema"), int) or isinstance(data.get("schema"), bool):
        raise AgentFault("InvalidLut", "missing or malformed 'schema'")
    for key in ("device", "space", "fingerprint_hash", "runtime", "precision"):
        if not isinstance(data.get(key), str):
            raise AgentFault("InvalidLut", "missing or malformed '%s'" % key)
    for key in ("fingerprint", "protocol", "entries"):
        if not isinstance(data.get(key), dict):
            raise AgentFault("InvalidLut", "missing or malformed '%s'" % key)
    if not data["entries"]:
        raise AgentFault("InvalidLut", "the LUT has no entries")
    for key, entry in list(data["entries"].items()) + [("overhead", data.get("overhead"))]:
        if not isinstance(entry, dict):
            raise AgentFault("InvalidLut", "entry '%s' is not an object of statistics" % key)
        for f in _STATS:
            v = entry.get(f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise AgentFault("InvalidLut", "entry '%s': %s must be a finite number >= 0" % (key, f))


def put(workdir: str, params: Dict[str, Any]) -> Dict[str, Any]:
    name = _name(params)
    src = files.resolve(workdir, params.get("path"))
    if not os.path.isfile(src):
        raise AgentFault("FileNotFoundError", "uploaded LUT not found: %s" % src)
    digest = files.sha256_file(src)
    if params.get("sha256") is not None and params["sha256"] != digest:
        raise AgentFault("HashMismatch", "uploaded LUT has sha256 %s, expected %s" % (digest, params["sha256"]))
    with open(src, "rb") as fh:
        raw = fh.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AgentFault("InvalidLut", "not valid JSON: %s" % exc)
    validate(data)
    luts = os.path.join(workdir, "luts")
    dest = os.path.join(luts, name)
    if os.path.exists(dest):
        if files.sha256_file(dest) == digest:
            return {"path": "luts/" + name, "sha256": digest, "unchanged": True}
        stem = name[: -len(".json")]
        hist = os.path.join(luts, "history", "%s.%d.json" % (stem, int(time.time() * 1000)))
        os.makedirs(os.path.dirname(hist), exist_ok=True)
        try:
            os.link(dest, hist)
        except OSError:
            shutil.copy2(dest, hist)
    files.atomic_write(dest, raw)
    return {"path": "luts/" + name, "sha256": digest}


def get(workdir: str, params: Dict[str, Any]) -> Dict[str, Any]:
    name = _name(params)
    path = os.path.join(workdir, "luts", name)
    if not os.path.isfile(path):
        raise AgentFault("FileNotFoundError", "no LUT named %s on this device" % name)
    return {"path": "luts/" + name, "sha256": files.sha256_file(path), "size": os.path.getsize(path)}


def list_luts(workdir: str) -> List[Dict[str, Any]]:
    folder = os.path.join(workdir, "luts")
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and _NAME.match(name):
            st = os.stat(path)
            out.append({"name": name, "sha256": files.sha256_file(path), "size": st.st_size, "mtime": st.st_mtime})
    return out
