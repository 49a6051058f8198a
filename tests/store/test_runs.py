"""Search runs in the experiment database (SQLite and PostgreSQL): what a search writes, import of run
folders, list/show/compare, and two searches writing at once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import shutil

import pytest
import sqlalchemy as sa

from edgenas.errors import InputError, OutputError, SearchInterrupted
from edgenas.locks import run_lock
from edgenas.project import Project
from edgenas.search.launch import SearchRequest, launch_search
from edgenas.search.launch import import_run
from edgenas.search.launch import import_run as index_run
from edgenas.search.record import index_run as record_run
from edgenas.store import ExperimentDB, open_db
from edgenas.store.runs import get_run, list_runs, run_evaluations, run_fronts, save_run
from edgenas.store import schema
from edgenas.store.schema import runs as run_rows

from .conftest import TABLE


def _req(**kw) -> SearchRequest:
    base = dict(space="nb201", table=str(TABLE), objective="cifar10_test", budget=30, seed=0)
    return SearchRequest(**{**base, **kw})


def test_a_search_writes_run_evaluations_front_and_choice(db, tmp_path):
    out = tmp_path / "r1"
    problem, _, result = launch_search(Project(tmp_path), _req(latency_column="raspi4_ms", max_latency_ms=(20.0,)),
                                       out, db=db)
    [run] = list_runs(db)
    assert run.status == "complete" and run.n_evaluations == 30 and run.out_dir == str(out.resolve())
    assert run.best_arch == dict(result.best.arch) and run.best_number == result.best.number
    assert run.best_value == pytest.approx(result.best.objectives["cifar10_test"])
    assert run.task["dataset"] == "cifar10" and run.task["classes"] == 10
    [dev] = run.devices
    assert (dev.device, dev.kind, dev.budget_ms, dev.fingerprint_hash) == ("raspi4_ms", "table", 20.0, "table:raspi4_ms")
    assert len(dev.lut_hash) == 64 and dev.lut_ref.endswith("nb201_hw.csv#raspi4_ms")
    evals = run_evaluations(db, run.id)
    logged = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    assert [e.arch for e in evals] == [x["arch"] for x in logged]
    assert [e.latency_ms for e in evals] == [x["latency_ms"] for x in logged]
    fronts = run_fronts(db, run.id)
    pareto = json.loads((out / "pareto.json").read_text())
    assert fronts["raspi4_ms"] == [p["number"] for p in pareto["devices"]["raspi4_ms"]]
    assert fronts["*"] == [p["number"] for p in pareto["front"]]


def test_import_is_idempotent_and_ids_resolve_by_prefix(db, tmp_path):
    out = tmp_path / "old"
    launch_search(Project(tmp_path), _req(), out, record=False)  # a run folder from before the database
    assert list_runs(db) == []
    a = index_run(db, Project(tmp_path), out)
    b = index_run(db, Project(tmp_path), out)
    assert a.id == b.id and len(list_runs(db)) == 1 and len(run_evaluations(db, a.id)) == 30
    assert get_run(db, a.id[:5]).id == a.id
    with pytest.raises(InputError, match="no run 'fff"):
        get_run(db, "fff")  # (a collision with a 12-hex id is possible, but not with this one)
    with pytest.raises(InputError, match="not a run id"):
        get_run(db, "x; drop table runs")
    with pytest.raises(InputError, match="not a search run folder"):
        index_run(db, Project(tmp_path), tmp_path)


def test_import_skips_a_torn_last_line_but_not_a_damaged_one(db, tmp_path):
    out = tmp_path / "old"
    launch_search(Project(tmp_path), _req(budget=5), out, record=False)
    log = out / "evaluations.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"number": 5, "arch"')  # killed mid-write: no newline yet
    assert len(run_evaluations(db, index_run(db, Project(tmp_path), out).id)) == 5
    log.write_text(whole + "garbage\n")  # a complete line that is not JSON: the folder is damaged
    with pytest.raises(InputError, match="malformed line 6"):
        index_run(db, Project(tmp_path), out)


def test_a_number_too_large_for_a_float_in_a_run_log_is_a_malformed_line(db, tmp_path):
    """An objective of 400 digits (JSON reads it as an int) was an internal OverflowError on resume and in the
    report; it is a damaged line, like any other the log cannot hold."""
    out = tmp_path / "old"
    launch_search(Project(tmp_path), _req(budget=3), out, record=False)
    log = out / "evaluations.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["objectives"] = {k: 10 ** 400 for k in rec["objectives"]}
    log.write_text("\n".join([lines[0], json.dumps(rec), lines[2]]) + "\n")
    with pytest.raises(InputError, match="malformed line 2"):
        index_run(db, Project(tmp_path), out)
    with pytest.raises(InputError, match="malformed line 2"):
        launch_search(Project(tmp_path), _req(budget=5), out, record=False, resume=True)


@pytest.mark.parametrize("change, field", [
    (lambda r: r.pop("objectives"), "'objectives'"), (lambda r: r.update(number="x"), "'number'"),
    (lambda r: r.update(arch=5), "'arch'"), (lambda r: r.update(latency_ms=[1]), "'latency_ms'"),
    (lambda r: r.update(objectives={"cifar10_test": "<b>"}), "'objectives'"),
    (lambda r: r.update(feasible="yes"), "'feasible'"),
])
def test_import_of_a_malformed_record_is_one_error_naming_it(db, tmp_path, change, field):
    # each of these was an internal KeyError/TypeError/ValueError/AttributeError
    out = tmp_path / "old"
    launch_search(Project(tmp_path), _req(budget=3), out, record=False)
    log = out / "evaluations.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[0])
    change(rec)
    log.write_text("\n".join([*lines, json.dumps(rec)]) + "\n")
    with pytest.raises(InputError, match=f"line 4 is not an evaluation record \\(malformed {field}"):
        index_run(db, Project(tmp_path), out)
    assert list_runs(db) == []


@pytest.mark.parametrize("change, field", [
    (lambda r: r["latency_ms"].update(raspi4_ms=float("nan")), "'latency_ms' (nan ms on 'raspi4_ms' for a feasible"),
    (lambda r: r["latency_ms"].update(raspi4_ms=-2.0), "'latency_ms' (-2.0 ms on 'raspi4_ms' for a feasible"),
    (lambda r: r["latency_ms"].update(raspi4_ms=float("inf")), "'latency_ms' (inf ms on 'raspi4_ms'"),
    (lambda r: r.update(wall_s=-1e308), "'wall_s' (-1e+308: the seconds the run had run, from 0 to 10^9)"),
    (lambda r: r.update(wall_s=1e308), "'wall_s' (1e+308"),
    (lambda r: r["latency_ms"].update({"\x1b[31mEVIL": 1.0}),
     "'latency_ms' (a latency for '\\x1b[31mEVIL', not one of the run's devices: 'raspi4_ms')"),
    (lambda r: r.update(objectives={"\x1b[31mEVIL\nline": 1.0}),
     "'objectives' ('\\x1b[31mEVIL\\nline', not the run's 'cifar10_test')"),
    (lambda r: r["objectives"].update(params=1.0), "'objectives' ('cifar10_test', 'params', not the run's"),
])
def test_a_record_no_run_writes_is_one_error_naming_its_line_and_field(db, tmp_path, cli, monkeypatch, change, field):
    """A feasible evaluation of NaN ms (stored as null), a wall_s of -1e308, a latency for a device the run did not
    ask for, objectives that are not the run's: each was imported (and reported) without a word."""
    out = tmp_path / "old"
    launch_search(Project(tmp_path), _req(budget=4, latency_column="raspi4_ms", max_latency_ms=(1000.0,)), out,
                  record=False)
    log = out / "evaluations.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[2])
    assert rec["feasible"] and list(rec["latency_ms"]) == ["raspi4_ms"] and list(rec["objectives"]) == ["cifar10_test"]
    change(rec)
    lines[2] = json.dumps(rec)
    log.write_text("\n".join(lines) + "\n")
    message = f"{log}: line 3 is not an evaluation record (malformed {field}"
    with pytest.raises(InputError) as info:
        index_run(db, Project(tmp_path), out)
    assert info.value.message.startswith(message) and info.value.hint == "the run folder is damaged"
    assert list_runs(db) == []
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for args in (("runs", "import", str(out)), ("report", str(out), "--out", "r.html")):
        res = cli(*args)
        assert res.code == 2 and res.out == "" and res.err.startswith(f"error: {message}"), res.err
        assert len(res.err.splitlines()) == 1 and "\x1b" not in res.err and "Traceback" not in res.err
    assert not (tmp_path / "r.html").exists() and {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(InputError, match="line 3 is not an evaluation record"):  # nor a resume on it
        launch_search(Project(tmp_path), _req(budget=6, latency_column="raspi4_ms", max_latency_ms=(1000.0,)), out,
                      record=False, resume=True)


def test_what_a_run_writes_reads_back_null_latencies_and_infeasible_nan_included(db, tmp_path):
    """The checks refuse nothing a run writes: a run with --minimise, resumed, and records an edit could leave
    that are still a run's (a null latency; NaN or infinite ms on an infeasible evaluation; a wall_s of 0)."""
    out = tmp_path / "r"
    req = _req(budget=5, latency_column="raspi4_ms", max_latency_ms=(10.0,), minimise=("params",))
    launch_search(Project(tmp_path), req, out, record=False)
    launch_search(Project(tmp_path), req, out, record=False, resume=True)  # (replays the log it reads)
    log = out / "evaluations.jsonl"
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(recs) == 5 and all(set(r["objectives"]) == {"cifar10_test", "params"} for r in recs)
    recs[0]["latency_ms"]["raspi4_ms"], recs[0]["wall_s"] = None, 0.0
    recs[1].update(feasible=False, latency_ms={"raspi4_ms": float("nan")})
    recs[2].update(feasible=False, latency_ms={"raspi4_ms": float("inf")})
    recs[3].update(latency_ms={})  # a device not measured
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert len(run_evaluations(db, index_run(db, Project(tmp_path), out).id)) == 5


@pytest.mark.parametrize("name, text, match", [
    ("best.json", "[1, 2]", "expected a JSON object"), ("pareto.json", '{"front": [5]}', "malformed front"),
    ("best.json", '{"objectives": {"cifar10_test": "x"}}', "malformed 'objectives'"),
])
def test_import_of_malformed_run_files_is_one_error(db, tmp_path, name, text, match):
    out = tmp_path / "old"
    launch_search(Project(tmp_path), _req(budget=3), out, record=False)
    (out / name).write_text(text)
    with pytest.raises(InputError, match=match):
        index_run(db, Project(tmp_path), out)


def test_cli_list_show_compare_import(db_url, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_DB", db_url)
    r = cli("search", "--space", "nb201", "--table", str(TABLE), "--budget", "20", "--out", str(tmp_path / "a"),
            "--json")
    assert r.code == 0, r.err
    launch_search(Project(tmp_path), _req(objective="cifar100_test", seed=3, budget=20), tmp_path / "b",
                  record=False)
    assert cli("runs", "import", str(tmp_path / "b")).code == 0
    rows = json.loads(cli("runs", "list", "--json").out)
    assert [(x["dataset"], x["evaluations"]) for x in rows] == [("cifar10", 20), ("cifar100", 20)]
    shown = json.loads(cli("runs", "show", rows[1]["id"], "--json").out)
    assert shown["objective"] == "cifar100_test" and shown["fronts"]["*"]
    cmp = json.loads(cli("runs", "compare", rows[0]["id"], rows[1]["id"], "--json").out)
    assert [c["id"] for c in cmp] == [x["id"] for x in rows]
    assert all(1 <= c["best_reached_at"] <= 20 for c in cmp)
    # a count of evaluations, headed as one (it read "reached at 36" for the best that runs show calls #35)
    assert "evals to best" in " ".join(cli("runs", "compare", rows[0]["id"], rows[1]["id"]).out.split())
    one = cli("runs", "compare", rows[0]["id"])  # a comparison of one run: refused, as report --compare does
    assert one.code == 2 and "two or more run ids" in one.err and one.out == ""
    text = cli("runs", "list").out
    assert rows[0]["id"] in text
    bad = cli("runs", "show", "0123456789ab")
    assert bad.code == 2 and "no run '0123456789ab'" in bad.err


def test_unreachable_database_fails_the_search_before_anything_is_written(tmp_path, cli, monkeypatch):
    from .pgserver import _free_port

    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    out = tmp_path / "run"
    r = cli("search", "--space", "nb201", "--table", str(TABLE), "--budget", "5", "--out", str(out),
            "--db", f"postgresql+psycopg://edgenas@127.0.0.1:{_free_port()}/x")
    assert r.code == 6 and "cannot reach database" in r.err and "Traceback" not in r.err
    assert not out.exists()


def _search(url: str, root: str, seed: int) -> None:
    from pathlib import Path

    launch_search(Project(Path(root)), _req(seed=seed, budget=40), Path(root) / f"s{seed}", db_url=url)


@pytest.mark.slow
def test_two_searches_writing_at_once_lose_nothing(db_url, tmp_path):
    ExperimentDB(db_url)  # created first, as a user's first command would
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_search, args=(db_url, str(tmp_path), s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    db = ExperimentDB(db_url)
    runs = list_runs(db)
    assert sorted(r.seed for r in runs) == [1, 2]
    for r in runs:
        assert len(run_evaluations(db, r.id)) == 40 == r.n_evaluations


def test_an_interrupted_search_is_recorded_as_stopped(db, tmp_path):
    calls = []

    def progress(done, total):
        calls.append(done)
        if done == 12:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):  # Ctrl-C becomes one line saying how to resume
        launch_search(Project(tmp_path), _req(), tmp_path / "r", db=db, progress=progress)
    [run] = list_runs(db)
    assert run.status == "stopped" and run.n_evaluations == 12
    launch_search(Project(tmp_path), None, tmp_path / "r", db=db, resume=True)
    [again] = list_runs(db)
    assert again.status == "complete" and again.n_evaluations == 30
    assert again.created_at == run.created_at  # not the resume's start: the run began before it


def test_a_stopped_run_is_recorded_with_the_best_it_would_have_chosen(db, tmp_path):
    """A search stops without best.json (Ctrl-C, SIGTERM, kill -9: it writes one when it ends) and was recorded
    with no best though it had feasible evaluations. Its best so far is what the search chooses of what it logged:
    the best.json a finished run wrote of the same log (removed, as a kill leaves the folder), whether the run's
    problem is rebuilt (``runs import``) or not; a Ctrl-C'd run indexes its own."""
    def progress(done, total):
        if done == 12:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):
        launch_search(Project(tmp_path), _req(latency_column="raspi4_ms", max_latency_ms=(6.0,)), tmp_path / "c",
                      db=db, progress=progress)
    [run] = list_runs(db)
    logged = [json.loads(x) for x in (tmp_path / "c" / "evaluations.jsonl").read_text().splitlines()]
    top = max(e["objectives"]["cifar10_test"] for e in logged if e["feasible"])
    assert run.status == "stopped" and not (tmp_path / "c" / "best.json").exists() and len(logged) == 12
    assert run.best_value == top and logged[run.best_number]["objectives"]["cifar10_test"] == top
    assert run.best_arch == logged[run.best_number]["arch"]
    out = tmp_path / "k"
    launch_search(Project(tmp_path), _req(latency_column="raspi4_ms", max_latency_ms=(6.0,), seed=3), out, db=db)
    chosen = json.loads((out / "best.json").read_text())
    for f in ("best.json", "pareto.json"):
        (out / f).unlink()
    (out / "checkpoint.json").write_text(json.dumps({"status": "running"}))  # killed: nobody holds it
    for killed in (index_run(db, Project(tmp_path), out), record_run(db, Project(tmp_path), out)):  # problem or not
        assert killed.status == "stopped" and get_run(db, killed.id).status == "stopped"
        assert (killed.best_number, killed.best_arch) == (chosen["number"], chosen["arch"])
        assert killed.best_value == chosen["objectives"]["cifar10_test"]



def test_a_stopped_run_of_another_evaluator_imported_without_its_tables_keeps_its_objective_and_best(db, tmp_path):
    """A run scored by an evaluator of its own (``nb201-fidelity``: its objective is the evaluator's name) killed
    before it wrote pareto.json and best.json, imported where its tables are gone (its problem is not rebuilt):
    it was recorded under ``--objective`` (cifar10_test, which no evaluation holds) with no best so far."""
    shutil.copy(TABLE, tmp_path / "hw.csv")
    shutil.copy(TABLE.parent / "nb201_valid.csv", tmp_path / "valid.csv")
    req = _req(table=str(tmp_path / "hw.csv"), latency_column="raspi4_ms", max_latency_ms=(6.0,),
               evaluator="nb201-fidelity", evaluator_options={"table": str(tmp_path / "valid.csv"),
                                                              "column": "cifar10_valid_12ep"})
    out = tmp_path / "k"
    launch_search(Project(tmp_path), req, out, record=False)
    chosen = json.loads((out / "best.json").read_text())
    for f in ("best.json", "pareto.json"):
        (out / f).unlink()
    (out / "checkpoint.json").write_text(json.dumps({"status": "running"}))  # killed: nobody holds it
    (tmp_path / "valid.csv").unlink()
    run = index_run(db, Project(tmp_path), out)
    assert (run.status, run.objective) == ("stopped", "nb201-fidelity")
    assert (run.best_number, run.best_arch) == (chosen["number"], chosen["arch"])
    assert run.best_value == chosen["objectives"]["nb201-fidelity"] == get_run(db, run.id).best_value

def _interrupted(tmp_path, at: int = 12):
    """A run folder (not indexed) whose search was interrupted at evaluation ``at``: its checkpoint says
    running."""
    def progress(done, total):
        if done == at:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):
        launch_search(Project(tmp_path), _req(), tmp_path / "r", record=False, progress=progress)
    assert json.loads((tmp_path / "r" / "checkpoint.json").read_text())["status"] == "running"
    return tmp_path / "r"


