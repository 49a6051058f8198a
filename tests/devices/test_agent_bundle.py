"""The agent zipapp is built into the project's ``.edgenas/agent/``, named by its SHA-256 (its version)."""

from __future__ import annotations

import hashlib

from edgenas.devices.agent_bundle import agent_dir, ensure_agent_bundle
from edgenas.project import Project


def test_the_bundle_lies_in_the_projects_state_folder_named_by_its_hash(tmp_path):
    project = Project(tmp_path / "proj")
    assert agent_dir(project) == tmp_path / "proj" / ".edgenas" / "agent"
    path, version = ensure_agent_bundle(project)
    assert path == agent_dir(project) / f"edgenas-agent-{version}.pyz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == version
    assert ensure_agent_bundle(project) == (path, version)


def test_without_a_project_the_bundle_goes_to_the_default_one(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "p"))
    path, version = ensure_agent_bundle()
    assert path.parent == (tmp_path / "p").resolve() / ".edgenas" / "agent" and path.name.endswith(f"{version}.pyz")
