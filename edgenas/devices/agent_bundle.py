"""Host side of the agent zipapp: build it once per content into ``<project>/.edgenas/agent/``.

The build (``device_agents.build``) is deterministic, so the archive's SHA-256 is the agent version:
the same sources always give the same version, and a transport installs the zipapp on a device only
when the device lacks a file with that hash. The agent hashes its own archive at start and reports the
result in its hello line, which ``AgentClient(expect_version=...)`` checks.
"""

from __future__ import annotations

from pathlib import Path

from device_agents.build import build_zipapp
from edgenas.project import Project


def agent_dir(project: Project) -> Path:
    return project.state_dir / "agent"


def ensure_agent_bundle(project: Project | None = None) -> tuple[Path, str]:
    """``(path to edgenas-agent-<sha256>.pyz, sha256)``, building it only when the content changed."""
    project = project or Project.default()
    return build_zipapp(agent_dir(project))