def test_import_of_an_interrupted_run_records_it_stopped_unless_a_search_holds_it(db, tmp_path):
    out = _interrupted(tmp_path)
    with run_lock(out):  # a search is running in it: it is running (``runs import`` refuses such a folder)
        held = record_run(db, Project(tmp_path), out)
    assert held.status == "running" and held.finished_at is None
    run = index_run(db, Project(tmp_path), out)  # nobody holds it: it was interrupted
    assert run.status == "stopped" and get_run(db, run.id).status == "stopped"
    assert get_run(db, run.id).finished_at == (out / "evaluations.jsonl").stat().st_mtime


def test_runs_import_refuses_the_folder_of_a_running_search_and_changes_nothing(db, tmp_path):
    """An import read a running search's folder one file at a time and saved that snapshot; saved after the
    search's own final record, it replaced it (a complete run of 1,500 evaluations recorded with 1,498 and no
    best, or as stopped)."""
    out = _interrupted(tmp_path)
    done = index_run(db, Project(tmp_path), out)
    rows = _run_rows(db)
    with run_lock(out):  # a search is running in it (flock: another open file of this process is another holder)
        with pytest.raises(OutputError, match=f"^run folder {out} is being written by a running search"):
            import_run(db, Project(tmp_path), out)
    assert _run_rows(db) == rows and get_run(db, done.id).status == "stopped"
    assert import_run(db, Project(tmp_path), out).id == done.id  # once it has stopped


