"""Search spaces: a registry of ``SearchSpace`` instances keyed by name.

Each space module registers its presets at import; ``SPACES`` imports them the first time it is asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from edgenas.errors import InputError
from edgenas.registry import Registry
from edgenas.spaces.base import SearchSpace

SPACES: Registry[SearchSpace] = Registry("search space", builtins=(
    "edgenas.spaces.mbv3",  # mbv3-small, ofa-mbv3, ...
    "edgenas.spaces.nb201",
))
_load_builtin = SPACES.load_builtins  # the name older callers use


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name)


def space_names() -> list[str]:
    return SPACES.names()


def arch_from_dict(data: Any, *, source: str = "architecture") -> tuple[SearchSpace, Any]:
    """Parse an architecture record of any registered space (its ``"space"`` key picks the space)."""
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: expected a JSON object with a \"space\" key, got {type(data).__name__}")
    name = data.get("space")
    if not isinstance(name, str):
        raise InputError(f"{source}: missing \"space\" key", hint='add e.g. "space": "mbv3-small"')
    space = get_space(name)
    return space, space.from_record(data, source)


def load_arch(path: str | Path) -> tuple[SearchSpace, Any]:
    """Read an architecture JSON file (also accepts a run's ``best.json`` with an ``"arch"`` key)."""
    from edgenas.io import read_json
    from edgenas.limits import MAX_ARCH_BYTES

    data = read_json(path, "architecture file", limit=MAX_ARCH_BYTES)
    if isinstance(data, Mapping) and "arch" in data and isinstance(data["arch"], Mapping):
        data = data["arch"]
    return arch_from_dict(data, source=str(path))
