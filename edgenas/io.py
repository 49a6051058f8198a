"""Atomic file writes, hashing and strict JSON/TOML reading with clear errors.

The atomic write and the hashes are ``exporters._io``'s (stdlib, shipped to devices too); the agent
keeps its own copy because it imports nothing of the host.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from edgenas.errors import InputError
from exporters._io import atomic_write_bytes, sha256_bytes, sha256_file  # one copy for the host (and the device)

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "read_json", "read_toml",
           "sha256_bytes", "sha256_file"]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, compact: bool = False) -> Path:
    """``obj`` as JSON, indented, or without any whitespace (``compact``, for large records)."""
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file", *, limit: int | None = None) -> Any:
    """Read JSON; a missing, oversized, too deeply nested or malformed file is one ``InputError``."""
    from edgenas.limits import MAX_JSON_BYTES, loads_json_limited, read_bytes_limited

    path = Path(path)
    data = read_bytes_limited(path, what, limit or MAX_JSON_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"cannot read {what} {path}: not UTF-8 text") from None
    return loads_json_limited(text, f"{what} {path}")


def read_toml(path: str | os.PathLike, what: str = "TOML file") -> dict[str, Any]:
    from edgenas.limits import read_bytes_limited

    path = Path(path)
    data = read_bytes_limited(path, what)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed {what} {path}: {exc}", hint="fix the TOML syntax") from None
    except RecursionError:
        raise InputError(f"malformed {what} {path}: nested too deeply") from None