def test_a_run_imported_while_it_ran_reads_stopped_once_nobody_holds_it(db, tmp_path):
    """Imported while its search ran, then the search was killed (kill -9): runs list said running for ever."""
    out = _interrupted(tmp_path)
    with run_lock(out):
        held = record_run(db, Project(tmp_path), out)
        assert get_run(db, held.id).status == "running" and [r.id for r in list_runs(db, status="running")]
    assert get_run(db, held.id).status == "stopped"  # its process is gone: the lock with it
    assert [r.id for r in list_runs(db, status="stopped")] == [held.id] and not list_runs(db, status="running")
    # a run folder on another machine sharing the database (or moved): this one cannot tell, the record stands
    elsewhere = dataclasses.replace(get_run(db, held.id), id="0123456789ab", status="running",
                                    out_dir=str(tmp_path / "on-another-host" / "r"))
    save_run(db, elsewhere)
    assert get_run(db, "0123456789ab").status == "running"


def test_a_ctrl_c_while_a_finished_run_is_indexed_leaves_it_indexed(db, tmp_path, monkeypatch):
    """The final index is one transaction; a Ctrl-C in it rolled it back and the database kept the run as
    stopped (or had no row) while its folder said complete."""
    import os
    import signal

    from edgenas.search import launch

    real = launch._index

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the final index
        return real(*args, **kwargs)

    monkeypatch.setattr(launch, "_index", interrupted)
    # Ctrl-C as a terminal delivers it, whatever this test run inherited (a background job ignores it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        launch_search(Project(tmp_path), _req(budget=10), tmp_path / "r", db=db)
    except KeyboardInterrupt:  # a failure of this test, not of the whole session
        pytest.fail("the Ctrl-C reached the final index")
    finally:
        signal.signal(signal.SIGINT, previous)
    [run] = list_runs(db)
    assert run.status == "complete" and run.n_evaluations == 10


