"""``runs stale`` / ``search --rerun`` / fleet refresh's stale count, on SQLite and PostgreSQL: a device's
table rescaled by 1.5x invalidates the runs whose chosen architecture no longer fits its budget."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest

from edgenas.fleet.refresh import DeviceRefresh, stale_runs_after
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project
from edgenas.search.launch import SearchRequest, import_run, launch_search
from edgenas.search.stale import find_stale
from edgenas.spaces import get_space
from edgenas.store.runs import get_run, list_runs

from .conftest import TABLE


def rescale_column(path, column: str, factor: float) -> None:
    rows = list(csv.reader(open(path, newline="")))
    i = rows[0].index(column)
    for r in rows[1:]:
        r[i] = repr(float(r[i]) * factor)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_rescaled_table_makes_runs_stale_and_rerun_fixes_them(db, db_url, tmp_path, cli, monkeypatch):
    table = tmp_path / "hw.csv"
    shutil.copy(TABLE, table)
    proj = Project(tmp_path)
    budgets = (8.0, 12.0, 400.0)  # the last one stays met after x1.5
    for i, b in enumerate(budgets):
        # evolution: the runs checked by hand below (the default strategy is tpe since issue 12)
        launch_search(proj, SearchRequest(space="nb201", table=str(table), latency_column="raspi4_ms",
                                          max_latency_ms=(b,), budget=40, seed=i, strategy="evolution"),
                      tmp_path / f"r{i}", db=db)
    launch_search(proj, SearchRequest(space="nb201", table=str(table), budget=10), tmp_path / "free", db=db)
    assert find_stale(db, proj) == ([], 3)  # nothing changed yet
    rescale_column(table, "raspi4_ms", 1.5)
    stale, checked = find_stale(db, proj)
    assert checked == 3
    by_id = {s.run_id: s for s in stale}
    runs = {r.seed: r for r in list_runs(db) if r.devices}
    for seed in (0, 1):  # checked by hand: chosen latency x 1.5 > budget
        s = by_id[runs[seed].id]
        then = s.chosen_then_ms["raspi4_ms"]
        assert s.status == "over_budget" and then * 1.5 > budgets[seed] >= then
        assert s.chosen_now_ms["raspi4_ms"] == pytest.approx(then * 1.5)
    assert runs[2].id not in by_id  # 1.5x the chosen one's latency is still far below 400 ms
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("runs", "stale", "--db", db_url, "--json")
    assert r.code == 0 and {x["run_id"] for x in json.loads(r.out)["stale"]} == set(by_id)
    r = cli("search", "--rerun", runs[0].id, "--db", db_url, "--json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["out_dir"] == str(tmp_path / "r0") + "-rerun-1"
    assert res["latency_ms"]["raspi4_ms"] <= budgets[0]
    new = [x for x in list_runs(db) if x.rerun_of == runs[0].id]
    assert len(new) == 1 and new[0].warm_start["candidates"][0]["run_id"] == runs[0].id
    assert new[0].warm_start["transferred"]  # seeded from itself (repaired to the budget under the new table)
    assert {s.run_id for s in find_stale(db, proj)[0]} == {runs[1].id}  # r0 was re-run; its re-run is fine


def test_reimporting_a_run_keeps_the_table_hash_it_started_with(db, tmp_path):
    table = tmp_path / "hw.csv"
    shutil.copy(TABLE, table)
    proj = Project(tmp_path)
    launch_search(proj, SearchRequest(space="nb201", table=str(table), latency_column="raspi4_ms",
                                      max_latency_ms=(8.0,), budget=40, seed=0, strategy="evolution"),
                  tmp_path / "r", db=db)
    [run] = list_runs(db)
    started = json.loads((tmp_path / "r" / "tables.json").read_text())["tables"]["raspi4_ms"]
    assert run.devices[0].lut_hash == started
    rescale_column(table, "raspi4_ms", 1.5)
    [s] = find_stale(db, proj)[0]
    assert s.status == "over_budget"
    again = import_run(db, proj, tmp_path / "r")  # rebuilt from today's table: its hash was recorded
    assert again.id == run.id and again.devices[0].lut_hash == started
    assert [x.run_id for x in find_stale(db, proj)[0]] == [run.id]
    rescale_column(table, "raspi4_ms", 1000.0)  # no architecture meets 8 ms now: the run is rebuilt without budgets
    again = import_run(db, proj, tmp_path / "r")
    assert [(d.kind, d.lut_hash, d.budget_ms) for d in again.devices] == [("table", started, 8.0)]
    assert [(x.run_id, x.status) for x in find_stale(db, proj)[0]] == [(run.id, "over_budget")]
    (tmp_path / "r" / "tables.json").unlink()  # a run made before the record: today's hash, as before
    assert import_run(db, proj, tmp_path / "r").devices[0].lut_hash != started


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=20, median_ms=ms, mean_ms=ms, std_ms=0.01 * ms, cov=0.01, p90_ms=ms * 1.02,
                      p99_ms=ms * 1.05, min_ms=ms * 0.98, max_ms=ms * 1.1)


def _lut(scale: float = 1.0) -> Lut:
    space = get_space("nb201")
    entries = {}
    for k in space.key_vocab():
        h = int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little") / 2**32
        entries[k] = _stats(scale * (0.05 + 1.0 * h))
    return Lut(device="jetson", space="nb201", fingerprint={"model": "test"}, fingerprint_hash="e" * 64,
               runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=_stats(0.01 * scale),
               entries=entries)


def test_fleet_refresh_hook_counts_runs_stale_on_rescaled_devices(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_DB", db_url)
    proj = Project(tmp_path)
    store = LutStore(proj.luts_dir)
    store.save(_lut())
    from edgenas.store import open_db

    db = open_db(db_url, proj)
    _, _, res = launch_search(proj, SearchRequest(space="nb201", table=str(TABLE), devices=("jetson",),
                                                  max_latency_quantile=0.3,
                                                  budget=30), tmp_path / "r", db=db)
    [run] = list_runs(db)
    assert run.devices[0].kind == "lut" and run.devices[0].fingerprint_hash == "e" * 64
    rows = [DeviceRefresh("jetson", "rescaled", "speed +50% twice", "nb201")]
    assert stale_runs_after(proj, rows) == 0  # the table did not change yet
    store.save(dataclasses.replace(_lut(1.5), created_at=_lut().created_at + 1))  # what a rescale leaves
    assert stale_runs_after(proj, rows) == 1
    import_run(db, proj, tmp_path / "r")  # rebuilt with today's LUT: the one it started with is recorded
    assert get_run(db, run.id).devices[0].lut_hash == run.devices[0].lut_hash
    assert get_run(db, run.id).devices[0].budget_ms == run.devices[0].budget_ms  # its quantile, not today's
    assert stale_runs_after(proj, rows) == 1
    assert stale_runs_after(proj, [dataclasses.replace(rows[0], status="verified")]) == 0
    [s] = find_stale(db, proj, device="jetson")[0]
    assert s.run_id == run.id and s.status == "over_budget"
    assert get_run(db, run.id).best_arch == dict(res.best.arch)


def test_fleet_refresh_hook_creates_no_database(tmp_path, no_env_db):
    rows = [DeviceRefresh("jetson", "refreshed", "fingerprint changed", "nb201")]
    assert stale_runs_after(Project(tmp_path), rows) is None
    assert not (tmp_path / ".edgenas").exists()


# ---- the re-check itself, on a made-up run: four evaluations of a four-row table whose latencies are set by
# hand, so that every expected answer below is worked out from the numbers, not read back from find_stale

ARCHS = [r[1] for r in list(csv.reader(open(TABLE, newline="")))[1:5]]


def _write_table(path, **ms) -> None:
    """A four-row table: the first four architectures of TABLE, with the latency columns given."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "arch", "cifar10_test", *ms])
        for i, a in enumerate(ARCHS):
            w.writerow([i, a, 50.0, *(repr(float(v[i])) for v in ms.values())])


