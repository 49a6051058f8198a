"""``edgenas.report.source`` on its own: the names it takes and the run records it reads (no project needed)."""

from __future__ import annotations

import pytest

from edgenas.report.source import NotFoundError, check_name


@pytest.mark.parametrize("name", ["evo", "a", "9", "run-1.b_2", "a" * 100, "x.y"])
def test_check_name_takes_a_name(name):
    assert check_name(name, "run") == name


@pytest.mark.parametrize("name", ["", "a" * 101, "evo\n", ".hidden", "-x", "_x", "/etc", " x", "a/b", "a b", "a..b",
                                  "..", "a\\b", None, 7])
def test_check_name_refuses_what_is_no_name(name):
    with pytest.raises(NotFoundError, match="invalid run name"):
        check_name(name, "run")


def _run(config=None, request=None, evaluations=(), pareto=None, best=None, checkpoint=None):
    from pathlib import Path

    from edgenas.report.source import RunData

    return RunData(id="r", path=Path("r"), config={"space": "nb201", **(config or {})}, request=request,
                   evaluations=list(evaluations), pareto=pareto, best=best, checkpoint=checkpoint)


EV = {"number": 0, "objectives": {"params": 1.0, "flops": 2.0, "acc": 50.0}, "feasible": True}


@pytest.mark.parametrize("kw, status", [
    ({}, "empty"),
    ({"evaluations": [EV]}, "running"),
    ({"evaluations": [EV], "checkpoint": {"status": "complete"}}, "running"),          # no best.json yet
    ({"evaluations": [EV], "checkpoint": {"status": "complete"}, "best": {}}, "complete"),
    ({"evaluations": [EV], "checkpoint": {"status": "stopped"}, "best": {}}, "stopped"),
    ({"evaluations": [EV], "checkpoint": {"status": "running"}, "best": {}}, "running"),
    ({"best": {}, "checkpoint": {"status": "complete"}}, "complete"),
    ({"config": {"kind": "darts"}, "best": {}}, "complete"),                         # DARTS writes no status
    ({"config": {"kind": "darts"}}, "empty"),
])
def test_status(kw, status):
    assert _run(**kw).status == status


@pytest.mark.parametrize("kw, objective, unit", [
    ({"pareto": {"objectives": ["top1", "params"]}, "config": {"kind": "darts"}}, "top1", ""),
    ({"pareto": {"objectives": []}, "config": {"kind": "darts"}}, "train_loss", ""),
    ({"request": {"table": "t.csv"}}, "cifar10_test", "%"),
    ({"request": {"table": "t.csv", "evaluator": "tabular", "objective": "cifar100_test"}}, "cifar100_test", "%"),
    ({"request": {"table": "t.csv", "evaluator": "params"}}, "params", ""),
    ({"request": {"evaluator": "train"}}, "train", "%"),
    ({"request": {"evaluator": "params"}, "best": {"metric": "top-1 accuracy (%)"}}, "params", "%"),
    ({"request": {"evaluator": "train"}, "best": {"metric": "loss"}}, "train", ""),
    ({"evaluations": [{"objectives": {}}, EV]}, "acc", ""),
    ({"evaluations": [{"objectives": {"params": 1.0}}]}, "accuracy", ""),
    ({"config": {"ladder": [{"evaluator": "params"}, {"evaluator": "supernet"}]}, "request": {"evaluator": "params"}},
     "params", "%"),
    ({"config": {"ladder": [{"evaluator": "train"}, {"evaluator": "params"}]}, "request": {"evaluator": "train"}},
     "train", ""),
])
def test_objective_and_its_unit(kw, objective, unit):
    run = _run(**kw)
    assert (run.objective, run.objective_unit) == (objective, unit)


@pytest.mark.parametrize("ladder, last", [
    (None, None), ([], None), ("x", None), ([{"evaluator": "a"}, "b"], None),
    ([{"evaluator": "a"}, {"evaluator": "b"}], {"evaluator": "b"}),
])
def test_last_rung(ladder, last):
    assert _run(config={"ladder": ladder}).last_rung == last


