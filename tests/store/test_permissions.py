"""The experiment database where this user may not read or write all of it: a -wal or -shm file beside it that
another user left read-only or unreadable, a project that cannot be written, and an ``OSError`` while it is
opened (``ExperimentDB.guard``). Driven through the CLI as a user would meet them: a reading command works or
says in one red line why it cannot; a writing command is one red line (exit 6), before anything runs, and
nothing changes.

The commands run in a real subprocess without root's right to ignore file modes (``setpriv`` drops the
capabilities; the files stay root's, so their owner bits decide). Another user (``setpriv --reuid``) would not
do here: the interpreter lives under ``/root``, which only root may enter."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"
SEARCH = ("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
          "--max-latency-ms", "20", "--strategy", "evolution", "--budget", "4", "--seed", "1")
DROP_ROOT = (("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all", "--")
             if os.geteuid() == 0 else ())

pytestmark = pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                                reason="running as root, and setpriv (util-linux) is missing to drop root's "
                                       "right to ignore file modes")

#: a writer killed before its checkpoint: the change is in the -wal file only, read through the -shm file
KILLED_WRITER = ("import os, sqlite3, sys\n"
                 "con = sqlite3.connect(sys.argv[1])\n"
                 "con.execute('PRAGMA wal_autocheckpoint = 0')\n"
                 "con.execute(\"UPDATE runs SET strategy = 'in-the-wal'\")\n"
                 "con.commit()\n"
                 "os._exit(0)\n")


def edgenas(project: Path, *args: str, pythonpath: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), EDGENAS_PROJECT=str(project), EDGENAS_NO_PROGRESS="1",
               OMP_NUM_THREADS="1")
    env.pop("EDGENAS_DB", None)
    env.pop("EDGENAS_DEBUG", None)
    return subprocess.run([*DROP_ROOT, sys.executable, "-c", "from edgenas.cli import main; main()", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)


def one_red_line(res: subprocess.CompletedProcess, *words: str, code: int = 6) -> None:
    assert res.returncode == code and len(res.stderr.splitlines()) == 1, (res.returncode, res.stderr)
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in res.stderr, res.stderr


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` -> SHA-256 of its bytes (the database and what lies beside it included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A project with one indexed search (its run folder ``runs/r1``)."""
    project = tmp_path_factory.mktemp("perm") / "proj"
    project.mkdir()
    res = edgenas(project, *SEARCH, "--out", "runs/r1")
    assert res.returncode == 0, res.stderr
    return project


@pytest.fixture
def project(template, tmp_path):
    """A copy of the template whose last change is still in the -wal file (its writer was killed)."""
    root = tmp_path / "proj"
    shutil.copytree(template, root)
    db = root / ".edgenas/edgenas.db"
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], check=True, timeout=60)
    assert Path(f"{db}-wal").stat().st_size > 0 and Path(f"{db}-shm").is_file()
    yield root
    subprocess.run(["chmod", "-R", "u+rw", str(root)], check=True)


def strategies(res: subprocess.CompletedProcess) -> list[str]:
    assert res.returncode == 0, res.stderr
    return [r["strategy"] for r in json.loads(res.stdout)]


@pytest.mark.parametrize("end", ["-wal", "-shm"])
def test_a_read_only_wal_or_shm_file_stops_a_search_before_it_runs(project, end):
    """Another user's -wal or -shm file, readable but not writable: SQLite reads the database, and every write
    fails ("attempt to write a readonly database"). A search ran to its end, wrote its run folder and only then
    failed to record it; the reading commands read it, changes in the -wal included."""
    beside = project / f".edgenas/edgenas.db{end}"
    beside.chmod(0o444)
    before = files(project)
    one_red_line(edgenas(project, *SEARCH, "--out", "runs/r2"),
                 f"is read-only for edgenas (edgenas.db{end} beside it)", "check their permissions")
    assert not (project / "runs/r2").exists() and files(project) == before
    assert strategies(edgenas(project, "runs", "list", "--json")) == ["in-the-wal"]
    after = files(project)  # a reader may update the -shm file's index (SQLite's shared memory), nothing else
    assert {k: v for k, v in after.items() if not k.endswith("-shm")} == \
        {k: v for k, v in before.items() if not k.endswith("-shm")}