def _made_up_run(db, tmp_path, *, then: dict, now: dict, budgets: dict, acc, best: int = 0,
                 refs: dict | None = None, kinds: dict | None = None, rid: str = "abc123", table=None,
                 recorded: dict | None = None):
    """A finished run that chose evaluation ``best``: ``then[device]`` are the four evaluations' latencies
    when it ran (the table's hash of that time is recorded), ``now[device]`` the table's values today;
    ``recorded[device]``: the evaluations' latencies instead of ``then``'s."""
    from edgenas.search.record import column_hash
    from edgenas.store.runs import Evaluation, RunDevice, RunRecord, save_run

    space, table = get_space("nb201"), table or tmp_path / "hw.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    _write_table(table, **now)
    devices = tuple(RunDevice(d, (kinds or {}).get(d, "table"), lut_hash=column_hash(np.asarray(then[d], float)),
                              lut_ref=(refs or {}).get(d, f"{table}#{d}"), budget_ms=b) for d, b in budgets.items())
    evals = [Evaluation(number=i, arch=space.to_dict(space.from_string(a)), objectives={"cifar10_test": acc[i]},
                        latency_ms={d: float({**then, **(recorded or {})}[d][i]) for d in then})
             for i, a in enumerate(ARCHS)]
    rec = RunRecord(id=rid, created_at=1.0, status="complete", space="nb201", strategy="evolution", seed=0,
                    objective="cifar10_test", out_dir=str(tmp_path / rid), config={}, task={}, devices=devices,
                    n_evaluations=4, best_number=best, best_value=acc[best], best_arch=dict(evals[best].arch))
    save_run(db, rec, evals)
    return find_stale(db, Project(tmp_path))