def test_summary_budgets_and_table_columns():
    run = _run(config={"strategy": None, "mode": "hyperband", "devices": [["pi", 12], ["gpu", None]], "seed": 3,
                       "budget_evals": 40},
               request={"table": "t.csv", "latency_column": "raspi4_ms", "evaluator": "params"}, evaluations=[EV])
    assert run.summary() == {"id": "r", "space": "nb201", "strategy": "hyperband", "status": "running",
                             "evaluations": 1, "budget_evals": 40, "devices": {"pi": 12.0, "gpu": None},
                             "objective": "params", "seed": 3}
    assert run.table_columns == {"raspi4_ms"} and run.higher_is_better and not run.darts
    assert _run(request={"latency_column": "raspi4_ms"}).table_columns == set()         # no table: predicted
    assert _run(request={"table": "t.csv", "latency_column": 3}).table_columns == set()
    assert _run().strategy is None and _run(best={"number": 7}).best_number == 7
    darts = _run(config={"kind": "darts"})
    assert darts.strategy == "darts" and darts.darts and not darts.higher_is_better


def test_a_run_record_that_is_a_link_is_refused(tmp_path):
    from edgenas.errors import InputError
    from edgenas.report.source import load_run_dir

    (tmp_path / "elsewhere.json").write_text('{"space": "nb201", "secret": 1}')
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").symlink_to(tmp_path / "elsewhere.json")
    (run / "evaluations.jsonl").write_text("")
    with pytest.raises(InputError, match="config.json is a symbolic link"):
        load_run_dir(run)


def test_a_parsed_run_is_read_only():
    import dataclasses

    run = _run(evaluations=[EV])
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.evaluations = []


def test_what_a_data_source_without_the_extras_answers():
    """A source of runs and tables only (the database, later) says it has no refresh rows, no stale-run count,
    no damaged tables and no few-shot models, rather than failing."""
    from edgenas.report.source import DataSource

    class Minimal(DataSource):
        def run_ids(self):
            return []

        def run(self, run_id):
            raise NotFoundError(run_id)

        def evaluations(self, run_id, since=0):
            return []

        def devices(self):
            return ["pi"]

        def luts(self, device):
            return []

        def verified(self, device):
            return []

        def measurements(self, device=None, space=None):
            return []

    src = Minimal()
    assert src.last_refresh() == [] and src.stale_runs("pi") is None
    assert src.damaged_luts("pi") == [] and src.fewshot_spaces("pi") == []


def test_folder_source_finds_runs_in_runs_and_the_project_root(rproj):
    import json
    import shutil

    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    shutil.copytree(rproj / "runs/rnd", rproj / "demo-run")            # a run at the project's root
    shutil.copytree(rproj / "runs/rnd", rproj / "evo")                  # the name of one under runs/: runs/ wins
    config = json.loads((rproj / "evo/config.json").read_text())
    (rproj / "evo/config.json").write_text(json.dumps({**config, "seed": 99}))
    for name in (".hidden", "a..b", "no-log"):                            # no names, or no log: no runs
        shutil.copytree(rproj / "runs/rnd", rproj / "runs" / name)
    for log in ("evaluations.jsonl", "checkpoint.json"):
        (rproj / "runs/no-log" / log).unlink()
    (rproj / "runs/file-run").write_text("{}")
    src = FolderSource(Project(rproj))
    assert [r for r in src.run_ids() if r != "nb201"] == ["demo-run", "evo", "rnd"]   # nb201: with the shared CSV
    evo = src.run("evo")
    assert evo.path == rproj / "runs/evo" and evo.config["seed"] != 99
    assert src.run("demo-run").path == rproj / "demo-run"
    for name in ("no-log", "a..b", ".hidden", "file-run"):
        with pytest.raises(NotFoundError):
            src.run(name)
    evals = src.evaluations("evo")
    assert len(evals) == 32 and src.evaluations("evo", -5) == evals and src.evaluations("evo", 30) == evals[30:]
    assert src.evaluations("evo", "31") == evals[31:]


