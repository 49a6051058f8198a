"""Issue 10: ``fleet refresh`` over several NEVER-profiled devices from an empty project, in parallel.

``torch.onnx.export`` is not thread-safe; the refresh used to export the space's blocks inside each
device's thread, so with three new devices only one got a table ("GLOBALS.in_onnx_export must be True").
Each space's blocks are now exported once, before the parallel phase.
"""

from __future__ import annotations

import pytest

from edgenas.fleet.refresh import refresh_fleet
from edgenas.latency.lut import Lut
from edgenas.project import Project

pytestmark = pytest.mark.ssh

SPACE = "mbv3-tiny"
PROTO = {"warmup_min_n": 2, "warmup_min_s": 0.005, "min_n": 3, "min_s": 0.01, "max_s": 0.05}


@pytest.mark.slow
def test_parallel_refresh_of_three_new_devices_from_an_empty_project(sshd_factory, tmp_path):
    project = Project(tmp_path / "proj")
    servers = [sshd_factory() for _ in range(3)]
    for s in servers:
        s.trust(project)
    profiles = [s.profile(f"new-{i}") for i, s in enumerate(servers)]
    assert not project.luts_dir.exists() and not project.block_cache.exists()

    rows = refresh_fleet(project, profiles, SPACE, concurrency=3, protocol=PROTO)

    assert [(r.device, r.status) for r in rows] == [(p.name, "refreshed") for p in profiles], \
        [r.reason for r in rows]
    assert all(r.reason == "no LUT yet" for r in rows)
    for r, p in zip(rows, profiles):
        lut = Lut.load(r.lut_path)
        assert lut.device == p.name and lut.space == SPACE and len(lut.entries) == 22
