"""A hostile or damaged experiment database: edited rows (non-JSON, wrong types, rich markup), another
application's SQLite file, and paths that are no database file (a folder, a FIFO, a link loop, a device,
a missing folder). Each is one clear error line and a non-zero exit, no traceback (also none under
``edgenas serve``), and nothing is created or changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
STATS = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": 5.0, "mean_ms": 5.0, "std_ms": 0.01, "cov": 0.002,
         "p90_ms": 5.5, "p99_ms": 5.7, "min_ms": 4.5, "max_ms": 6.0, "stable": True, "total_s": 0.41}

pytestmark = pytest.mark.skipif(not TABLE.exists(), reason="needs shared/data/nb201/nb201_hw.csv")


@pytest.fixture(scope="session")
def db_template(tmp_path_factory):
    """A project with one real NAS-Bench-201 table search (indexed) and one measurement in its database."""
    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, launch_search
    from edgenas.store import Measurement, open_db

    root = tmp_path_factory.mktemp("hostile-db")
    project = Project(root)
    launch_search(project, SearchRequest(space="nb201", table=str(TABLE), objective="cifar10_test",
                                         latency_column="raspi4_ms", max_latency_ms=(20.0,), budget=6, seed=0,
                                         strategy="evolution"), root / "runs" / "r1")
    open_db(None, project).measurements.add(Measurement(
        device="raspi4_ms", space="nb201", arch={"space": "nb201", "schema": 1, "arch": "x"}, artifact_sha256="a" * 64,
        runtime="onnxruntime", precision="fp32", fingerprint_hash="f" * 64, stats=STATS))
    return root


@pytest.fixture
def dproj(db_template, tmp_path, monkeypatch):
    root = tmp_path / "proj"
    shutil.copytree(db_template, root)
    monkeypatch.setenv("EDGENAS_PROJECT", str(root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # rich reads it on every print: tables are not cut to 80 columns
    monkeypatch.chdir(root)
    return root


def _sql(root: Path, *statements: str) -> None:
    con = sqlite3.connect(root / ".edgenas/edgenas.db", isolation_level=None)
    try:
        con.execute("PRAGMA foreign_keys = OFF")
        for s in statements:
            con.execute(s)
    finally:
        con.close()


def _run_id(root: Path) -> str:
    con = sqlite3.connect(root / ".edgenas/edgenas.db")
    try:
        return con.execute("SELECT id FROM runs").fetchone()[0]
    finally:
        con.close()


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> its SHA-256 (but SQLite's shared-memory index and an empty WAL, which
    reading a WAL-mode database makes)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def one_line_error(res, *needles: str, code: int = 2) -> None:
    assert res.code == code, (res.code, res.out, res.err)
    assert res.out == "" and res.err.count("\n") == 1, (res.out, res.err)
    assert "Traceback" not in res.err and "internal error" not in res.err
    for n in needles:
        assert n in res.err, (n, res.err)


# ----------------------------------------------------------------------------- V5: damaged rows
RUN_DAMAGE = [
    ("config='not json'", "config", "malformed JSON"),
    ("best_arch='{{'", "best_arch", "malformed JSON"),
    ("task='[1,2]'", "task", "expected a JSON object"),
    ("task='null'", "task", "expected a JSON object"),
    ("warm_start='[\"x\"]'", "warm_start", "warm-start record"),
    ("warm_start='{\"candidates\": [1]}'", "warm_start", "warm-start record"),
    ("seed='[red]MARK[/red]'", "seed", "whole number"),
    ("n_evaluations='[red]MARK[/red]'", "n_evaluations", "whole number"),
    ("created_at='x'", "created_at", "finite number"),
    ("space=CAST(X'ff41' AS TEXT)", "space", "expected text"),  # not UTF-8: a fetch error before
    ("config=CAST(X'ff41' AS TEXT)", "config", "not UTF-8"),
]


@pytest.mark.parametrize("change,column,problem", RUN_DAMAGE)
def test_a_damaged_run_row_is_one_error_naming_table_run_and_column(dproj, cli, change, column, problem):
    rid = _run_id(dproj)
    _sql(dproj, f"UPDATE runs SET {change}")
    before = _files(dproj)
    for args in (("runs", "show", rid[:4]), ("runs", "show", rid, "--json"), ("runs", "compare", rid, rid),
                 ("runs", "stale")):
        one_line_error(cli(*args), "damaged row", "table runs", f"run {rid}", f"column {column}", problem,
                       "runs import")
    # the listing lists it as damaged (as GET /api/runs lists a damaged run folder), not a failed listing
    res = cli("runs", "list", "--json")
    assert res.code == 0 and "Traceback" not in res.err
    [row] = res.json()
    assert row["id"] == rid and row["status"] == "damaged" and f"column {column}" in row["error"]
    res = cli("runs", "list")
    assert res.code == 0 and rid in res.out and "damaged" in res.out and f"column {column}" in res.err
    assert _files(dproj) == before  # nothing changed


@pytest.mark.parametrize("table,change,column,command", [
    ("evaluations", "objectives='[1]'", "objectives", "rerun"),  # compare reads number, value and feasible only
    ("evaluations", "arch='{'", "arch", "rerun"),                # a re-run's warm start reads the best rows whole
    ("evaluations", "feasible='yy'", "feasible", "compare"),
    ("evaluations", "value='x'", "value", "compare"),
    ("run_devices", "budget_ms='x'", "budget_ms", "compare"),
    ("fronts", "number='x'", "number", "show"),
])
def test_damaged_rows_of_a_runs_other_tables_are_one_error(dproj, cli, table, change, column, command):
    rid = _run_id(dproj)
    _sql(dproj, f"UPDATE {table} SET {change}")
    args = {"compare": ("runs", "compare", rid, rid), "show": ("runs", "show", rid),
            "rerun": ("search", "--rerun", rid)}[command]
    before = _files(dproj)
    one_line_error(cli(*args), "damaged row", f"table {table}", f"run {rid}", f"column {column}")
    assert _files(dproj) == before
    if table == "run_devices":  # cmd_runs formatted the budget with :g unchecked
        one_line_error(cli("runs", "show", rid), f"table {table}", f"column {column}")
        assert cli("runs", "list", "--json").json()[0]["status"] == "damaged"


def test_reimporting_the_folder_repairs_a_damaged_run(dproj, cli):
    rid = cli("runs", "import", "runs/r1", "--json").json()[0]["id"]  # the id of the folder where it is now
    _sql(dproj, f"UPDATE runs SET config='not json' WHERE id='{rid}'",
         f"UPDATE evaluations SET objectives='[1]' WHERE run_id='{rid}'")
    one_line_error(cli("runs", "compare", rid, rid), "damaged row", f"runs import {dproj / 'runs/r1'}")
    assert cli("runs", "import", "runs/r1").code == 0
    res = cli("runs", "compare", rid, rid, "--json")
    assert res.code == 0 and res.json()[0]["id"] == rid


def test_a_damaged_measurement_row_is_one_error(dproj, cli):
    _sql(dproj, "UPDATE measurements SET record='{not json'")
    one_line_error(cli("report", "runs/r1"), "damaged row", "table measurements", "row 1", "column record")
    assert not (dproj / "runs/r1/report.html").exists()
    _sql(dproj, "UPDATE measurements SET record='{\"schema\": 1}'")
    one_line_error(cli("report", "runs/r1"), "table measurements", "missing fields")


# ----------------------------------------------------------------------------- V6: markup in rows
def test_markup_in_database_text_is_printed_as_text(dproj, cli):
    rid = _run_id(dproj)
    _sql(dproj, "UPDATE runs SET status='[red]ST[/red]', strategy='[bold]SG[/bold]', objective='[red]OB[/red]'",
         "UPDATE run_devices SET device='[red]DEV[/red]'",
         "UPDATE runs SET warm_start='{\"note\": \"[red]NOTE[/red]\", \"candidates\": [{\"run_id\": \"[red]C[/red]\","
         " \"similarity\": 1, \"task_similarity\": 1, \"device_similarity\": 1, \"used\": true}]}'")
    res = cli("runs", "show", rid)
    assert res.code == 0, res.err
    for text in ("[red]ST[/red]", "[bold]SG[/bold]", "[red]OB[/red]", "[red]DEV[/red]", "[red]NOTE[/red]",
                 "[red]C[/red]"):
        assert text in res.out, (text, res.out)


def test_a_run_id_holding_markup_is_damaged_and_printed_as_text(dproj, cli):
    rid = _run_id(dproj)
    bad = "0b9d[red]MARK[/red]X"
    _sql(dproj, *(f"UPDATE {t} SET {c}='{bad}'" for t, c in (("runs", "id"), ("run_devices", "run_id"),
                                                              ("evaluations", "run_id"), ("fronts", "run_id"))))
    assert rid
    res = cli("runs", "list")
    assert res.code == 0 and bad in res.out and bad in res.err
    for args in (("runs", "show", "0b9d"), ("runs", "compare", "0b9d", "0b9d"), ("runs", "stale")):
        one_line_error(cli(*args), "table runs", f"run {bad}", "column id")


# ----------------------------------------------------------------------------- V7: another application's file
def test_another_applications_database_is_refused_and_left_as_it_is(dproj, cli, tmp_path):
    other = tmp_path / "other" / "other.db"
    other.parent.mkdir()
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    before = _files(other.parent)
    url = f"sqlite:///{other}"
    for args in (("runs", "list"), ("runs", "list", "--json"), ("runs", "show", "abc"), ("runs", "stale"),
                 ("runs", "compare", "abc", "abd"), ("db", "upgrade"), ("runs", "import", "runs/r1")):
        one_line_error(cli(*args, "--db", url), "holds tables but no edgenas schema revision", code=6)
    assert _files(other.parent) == before  # no tables added, no WAL switch, no lock file


def test_reading_an_empty_database_file_creates_and_migrates_nothing(fresh, cli):
    (fresh / "empty.db").write_bytes(b"")
    res = cli("runs", "list", "--json", "--db", "sqlite:///empty.db")
    assert res.code == 0 and res.json() == []
    assert sorted(os.listdir(fresh)) == ["empty.db"] and (fresh / "empty.db").read_bytes() == b""


# ----------------------------------------------------------------------------- V8: paths that are no database
def _targets(tmp: Path) -> dict[str, Path]:
    (tmp / "dir").mkdir()
    os.mkfifo(tmp / "fifo")
    (tmp / "garbage").write_bytes(b"this is not sqlite at all " * 200)
    (tmp / "loop").symlink_to(tmp / "loop")
    (tmp / "dangling").symlink_to(tmp / "nothing")
    return {"dir": tmp / "dir", "fifo": tmp / "fifo", "garbage": tmp / "garbage", "loop": tmp / "loop",
            "dangling": tmp / "dangling"}


@pytest.mark.parametrize("name,problem", [("dir", "is a folder"), ("fifo", "not a regular file"),
                                          ("garbage", "not a SQLite file"), ("loop", "symbolic links"),
                                          ("dangling", "does not exist")])
def test_db_upgrade_and_reading_refuse_a_path_that_is_no_database_and_leave_nothing(fresh, cli, tmp_path, name,
                                                                                     problem):
    tmp = tmp_path / "t"
    tmp.mkdir()
    target = _targets(tmp)[name]
    before = sorted(os.listdir(tmp))
    for args in (("db", "upgrade"), ("runs", "list"), ("runs", "stale", "--json")):
        res = cli(*args, "--db", f"sqlite:///{target}")
        one_line_error(res, problem, code=6)
        assert "disk is full" not in res.err
    assert sorted(os.listdir(tmp)) == before  # no .migrate.lock


def test_reading_a_device_is_one_error(fresh, cli):
    one_line_error(cli("runs", "list", "--db", "sqlite:////dev/zero"), "not a regular file", code=6)


def test_db_upgrade_does_not_create_missing_folders(fresh, cli, tmp_path):
    res = cli("db", "upgrade", "--db", f"sqlite:///{tmp_path}/no/such/dir/x.db")
    one_line_error(res, "does not exist", code=6)
    assert not (tmp_path / "no").exists()
    assert cli("db", "upgrade").code == 0 and (fresh / ".edgenas/edgenas.db").is_file()  # the project's own: made


def test_a_failed_migration_removes_the_lock_file_it_created(fresh, cli, monkeypatch):
    import alembic.command

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(alembic.command, "upgrade", broken)
    res = cli("db", "upgrade", "--db", "sqlite:///x.db")
    assert res.code == 6 and "Traceback" not in res.err
    assert not (fresh / "x.db.migrate.lock").exists()


# ----------------------------------------------------------------------------- the API
@pytest.fixture
def client(dproj):
    pytest.importorskip("fastapi", reason="needs fastapi (the test extra)")
    pytest.importorskip("httpx", reason="needs httpx (the test extra)")
    from fastapi.testclient import TestClient

    from edgenas.api.server import build_app
    from edgenas.project import Project

    with TestClient(build_app(Project(dproj))) as c:  # an exception the app lets out fails the test
        yield c


def test_api_answers_a_damaged_measurement_row_with_a_json_error(dproj, client):
    assert client.get("/api/measurements").status_code == 200
    _sql(dproj, "UPDATE measurements SET record='{not json'")
    for path in ("/api/measurements", "/runs/r1"):
        r = client.get(path)
        assert r.status_code == 400 and "table measurements" in r.json()["error"], path


def test_api_compare_caps_the_number_of_runs(client):
    r = client.get("/compare?" + "&".join(["run=r1"] * 5000))
    assert r.status_code == 400 and "at most 20" in r.json()["error"]


def test_api_answers_a_bug_with_one_log_line_and_a_json_500(client, monkeypatch, capsys):
    from edgenas.report.source import FolderSource

    def bug(self, *a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(FolderSource, "measurements", bug)
    r = client.get("/api/measurements")
    assert r.status_code == 500 and r.json()["error"] == "internal error: ZeroDivisionError: boom"
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "/api/measurements" in err


# ----------------------------------------------------------------------------- runs import
def test_import_refuses_a_run_folder_of_an_unknown_space(dproj, cli):
    shutil.copytree(dproj / "runs/r1", dproj / "runs/r2")
    cfg = json.loads((dproj / "runs/r2/config.json").read_text())
    (dproj / "runs/r2/config.json").write_text(json.dumps(dict(cfg, space="[red]nope[/red]")))
    before = _files(dproj / ".edgenas")
    one_line_error(cli("runs", "import", "runs/r2"), "unknown search space '[red]nope[/red]'")
    assert _files(dproj / ".edgenas") == before
    assert cli("runs", "stale").code == 0


def test_import_of_several_folders_into_a_database_imports_none_when_one_is_damaged(dproj, cli):
    """Into an existing database each folder was read and saved in turn: the good folder named first was
    imported, and the command still said only that the second was damaged (exit 2)."""
    shutil.copytree(dproj / "runs/r1", dproj / "good")
    shutil.copytree(dproj / "runs/r1", dproj / "bad")
    lines = (dproj / "bad/evaluations.jsonl").read_text().splitlines()
    rec = json.loads(lines[2])
    rec["latency_ms"] = {k: -1 for k in rec["latency_ms"]} or {"raspi4_ms": -1}
    (dproj / "bad/evaluations.jsonl").write_text("\n".join([*lines[:2], json.dumps(rec), *lines[3:]]) + "\n")
    _sql(dproj, "PRAGMA wal_checkpoint(TRUNCATE)")  # the copy's -wal folded in now, not by whichever read is last
    before, listed = _files(dproj / ".edgenas"), cli("runs", "list", "--json").json()
    one_line_error(cli("runs", "import", "good", "bad"), "bad/evaluations.jsonl: line 3 is not an evaluation record")
    assert _files(dproj / ".edgenas") == before and cli("runs", "list", "--json").json() == listed
    assert [r["out_dir"] for r in cli("runs", "import", "good", "runs/r1", "--json").json()] == [
        str(dproj / "good"), str(dproj / "runs/r1")]


def test_import_refuses_a_run_folder_whose_request_and_config_name_other_spaces(dproj, cli):
    """Indexed as the config's space, it was re-run (`search --rerun`) as the request's."""
    shutil.copytree(dproj / "runs/r1", dproj / "runs/r2")
    req = json.loads((dproj / "runs/r2/request.json").read_text())
    (dproj / "runs/r2/request.json").write_text(json.dumps(dict(req, space="mbv3-small")))
    before = _files(dproj / ".edgenas")
    one_line_error(cli("runs", "import", "runs/r2"), "request.json names the space 'mbv3-small'",
                   "config.json 'nb201'", "different runs")
    assert _files(dproj / ".edgenas") == before


def test_a_run_of_a_space_given_by_its_alias_is_indexed_and_imports(dproj, cli):
    """request.json keeps the name as typed (mbv3) and config.json the space's own (ofa-mbv3): the check that
    the two name one space compared the strings, and every search with the alias failed at its end."""
    res = cli("search", "--space", "mbv3", "--evaluator", "params", "--budget", "2", "--out", "runs/alias")
    assert res.code == 0, res.err
    assert json.loads((dproj / "runs/alias/request.json").read_text())["space"] == "mbv3"
    listed = [r for r in cli("runs", "list", "--json").json() if r["space"] == "ofa-mbv3"]
    assert [r["status"] for r in listed] == ["complete"]
    assert cli("runs", "import", "runs/alias").code == 0