def test_folder_source_devices_and_their_tables(rproj):
    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    luts = rproj / "luts"
    (luts / "notes.txt").write_text("not a device")
    (luts / ".cache").mkdir()
    (luts / "a..b").mkdir()
    (luts / "local" / ("mbv3-small-" + "0" * 12 + ".json")).write_text('{"broken": 1}')   # a damaged table
    (luts / "local" / "notes.json").write_text("{}")                                  # no table's name
    (luts / "local" / "fewshot").mkdir()
    for name in ("nb201.json", "mbv3-tiny.json", ".x.json"):
        (luts / "local" / "fewshot" / name).write_text("{}")
    (luts / "local" / "fewshot" / "dir.json").mkdir()
    src = FolderSource(Project(rproj))
    assert src.devices() == ["local"]
    tables = src.luts("local")
    assert sorted(t.space for t in tables) == ["mbv3-tiny", "nb201"]
    assert [t.created_at for t in tables] == sorted((t.created_at for t in tables), reverse=True)   # newest first
    assert src.damaged_luts("local") == ["mbv3-small-000000000000.json"]
    assert src.fewshot_spaces("local") == ["mbv3-tiny", "nb201"]
    (luts / "other").mkdir()
    assert src.fewshot_spaces("other") == [] and src.luts("other") == [] and src.verified("other") == []
    assert len(src.verified("local")) == len((luts / "local/verified.jsonl").read_text().splitlines()) > 0
    with pytest.raises(NotFoundError, match="no device 'nope'") as err:
        src.luts("nope")
    assert err.value.hint == "the devices with LUTs: local, other (GET /api/devices)"


def test_folder_source_without_a_database_creates_none(tmp_path):
    import dataclasses

    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    src = FolderSource(Project(tmp_path))
    assert src.measurements() == [] and src.stale_runs("pi") is None and src.devices() == []
    assert src.run_ids() == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.project = Project(tmp_path / "other")
    with pytest.raises(NotFoundError, match="no device 'pi'") as err:
        src.luts("pi")
    assert err.value.hint == "the devices with LUTs: none (GET /api/devices)"


def test_a_run_folder_whose_name_is_not_utf8_is_one_input_error(tmp_path):
    import os

    from edgenas.errors import InputError
    from edgenas.report.source import load_run_dir

    os.mkdir(os.fsencode(tmp_path) + b"/run-\xff")
    path = tmp_path / os.fsdecode(b"run-\xff")
    assert path.is_dir()
    with pytest.raises(InputError, match="run folder .*run-.* has a name that is not UTF-8 text"):
        load_run_dir(path)