def test_a_resumed_run_never_indexed_dates_from_its_folder_not_from_the_resume(db, tmp_path):
    out = _interrupted(tmp_path)
    os.utime(out / "request.json", (9e8, 9e8))  # when the run began
    launch_search(Project(tmp_path), None, out, db=db, resume=True)
    [run] = list_runs(db)
    assert run.status == "complete" and run.created_at == 9e8


def test_reindexing_keeps_the_runs_times_and_takes_them_from_its_files(db, tmp_path):
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=10), out, db=db)
    [run] = list_runs(db)
    index_run(db, Project(tmp_path), out)  # `runs import` of an indexed run
    [again] = list_runs(db)
    assert (again.created_at, again.finished_at) == (run.created_at, run.finished_at)
    # a folder never indexed: when it began (request.json; config.json is rewritten by every resume) and
    # when it last wrote a result, not the time of the import
    os.utime(out / "request.json", (9e8, 9e8))
    for name in ("evaluations.jsonl", "checkpoint.json", "best.json", "pareto.json"):
        os.utime(out / name, (1e9, 1e9))
    other = ExperimentDB(f"sqlite:///{tmp_path / 'other.db'}")
    fresh = index_run(other, Project(tmp_path), out)
    assert (fresh.created_at, fresh.finished_at) == (9e8, 1e9)
    assert (get_run(other, fresh.id).created_at, get_run(other, fresh.id).finished_at) == (9e8, 1e9)


def test_a_run_resumed_with_more_time_stays_one_run(db, tmp_path):
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(strategy="evolution", budget=60, seed=11, max_wall_s=0.01), out, db=db)
    [run] = list_runs(db)
    assert run.status == "stopped" and run.n_evaluations < 60
    launch_search(Project(tmp_path), None, out, db=db, resume=True, more_wall_s=600)
    [again] = list_runs(db)  # config.json's max_wall_s changed: it was indexed under a second id
    assert (again.id, again.status, again.n_evaluations, again.created_at) == (run.id, "complete", 60,
                                                                               run.created_at)
    assert json.loads((out / "config.json").read_text())["max_wall_s"] > 600


def test_a_phantom_copy_of_a_run_is_replaced_and_ids_without_a_time_limit_are_unchanged(db, tmp_path):
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=10), out, db=db)
    [run] = list_runs(db)
    config = json.loads((out / "config.json").read_text())
    assert config["max_wall_s"] is None  # the files as they are: no field of them nulled
    request = json.loads((out / "request.json").read_text())
    text = str(out.resolve()) + "\n" + json.dumps(config, sort_keys=True) + "\n" + json.dumps(request, sort_keys=True)
    assert run.id == hashlib.sha256(text.encode()).hexdigest()[:12]
    # what an earlier edgenas left after a resume with more time: the same run under another id, and a
    # re-run of it; another run in another folder is left alone
    with db.begin() as con:  # the row as that edgenas wrote it (save_run now replaces a phantom itself)
        row = dict(con.execute(sa.select(run_rows).where(run_rows.c.id == run.id)).one()._mapping)
        con.execute(run_rows.insert().values(**{**row, "id": "0123456789ab", "created_at": run.created_at - 100,
                                            "config": {**run.config, "max_wall_s": 0.01}}))
    save_run(db, dataclasses.replace(run, id="ba9876543210", out_dir=str(tmp_path / "rerun"), rerun_of="0123456789ab"))
    assert len(list_runs(db)) == 3
    index_run(db, Project(tmp_path), out)
    now = {r.id: r for r in list_runs(db)}
    assert set(now) == {run.id, "ba9876543210"} and now["ba9876543210"].rerun_of == run.id
    assert now[run.id].created_at == run.created_at - 100  # the older copy's: when the run began


def test_two_searches_in_one_folder_path_that_differ_only_in_their_request_are_two_runs(db, tmp_path):
    """The id hashed the folder and config.json only, which holds no objective, table or evaluator: a second
    search in the same path (another machine sharing the database, or the first folder moved away) with another
    objective got the first's id, and its record replaced the first's."""
    first = launch_search(Project(tmp_path), _req(budget=10), tmp_path / "r", db=db)[2]
    shutil.move(tmp_path / "r", tmp_path / "kept")
    launch_search(Project(tmp_path), _req(budget=10, objective="cifar100_test"), tmp_path / "r", db=db)
    runs = {r.objective: r for r in list_runs(db)}
    assert set(runs) == {"cifar10_test", "cifar100_test"} and runs["cifar10_test"].n_evaluations == 10
    assert runs["cifar10_test"].best_value == first.best.objectives["cifar10_test"]
    index_run(db, Project(tmp_path), tmp_path / "r")  # a re-import is the same run still
    assert {r.id for r in list_runs(db)} == {r.id for r in runs.values()}


def test_a_run_indexed_under_an_earlier_id_is_replaced_by_its_re_import(db, tmp_path):
    """An earlier edgenas left the id of the folder and config alone: a re-import (a resume, a warm start from the
    folder) replaces that row with the run under today's id, and a re-run of it points at the new id."""
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=10), out, db=db)
    [run] = list_runs(db)
    old = hashlib.sha256((str(out.resolve()) + "\n" + json.dumps(run.config, sort_keys=True)).encode()).hexdigest()
    with db.begin() as con:  # the row as that edgenas wrote it, under its id
        row = dict(con.execute(sa.select(run_rows).where(run_rows.c.id == run.id)).one()._mapping)
        con.execute(run_rows.insert().values(**{**row, "id": old[:12]}))
        for t in (schema.evaluations, schema.fronts, schema.run_devices):
            con.execute(t.delete().where(t.c.run_id == run.id))
        con.execute(run_rows.delete().where(run_rows.c.id == run.id))
    assert [r.id for r in list_runs(db)] == [old[:12]]
    save_run(db, dataclasses.replace(run, id="ba9876543210", out_dir=str(tmp_path / "rerun"), rerun_of=old[:12]))
    index_run(db, Project(tmp_path), out)
    now = {r.id: r for r in list_runs(db)}
    assert set(now) == {run.id, "ba9876543210"} and now["ba9876543210"].rerun_of == run.id


def test_a_moved_folder_imports_as_another_run(db, tmp_path):
    launch_search(Project(tmp_path), _req(budget=10), tmp_path / "a", db=db)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    index_run(db, Project(tmp_path), tmp_path / "b")
    assert len(list_runs(db)) == 2