ACC = [90.0, 91.0, 95.0, 93.0]  # the run chose #0 (90) under a 10 ms budget: #1..#3 were over it then


@pytest.mark.parametrize("now, expected", [
    ([10.0, 11.0, 12.0, 13.0], None),                    # the chosen one now takes exactly the budget: still fits
    ([10.5, 11.0, 12.0, 13.0], ("over_budget", None)),   # 10.5 > 10
    ([9.0, 5.0, 12.0, 10.0], ("not_best", 3)),           # #1 (91) and #3 (93, exactly 10 ms) fit now: #3 is best
    ([9.0, 5.0, 12.0, 13.0], ("not_best", 1)),           # only #1 fits, and 91 > 90
    ([9.0, 12.0, 5.0, 13.0], ("not_best", 2)),           # #2 (95) fits
])
def test_a_changed_table_is_rechecked_against_the_budget_by_hand(db, tmp_path, now, expected):
    then = [9.0, 11.0, 12.0, 13.0]
    stale, checked = _made_up_run(db, tmp_path, then={"raspi4_ms": then}, now={"raspi4_ms": now},
                                  budgets={"raspi4_ms": 10.0}, acc=ACC)
    assert checked == 1
    if expected is None:
        assert stale == []
        return
    [s] = stale
    assert (s.status, s.better_number) == expected and s.devices == ("raspi4_ms",) and s.chosen_number == 0
    assert s.chosen_then_ms == {"raspi4_ms": 9.0} and s.chosen_now_ms == {"raspi4_ms": now[0]}
    if s.status == "over_budget":
        assert s.reason == ("the chosen architecture (#0) now takes 10.5 ms on raspi4_ms > budget 10 ms "
                            "(was 9 ms)")
    else:
        assert s.reason == (f"evaluation #{expected[1]} (cifar10_test {ACC[expected[1]]:.4g} > 90) now meets "
                            "every budget")


