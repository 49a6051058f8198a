"""Rows of the experiment database that were edited or damaged, and databases that are not edgenas's, on
SQLite and on a real PostgreSQL: one ``DamagedRowError`` naming table, run and column (``store.rows``),
and another application's tables refused with nothing changed."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from edgenas.project import Project
from edgenas.store import DatabaseError, ExperimentDB
from edgenas.store.rows import DamagedRowError, decode_row, run_hint
from edgenas.store.runs import get_run, list_runs, run_evaluations, save_run, scan_runs

from .test_runs import _req


@pytest.fixture
def one_run(db, tmp_path):
    from edgenas.search.launch import launch_search

    launch_search(Project(tmp_path), _req(budget=6), tmp_path / "r1", db=db)
    [run] = list_runs(db)
    return run


@pytest.mark.parametrize("change,column", [
    ("task = '[1, 2]'", "task"), ("config = 'null'", "config"), ("best_arch = '7'", "best_arch"),
    ("warm_start = '{\"transferred\": 3}'", "warm_start"),
])
def test_a_run_row_of_the_wrong_shape_is_one_error_on_every_back_end(db, one_run, change, column):
    with db.begin() as con:
        con.execute(sa.text(f"UPDATE runs SET {change}"))
    for read in (lambda: list_runs(db), lambda: get_run(db, one_run.id[:6])):
        with pytest.raises(DamagedRowError) as info:
            read()
        assert (info.value.table, info.value.key, info.value.column) == ("runs", f"run {one_run.id}", column)
        assert "runs import" in str(info.value) and one_run.out_dir in str(info.value)
    good, damaged = scan_runs(db)
    assert good == [] and [rid for rid, _ in damaged] == [one_run.id]


def test_a_damaged_evaluation_names_the_run_and_its_number(db, one_run):
    with db.begin() as con:
        con.execute(sa.text("UPDATE evaluations SET latency_ms = '[1]' WHERE number = 3"))
    with pytest.raises(DamagedRowError, match=f"table evaluations, run {one_run.id}, evaluation 3, column latency_ms"):
        run_evaluations(db, one_run.id)


def test_a_cell_string_as_the_chosen_architecture_reads_back_on_every_back_end(db, one_run):
    """A DARTS run records its cell as a JSON string: read back as text, not as JSON to decode again."""
    cell = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|"
    save_run(db, dataclasses.replace(one_run, best_arch=cell, warm_start={"note": "[x]", "transferred": []}),
             run_evaluations(db, one_run.id))
    run = get_run(db, one_run.id)
    assert run.best_arch == cell and run.warm_start == {"note": "[x]", "transferred": []}


def test_another_applications_tables_are_refused_and_nothing_is_added(db_url):
    eng = sa.create_engine(db_url)
    with eng.begin() as con:
        con.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"))
    eng.dispose()
    with pytest.raises(DatabaseError, match="holds tables but no edgenas schema revision; nothing was changed"):
        ExperimentDB(db_url)  # refused on opening (SQLite: before the engine touches the file), not by a migration
    with pytest.raises(DatabaseError, match="holds tables but no edgenas schema revision"):
        ExperimentDB(db_url, migrate=False, check=False).upgrade()
    eng = sa.create_engine(db_url)
    with eng.connect() as con:
        assert set(sa.inspect(con).get_table_names()) == {"users"}
    eng.dispose()


def _decode(table, row):
    return decode_row(row, table, where="e.db", key="run ab12", hint="re-import it")


def test_a_flag_is_0_or_1_and_a_column_without_a_check_is_kept_as_it_is():
    assert _decode("evaluations", {"feasible": 0, "number": 3.0}) == {"feasible": False, "number": 3}
    assert _decode("evaluations", {"feasible": 1}) == {"feasible": True}
    for bad in (2, -1, 0.5, "1"):
        with pytest.raises(DamagedRowError, match=r"run ab12, column feasible: expected a boolean \(0 or 1\)"):
            _decode("evaluations", {"feasible": bad})
    # the measurements' filter columns have no check; the record after them is still decoded
    assert _decode("measurements", {"seq": 7, "device": "d", "record": '{"a": [1]}'}) == \
        {"seq": 7, "device": "d", "record": {"a": [1]}}


def test_the_hint_names_the_run_folder_or_a_placeholder():
    assert "(edgenas runs import runs/r1)" in run_hint("runs/r1")
    for odd in (None, "", 5, ["runs/r1"]):
        assert "(edgenas runs import RUN_FOLDER)" in run_hint(odd)


def test_a_measurement_record_of_the_wrong_shape_is_one_error_naming_its_row(tmp_path, make):
    """A measurement row whose record is JSON but no measurement: listing or getting it is one error naming the
    row, not a None among the measurements."""
    with ExperimentDB(f"sqlite:///{tmp_path / 'e.db'}") as db:
        m = make()
        db.measurements.add(m)
        with db.begin() as con:
            con.execute(sa.text("UPDATE measurements SET record = '{\"device\": 3}'"))
        for read in (db.measurements.list, lambda: db.measurements.get(m.id)):
            with pytest.raises(DamagedRowError, match="table measurements, row 1, column record") as info:
                read()
            assert info.value.key == "row 1" and "restore the database from a backup" in info.value.hint