def test_an_unreadable_shm_file_is_one_clear_error_or_not_needed(project, tmp_path):
    """Another user's -shm file this user cannot read: where the -wal holds changes, a reading command cannot see
    them and says so, naming the -shm file (it said "no edgenas.db-shm beside them", with one there, or "unable
    to open database file"); a search is refused before it runs; where the -wal holds nothing, the -shm is not
    needed and the database reads as it is."""
    db = project / ".edgenas/edgenas.db"
    shm = Path(f"{db}-shm")
    shm.chmod(0o200)
    before = files(tmp_path)
    for writable_project in (True, False):
        if not writable_project:
            subprocess.run(["chmod", "-R", "a-w", str(project)], check=True)
        for args in (("runs", "list"), ("report", "runs/r1", "--out", str(tmp_path / "r.html"))):
            one_red_line(edgenas(project, *args), "has changes in edgenas.db-wal that SQLite cannot read",
                         "edgenas.db-shm beside them cannot be read", "copy edgenas.db with edgenas.db-wal")
        subprocess.run(["chmod", "-R", "u+w", str(project)], check=True)
        shm.chmod(0o200)
    one_red_line(edgenas(project, *SEARCH, "--out", "runs/r2"), "(edgenas.db-shm beside it)")
    assert files(tmp_path) == before and not (project / "runs/r2").exists()
    Path(f"{db}-wal").write_bytes(b"")  # a -wal that holds nothing: the database is its file, as it is
    listed = edgenas(project, "runs", "list", "--json")
    assert strategies(listed) == ["evolution"]
    assert edgenas(project, "runs", "show", json.loads(listed.stdout)[0]["id"]).returncode == 0


def test_a_project_this_user_cannot_write_is_read_and_not_written(project, tmp_path):
    """The database file and its folder read-only (the whole project): every reading command works (the -wal's
    change read through the -shm file), every writing one is one red line and changes nothing."""
    subprocess.run(["chmod", "-R", "a-w", str(project)], check=True)
    before = files(project)
    listed = edgenas(project, "runs", "list", "--json")
    assert strategies(listed) == ["in-the-wal"]
    run_id = json.loads(listed.stdout)[0]["id"]
    for args in (("runs", "show", run_id), ("runs", "stale"), ("report", "runs/r1", "--out", str(tmp_path / "r.html"))):
        res = edgenas(project, *args)
        assert res.returncode == 0 and "error" not in res.stderr, (args, res.stderr)
    assert (tmp_path / "r.html").stat().st_size > 0
    one_red_line(edgenas(project, "runs", "import", "runs/r1"), "cannot open database", "readonly database")
    one_red_line(edgenas(project, "db", "upgrade"), "check the folder's permissions")
    one_red_line(edgenas(project, *SEARCH, "--db", f"sqlite:///{project / '.edgenas/edgenas.db'}", "--out",
                         str(tmp_path / "r2")), "is read-only for edgenas (the file or its folder)")
    assert files(project) == before and not (tmp_path / "r2").exists()


def test_an_os_error_while_the_database_is_opened_is_one_database_error(template, tmp_path):
    """``ExperimentDB.guard`` turns an ``OSError`` met while the database is opened (here: a new database's
    migration cannot read edgenas's own migration script) into one ``DatabaseError`` naming the database and
    the file: one red line, exit 6, nothing made in the project (no database, lock or run folder); never a
    traceback, nor "cannot write" the script, as the CLI's last resort for an ``OSError`` would say."""
    copy = tmp_path / "install"
    shutil.copytree(ROOT / "edgenas", copy / "edgenas", ignore=shutil.ignore_patterns("__pycache__"))
    script = next((copy / "edgenas/store/migrations/versions").glob("0001_*.py"))
    script.chmod(0)
    project = tmp_path / "proj"
    project.mkdir()
    try:
        for args in (("runs", "import", str(template / "runs/r1")), (*SEARCH, "--out", "runs/r2"),
                     ("db", "upgrade")):
            one_red_line(edgenas(project, *args, pythonpath=copy), "error: cannot open database sqlite:///",
                         "Permission denied", script.name)
            assert list(project.iterdir()) == []  # no run folder, no database, no migration lock
    finally:
        script.chmod(0o644)