def test_a_folder_that_is_no_run_or_has_a_damaged_request(tmp_path):
    from edgenas.errors import InputError
    from edgenas.report.source import load_run_dir

    with pytest.raises(NotFoundError, match="is not a search run \\(no config.json\\)"):
        load_run_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"space": "nb201"}')
    (tmp_path / "request.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="request.json: expected a JSON object"):
        load_run_dir(tmp_path)
    # its fields' types, as runs import checks them: a "minimise" of 5 was a TypeError (exit 70, the API's 500)
    (tmp_path / "request.json").write_text('{"space": "nb201", "minimise": 5}')
    (tmp_path / "evaluations.jsonl").write_text("")
    with pytest.raises(InputError, match="request.json: malformed 'minimise' \\('5'\\)"):
        load_run_dir(tmp_path)


@pytest.mark.parametrize("name", ["best.json", "checkpoint.json", "pareto.json", "request.json", "config.json"])
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_run_record_that_is_no_file_is_refused_not_taken_for_none(tmp_path, name, kind):
    """A FIFO best.json was no best.json: a finished run showed as running, with no chosen network."""
    import os

    from edgenas.errors import InputError
    from edgenas.report.source import load_run_dir

    (tmp_path / "config.json").write_text('{"space": "nb201"}')
    (tmp_path / "evaluations.jsonl").write_text("")
    (tmp_path / name).unlink(missing_ok=True)
    os.mkfifo(tmp_path / name) if kind == "fifo" else (tmp_path / name).mkdir()
    with pytest.raises(InputError, match=f"{name} is a folder, not a file" if kind == "folder" else
                       f"{name}.* not a regular file"):
        load_run_dir(tmp_path)


def test_a_darts_runs_history_that_is_a_link_is_refused(dproj, tmp_path):
    import shutil

    from edgenas.errors import InputError
    from edgenas.report.source import load_run_dir

    run = dproj / "runs" / "dm"
    shutil.move(run / "history.json", tmp_path / "history.json")
    (run / "history.json").symlink_to(tmp_path / "history.json")
    with pytest.raises(InputError, match="history.json is a symbolic link"):
        load_run_dir(run)


def _table_run(tmp_path):
    """A search of the NB-201 table in ``tmp_path/runs/r`` (no database), and the source of its project."""
    from edgenas.project import Project
    from edgenas.report.source import FolderSource
    from edgenas.search.launch import SearchRequest, launch_search

    from .conftest import NB201_CSV

    req = SearchRequest(space="nb201", table=str(NB201_CSV), objective="cifar10_test", budget=30, seed=0)
    launch_search(Project(tmp_path), req, tmp_path / "runs" / "r", record=False)
    return tmp_path / "runs" / "r", FolderSource(Project(tmp_path))


def test_a_run_nobody_holds_is_stopped_in_the_api_and_the_report_as_in_runs_list(tmp_path):
    """A search killed (kill -9, SIGTERM) leaves its checkpoint saying running and no best.json: /api/runs and
    ``report`` said running for ever (and the live page polled it for ever) while ``runs list`` said stopped.
    Running only while a search holds the folder's run lock."""
    import json

    from starlette.testclient import TestClient

    from edgenas.api.app import create_app
    from edgenas.locks import run_lock
    from edgenas.report.pages import run_sections

    path, src = _table_run(tmp_path)
    (path / "best.json").unlink()
    (path / "checkpoint.json").write_text(json.dumps({"status": "running"}))
    client = TestClient(create_app(src))
    with run_lock(path):
        assert src.run("r").status == "running" and client.get("/api/runs").json()[0]["status"] == "running"
    assert src.run("r").status == src.run("r", evaluations=False).status == "stopped"
    assert [(r["id"], r["status"]) for r in client.get("/api/runs").json()] == [("r", "stopped")]
    assert client.get("/api/runs/r").json()["status"] == "stopped"
    assert "<td>status</td><td>stopped</td>" in run_sections(src.run("r"), src)[0].html   # edgenas report's page


def test_a_run_with_no_evaluation_yet_is_running_while_held_and_stopped_once_nobody_holds_it(tmp_path):
    """A search starting up (its first batch not yet logged) holds its run lock: running. Killed then, its folder
    holds an empty log and nobody holds the lock: stopped. Both read ``empty`` whatever the lock said, and the
    live page, which stops only on complete or stopped, polled the killed run for ever. A folder with nothing
    logged and no lock file at all stays ``empty`` where it cannot be asked (``report PATH`` of a moved one)."""
    from starlette.testclient import TestClient

    from edgenas.api.app import create_app
    from edgenas.locks import run_lock
    from edgenas.report.pages import run_sections
    from edgenas.report.source import load_run_dir

    path, src = _table_run(tmp_path)
    for f in ("best.json", "pareto.json", "checkpoint.json"):
        (path / f).unlink()
    (path / "evaluations.jsonl").write_text("")
    client = TestClient(create_app(src))
    with run_lock(path):  # a search is starting up in it
        assert src.run("r").status == src.run("r", evaluations=False).status == "running"
        assert [(r["id"], r["status"], r["evaluations"]) for r in client.get("/api/runs").json()] \
            == [("r", "running", 0)]
        assert client.get("/api/runs/r").json()["status"] == "running"
    assert src.run("r").status == src.run("r", evaluations=False).status == "stopped"   # killed
    assert [(r["id"], r["status"]) for r in client.get("/api/runs").json()] == [("r", "stopped")]
    assert client.get("/api/runs/r").json()["status"] == "stopped"
    assert "<td>status</td><td>stopped</td>" in run_sections(src.run("r"), src)[0].html   # edgenas report's page
    (path / "evaluations.jsonl").unlink()   # nothing logged at all (killed before the log was opened)
    assert load_run_dir(path).status == "empty"
    with run_lock(path):
        assert load_run_dir(path).status == "running"


def test_a_killed_run_shows_the_best_it_would_have_chosen_in_the_api_and_the_report(tmp_path):
    """A search killed before it wrote best.json showed no best at all in the API and the report's summary ("none
    feasible yet") though it had feasible evaluations. Its best so far is what the search chooses of the same
    log: the best.json a finished run wrote of it (removed here, as a kill leaves the folder), marked as a stopped
    run's; none while a search holds the folder (the live page asks every second) or where best.json is written."""
    import json

    from starlette.testclient import TestClient

    from edgenas.api.app import create_app
    from edgenas.locks import run_lock
    from edgenas.project import Project
    from edgenas.report.pages import run_sections
    from edgenas.report.source import FolderSource
    from edgenas.search.launch import SearchRequest, launch_search

    from .conftest import NB201_CSV

    path = tmp_path / "runs" / "r"
    launch_search(Project(tmp_path), SearchRequest(space="nb201", table=str(NB201_CSV), objective="cifar10_test",
                                                   latency_column="raspi4_ms", max_latency_ms=(8.0,), budget=40,
                                                   seed=0), path, record=False)
    src, client = FolderSource(Project(tmp_path)), TestClient(create_app(FolderSource(Project(tmp_path))))
    chosen = json.loads((path / "best.json").read_text())
    logged = [json.loads(x) for x in (path / "evaluations.jsonl").read_text().splitlines()]
    assert chosen["number"] is not None and sum(e["feasible"] for e in logged) > 1   # a choice among several
    assert not any(e["feasible"] for e in logged if e["objectives"]["cifar10_test"] > chosen["objectives"][
        "cifar10_test"])
    assert client.get("/api/runs/r").json()["best_so_far"] is None                 # finished: its best.json
    (path / "best.json").unlink()
    (path / "pareto.json").unlink()
    (path / "checkpoint.json").write_text(json.dumps({"status": "running"}))      # killed
    first = next(e for e in logged if e["number"] == chosen["number"])
    with open(path / "evaluations.jsonl", "a") as fh:   # after it: one more accurate but over budget, and it again
        fh.write(json.dumps({**first, "number": 40, "objectives": {"cifar10_test": 99.0}, "feasible": False,
                             "latency_ms": {"raspi4_ms": 9.0}, "constraints": {"raspi4_ms": 1.0}}) + "\n")
        fh.write(json.dumps({**first, "number": 41}) + "\n")
    with run_lock(path):
        assert client.get("/api/runs/r").json()["best_so_far"] is None             # running: not read
    got = client.get("/api/runs/r").json()
    assert got["status"] == "stopped" and got["best"] is None
    assert got["best_so_far"] == {k: chosen[k] for k in ("arch", "objectives", "latency_ms", "number")}
    row = run_sections(src.run("r", columns=True), src)[0].html
    assert (f"<td>chosen</td><td>#{chosen['number']}: cifar10_test = {chosen['objectives']['cifar10_test']:.4g}, "
            f"raspi4_ms {chosen['latency_ms']['raspi4_ms']:.4g} ms (the best feasible so far: the run stopped before "
            "it chose one)</td>") in row


def test_a_summary_counts_the_log_as_loading_it_did(tmp_path):
    """The API's listing and run summary count and check the log (``evaluations=False``) instead of loading it:
    the same summary, on a finished run, one appended to with a torn last line (no pareto.json: the objective
    from the records), and the same error for a record damaged in place."""
    import json

    from edgenas.errors import InputError
    from edgenas.locks import run_lock

    path, src = _table_run(tmp_path)
    light = src.run("r", evaluations=False)
    assert light.evaluations == [] and light.logged.records == 30
    assert light.summary() == src.run("r").summary() and light.summary()["evaluations"] == 30
    log = path / "evaluations.jsonl"
    first = json.loads(log.read_text().splitlines()[0])
    (path / "pareto.json").unlink()
    (path / "request.json").unlink()
    (path / "checkpoint.json").write_text(json.dumps({"status": "running"}))
    with open(log, "a") as f:
        f.write(json.dumps({**first, "number": 30, "objectives": {"params": 1.0, "acc": 1.0}}) + "\n\n{\"numb")
    light, full = src.run("r", evaluations=False), src.run("r")
    with run_lock(path):  # a search is writing it (its status is asked of the lock when read)
        assert light.summary() == full.summary() and light.summary()["evaluations"] == 31
        assert light.objective == full.objective == "cifar10_test" and light.status == "running"
    text = log.read_text().replace('"number": 3,', '"number": 4,', 1)
    log.write_text(text)
    with pytest.raises(InputError) as counted:
        src.run("r", evaluations=False)
    with pytest.raises(InputError) as loaded:
        src.run("r")
    assert counted.value.message == loaded.value.message and "record 4 is evaluation number 4" in loaded.value.message


def test_a_recount_checks_only_what_was_appended_to_the_log(tmp_path):
    """A tally goes on from an earlier one while the bytes it counted are the log's first ones (the live view
    polls the run summary: a run of 100,000 evaluations was parsed whole every second); after any other change
    it counts from the start. The earlier tally's objective is a marker: kept, nothing before was read again."""
    import dataclasses
    import json

    from edgenas.search.run_files import tally_evaluations

    path, _ = _table_run(tmp_path)
    log = path / "evaluations.jsonl"
    before = tally_evaluations(log)
    assert (before.records, before.lines, before.end, before.objective) == (30, 30, log.stat().st_size, "cifar10_test")
    marked = dataclasses.replace(before, objective="marker")
    first = json.loads(log.read_text().splitlines()[0])
    with open(log, "a") as f:
        f.write(json.dumps({**first, "number": 30}) + "\n")
    after = tally_evaluations(log, marked)
    assert (after.records, after.lines, after.objective) == (31, 31, "marker")
    assert tally_evaluations(log) == dataclasses.replace(after, objective="cifar10_test")
    data = log.read_bytes()
    first_score = data.index(b'"cifar10_test": ') + len(b'"cifar10_test": ')
    digit = data[first_score:first_score + 1]
    edited = data[:first_score] + (b"1" if digit != b"1" else b"2") + data[first_score + 1:]
    log.write_bytes(edited)  # same length, other bytes (the first score; an objective renamed is damage now)
    assert tally_evaluations(log, marked).objective == "cifar10_test"  # counted again: not the marker


def _append(log, *lines: str) -> None:
    with open(log, "a") as f:
        f.write("".join(lines))


def test_a_poll_after_an_append_returns_exactly_the_new_records(tmp_path):
    """The live view polls ``evaluations(run, since=N)`` with the number it got to: each poll returns the records
    appended since, read from where the last poll stopped (the mark's count of lines goes on: a line damaged there
    is named by its number in the whole log), a torn last line left for the next poll."""
    import dataclasses
    import json

    from edgenas.errors import InputError
    from edgenas.search.run_files import read_evaluations_after

    path, src = _table_run(tmp_path)
    log = path / "evaluations.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert src.evaluations("r", 0) == records and src.evaluations("r", 30) == []
    new = [{**records[k], "number": 30 + k} for k in range(3)]
    torn = json.dumps({**records[0], "number": 33})
    _append(log, *(json.dumps(r) + "\n" for r in new), torn[:40])
    assert src.evaluations("r", 30) == new
    _append(log, torn[40:] + "\n")
    assert src.evaluations("r", 33) == [json.loads(torn)] and src.evaluations("r", 34) == []
    assert src.evaluations("r", 31) == [*new[1:], json.loads(torn)]  # behind the last poll: read from the start
    _, mark = read_evaluations_after(log, 34)
    assert (mark.records, mark.lines, mark.offset) == (34, 34, log.stat().st_size)
    _append(log, "{\"number\": 34,\n")
    with pytest.raises(InputError, match=r"malformed line 35 in .*evaluations.jsonl"):
        src.evaluations("r", 34)
    with pytest.raises(InputError, match="malformed line 1035 in"):  # counted on from the mark, not again
        read_evaluations_after(log, 34, dataclasses.replace(mark, lines=1034))


def test_a_poll_reads_the_log_again_when_it_is_not_the_one_it_marked(tmp_path):
    """A mark holds for the same file with the same bytes before it: a log replaced (another file), cut shorter
    or changed just before the mark is read from the start; so is a poll behind the mark."""
    import json
    import os

    from edgenas.search.run_files import read_evaluations_after

    path, _ = _table_run(tmp_path)
    log = path / "evaluations.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    _, mark = read_evaluations_after(log, 30)
    assert read_evaluations_after(log, 30, mark) == ([], mark)
    other = [{**r, "wall_s": 1.0} for r in records]
    text = "".join(json.dumps(r) + "\n" for r in other)
    (path / "new.jsonl").write_text(text)
    os.replace(path / "new.jsonl", log)                           # another file (a new inode)
    assert read_evaluations_after(log, 29, mark)[0] == other[29:]
    _, mark = read_evaluations_after(log, 30)
    log.write_text(text.replace('"wall_s": 1.0}', '"wall_s": 2.0}'))  # the same file, other bytes before the mark
    assert read_evaluations_after(log, 29, mark)[0] == [{**other[29], "wall_s": 2.0}]
    _, mark = read_evaluations_after(log, 30)
    log.write_text("".join(json.dumps(r) + "\n" for r in records[:20]))   # cut shorter
    assert read_evaluations_after(log, 19, mark)[0] == records[19:20]
    assert read_evaluations_after(log, 25, mark) == ([], read_evaluations_after(log, 20)[1])


def test_a_poll_counts_records_not_blank_lines(tmp_path):
    """``since`` is the number of the first record wanted (the live page polls with the count it got): a blank
    line in the log (the report, ``runs import`` and the summary skip it) made every poll past it fail, 'record
    11 is evaluation number 9, expected 10', and the live page wait forever."""
    import json

    path, src = _table_run(tmp_path)
    log = path / "evaluations.jsonl"
    lines = log.read_text().splitlines(True)
    records = [json.loads(x) for x in lines]
    log.write_text("".join(lines[:5]) + "\n" + "".join(lines[5:]))
    for since in (4, 10, 29, 30):
        assert src.evaluations("r", since) == records[since:], since


def test_the_live_page_reads_the_run_s_settings_not_its_records(tmp_path):
    """The live page needs the run's settings (its script polls for the records): it counts the log, the same
    page as from the records loaded (no pareto.json or request.json: the objective from the log), and a damaged
    log is the same one error."""
    from starlette.testclient import TestClient

    from edgenas.api.app import PLOTLY_PATH, create_app
    from edgenas.api.live import live_page

    path, src = _table_run(tmp_path)
    (path / "pareto.json").unlink()
    (path / "request.json").unlink()
    client = TestClient(create_app(src))
    page = client.get("/runs/r/live?interval_ms=300")
    nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
    assert page.status_code == 200 and page.text == live_page(src.run("r"), PLOTLY_PATH, None, 300, nonce=nonce)
    assert '"objective": "cifar10_test"' in page.text
    log = path / "evaluations.jsonl"
    log.write_text(log.read_text().replace('"number": 3,', '"number": 4,', 1))
    r = client.get("/runs/r/live")
    assert r.status_code == 400 and "record 4 is evaluation number 4" in r.json()["error"]


def test_the_api_s_polls_follow_an_append_and_refuse_a_damaged_line(tmp_path):
    """Over HTTP as the live page polls: ``next`` is the number to poll with; an append is answered with exactly
    the new records; a damaged line appended is one 400 naming its line, and nothing is written."""
    import json

    from starlette.testclient import TestClient

    from edgenas.api.app import create_app

    path, src = _table_run(tmp_path)
    log = path / "evaluations.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    client = TestClient(create_app(src))
    first = client.get("/api/runs/r/evaluations?since=0").json()
    assert (first["next"], first["evaluations"]) == (30, records)
    new = [{**records[k], "number": 30 + k} for k in range(2)]
    _append(log, *(json.dumps(r) + "\n" for r in new))
    assert client.get("/api/runs/r/evaluations?since=30").json() == {"run": "r", "since": 30, "next": 32,
                                                                      "evaluations": new}
    _append(log, json.dumps({**records[0], "number": 32})[:-1] + ",}\n")
    size = log.stat().st_size
    r = client.get("/api/runs/r/evaluations?since=32")
    assert r.status_code == 400 and r.json()["error"] == f"malformed line 33 in {log}"
    assert r.json()["hint"] == "the run folder is damaged" and log.stat().st_size == size