def test_an_equally_accurate_one_is_not_better_and_ties_go_to_the_earlier_one(db, tmp_path):
    then = {"raspi4_ms": [9.0, 11.0, 12.0, 13.0]}
    # #3 now fits but is exactly as accurate as the chosen one: not better
    assert _made_up_run(db, tmp_path, then=then, now={"raspi4_ms": [9.0, 11.0, 12.0, 5.0]},
                        budgets={"raspi4_ms": 10.0}, acc=[90.0, 91.0, 95.0, 90.0])[0] == []
    # #1 and #3 now fit, both at 92: the earlier evaluation is named
    [s] = _made_up_run(db, tmp_path, then=then, now={"raspi4_ms": [9.0, 5.0, 12.0, 5.0]},
                       budgets={"raspi4_ms": 10.0}, acc=[90.0, 92.0, 95.0, 92.0])[0]
    assert (s.status, s.better_number) == ("not_best", 1)


def test_an_unchanged_device_still_bounds_what_is_better(db, tmp_path):
    """pixel3_ms's table did not change: its budget is checked on the latencies the run recorded."""
    then = {"raspi4_ms": [9.0, 11.0, 12.0, 13.0], "pixel3_ms": [3.0, 4.0, 4.5, 4.0]}
    now = {"raspi4_ms": [9.0, 5.0, 5.0, 6.0], "pixel3_ms": then["pixel3_ms"]}
    # #2 (95) now fits raspi4 but was 4.5 ms > 4 on pixel3; #3 (93) fits both, pixel3 exactly at its budget
    [s] = _made_up_run(db, tmp_path, then=then, now=now, budgets={"raspi4_ms": 10.0, "pixel3_ms": 4.0}, acc=ACC)[0]
    assert (s.status, s.better_number, s.devices) == ("not_best", 3, ("raspi4_ms",))
    # over the budget on the second of two changed devices: that device is named
    now = {"raspi4_ms": [9.5, 11.0, 12.0, 13.0], "pixel3_ms": [4.25, 4.0, 4.5, 4.0]}
    [s] = _made_up_run(db, tmp_path, then=then, now=now, budgets={"raspi4_ms": 10.0, "pixel3_ms": 4.0}, acc=ACC)[0]
    assert s.status == "over_budget" and s.devices == ("raspi4_ms", "pixel3_ms")
    assert s.chosen_now_ms == {"raspi4_ms": 9.5, "pixel3_ms": 4.25} and "4.25 ms on pixel3_ms > budget 4 ms" in s.reason


def test_an_unknown_recorded_latency_meets_no_budget(db, tmp_path):
    """A NaN latency (an infeasible evaluation's) is stored as null: read back as None, the check of the unchanged
    device's budget was float(None), a TypeError (exit 70 in runs stale, report --fleet and the API's /fleet)."""
    then = {"raspi4_ms": [9.0, 11.0, 12.0, 13.0], "pixel3_ms": [3.0, 4.0, 4.5, 4.0]}
    now = {"raspi4_ms": [9.0, 5.0, 5.0, 6.0], "pixel3_ms": then["pixel3_ms"]}
    # #3 (93) fits raspi4 now, but its pixel3 latency is unknown: #1 (91, 4 ms on pixel3) is the better one
    [s] = _made_up_run(db, tmp_path, then=then, now=now, budgets={"raspi4_ms": 10.0, "pixel3_ms": 4.0}, acc=ACC,
                       recorded={"pixel3_ms": [3.0, 4.0, 4.5, float("nan")]})[0]
    assert (s.status, s.better_number, s.devices) == ("not_best", 1, ("raspi4_ms",))