@pytest.mark.parametrize("command", ["deploy", "fewshot"])
def test_a_read_only_shm_file_stops_a_measurement_before_the_device_measures(project, tmp_path, command):
    """``deploy`` and ``device add --fewshot`` store what they measure in the database: a read-only -shm file
    beside it (every write fails) is refused before the device measures, not after minutes of it."""
    Path(project / ".edgenas/edgenas.db-shm").chmod(0o444)
    before = files(project)
    args = (("deploy", "local", "runs/r1/best.json", "--out", str(tmp_path / "exp")) if command == "deploy"
            else ("device", "add", "local", "--fewshot", "3", "--space", "mbv3-tiny"))
    one_red_line(edgenas(project, *args), "is read-only for edgenas (edgenas.db-shm beside it)")
    assert files(project) == before and not (tmp_path / "exp").exists()


def test_migrations_that_cannot_be_read_are_one_error_before_any_database_is_opened(template, tmp_path):
    """edgenas's migration folder unreadable (a damaged install): alembic found no revision, a new database was
    left unmigrated (a 4 KB file and a migration lock) and refused as lacking "part of the edgenas schema", and
    a good one read as unknown. Every command that opens a database now says what cannot be read, and a new
    project is left without a database."""
    copy = tmp_path / "install"
    shutil.copytree(ROOT / "edgenas", copy / "edgenas", ignore=shutil.ignore_patterns("__pycache__"))
    versions = copy / "edgenas/store/migrations/versions"
    versions.chmod(0)
    fresh = tmp_path / "proj"
    fresh.mkdir()
    try:
        for project, args in ((fresh, ("runs", "import", str(template / "runs/r1"))),
                              (fresh, (*SEARCH, "--out", "runs/r2")), (fresh, ("db", "upgrade")),
                              (template, ("runs", "list"))):
            before = files(project)
            one_red_line(edgenas(project, *args, pythonpath=copy), "cannot read edgenas's database migrations",
                         str(versions), "check that folder's permissions")
            assert files(project) == before and not (project / "runs/r2").exists()
        assert not (fresh / ".edgenas").exists()
    finally:
        versions.chmod(0o755)


def stat_of(folder: Path) -> tuple[list[str], int]:
    return sorted(p.name for p in folder.iterdir()), folder.stat().st_mtime_ns


def test_reading_commands_leave_a_database_in_another_journal_mode_as_it_is(project, tmp_path):
    """Reading commands (``serve``'s requests among them) opened a writable database as a writer does: a file in
    the rollback journal (a VACUUM INTO copy) was switched to WAL mode. Now it is read as it is; the usual WAL
    file is read by a connection of its own (which removes the -wal and -shm files it makes when it closes)."""
    import sqlite3

    db = project / ".edgenas/edgenas.db"
    con = sqlite3.connect(db)  # the killed writer's -wal folded in, then the file switched to the rollback journal
    assert con.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    con.close()
    before, listing = files(project), stat_of(db.parent)
    assert not {"edgenas.db-wal", "edgenas.db-shm"} & set(listing[0])
    reads = ("runs", "list", "--json"), ("runs", "stale"), ("report", "runs/r1", "--out", str(tmp_path / "a.html"))
    for args in reads:
        res = edgenas(project, *args)
        assert res.returncode == 0 and "error" not in res.stderr, (args, res.stderr)
    assert strategies(edgenas(project, "runs", "list", "--json")) == ["in-the-wal"]
    assert files(project) == before and stat_of(db.parent) == listing
    assert sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("PRAGMA journal_mode").fetchone() == ("delete",)
