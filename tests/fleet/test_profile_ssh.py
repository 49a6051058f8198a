"""``profile_device`` over a REAL sshd for the ``mbv3-tiny`` space (22 block keys, real agent, real ONNX
Runtime): the LUT lands in ``luts/`` and on the device, a second run reuses it without re-uploading the
agent, and a connection lost mid-profile names the device, keeps the previous LUT and resumes later."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from edgenas.errors import DeviceError
from edgenas.fleet.profiler import profile_device
from edgenas.devices.session import open_session
from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore, lut_filename
from edgenas.project import Project
from tests.protocols import FAST

pytestmark = pytest.mark.ssh

SPACE = "mbv3-tiny"
SLOW = dict(FAST, min_s=0.15, max_s=0.4)  # slow enough per block that a kill lands mid-run


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    # module scope: the per-block ONNX exports (.edgenas/blocks) are made once for all tests here
    return Project(tmp_path_factory.mktemp("proj"))


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_profile_writes_lut_on_host_and_device_then_reuses_it(sshd, project):
    sshd.trust(project)
    dev = sshd.profile("tiny-a")
    res = profile_device(project, dev, SPACE, protocol=FAST)
    assert res.device == "tiny-a" and not res.reused_lut
    assert res.n_entries == 22 and res.measured == 22 and res.resumed == 0
    assert res.lut_path == LutStore(project.luts_dir).path_for("tiny-a", SPACE, res.fingerprint_hash)
    lut = Lut.load(res.lut_path)
    assert lut.device == "tiny-a" and lut.space == SPACE and len(lut.entries) == 22
    assert lut.protocol["max_s"] == FAST["max_s"] and lut.overhead_ms > 0
    assert all(e.median_ms > 0 for e in lut.entries.values())

    name = lut_filename(SPACE, res.fingerprint_hash)
    on_device = Path(dev.workdir) / "luts" / name
    assert _sha(on_device) == _sha(res.lut_path)  # the same bytes on the device
    with open_session(project, dev) as s:
        listing = s.call("lut.list")
    assert name in str(listing)

    agents = list((Path(dev.workdir) / "agent").glob("edgenas-agent-*.pyz"))
    assert len(agents) == 1
    os.utime(agents[0], (1_000_000, 1_000_000))
    before = _sha(res.lut_path)
    again = profile_device(project, dev, SPACE, protocol=FAST)
    assert again.reused_lut and again.measured == 0 and again.lut_path == res.lut_path
    assert again.fingerprint_hash == res.fingerprint_hash
    assert agents[0].stat().st_mtime == 1_000_000  # same hash on the device: agent not uploaded again
    assert _sha(res.lut_path) == before


def test_sshd_killed_mid_profile_keeps_previous_lut_then_resumes(sshd, project):
    sshd.trust(project)
    dev = sshd.profile("tiny-b")
    first = profile_device(project, dev, SPACE, protocol=FAST)
    before = _sha(first.lut_path)
    partial_dir = Path(dev.workdir) / "partial"
    existing = set(partial_dir.glob("*.jsonl"))
    killed = threading.Event()

    def kill_after_first_entry() -> None:
        sshd.kill_after_first_partial_entry(partial_dir, existing, 60)
        killed.set()

    threading.Thread(target=kill_after_first_entry, daemon=True).start()
    t0 = time.monotonic()
    # batches of 4: the LUT protocol writes a batch's entries when its sweeps end, so the kill after the
    # first written entry lands with one batch on disk and the rest of the 22 still to do
    with pytest.raises(DeviceError) as exc:
        profile_device(project, dev, SPACE, force=True, protocol=SLOW, batch_size=4)
    assert killed.wait(5) and time.monotonic() - t0 < 60
    assert exc.value.device == "tiny-b" and "device 'tiny-b'" in str(exc.value)
    # the previous table is untouched on the host (same bytes, still loads) and nothing else was added
    assert _sha(first.lut_path) == before
    assert len(Lut.load(first.lut_path).entries) == 22
    assert LutStore(project.luts_dir).list("tiny-b", SPACE) == [first.lut_path]
    fresh = [p for p in partial_dir.glob("*.jsonl") if p not in existing]
    assert len(fresh) == 1 and 1 <= fresh[0].read_text().count("\n") < 22

    sshd.start()  # same port, same host key
    res = profile_device(project, dev, SPACE, force=True, protocol=SLOW)
    assert not res.reused_lut and res.resumed > 0 and res.measured + res.resumed == 22
    assert res.lut_path == first.lut_path and _sha(res.lut_path) != before
    new = Lut.load(res.lut_path)
    assert new.protocol["min_s"] == SLOW["min_s"] and len(new.entries) == 22
    hist = list((project.luts_dir / "tiny-b" / "history").glob("*.json"))
    assert len(hist) == 1 and _sha(hist[0]) == before  # the replaced table is kept in history/
    # the table saved, its partial file is removed from the device (one per forced run piled up)
    assert not fresh[0].exists() and list(partial_dir.iterdir()) == []


def test_a_table_the_device_cannot_take_leaves_the_hosts_as_it_was_and_the_run_resumes(sshd, project):
    """The host's table was replaced before the upload to the device; when that failed (a full disk on the
    device), host and device held different tables, the hinted re-run said "reused" without pushing, and a
    re-run with --force timed every block again (the partial file is named after the host's table)."""
    import shutil

    sshd.trust(project)
    dev = sshd.profile("tiny-c")
    first = profile_device(project, dev, SPACE, protocol=FAST)
    before = _sha(first.lut_path)
    on_device = Path(dev.workdir) / "luts" / lut_filename(SPACE, first.fingerprint_hash)
    on_device.unlink()
    on_device.mkdir()                      # lut.put cannot replace it: the upload fails after all the timing
    with pytest.raises(DeviceError):
        profile_device(project, dev, SPACE, force=True, protocol=FAST)
    assert _sha(first.lut_path) == before  # the host's table is the one it had
    assert not list(project.state_dir.glob(".lut-upload-*"))
    shutil.rmtree(on_device)
    again = profile_device(project, dev, SPACE, force=True, protocol=FAST)
    assert again.resumed == 22 and again.measured == 0   # every block from the partial file, none timed again
    assert _sha(on_device) == _sha(again.lut_path) != before
    # a device that lost its copy gets the host's back from a plain re-run ("reused": it pushed nothing)
    on_device.unlink()
    reused = profile_device(project, dev, SPACE, protocol=FAST)
    assert reused.reused_lut and _sha(on_device) == _sha(reused.lut_path)