def _run_rows(db) -> list:
    with db.engine.connect() as con:
        return [tuple(r) for r in con.execute(sa.select(run_rows).order_by(run_rows.c.id))]


def _set_budget(factor):
    def edit(d):
        d["devices"][0][1] = d["devices"][0][1] * factor if factor else 1e308
    return edit


@pytest.mark.parametrize("factor", [0.9, None])
def test_a_resume_the_replay_refuses_changes_neither_the_folder_nor_the_database(db, tmp_path, factor):
    """A resume refused on replay (its config.json budget edited) still rewrote config.json and re-indexed the
    run as stopped: bad input must change nothing."""
    out = tmp_path / "q"
    launch_search(Project(tmp_path), _req(budget=20, strategy="evolution", latency_column="raspi4_ms",
                                          max_latency_quantile=0.3), out, db=db)
    cfg = json.loads((out / "config.json").read_text())
    _set_budget(factor)(cfg)
    (out / "config.json").write_text(json.dumps(cfg))
    index_run(db, Project(tmp_path), out)
    files, rows = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}, _run_rows(db)
    with pytest.raises(InputError, match="is not what the strategy proposes on replay"):
        launch_search(Project(tmp_path), None, out, resume=True, db=db)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    assert _run_rows(db) == rows and get_run(db, rows[0][0]).status == "complete"


def test_a_refused_resume_in_a_project_without_a_database_makes_none(tmp_path):
    """A resume refused on replay made the project's database (opened before the replay, to fail early on an
    unreachable one): bad input must change nothing. A resume that runs makes it and records the run."""
    proj, out = Project(tmp_path), tmp_path / "q"
    launch_search(proj, _req(budget=20, strategy="evolution", latency_column="raspi4_ms",
                             max_latency_quantile=0.3), out, record=False)
    good = (out / "config.json").read_text()
    cfg = json.loads(good)
    _set_budget(0.9)(cfg)
    (out / "config.json").write_text(json.dumps(cfg))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match="is not what the strategy proposes on replay"):
        launch_search(proj, None, out, resume=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (proj.state_dir / "edgenas.db").exists()
    (out / "config.json").write_text(good)
    launch_search(proj, None, out, resume=True)
    rows = list_runs(open_db(None, proj, readonly=True))
    assert [(r.status, r.n_evaluations) for r in rows] == [("complete", 20)] and rows[0].out_dir.endswith("q")


@pytest.mark.parametrize("name, edit, match", [
    ("config.json", lambda d: d.update(devices=[["raspi4_ms", -5.0]]), "malformed 'devices'"),
    ("warm_start.json", lambda d: d.update(transferred=[], rerun_of="../../etc"), "malformed 'rerun_of'"),
    ("warm_start.json", lambda d: d.update(candidates=[{"run_id": "ab"}]), "malformed 'candidates'"),
    ("evaluations.jsonl", lambda d: d.update(constraints={"raspi4_ms": "x"}), "malformed 'constraints'"),
    # an architecture not of the space: imported, every warm start from the database then failed on it, naming
    # no run; a resume refused it as a bare error and indexed the run as stopped
    ("evaluations.jsonl", lambda d: d["arch"].update(arch="|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
     "evaluation 2(:| in the log:) malformed NAS-Bench-201 architecture string '|bogus~0|"),
])
def test_a_folder_the_database_reader_would_call_damaged_is_refused_by_import_and_resume(
        db, tmp_path, name, edit, match):
    """``runs import`` stored a -5 ms budget or a ``rerun_of`` of ../../etc, which the database's reader then
    called a damaged row for every ``runs stale`` and warm start; a refused resume indexed it too."""
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=3, latency_column="raspi4_ms", max_latency_ms=(20.0,)), out,
                  record=False)
    path = out / name
    lines = path.read_text().splitlines() if name.endswith(".jsonl") else [path.read_text() if path.exists() else "{}"]
    rec = json.loads(lines[-1])
    edit(rec)
    path.write_text("\n".join([*lines[:-1], json.dumps(rec)]) + "\n")
    with pytest.raises(InputError, match=match):
        index_run(db, Project(tmp_path), out)
    with pytest.raises(InputError, match=match):
        launch_search(Project(tmp_path), None, out, resume=True, db=db)
    assert list_runs(db) == []


def test_import_refuses_a_chosen_architecture_not_of_the_space_and_records_that_are_links(db, tmp_path):
    """``report`` refused a run whose best.json is a link, ``runs import`` read it through the link; an edited
    chosen architecture was imported as it was."""
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=3), out, record=False)
    best = json.loads((out / "best.json").read_text())
    elsewhere = tmp_path / "best.json"
    elsewhere.write_text(json.dumps(best))
    (out / "best.json").unlink()
    (out / "best.json").symlink_to(elsewhere)
    with pytest.raises(InputError, match="r/best.json is a symbolic link; a run's records are files of their own"):
        index_run(db, Project(tmp_path), out)
    (out / "best.json").unlink()
    best["arch"]["arch"] = "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    (out / "best.json").write_text(json.dumps(best))
    with pytest.raises(InputError, match="r/best.json: malformed NAS-Bench-201 architecture string"):
        index_run(db, Project(tmp_path), out)
    assert list_runs(db) == []


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(table="a\x00b.csv"), r"request.json: 'table' holds a NUL byte"),
    (lambda d: d.update(zzz_extra=1), r"request.json: unknown field 'zzz_extra'"),
    (lambda d: d.pop("space"), r"request.json: no 'space' field"),
    (lambda d: d.update(space="nosuch"), r"request.json: unknown search space 'nosuch'"),
])
def test_a_request_a_rerun_could_not_read_is_refused_by_import_and_resume(db, tmp_path, edit, match):
    """A NUL byte in request.json's table path was an internal ValueError from both; an unknown field a bare
    TypeError of SearchRequest.__init__; an unknown space was imported, and `search --rerun` then failed."""
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=3), out, record=False)
    req = json.loads((out / "request.json").read_text())
    edit(req)
    (out / "request.json").write_text(json.dumps(req))
    with pytest.raises(InputError, match=match):
        index_run(db, Project(tmp_path), out)
    with pytest.raises(InputError, match=match.split("request.json: ")[1]):
        launch_search(Project(tmp_path), None, out, resume=True, db=db)
    assert list_runs(db) == []


def test_request_json_knows_exactly_the_fields_of_a_search_request():
    """``check_request_fields`` refuses a field it does not know (an unknown one was a bare TypeError): its
    table must list every field of ``SearchRequest`` and no other."""
    from edgenas.search.run_files import _REQUEST_KINDS

    assert set(_REQUEST_KINDS) == {f.name for f in dataclasses.fields(SearchRequest)}


def _index_three_times(url: str, root: str, out: str) -> str:
    db = ExperimentDB(url)
    try:
        for _ in range(3):
            index_run(db, Project(root), out)
        return "ok"
    finally:
        db.close()