def test_a_table_no_longer_at_hand_is_unknown_unless_another_changed(db, tmp_path):
    then = {"raspi4_ms": [9.0, 11.0, 12.0, 13.0], "pixel3_ms": [3.0, 4.0, 4.5, 4.0]}
    gone = {"pixel3_ms": f"{tmp_path / 'gone.csv'}#pixel3_ms"}
    budgets = {"raspi4_ms": 10.0, "pixel3_ms": 4.0}
    [s] = _made_up_run(db, tmp_path, then=then, now=then, budgets=budgets, acc=ACC, refs=gone)[0]
    assert (s.status, s.devices, s.chosen_number) == ("unknown", ("pixel3_ms",), 0)
    assert s.reason == "the latency table of pixel3_ms is no longer at hand"
    # a device whose latency came from neither a table, a LUT nor a few-shot model: unknown too, not a crash
    [s] = _made_up_run(db, tmp_path, then=then, now=then, budgets=budgets, acc=ACC, kinds={"pixel3_ms": "other"})[0]
    assert (s.status, s.devices) == ("unknown", ("pixel3_ms",))
    # raspi4's table changed (the chosen one is over its budget now): that is what is reported
    now = dict(then, raspi4_ms=[10.5, 11.0, 12.0, 13.0])
    [s] = _made_up_run(db, tmp_path, then=then, now=now, budgets=budgets, acc=ACC, refs=gone)[0]
    assert (s.status, s.devices) == ("over_budget", ("raspi4_ms",))


def test_two_tables_with_the_same_column_are_two_models(db, tmp_path):
    """Runs on two table files with a column of the same name: each is checked against its own file (the
    models are kept per file), and a file in a folder whose name holds '#' is found (``PATH#COLUMN``)."""
    then = {"raspi4_ms": [9.0, 11.0, 12.0, 13.0]}
    budgets = {"raspi4_ms": 10.0}
    a, b = tmp_path / "a#1" / "hw.csv", tmp_path / "b#2" / "hw.csv"
    _made_up_run(db, tmp_path, then=then, now=then, budgets=budgets, acc=ACC, rid="aaaa", table=a)  # unchanged
    stale, checked = _made_up_run(db, tmp_path, then=then, now={"raspi4_ms": [10.5, 11.0, 12.0, 13.0]},
                                  budgets=budgets, acc=ACC, rid="bbbb", table=b)
    assert checked == 2 and [(s.run_id, s.status) for s in stale] == [("bbbb", "over_budget")]


def test_a_fewshot_device_is_rechecked_with_its_refitted_model(db, tmp_path, monkeypatch):
    """A device without a LUT predicts with its few-shot model (found by device and space, its record hashed):
    refitted, the run is re-checked with it; gone, the run is unknown."""
    import edgenas.latency.fewshot_model as fewshot
    from edgenas.search.record import record_hash

    class Fitted:
        def __init__(self, ms):
            self.ms, self.model = ms, type("Rec", (), {"to_dict": lambda _: {"ms": ms}})()

        def predict_many(self, archs):
            return np.array([self.ms[ARCHS.index(get_space("nb201").to_dict(a)["arch"])] for a in archs])

    then = [9.0, 11.0, 12.0, 13.0]
    fitted = {"orin": Fitted([10.5, 11.0, 12.0, 13.0])}
    monkeypatch.setattr(fewshot, "load_latency_model", lambda luts_dir, device, space: fitted.get(device))
    stale = _made_up_run(db, tmp_path, then={"orin": then}, now={"orin": then}, budgets={"orin": 10.0}, acc=ACC,
                         kinds={"orin": "fewshot"})[0]
    assert [(s.status, s.chosen_now_ms) for s in stale] == [("over_budget", {"orin": 10.5})]
    # the run's hash is of the model it ran with: the same model now is no change
    import edgenas.store.runs as runs

    [run] = runs.list_runs(db)
    dev = dataclasses.replace(run.devices[0], lut_hash=record_hash(fitted["orin"].model))
    runs.save_run(db, dataclasses.replace(run, devices=(dev,)), runs.run_evaluations(db, run.id))
    assert find_stale(db, Project(tmp_path))[0] == []
    fitted.clear()
    assert [s.status for s in find_stale(db, Project(tmp_path))[0]] == ["unknown"]


