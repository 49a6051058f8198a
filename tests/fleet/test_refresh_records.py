"""What a fleet refresh leaves besides tables, without devices: the last-refresh record (which
``--only-failed`` reads) and the count of search runs its changes made stale."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path

import pytest

import edgenas.fleet.refresh as refresh
from edgenas.devices.profiles import LOCAL_PROFILE
from edgenas.fleet.refresh import DeviceRefresh, RefreshStatus, last_refresh_path, refresh_fleet, stale_runs_after
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def test_two_refreshes_finishing_together_both_keep_their_rows(project, monkeypatch):
    """Two refreshes of different groups read the record at the same moment: without its lock the later
    write dropped the other's rows, and ``--only-failed`` then missed a failed device."""
    rows = {"dev-a": RefreshStatus.FAILED, "dev-b": RefreshStatus.VERIFIED}
    monkeypatch.setattr(refresh, "prepare_blocks", lambda *a, **k: 0)
    monkeypatch.setattr(refresh, "refresh_device",
                        lambda project, p, space, **k: DeviceRefresh(p.name, rows[p.name], "canned", space))
    both_read = threading.Barrier(2)
    real_read = refresh._read_last

    def read_together(project):
        """Each waits (up to 1 s) for the other to read too: the window in which a write is lost."""
        out = real_read(project)
        try:
            both_read.wait(1.0)
        except threading.BrokenBarrierError:  # the other one is waiting for the lock: as it should
            pass
        return out

    monkeypatch.setattr(refresh, "_read_last", read_together)
    threads = [threading.Thread(target=refresh_fleet,
                                args=(project, [dataclasses.replace(LOCAL_PROFILE, name=n)], "nb201"))
               for n in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    last = {r["device"]: r["status"] for r in json.loads(last_refresh_path(project).read_text())}
    assert last == {"dev-a": "failed", "dev-b": "verified"}
    monkeypatch.setattr(refresh, "_read_last", real_read)
    profiles = [dataclasses.replace(LOCAL_PROFILE, name=n) for n in rows]
    assert [r.device for r in refresh_fleet(project, profiles, "nb201", only_failed=True)] == ["dev-a"]


def test_a_damaged_last_refresh_record_counts_as_none(project, monkeypatch):
    """Rows that are not objects, or lack the device, were an AttributeError or KeyError (an internal
    error, after the devices had been refreshed); the record reads as if it held only its good rows."""
    monkeypatch.setattr(refresh, "prepare_blocks", lambda *a, **k: 0)
    monkeypatch.setattr(refresh, "refresh_device",
                        lambda project, p, space, **k: DeviceRefresh(p.name, RefreshStatus.FAILED, "canned", space))
    path = last_refresh_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    good = {"device": "dev-a", "space": "nb201", "status": "failed"}
    for junk in ([1], [{"space": "nb201", "status": "verified"}], [None, "x", good]):
        path.write_text(json.dumps(junk))
        profiles = [dataclasses.replace(LOCAL_PROFILE, name=n) for n in ("dev-a", "dev-b")]
        got = refresh_fleet(project, profiles, "nb201", only_failed=True)
        assert [r.device for r in got] == (["dev-a"] if good in junk else [])
        res = refresh_fleet(project, profiles[1:], "nb201")
        assert [r.device for r in res] == ["dev-b"]
        rows = json.loads(path.read_text())
        assert {r["device"] for r in rows} == ({"dev-a", "dev-b"} if good in junk else {"dev-b"})


@pytest.mark.parametrize("text", ["garbage{", '{"device": "dev-a"}'])
def test_only_failed_refuses_a_record_it_cannot_read_and_changes_nothing(project, monkeypatch, text):
    """A record that is not JSON, or not a list of rows, read as no failures: "nothing to retry", exit 0, and
    the record was written anew, empty, over the only list of what had failed."""
    from edgenas.errors import InputError

    monkeypatch.setattr(refresh, "prepare_blocks", lambda *a, **k: 0)
    monkeypatch.setattr(refresh, "refresh_device",
                        lambda project, p, space, **k: DeviceRefresh(p.name, RefreshStatus.FAILED, "canned", space))
    path = last_refresh_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    profiles = [dataclasses.replace(LOCAL_PROFILE, name=n) for n in ("dev-a", "dev-b")]
    with pytest.raises(InputError, match="cannot tell which devices failed last time: .*last refresh record") as exc:
        refresh_fleet(project, profiles, "nb201", only_failed=True)
    assert "refresh without --only-failed" in exc.value.hint and path.read_text() == text
    assert [r.device for r in refresh_fleet(project, profiles, "nb201")] == ["dev-a", "dev-b"]  # written anew
    assert {r["device"] for r in json.loads(path.read_text())} == {"dev-a", "dev-b"}


def test_a_devices_error_text_is_one_line_in_status_and_refresh_rows():
    """A device's 2 MB error message made 4 MB of ``fleet status`` output and of last-refresh.json."""
    from edgenas.fleet.status import DeviceStatus

    text = "boom\n" + "x" * 2_000_000
    rows = [DeviceStatus("dev", False, error=text).error,
            DeviceRefresh("dev", RefreshStatus.FAILED, text, "nb201").reason,
            DeviceRefresh("dev", RefreshStatus.FAILED, text, "nb201").to_dict()["reason"]]
    assert all(r.startswith("boom x") and len(r) < 1100 and "\n" not in r for r in rows)
    with pytest.raises(dataclasses.FrozenInstanceError):  # a record of what happened
        DeviceRefresh("dev", RefreshStatus.FAILED, text, "nb201").reason = "ok"


def test_a_device_that_fails_is_its_own_failed_row(project, monkeypatch):
    """An edgenas error is the row's reason; any other exception (a bug) too, named, not raised."""
    import time

    from edgenas.errors import DeviceError

    for exc, reason in ((DeviceError("board", "unreachable"), "unreachable"),
                        (RuntimeError("boom"), "internal error RuntimeError: boom")):
        def failing_session(project, profile, exc=exc):
            time.sleep(0.01)
            raise exc

        monkeypatch.setattr(refresh, "open_session", failing_session)
        row = refresh.refresh_device(project, dataclasses.replace(LOCAL_PROFILE, name="board"), "nb201")
        assert (row.device, row.status, row.space, row.failed) == ("board", "failed", "nb201", True)
        assert reason in row.reason and 0.01 <= row.wall_s < 60


def test_a_bug_on_one_device_is_its_own_status_row(project, monkeypatch):
    """An exception that is no edgenas error (paramiko's SFTPError from a device whose login shell prints)
    left ``fleet status`` with no row at all, the healthy devices' lost with it: an internal error."""
    from edgenas.fleet import status

    real = status.open_session

    def session(project, profile):
        if profile.name == "board":
            raise RuntimeError("Garbage packet received")
        return real(project, profile)

    monkeypatch.setattr(status, "open_session", session)
    rows = status.fleet_status(project, [LOCAL_PROFILE, dataclasses.replace(LOCAL_PROFILE, name="board")], ["nb201"])
    assert [(r.device, r.reachable) for r in rows] == [("local", True), ("board", False)]
    assert rows[1].error == "internal error RuntimeError: Garbage packet received"


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=20, median_ms=ms, mean_ms=ms, std_ms=0.01 * ms, cov=0.01, p90_ms=ms * 1.02,
                      p99_ms=ms * 1.05, min_ms=ms * 0.98, max_ms=ms * 1.1)


