"""What ``launch_search`` records in the experiment database and the run folder around a warm start (mutation
audit of search/launch.py): a run it re-runs is in ``warm_start.json``, where a re-import finds it, and a warm start
from a run the database does not have is refused before a database is made."""

from __future__ import annotations

import json

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search.launch import SearchRequest, import_run, launch_search
from edgenas.store import open_db
from edgenas.store.runs import list_runs

from .conftest import TABLE


def _req(**kw) -> SearchRequest:
    return SearchRequest(**{"space": "nb201", "table": str(TABLE), "objective": "cifar10_test", "budget": 6,
                            "seed": 0, **kw})


def test_a_warm_started_rerun_names_its_origin_in_warm_start_json_and_a_reimport_keeps_it(tmp_path):
    proj = Project(tmp_path)
    db = open_db(f"sqlite:///{tmp_path / 'e.db'}", proj)
    launch_search(proj, _req(), tmp_path / "src", db=db)
    [src] = list_runs(db)
    launch_search(proj, _req(warm_start=(src.id,), seed=1), tmp_path / "again", db=db, rerun_of=src.id)
    assert json.loads((tmp_path / "again" / "warm_start.json").read_text())["rerun_of"] == src.id
    assert import_run(db, proj, tmp_path / "again").rerun_of == src.id    # `runs import` reads it back
    launch_search(proj, _req(warm_start=(src.id,), seed=2), tmp_path / "plain", db=db)
    assert "rerun_of" not in json.loads((tmp_path / "plain" / "warm_start.json").read_text())
    assert import_run(db, proj, tmp_path / "plain").rerun_of is None


def test_a_warm_start_from_a_run_no_database_has_is_refused_before_one_is_made(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    proj = Project(tmp_path)
    with pytest.raises(InputError, match="no run 'ab12' in the experiment database"):
        launch_search(proj, _req(warm_start=("ab12",)), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_a_reimported_multi_fidelity_run_keeps_its_devices_table_hash(tmp_path):
    proj = Project(tmp_path)
    db = open_db(f"sqlite:///{tmp_path / 'e.db'}", proj)
    valid = TABLE.with_name("nb201_valid.csv")
    req = SearchRequest(space="nb201", table=str(TABLE), latency_column="raspi4_ms",
                        strategy="sh", budget=4, seed=3,
                        ladder=(f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
                                f"nb201-fidelity:table={valid},column=cifar10_valid,cost=2"))
    launch_search(proj, req, tmp_path / "sh", db=db)
    [ran] = list_runs(db)
    assert ran.devices[0].lut_hash is not None
    assert import_run(db, proj, tmp_path / "sh").devices == ran.devices   # rebuilt as the run built it


def test_an_auto_warm_start_in_a_project_without_a_database_makes_one_and_transfers_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    launch_search(Project(tmp_path), _req(warm_start=("auto",)), tmp_path / "new")
    assert json.loads((tmp_path / "new" / "warm_start.json").read_text())["transferred"] == []


def test_a_finished_run_the_database_cannot_record_is_one_error_saying_how_to_import_it(tmp_path):
    import sqlite3

    from edgenas.store import DatabaseError

    proj = Project(tmp_path)
    db = open_db(f"sqlite:///{tmp_path / 'e.db'}", proj)
    con = sqlite3.connect(tmp_path / "e.db")
    con.execute("DROP TABLE evaluations")                      # damaged after it was opened
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="the search finished and its run folder .* is complete, but recording "
                                            "it in the experiment database failed") as exc:
        launch_search(proj, _req(budget=4), tmp_path / "r", db=db)
    assert exc.value.hint == f"fix the database, then: edgenas runs import {tmp_path / 'r'}"
    assert (tmp_path / "r" / "best.json").exists()


def test_a_resume_interrupted_after_its_table_changed_is_still_an_interruption(tmp_path):
    """Only a replay mismatch is blamed on a changed table; a Ctrl-C is said as one."""
    from edgenas.errors import SearchInterrupted

    table = tmp_path / "hw.csv"
    table.write_text(TABLE.read_text())
    req = _req(table=str(table), latency_column="raspi4_ms", budget=8)

    def stop(done, total):
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):
        launch_search(Project(tmp_path), req, tmp_path / "r", record=False, progress=stop)
    lines = table.read_text().splitlines()
    cells = lines[1].split(",")
    cells[5] = str(float(cells[5]) * 1.5)                      # a re-measured device
    table.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(SearchInterrupted, match="search interrupted"):
        launch_search(Project(tmp_path), None, tmp_path / "r", resume=True, record=False, progress=stop)


def test_a_resumes_notes_are_said_once_its_replay_is_through(tmp_path):
    """A resume's notes (here: its table changed since the run started) wait until the run has replayed its log:
    a resume refused meanwhile prints its one error line only. They come before the first new evaluation's
    progress."""
    from edgenas.errors import SearchInterrupted

    table = tmp_path / "hw.csv"
    table.write_text(TABLE.read_text())
    req = _req(table=str(table), latency_column="raspi4_ms", budget=8)
    notes, seen = [], []

    def stop(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):
        launch_search(Project(tmp_path), req, tmp_path / "r", record=False, progress=stop, note=notes.append)
    lines = table.read_text().splitlines()
    cells = lines[-1].split(",")
    cells[5] = str(float(cells[5]) * 1.01)                     # a re-measured cell, far from every decision
    table.write_text("\n".join([*lines[:-1], ",".join(cells)]) + "\n")
    notes.clear()
    launch_search(Project(tmp_path), None, tmp_path / "r", resume=True, record=False,
                  progress=lambda done, total: seen.append((done, len(notes))), note=notes.append)
    assert [n for d, n in seen if d <= 3] == [0, 0, 0] and all(n == 1 for d, n in seen if d > 3), seen
    assert "changed since this run started" in notes[0] and len(notes) == 1