def test_a_fewshot_device_profiled_since_is_rechecked_with_its_lut(db, tmp_path, monkeypatch):
    """A run chose under the device's few-shot model; the device has a LUT now, which a search there would use: the
    run is checked against that LUT (it was checked against the few-shot model, unchanged, and called fine)."""
    import edgenas.latency.fewshot_model as fewshot
    import edgenas.store.runs as runs
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.search.record import record_hash

    then = [9.0, 11.0, 12.0, 13.0]
    model = type("Rec", (), {"to_dict": lambda _: {"ms": then}})()
    same = type("Fitted", (), {"model": model, "predict_many": lambda _, archs: np.array([9.0] * len(archs))})()
    monkeypatch.setattr(fewshot, "load_latency_model", lambda luts_dir, device, space: same)
    _made_up_run(db, tmp_path, then={"orin": then}, now={"orin": then}, budgets={"orin": 10.0}, acc=ACC,
                 kinds={"orin": "fewshot"})
    [run] = runs.list_runs(db)
    dev = dataclasses.replace(run.devices[0], lut_hash=record_hash(model))  # recorded: the model it ran with
    runs.save_run(db, dataclasses.replace(run, devices=(dev,)), runs.run_evaluations(db, run.id))
    assert find_stale(db, Project(tmp_path))[0] == []  # the few-shot model is unchanged
    lut = dataclasses.replace(_lut(40.0), device="orin")
    LutStore(Project(tmp_path).luts_dir).save(lut)
    space = get_space("nb201")
    ms = LatencyPredictor(lut, space).predict_many([space.from_string(a) for a in ARCHS])
    assert ms[0] > 10.0
    [s] = find_stale(db, Project(tmp_path))[0]
    assert (s.status, s.devices) == ("over_budget", ("orin",)) and s.chosen_now_ms == {"orin": float(ms[0])}


def test_a_rerun_request_is_the_recorded_one_warm_started_from_it_in_the_next_free_folder(tmp_path):
    from edgenas.errors import InputError
    from edgenas.search.rerun import rerun_request
    from edgenas.store import open_db
    from edgenas.store.runs import RunRecord, save_run

    proj, url = Project(tmp_path), f"sqlite:///{tmp_path / 'edgenas.db'}"
    db = open_db(url, proj)
    req = SearchRequest(space="nb201", table=str(TABLE), latency_column="raspi4_ms", max_latency_ms=(8.0,),
                        budget=10, seed=3, strategy="evolution")
    sh = dataclasses.replace(req, strategy="sh", ladder=("compression",))
    for rid, r, folder in (("ab0000000001", req, "r"), ("ab0000000002", sh, "s"), ("ab0000000003", None, "t")):
        save_run(db, RunRecord(id=rid, created_at=1.0, status="complete", space="nb201", strategy="evolution", seed=3,
                               objective="cifar10_test", out_dir=str(tmp_path / folder), config={}, task={},
                               request=None if r is None else r.to_json()), [])
    again, out, of = rerun_request(proj, "ab0000000001", db_url=url)
    # a request recorded without evolution's mutation and sampling is an earlier edgenas's: re-run as it ran, per
    # gene, its first population drawn novel-first
    assert again == dataclasses.replace(req, warm_start=("ab0000000001",),
                                        strategy_options={"mutation": "per-gene", "sampling": "novel-first"})
    assert (out, of) == (tmp_path / "r-rerun-1", "ab0000000001")
    (tmp_path / "r-rerun-1").mkdir()
    assert rerun_request(proj, "ab0000000001", db_url=url)[1] == tmp_path / "r-rerun-2"
    (tmp_path / "r-rerun-2").mkdir()
    assert rerun_request(proj, "ab0000000001", db_url=url)[1] == tmp_path / "r-rerun-3"
    assert rerun_request(proj, "ab0000000001", db_url=url, out_dir=tmp_path / "x")[1] == tmp_path / "x"
    again, out, _ = rerun_request(proj, "ab0000000002", db_url=url)  # a driver takes no warm start
    # recorded without sampling: an earlier edgenas's, whose brackets drew novel-first; re-run as it ran
    assert again == dataclasses.replace(sh, strategy_options={"sampling": "novel-first"})
    assert out == tmp_path / "s-rerun-1"
    with pytest.raises(InputError, match="run ab0000000003 has no recorded search request"):
        rerun_request(proj, "ab0000000003", db_url=url)
