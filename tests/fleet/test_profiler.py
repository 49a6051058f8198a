"""``profile_device`` on the ``local`` device with the real agent, some of its answers made hostile where a
test needs it (``hostile.py``): what a profile reports, what it leaves on the host and the device, and
what the device says must not make the host write a table it cannot read back."""

from __future__ import annotations

import dataclasses
import time

import pytest

import edgenas.limits
from edgenas.errors import DeviceError, InputError, RuntimeMissingError
from edgenas.fleet.profiler import profile_device
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project
from tests.fleet.hostile import answering, hostile_agent, use_agent
from tests.protocols import FAST

#: each bench_many call first reports junk, then a valid 0 and one past its batch's end, then the real work
PROGRESS = ("real_bm = M['bench_many']\n"
            "def bench_many(w, p, pr):\n"
            "    n = len(p['items'])\n"
            "    for junk in ('x', [1], {'done': 'x'}, {'done': -1}, {'done': n + 1}, {'done': True}, {'done': 0}):\n"
            "        pr(junk)\n"
            "    return real_bm(w, p, pr)\n"
            "M['bench_many'] = bench_many\n")


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_profile_reports_what_it_did_and_a_second_one_reuses_the_table(tmp_path, monkeypatch):
    use_agent(monkeypatch, hostile_agent(tmp_path, PROGRESS))
    project = Project(tmp_path / "proj")
    seen: list[tuple[int, int]] = []

    def progress(name: str, done: int, total: int) -> None:
        if name == "time blocks on local":  # (the export's progress is the export's)
            seen.append((done, total))

    # forced with no table yet: a first profile all the same (its partial file is named by no old table)
    t0 = time.perf_counter()
    res = profile_device(project, "local", "nb201", force=True, protocol=FAST, batch_size=8, progress=progress)
    took = time.perf_counter() - t0
    lut = Lut.load(res.lut_path)
    assert (res.device, res.space, res.n_entries, res.reused_lut, res.measured, res.resumed, res.exported) == (
        "local", "nb201", 19, False, 19, 0, 19)
    assert res.fingerprint_hash == lut.fingerprint_hash and res.unstable == len(lut.unstable_keys)
    assert LutStore(project.luts_dir).last_fingerprint("local") == res.fingerprint_hash  # what `choose` goes by
    assert res.runs_per_sample == 1 and lut.sync is None and 0 < res.wall_s <= took
    assert (res.calibrated, res.recalibrated, res.calibration_note, res.power_mode_note) == (False, None, None, None)
    assert res.to_dict()["lut_path"] == str(res.lut_path) and res.to_dict()["recalibrated"] is None
    with pytest.raises(dataclasses.FrozenInstanceError):  # a record of what happened
        res.measured = 0
    # batches of 8, 8 and 3: the agent's 0 and each of its entries (the junk ignored), then the host's count
    want = []
    for base, n in ((0, 8), (8, 8), (16, 3)):
        want += [(base + i, 19) for i in range(n + 1)] + [(base + n, 19)]
    assert seen == want
    on_device = project.local_workdir / "luts" / res.lut_path.name
    assert on_device.read_bytes() == res.lut_path.read_bytes()
    assert files_under(project.local_workdir / "partial") == []  # the table is saved: its entries file is gone

    on_device.unlink()  # a device that lost its copy gets it back from a profile that reuses the table
    t0 = time.perf_counter()
    again = profile_device(project, "local", "nb201", protocol=FAST)
    assert 0 < again.wall_s <= time.perf_counter() - t0
    assert (again.lut_path, again.n_entries, again.reused_lut, again.measured, again.resumed, again.exported) == (
        res.lut_path, 19, True, 0, 0, 0)
    assert (again.runs_per_sample, again.calibrated, again.unstable) == (1, False, res.unstable)
    assert on_device.read_bytes() == res.lut_path.read_bytes()


def test_a_device_without_the_profiles_runtime_is_refused_before_anything_is_timed(tmp_path, monkeypatch):
    patch = answering("info", "r['runtimes']['onnxruntime'] = None")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    project = Project(tmp_path / "proj")
    with pytest.raises(RuntimeMissingError, match="runtime 'onnxruntime' is not available") as exc:
        profile_device(project, "local", "nb201", protocol=FAST)
    assert exc.value.device == "local" and "install it on the device" in exc.value.hint
    assert files_under(project.luts_dir) == [] and not project.block_cache.exists()


def test_a_planted_link_in_the_lut_folder_is_refused_before_the_device_is_started(tmp_path):
    project = Project(tmp_path / "proj")
    (tmp_path / "elsewhere").mkdir()
    project.luts_dir.mkdir(parents=True)
    (project.luts_dir / "local").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError):
        profile_device(project, "local", "nb201", protocol=FAST)
    assert not project.state_dir.exists() and files_under(tmp_path / "elsewhere") == []


