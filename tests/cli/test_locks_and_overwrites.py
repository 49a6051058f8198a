"""Issue 10: concurrency and overwrites. A run folder (and a device's profile of a space) is held by an
OS file lock for the whole command: a second writer, here a real second process, is refused before it
writes anything. ``export --out`` refuses a non-empty folder that is not this architecture's export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgenas.errors import OutputError

ROOT = Path(__file__).resolve().parents[2]
TINY = {"space": "mbv3-tiny", "schema": 1, "ks": [3] * 4, "e": [3] * 4, "d": [2, 2], "r": 16}

HOLDER = """
import sys, time
from pathlib import Path
from edgenas.project import Project
kind, where = sys.argv[1], sys.argv[2]
if kind == "run":
    from edgenas.locks import run_lock
    lock = run_lock(Path(where))
else:
    from edgenas.fleet.table_lock import profile_lock
    lock = profile_lock(Project(where), "local", "mbv3-tiny")
with lock:
    print("held", flush=True)
    sys.stdin.read()
"""


def hold(kind: str, where: Path) -> subprocess.Popen:
    """Another edgenas process holding the lock until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(where)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.stdout.readline().strip() == "held"
    return p


def release(p: subprocess.Popen) -> None:
    p.stdin.close()
    p.wait(timeout=30)


def test_second_search_into_a_locked_run_folder_is_refused_before_writing(cli, proj, snapshot):
    run = proj / "run"
    run.mkdir()
    holder = hold("run", run)
    try:
        before = snapshot(proj)
        args = ("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "4", "--evaluator", "params",
                "--out", str(run), "--json")
        res = cli(*args)
        assert res.code == OutputError.exit_code, res.err
        assert "in use by another edgenas process" in res.err and f"pid {holder.pid}" in res.err
        assert snapshot(proj) == before and not (run / "request.json").exists()
    finally:
        release(holder)
    res = cli(*args)  # the lock went with its holder: the folder is free again
    assert res.code == 0, res.err
    assert json.loads(res.out)["evaluations"] == 4


def test_second_profile_of_a_device_and_space_is_refused(cli, proj, snapshot):
    holder = hold("profile", proj)
    try:
        before = snapshot(proj)
        res = cli("profile", "local", "--space", "mbv3-tiny", "--force")
        assert res.code == OutputError.exit_code, res.err
        assert "profile of 'local' for 'mbv3-tiny' is in use" in res.err
        assert snapshot(proj) == before
    finally:
        release(holder)


def test_export_refuses_a_folder_that_is_not_this_architectures_export(cli, proj):
    arch = proj / "arch.json"
    arch.write_text(json.dumps(TINY))
    foreign = proj / "foreign"
    foreign.mkdir()
    (foreign / "model.onnx").write_bytes(b"someone else's model")
    (foreign / "manifest.json").write_text('{"not": "an edgenas manifest"}')
    res = cli("export", str(arch), "--out", str(foreign))
    assert res.code == OutputError.exit_code and "--force" in res.err
    assert (foreign / "model.onnx").read_bytes() == b"someone else's model"
    other = dict(TINY, ks=[5, 3, 3, 3])
    (proj / "other.json").write_text(json.dumps(other))
    mine = proj / "mine"
    assert cli("export", str(proj / "other.json"), "--out", str(mine)).code == 0
    manifest = (mine / "manifest.json").read_bytes()
    res = cli("export", str(arch), "--out", str(mine))  # an export, but of another architecture
    assert res.code == OutputError.exit_code and (mine / "manifest.json").read_bytes() == manifest
    res = cli("export", str(proj / "other.json"), "--out", str(mine), "--json")  # the same one: reused
    assert res.code == 0 and res.json()["reused"]
    res = cli("export", str(arch), "--out", str(foreign), "--force", "--json")
    assert res.code == 0, res.err
    assert (foreign / "model.onnx").read_bytes() != b"someone else's model"


def test_an_export_killed_before_it_finished_is_done_again(cli, proj):
    """kill -9 left the export's temporary file in its folder, and every later export and deploy of the
    architecture was refused ("not empty and holds no edgenas export"); deploy has no --force."""
    arch = proj / "arch.json"
    arch.write_text(json.dumps(TINY))
    out = proj / "killed"
    out.mkdir()
    (out / ".model.onnx.partial").write_bytes(b"half an onnx file")
    res = cli("export", str(arch), "--out", str(out), "--json")
    assert res.code == 0, res.err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]


def test_two_records_of_one_network_share_its_default_export_folder(cli, proj):
    """Genes past a stage's depth build nothing: two records that differ only there are one network, whose
    default folder (named by its canonical id) the first export made; the second was refused in it ("holds no
    edgenas export of this architecture"), and deploy, which has no --force, could not run at all."""
    a = {"space": "mbv3-tiny", "schema": 1, "ks": [5, 5, 5, 3], "e": [3, 3, 3, 3], "d": [1, 2], "r": 16}
    b = dict(a, ks=[5, 3, 5, 3])  # stage 0 has depth 1: its second slot is not built
    (proj / "a.json").write_text(json.dumps(a))
    (proj / "b.json").write_text(json.dumps(b))
    first = cli("export", str(proj / "a.json"), "--json")
    assert first.code == 0, first.err
    second = cli("export", str(proj / "b.json"), "--json")
    assert second.code == 0, second.err
    assert second.json()["onnx_path"] == first.json()["onnx_path"] and second.json()["reused"]
    c = dict(a, ks=[3, 5, 5, 3])  # another network: its own folder
    (proj / "c.json").write_text(json.dumps(c))
    third = cli("export", str(proj / "c.json"), "--json")
    assert third.code == 0 and third.json()["onnx_path"] != first.json()["onnx_path"]


def test_an_export_whose_model_file_is_a_fifo_is_done_again_not_hashed(tmp_path):
    """A FIFO planted at an export's model.onnx (its manifest intact) hung every later export and deploy of the
    architecture: the check for reuse hashed it, waiting for a writer. Here a writer answers any reader with the
    old model's bytes, so the old code ends (reusing the FIFO) instead of hanging."""
    import errno
    import os
    import threading
    import time

    import numpy as np

    from edgenas.export import export_arch
    from edgenas.spaces import get_space

    space = get_space("mbv3-tiny")
    arch = space.sample(np.random.default_rng(0))
    out = tmp_path / "exp"
    first = export_arch(space, arch, out)
    model = out / "model.onnx"
    old = model.read_bytes()
    model.unlink()
    os.mkfifo(model)

    def answer_a_reader() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and model.is_fifo():
            try:
                fd = os.open(model, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:       # ENXIO: nobody reads it (yet)
                assert exc.errno == errno.ENXIO
                time.sleep(0.05)
                continue
            os.set_blocking(fd, True)
            os.write(fd, old)
            os.close(fd)
            return

    writer = threading.Thread(target=answer_a_reader, daemon=True)
    writer.start()
    again = export_arch(space, arch, out)
    writer.join(70)
    assert not again.reused and model.is_file() and not model.is_fifo() and again.sha256 == first.sha256