@pytest.mark.slow
def test_two_processes_indexing_one_run_at_once_both_succeed(db, db_url, tmp_path):
    """A search's last index and a `runs import` of its folder, at once: on PostgreSQL both inserted the run's
    row (a unique violation) or deadlocked on the deletes (reported as "cannot reach database")."""
    from .races import races

    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(budget=1000), out, record=False)
    for i, got in races(_index_three_times, lambda i: (db_url, str(tmp_path), str(out)), n=8):
        assert got == ["ok", "ok"], (i, got)
    [run] = list_runs(db)
    assert run.n_evaluations == 1000 and len(run_evaluations(db, run.id)) == 1000


def test_a_runs_status_is_its_checkpoints_and_a_run_without_one_that_nobody_holds_was_stopped(tmp_path):
    from edgenas.search.record import checkpoint_status

    assert checkpoint_status(tmp_path, {"status": "complete"}) == "complete"
    assert checkpoint_status(tmp_path, {"status": "stopped"}) == "stopped"
    assert checkpoint_status(tmp_path, {"status": "running"}) == "stopped"    # no search holds its lock: killed
    assert checkpoint_status(tmp_path, {}) == "stopped"                       # killed before its first checkpoint
    assert checkpoint_status(tmp_path / "gone", {}) == "running"              # no folder here: cannot tell


def _record(rid: str, out_dir, **kw):
    from edgenas.store.runs import RunRecord

    base = dict(id=rid, created_at=1.0, status="complete", space="nb201", strategy="evolution", seed=0,
                objective="cifar10_test", out_dir=str(out_dir), config={"seed": 0}, task={"dataset": "cifar10"})
    return RunRecord(**{**base, **kw})


def test_a_run_id_prefix_of_several_runs_is_ambiguous(db, tmp_path):
    ids = ["abc111111111", "abc222222222", "abc333333333", "abc444444444"]
    for rid in ids:
        save_run(db, _record(rid, tmp_path / rid))
    with pytest.raises(InputError, match=r"prefix 'abc' is ambiguous \(abc\w+, abc\w+, abc\w+, \.\.\.\)") as info:
        get_run(db, "abc")  # three of them named
    assert sum(rid in info.value.message for rid in ids) == 3 and info.value.hint == "give more characters"
    assert get_run(db, "abc2").id == "abc222222222"
    for rid in ("abd555555555", "abd666666666"):
        save_run(db, _record(rid, tmp_path / rid))
    with pytest.raises(InputError, match="prefix 'abd' is ambiguous"):  # two are as ambiguous as more
        get_run(db, "abd")


def test_a_run_reference_longer_than_any_id_is_no_run_without_a_query(db, tmp_path):
    """Ids have at most 64 digits (the column's length): a longer reference is "no run" before the LIKE query
    (SQLite refused one of 50,000 digits as too complex: "cannot reach database", exit 6)."""
    rid = "a" * 64
    save_run(db, _record(rid, tmp_path / "r"))
    assert get_run(db, rid).id == rid and get_run(db, "a" * 12).id == rid
    for ref in (rid + "a", "a" * 50_000):
        with pytest.raises(InputError, match=rf"^no run 'a{{16}}…' \({len(ref):,} digits; a run id has at most 64\) "
                                             "in the experiment database") as info:
            get_run(db, ref)
        assert info.value.exit_code == 2 and "edgenas runs list" in info.value.hint


def test_another_run_in_the_same_folder_is_not_replaced(db, tmp_path):
    """Only a copy of the same run (its id, or the same config under another id) is replaced by saving a run."""
    save_run(db, _record("aaa111111111", tmp_path / "r", config={"seed": 0}, created_at=1.0))
    save_run(db, _record("bbb222222222", tmp_path / "r", config={"seed": 1}, created_at=2.0))
    assert [(r.id, r.created_at) for r in list_runs(db)] == [("aaa111111111", 1.0), ("bbb222222222", 2.0)]


def test_a_damaged_run_does_not_hide_the_runs_after_it(db, tmp_path):
    from edgenas.store.runs import scan_runs

    for i, rid in enumerate(["aaa111111111", "bbb222222222", "ccc333333333"]):
        save_run(db, _record(rid, tmp_path / rid, created_at=float(i)))
    with db.begin() as con:
        con.execute(sa.text("UPDATE runs SET task = '[1, 2]' WHERE id = 'aaa111111111'"))
    good, damaged = scan_runs(db)
    assert [r.id for r in good] == ["bbb222222222", "ccc333333333"] and [rid for rid, _ in damaged] == ["aaa111111111"]


def test_values_that_are_not_finite_are_stored_as_null(db, tmp_path):
    """PostgreSQL's JSON refuses NaN and infinity: they are stored as null, read back as the worst: an objective
    -inf, a latency or a constraint (latency - budget) +inf (a null latency was a TypeError in the stale check)."""
    from edgenas.store.runs import Evaluation
    from edgenas.store.schema import evaluations

    nan, inf = float("nan"), float("inf")
    save_run(db, _record("aaa111111111", tmp_path, best_value=nan),
             [Evaluation(0, {"op": 1}, {"cifar10_test": nan, "loss": inf}, {"d": nan, "e": 2.0}, {"c": 1.5, "d": nan})])
    with db.read() as con:
        row = con.execute(sa.select(evaluations.c.objectives, evaluations.c.latency_ms, evaluations.c.constraints,
                                    evaluations.c.value)).one()
    assert (row.objectives, row.latency_ms, row.constraints, row.value) == (
        {"cifar10_test": None, "loss": None}, {"d": None, "e": 2.0}, {"c": 1.5, "d": None}, None)
    assert get_run(db, "aaa").best_value is None
    (e,) = run_evaluations(db, "aaa111111111")
    assert (e.objectives, e.latency_ms, e.constraints) == ({"cifar10_test": -inf, "loss": -inf}, {"d": inf, "e": 2.0},
                                                           {"c": 1.5, "d": inf})


def test_reindexing_a_run_whose_row_was_deleted_alone_replaces_its_orphaned_rows(tmp_path):
    """A damaged database (edited with foreign keys off): the run's row is gone, its evaluations, devices and front
    are not. Indexing the run again replaces them, as ``runs import`` promises for a damaged run."""
    import sqlite3

    from edgenas.store.runs import Evaluation, RunDevice

    path = tmp_path / "e.db"
    db = ExperimentDB(f"sqlite:///{path}")
    rec = _record("aaa111111111", tmp_path, devices=(RunDevice("pi", "table"),))
    evals = [Evaluation(0, {"op": 1}, {"cifar10_test": 0.5}, {"pi": 1.0})]
    save_run(db, rec, evals, {"*": [0]})
    con = sqlite3.connect(path)
    con.execute("DELETE FROM runs")  # foreign keys are off in a plain connection: nothing cascades
    con.commit()
    con.close()
    save_run(db, rec, evals, {"*": [0]})
    assert [r.id for r in list_runs(db)] == ["aaa111111111"] and len(run_evaluations(db, rec.id)) == 1
    assert run_fronts(db, rec.id) == {"*": [0]}
    db.close()