@pytest.mark.parametrize("change, needle", [
    ("r['results'].pop(sorted(r['results'])[0])", r"agent returned no result for 1 blocks \(first: "),
    ("[v.update(ratio=1e6, ref_ms=1e6) for v in r['results'].values()]",
     r"the agent's timings make a bad table: .*over 1e\+07"),  # each number plausible, their product not
])
def test_timings_that_make_no_table_are_one_device_error_and_write_none(tmp_path, monkeypatch, change, needle):
    patch = ("real_bm = M['bench_many']\n"
             "def bench_many(w, p, pr):\n"
             "    r = real_bm(w, p, pr)\n"
             f"    {change}\n"
             "    return r\n"
             "M['bench_many'] = bench_many\n")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    project = Project(tmp_path / "proj")
    with pytest.raises(DeviceError, match=needle) as exc:
        profile_device(project, "local", "nb201", protocol=FAST)
    assert exc.value.device == "local"
    assert files_under(project.luts_dir) == [] and files_under(project.local_workdir / "luts") == []


def test_a_fingerprint_that_makes_a_table_too_large_to_read_back_writes_nothing(tmp_path, monkeypatch):
    """A list of 200,000 zeros in the fingerprint is 0.4 MB in the info answer and 1.8 MB in the indented
    table: over a 1 MB limit, the table was written, and every later command on the device (profile
    included) refused it as damaged."""
    patch = answering("info", "r['fingerprint']['pad'] = [0] * 200_000")
    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    monkeypatch.setattr(edgenas.limits, "MAX_JSON_BYTES", 1 << 20)  # EDGENAS_MAX_INPUT_MB=1
    project = Project(tmp_path / "proj")
    with pytest.raises(DeviceError, match=r"the table of device 'local' would be 1\.\d MB, over the 1 MB limit for LUT "
                                          r"files \(its fingerprint, from the device, is 0\.6 MB\)") as exc:
        profile_device(project, "local", "nb201", protocol=FAST)
    assert exc.value.device == "local" and "nothing was written" in exc.value.hint
    assert files_under(project.luts_dir) == [] and files_under(project.local_workdir / "luts") == []


def test_the_size_checked_is_the_size_of_the_file_a_save_writes(tmp_path, monkeypatch):
    st = EntryStats(n=10, median_ms=1.0, mean_ms=1.0, std_ms=0.0, cov=0.0, p90_ms=1.0, p99_ms=1.0, min_ms=1.0,
                    max_ms=1.0)
    lut = Lut(device="d", space="nb201", fingerprint={"cpu": "caf\u00e9", "pad": [0] * 100}, fingerprint_hash="ab" * 32,
              runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=st, entries={"k": st})
    size = lut.save(tmp_path / "t.json").stat().st_size
    assert lut.saved_bytes() == size
    monkeypatch.setattr(edgenas.limits, "MAX_JSON_BYTES", size)
    lut.check_size()  # exactly at the limit: Lut.load reads it
    assert Lut.load(tmp_path / "t.json") == lut
    monkeypatch.setattr(edgenas.limits, "MAX_JSON_BYTES", size - 1)
    with pytest.raises(InputError, match="over the"):
        lut.check_size()
    with pytest.raises(InputError, match="over the"):  # every writer of a table: nothing is written
        lut.save(tmp_path / "u.json")
    assert not (tmp_path / "u.json").exists()


def test_a_runtime_whose_calls_overlap_has_its_one_call_wait_timed_on_the_trivial_model(tmp_path):
    """``runs_per_sample`` > 1 (a GPU's runtime): samples of back-to-back calls, and the trivial model timed
    once more one call at a time (``Lut.sync``: at least 200 samples, no reference ratio)."""
    res = profile_device(Project(tmp_path / "proj"), "local", "nb201", protocol=dict(FAST, runs_per_sample=2))
    lut = Lut.load(res.lut_path)
    assert res.runs_per_sample == 2 and lut.protocol["runs_per_sample"] == 2 and lut.overhead.k == 2
    assert lut.sync is not None and lut.sync.k == 1 and lut.sync.n >= 200 and lut.sync.ratio is None


def test_a_damaged_table_or_another_devices_at_the_tables_path_is_refused_not_reused_or_pushed(tmp_path):
    """A table whose contents name another device (copied into ``luts/local/`` by hand) was "reused": the
    profile pushed it to the device and reported success, while every command that reads the table refused it
    ("re-profile"), and re-profiling reused it again. Like a damaged file, it is one error saying --force."""
    from edgenas.devices.session import open_session

    project = Project(tmp_path / "proj")
    with open_session(project, "local") as s:
        fp = s.info().fingerprint_hash
    st = EntryStats(n=10, median_ms=1.0, mean_ms=1.0, std_ms=0.0, cov=0.0, p90_ms=1.0, p99_ms=1.0, min_ms=1.0,
                    max_ms=1.0)
    foreign = Lut(device="jetson-b", space="nb201", fingerprint={"cpu": "other"}, fingerprint_hash=fp,
                  runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=st, entries={"k": st})
    path = LutStore(project.luts_dir).path_for("local", "nb201", fp)
    path.parent.mkdir(parents=True)
    for make, needle in ((lambda: foreign.save(path), r"holds device 'jetson-b'"),
                         (lambda: path.write_text('{"device": "local", "entries": '), "malformed")):
        make()
        before, on_device = path.read_bytes(), files_under(project.local_workdir / "luts")
        with pytest.raises(InputError, match=needle) as exc:
            profile_device(project, "local", "nb201", protocol=FAST)
        assert exc.value.message.startswith(f"the LUT {path} is damaged: ")
        assert "edgenas profile local --space nb201 --force" in exc.value.hint
        assert path.read_bytes() == before and files_under(project.local_workdir / "luts") == on_device