def _lut(device: str, scale: float = 1.0, created_at: float = 1.0) -> Lut:
    from edgenas.spaces import get_space

    entries = {}
    for k in get_space("nb201").key_vocab():
        h = int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little") / 2**32
        entries[k] = _stats(scale * (0.05 + 1.0 * h))
    return Lut(device=device, space="nb201", fingerprint={"model": "test"}, fingerprint_hash="e" * 64,
               runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=_stats(0.01 * scale),
               entries=entries, created_at=created_at)


def test_a_run_over_two_changed_devices_is_counted_once(tmp_path, monkeypatch):
    """``runs stale`` lists such a run once; the refresh said "2 search run(s) went stale"."""
    from edgenas.search.launch import SearchRequest, launch_search
    from edgenas.search.stale import find_stale
    from edgenas.store import open_db

    db_url = f"sqlite:///{tmp_path / 'edgenas.db'}"
    monkeypatch.setenv("EDGENAS_DB", db_url)
    proj = Project(tmp_path)
    store = LutStore(proj.luts_dir)
    devices = ("dev-a", "dev-b")
    for d in devices:
        store.save(_lut(d))
    db = open_db(db_url, proj)
    launch_search(proj, SearchRequest(space="nb201", table=str(TABLE), devices=devices, max_latency_quantile=0.3,
                                      budget=30), tmp_path / "r", db=db)
    rows = [DeviceRefresh(d, RefreshStatus.RESCALED, "speed +50% twice", "nb201") for d in devices]
    assert stale_runs_after(proj, rows) == 0
    for d in devices:  # both tables rescaled by 1.5x
        store.save(_lut(d, 1.5, created_at=2.0))
    [stale], _ = find_stale(db, proj)
    assert set(stale.devices) == set(devices)
    assert stale_runs_after(proj, rows) == 1


