"""Fixtures shared by the fleet tests: a fresh project, and agents that misbehave on purpose."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from edgenas.project import Project


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "proj")


def _script_zipapp(folder: Path, main_py: str) -> tuple[Path, str]:
    """A real zipapp running ``main_py``; its SHA-256 is its version, as for the real agent."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", main_py)
    data = buf.getvalue()
    version = hashlib.sha256(data).hexdigest()
    path = folder / f"script-{version[:8]}.pyz"
    path.write_bytes(data)
    return path, version


@pytest.fixture()
def script_zipapp() -> Callable[[Path, str], tuple[Path, str]]:
    return _script_zipapp