def test_a_damaged_evaluation_names_the_folder_of_its_own_run(db, tmp_path):
    from edgenas.store.rows import DamagedRowError
    from edgenas.store.runs import Evaluation

    for rid in ("aaa111111111", "bbb222222222"):
        save_run(db, _record(rid, tmp_path / rid), [Evaluation(0, {"op": 1}, {"cifar10_test": 0.5}, {"pi": 1.0})])
    with db.begin() as con:
        con.execute(sa.text("UPDATE evaluations SET objectives = '[1]' WHERE run_id = 'bbb222222222'"))
    with pytest.raises(DamagedRowError) as info:
        run_evaluations(db, "bbb222222222")
    assert "run bbb222222222, evaluation 0" in info.value.message
    assert f"edgenas runs import {tmp_path / 'bbb222222222'})" in info.value.hint


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in files.items():
        (folder / f"{name}.json").write_text(json.dumps(obj))
    return folder


CELL_A = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
CELL_B = "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_1x1~2|"
#: two DARTS epochs against a 5 ms budget: epoch 1's cell exactly at it, epoch 2's 1 ms over (and without its time)
DARTS_HISTORY = [{"epoch": 1, "arch": CELL_A, "train_loss": 2.0, "derived_ms": {"local": 5.0}, "epoch_s": 1.5},
                 {"epoch": 2, "arch": CELL_B, "train_loss": 1.5, "derived_ms": {"local": 6.0}}]


def _darts_folder(path, **best):
    return _write(path, config={"space": "nb201", "kind": "darts", "devices": [["local", 5.0]], "seed": 0},
                  checkpoint={"history": DARTS_HISTORY}, **({"best": best} if best else {}))


def test_a_darts_run_is_indexed_as_its_epochs_cells_then_its_chosen_network(db, tmp_path):
    from edgenas.spaces import get_space

    nb201 = get_space("nb201")
    chosen = nb201.to_dict(nb201.from_string(CELL_A))
    out = _darts_folder(tmp_path / "d", number=2, epoch=2, arch=chosen, latency_ms={"local": 4.5}, pt_s=3.0)
    rec = index_run(db, Project(tmp_path), out)      # no evaluations.jsonl: DARTS writes none
    assert (rec.status, rec.strategy, rec.objective, rec.best_number) == ("complete", "darts", "accuracy", 2)
    got = [(e.number, e.arch, e.objectives, e.latency_ms, e.constraints, e.feasible, e.wall_s)
           for e in run_evaluations(db, rec.id)]
    assert got == [
        (0, chosen, {"train_loss": 2.0}, {"local": 5.0}, {"local": 0.0}, True, 1.5),        # at the budget: within
        (1, nb201.to_dict(nb201.from_string(CELL_B)), {"train_loss": 1.5}, {"local": 6.0}, {"local": 1.0}, False,
         1.5),                                                                                # no epoch_s: 0 s
        (2, chosen, {"train_loss": 1.5}, {"local": 4.5}, {"local": -0.5}, True, 4.5)]      # + DARTS-PT's 3 s


def test_a_darts_runs_chosen_network_may_be_a_cell_string_and_its_damage_names_best_json(db, tmp_path):
    """best.json's arch may be a cell string (as nb201's epochs are; ``check_best`` takes one): it was
    refused as "checkpoint.json: line 3 is not an evaluation record", naming a file that was whole."""
    from edgenas.spaces import get_space

    nb201 = get_space("nb201")
    out = _darts_folder(tmp_path / "d", number=2, arch=CELL_A, latency_ms={"local": 4.5})
    rec = index_run(db, Project(tmp_path), out)
    last = run_evaluations(db, rec.id)[-1]
    assert (last.number, last.arch, last.latency_ms) == (2, nb201.to_dict(nb201.from_string(CELL_A)), {"local": 4.5})
    for arch, latency, why in (("|nor_conv_3x3~0|", {"local": 4.5}, "malformed NAS-Bench-201 architecture string"),
                               (CELL_A, None, "malformed chosen network"),
                               (CELL_A, {"local": "x"}, None)):   # check_best refuses this one itself
        bad = _darts_folder(tmp_path / f"b{len(str(arch))}{latency}", number=2, arch=arch, latency_ms=latency)
        with pytest.raises(InputError) as exc:
            index_run(db, Project(tmp_path), bad)
        assert exc.value.message.startswith(f"{bad / 'best.json'}: ") and "checkpoint.json" not in exc.value.message
        if why:
            assert why in exc.value.message


def test_a_darts_runs_chosen_network_is_added_only_when_none_of_its_epochs_is_it(tmp_path):
    from edgenas.search.record import darts_best_number, darts_log

    out = _darts_folder(tmp_path / "d")
    config = json.loads((out / "config.json").read_text())
    assert [r["number"] for r in darts_log(out, config, {"number": 1})] == [0, 1]      # the last epoch's cell
    assert [r["number"] for r in darts_log(out, config, {})] == [0, 1]
    [*_, last] = darts_log(out, config, {"number": 2, "arch": {"a": 1}, "latency_ms": {"local": 1.0}})
    assert (last["number"], last["wall_s"], last["objectives"]) == (2, 1.5, {"train_loss": 1.5})   # no pt_s: 0 s
    # before best.json recorded its number: the last epoch's record (epoch e is number e - 1)
    assert (darts_best_number({"epoch": 2}), darts_best_number({"number": 0, "epoch": 2})) == (1, 0)
    assert darts_best_number({}) is None
    (out / "checkpoint.json").write_text(json.dumps({"history": [{"epoch": 1, "train_loss": 2.0}]}))
    with pytest.raises(InputError, match="checkpoint.json: malformed DARTS history"):
        darts_log(out, config, {})
    (out / "checkpoint.json").write_text(json.dumps({"history": [{**DARTS_HISTORY[0], "epoch": 0}]}))
    with pytest.raises(InputError, match=r"checkpoint.json: line 1 is not an evaluation record \(malformed 'number'"):
        darts_log(out, config, {})   # an epoch 0 is evaluation -1: the first record is named
    (out / "checkpoint.json").write_text(json.dumps({"history": [{**DARTS_HISTORY[0], "arch": "|none~0|"}]}))
    with pytest.raises(InputError, match=r"checkpoint.json: malformed NAS-Bench-201 architecture string '\|none~0\|'"):
        darts_log(out, config, {})   # the space's error named no file


def test_a_darts_run_killed_before_its_first_epoch_is_stopped_at_its_configs_time(db, tmp_path):
    out = _write(tmp_path / "d", config={"space": "nb201", "kind": "darts", "devices": [["local", 5.0]]})
    os.utime(out / "config.json", (1_000_000, 1_000_000))
    rec = index_run(db, Project(tmp_path), out)
    assert (rec.status, rec.n_evaluations, rec.finished_at, rec.seed) == ("stopped", 0, 1_000_000, 0)