def test_a_refresh_waits_30_s_for_the_last_refresh_record_then_gives_up_unchanged(project, monkeypatch):
    """Each holder keeps the record's lock for one read and write: another refresh waits for it, 30 s at most
    (a fake clock here), and then leaves the record as it was."""
    from edgenas.errors import OutputError
    from edgenas.fleet import table_lock
    from edgenas.locks import file_lock
    from tests.fleet.test_table_lock import _Clock

    path = last_refresh_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]")
    clock = _Clock()
    monkeypatch.setattr(table_lock, "time", clock)
    with file_lock(path.with_name("last-refresh.lock"), "held here"):
        with pytest.raises(OutputError, match="the last-refresh record is in use"):
            refresh._record_last(project, "nb201", [DeviceRefresh("dev-a", RefreshStatus.FAILED, "canned", "nb201")])
    assert sum(clock.sleeps) == pytest.approx(30.0, abs=0.06) and path.read_text() == "[]"


def test_a_fleet_refresh_checks_its_arguments_then_exports_the_blocks_once_before_any_device(project, monkeypatch):
    """Exporting is not thread-safe: every file format the devices need, once, before the parallel phase."""
    from edgenas.errors import InputError
    from edgenas.fleet.drift import DRIFT_CAP

    calls = []
    monkeypatch.setattr(refresh, "prepare_blocks",
                        lambda project, space, progress, runtimes: calls.append(("export", space, set(runtimes))))
    monkeypatch.setattr(refresh, "refresh_device", lambda project, p, space, **k: calls.append(
        ("device", p.name, k["drift_floor"])) or DeviceRefresh(p.name, RefreshStatus.VERIFIED, "canned", space))
    with pytest.raises(InputError, match="--concurrency must be at least 1"):
        refresh_fleet(project, [LOCAL_PROFILE], "nb201", concurrency=0)
    assert calls == [] and not last_refresh_path(project).exists()
    profiles = [dataclasses.replace(LOCAL_PROFILE, name="dev-a"),
                dataclasses.replace(LOCAL_PROFILE, name="dev-b", runtime="torch")]
    shown = []
    rows = refresh_fleet(project, profiles, "nb201", concurrency=1, drift_floor=DRIFT_CAP,  # the cap is allowed
                         progress=lambda *a: shown.append(a))
    assert [(r.device, r.status) for r in rows] == [("dev-a", "verified"), ("dev-b", "verified")]
    assert shown == [("refresh devices", 1, 2), ("refresh devices", 2, 2)]
    assert calls == [("export", "nb201", {"onnxruntime", "torch"}), ("device", "dev-a", DRIFT_CAP),
                     ("device", "dev-b", DRIFT_CAP)]
    assert [r["device"] for r in json.loads(last_refresh_path(project).read_text())] == ["dev-a", "dev-b"]


def test_a_refresh_replaces_its_own_rows_of_the_record_and_keeps_the_other_spaces(project, monkeypatch):
    monkeypatch.setattr(refresh, "prepare_blocks", lambda *a, **k: 0)
    monkeypatch.setattr(refresh, "refresh_device",
                        lambda project, p, space, **k: DeviceRefresh(p.name, RefreshStatus.VERIFIED, "canned", space))
    path = last_refresh_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"device": "dev-a", "space": "mbv3-tiny", "status": "failed"},
                                {"device": "dev-a", "space": "nb201", "status": "failed"}]))
    refresh_fleet(project, [dataclasses.replace(LOCAL_PROFILE, name=n) for n in ("dev-a", "dev-b")], "nb201")
    rows = [(r["device"], r["space"], r["status"]) for r in json.loads(path.read_text())]
    assert rows == [("dev-a", "mbv3-tiny", "failed"), ("dev-a", "nb201", "verified"), ("dev-b", "nb201", "verified")]
    path.write_text('[{"device": "dev-a", "space": "nb201", "status": "fai')  # cut short: as if there were none,
    assert [r.device for r in refresh_fleet(project, [dataclasses.replace(LOCAL_PROFILE, name="dev-a")], "nb201")
            ] == ["dev-a"]  # and written anew; --only-failed refuses it (the test above)
    assert [(r["device"], r["space"], r["status"]) for r in json.loads(path.read_text())] == [
        ("dev-a", "nb201", "verified")]
