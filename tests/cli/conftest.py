"""A project with a profiled ``mbv3-tiny`` LUT on ``local`` (made once per session); the CLI runner
``cli`` is in tests/conftest.py."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.protocols import FAST


@pytest.fixture(scope="session")
def profiled_template(tmp_path_factory):
    from edgenas.fleet.profiler import profile_device
    from edgenas.project import Project

    root = tmp_path_factory.mktemp("template")
    res = profile_device(Project(root), "local", "mbv3-tiny", protocol=FAST)
    assert res.n_entries > 0
    return root


@pytest.fixture
def proj(profiled_template, tmp_path, monkeypatch):
    root = tmp_path / "proj"
    shutil.copytree(profiled_template, root, symlinks=True)
    monkeypatch.setenv("EDGENAS_PROJECT", str(root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    return root


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty project (``tmp_path / "proj"``, the current folder) and no ``$EDGENAS_DB``: what bad input
    must leave exactly as it was, ``.edgenas/`` included."""
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.setenv("EDGENAS_PROJECT", str(root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def snapshot():
    return _snapshot


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (but the host cache) -> SHA-256 of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".edgenas" not in p.relative_to(root).parts:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