def test_a_search_folder_without_its_log_is_refused_naming_it(db, tmp_path):
    out = _write(tmp_path / "r", config={"space": "nb201", "strategy": "random"})
    with pytest.raises(InputError, match=r"not a search run folder \(no evaluations.jsonl\)"):
        index_run(db, Project(tmp_path), out)


def test_a_run_of_a_space_this_edgenas_lacks_is_refused_naming_its_config(db, tmp_path):
    from edgenas.search.record import index_run as index_folder

    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(), out, record=False)
    (out / "request.json").unlink()
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "space": "no-such-space"}))
    with pytest.raises(InputError, match="config.json: .*no-such-space"):
        index_folder(db, Project(tmp_path), out)
    assert list_runs(db) == []


def test_a_run_indexed_without_its_problem_takes_its_objective_and_budgets_from_its_files(db, tmp_path):
    """Its table gone (``import_run`` rebuilds no problem): the devices without hashes, with the config's budgets;
    the objective pareto.json's first, else request.json's, else ``accuracy``; a log record without its time 0 s."""
    from edgenas.search.record import index_run as index_folder

    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(latency_column="raspi4_ms", max_latency_ms=(20.0,), seed=3,
                                          strategy="random"), out, record=False)
    log = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    (out / "evaluations.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "wall_s"}) + "\n"
                                                   for r in log))
    rec = index_folder(db, Project(tmp_path), out)
    assert [(d.device, d.kind, d.budget_ms, d.lut_hash) for d in rec.devices] == [("raspi4_ms", "unknown", 20.0, None)]
    assert (rec.objective, rec.strategy, rec.seed) == ("cifar10_test", "random", 3)
    assert [e.wall_s for e in run_evaluations(db, rec.id)] == [0.0] * len(log)
    (out / "request.json").unlink()
    assert index_folder(db, Project(tmp_path), out).objective == "cifar10_test"     # pareto.json's, no request
    (out / "pareto.json").unlink()
    assert index_folder(db, Project(tmp_path), out).objective == "accuracy"
    (out / "config.json").write_text(json.dumps({**json.loads((out / "config.json").read_text()),
                                                 "devices": [["raspi4_ms", None]]}))
    assert [d.budget_ms for d in index_folder(db, Project(tmp_path), out).devices] == [None]


def test_a_run_without_pareto_json_takes_its_objective_from_its_request(db, tmp_path):
    from edgenas.search.record import index_run as index_folder

    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(), out, record=False)
    (out / "pareto.json").unlink()
    assert index_folder(db, Project(tmp_path), out).objective == "cifar10_test"


def test_a_device_of_another_latency_model_is_recorded_with_its_budget_and_no_hashes(tmp_path):
    """Neither a benchmark column, a LUT nor a few-shot model (a user's own ``LatencyModel``): recorded as ``other``,
    so ``runs stale`` has nothing to compare."""
    from edgenas.search.problem import DeviceTarget
    from edgenas.search.record import describe_device
    from edgenas.store.runs import RunDevice

    class Own:
        def predict(self, arch):
            return 1.0

    got = describe_device(Project(tmp_path), DeviceTarget("sim", Own(), budget_ms=3.0))
    assert got == RunDevice("sim", "other", None, None, None, 3.0)


def test_a_latency_models_hash_is_of_its_content_not_its_key_order():
    """A LUT read back from its file may list its keys in another order than the one a search built: the same
    table must keep its hash (else ``runs stale`` calls every run of it stale)."""
    from edgenas.search.record import record_hash

    class Rec:
        def __init__(self, d):
            self.d = d

        def to_dict(self):
            return self.d

    a = Rec({"device": "pi", "entries": {"x": 1.0, "y": 2.0}})
    b = Rec({"entries": {"y": 2.0, "x": 1.0}, "device": "pi"})
    assert record_hash(a) == record_hash(b) == hashlib.sha256(
        b'{"device": "pi", "entries": {"x": 1.0, "y": 2.0}}').hexdigest()
    assert record_hash(Rec({"device": "pi"})) != record_hash(a)


def test_a_reruns_origin_is_the_callers_else_its_warm_start_files(db, tmp_path):
    from edgenas.search.record import index_run as index_folder

    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(), out, record=False)
    (out / "warm_start.json").write_text(json.dumps({"transferred": [], "rerun_of": "aaaaaaaaaaaa"}))
    assert index_folder(db, Project(tmp_path), out).rerun_of == "aaaaaaaaaaaa"     # `runs import` of a rerun
    assert index_folder(db, Project(tmp_path), out, rerun_of="bbbbbbbbbbbb").rerun_of == "bbbbbbbbbbbb"


def test_importing_a_run_folder_whose_name_is_not_utf8_text_is_one_error(db, tmp_path):
    """Its name could be stored in no database (a lone surrogate): refused before anything is written."""
    out = tmp_path / "r"
    launch_search(Project(tmp_path), _req(), out, record=False)
    odd = tmp_path / os.fsdecode(b"r\xff")
    out.rename(odd)
    with pytest.raises(InputError, match="run folder .* not UTF-8 text"):
        index_run(db, Project(tmp_path), odd)
    assert list_runs(db) == []


def test_a_runs_evaluation_values_are_its_records_objective_without_the_records(db, tmp_path):
    """``runs compare`` reads each evaluation's number, value and feasibility (decoding every record took 15 s for
    a run of 100,000): the same objective values as the records (null, missing, NaN and infinite: none, read as
    -inf), and so the same first evaluation reaching the best feasible value."""
    import math

    from edgenas.search.history import best_reached_at, compare_runs
    from edgenas.store.runs import Evaluation, evaluation_values

    nan, inf = float("nan"), float("inf")
    scores = [(None, True), (nan, True), (inf, True), (0.7, False), (0.5, True), (0.9, False), (0.6, True),
              (-inf, True), (0.6, True), (0.2, True)]
    evals = [Evaluation(i, {"op": i}, {} if v is None else {"cifar10_test": v, "params": 9.0}, {"pi": 1.0}, {}, f)
             for i, (v, f) in enumerate(scores)]
    save_run(db, _record("aaa111111111", tmp_path, best_value=0.6), evals)
    values = evaluation_values(db, "aaa111111111")
    records = run_evaluations(db, "aaa111111111")
    assert [n for n, _, _ in values] == list(range(10)) and [f for _, _, f in values] == [f for _, f in scores]
    assert [-math.inf if v is None else v for _, v, _ in values] == [
        e.objectives.get("cifar10_test", -math.inf) for e in records]
    assert [v for _, v, _ in values] == [None, None, None, 0.7, 0.5, 0.9, 0.6, None, 0.6, 0.2]
    assert compare_runs(db, ["aaa1", "aaa1"])[0]["best_reached_at"] == 7 == best_reached_at(
        [e.objectives.get("cifar10_test", -math.inf) for e in records], [e.feasible for e in records], 0.6)
