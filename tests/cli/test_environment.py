"""The environment a command runs in: a terminal or pipe that is not UTF-8, a deleted current folder, a
project this user cannot write, a database URL that keeps nothing, a narrow or piped terminal. Real
processes where the environment is the process's own (encoding, current folder, privileges)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line_error

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"
SEARCH = ("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
          "--max-latency-ms", "20", "--strategy", "evolution", "--budget", "6", "--seed", "1")


def edgenas(args, project: Path, *, env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(project), EDGENAS_NO_PROGRESS="1", **(env or {}))
    encoding = (env or {}).get("PYTHONIOENCODING", "utf-8")  # the output is in the encoding it was asked for
    return subprocess.run([*prefix, sys.executable, "-c", "from edgenas.cli import main; main()", *args],
                          cwd=cwd or project, env=full, capture_output=True, encoding=encoding, errors="strict",
                          timeout=300)


@pytest.fixture
def with_run(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    res = edgenas([*SEARCH, "--out", "runs/ré-1"], project)
    assert res.returncode == 0, res.stderr
    return project


def test_output_that_is_not_utf8_prints_what_it_can(with_run):
    """With stdout in ASCII or Latin-1 (a C locale, PYTHONIOENCODING), "…", "±" and "→" were an internal
    error after the work was done (export had written its files, deploy stored its measurement)."""
    for encoding in ("ascii", "latin-1"):
        res = edgenas(["runs", "list"], with_run, env={"PYTHONIOENCODING": encoding, "COLUMNS": "60"})
        assert res.returncode == 0 and "internal error" not in res.stderr, res.stderr
        assert "nb201" in res.stdout and "evolution" in res.stdout
        shown = edgenas(["runs", "show", json.loads(edgenas(["runs", "list", "--json"], with_run).stdout)[0]["id"]],
                        with_run, env={"PYTHONIOENCODING": encoding})
        assert shown.returncode == 0 and ("r?-1" if encoding == "ascii" else "ré-1") in shown.stdout, shown.stderr


def test_a_deleted_current_folder_is_one_line(tmp_path):
    """Every project command was an internal error (FileNotFoundError), and `list` a fatal abort from torch."""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (f"cd {gone} && rmdir {gone} && env -u EDGENAS_PROJECT PYTHONPATH={ROOT} EDGENAS_NO_PROGRESS=1 "
              f"{sys.executable} -c 'from edgenas.cli import main; main()' ")
    for args in ("runs list", "list"):
        gone.mkdir(exist_ok=True)
        res = subprocess.run(["bash", "-c", script + args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith("error: the current folder no longer exists") and len(res.stderr.splitlines()) == 1


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="needs setpriv to drop root's rights")
def test_a_project_this_user_cannot_write_can_still_be_read(with_run):
    """Reading commands in a read-only project failed: opening the database switched it to WAL mode
    ("attempt to write a readonly database")."""
    prefix = (("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all", "--")
              if os.geteuid() == 0 else ())
    subprocess.run(["chmod", "-R", "a-w", str(with_run)], check=True)
    try:
        listed = edgenas(["runs", "list", "--json"], with_run, prefix=prefix)
        assert listed.returncode == 0, listed.stderr
        (run,) = json.loads(listed.stdout)
        assert edgenas(["runs", "show", run["id"]], with_run, prefix=prefix).returncode == 0
        assert not [p.name for p in (with_run / ".edgenas").iterdir() if p.name.endswith(("-wal", "-shm"))]
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(with_run)], check=True)



_DROP_ROOT = (("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all", "--")
              if os.geteuid() == 0 else ())
_KILLED_WRITER = ("import os, sqlite3, sys\n"
                  "con = sqlite3.connect(sys.argv[1])\n"
                  "con.execute('PRAGMA wal_autocheckpoint = 0')\n"
                  "con.execute(\"UPDATE runs SET strategy = 'in-the-wal'\")\n"
                  "con.commit()\n"
                  "os._exit(0)\n")  # no close, no checkpoint: the change stays in the -wal file, as after a kill


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="needs setpriv to drop root's rights")
def test_a_read_only_project_whose_changes_are_still_in_the_wal_shows_them_or_says_it_cannot(with_run):
    """A read-only project's database was opened as immutable, which reads the file without its -wal: a change
    its writer committed and left there (killed before a checkpoint) was missing, with no error."""
    (db,) = (with_run / ".edgenas").glob("*.db")
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db)], check=True, timeout=60)
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    assert wal.stat().st_size > 0 and shm.is_file()
    subprocess.run(["chmod", "-R", "a-w", str(with_run)], check=True)
    try:
        listed = edgenas(["runs", "list", "--json"], with_run, prefix=_DROP_ROOT)
        assert listed.returncode == 0, listed.stderr
        assert [r["strategy"] for r in json.loads(listed.stdout)] == ["in-the-wal"]
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(with_run)], check=True)
    shm.unlink()  # without its -shm file, SQLite cannot read the -wal in a folder it cannot write: refused
    before = {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()}
    subprocess.run(["chmod", "-R", "a-w", str(with_run)], check=True)
    try:
        res = edgenas(["runs", "list"], with_run, prefix=_DROP_ROOT)
        assert res.returncode == 6 and len(res.stderr.splitlines()) == 1, res.stderr  # a database error
        assert f"has changes in {wal.name} that SQLite cannot read" in res.stderr, res.stderr
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(with_run)], check=True)
    assert {p.name: p.read_bytes() for p in db.parent.iterdir() if p.is_file()} == before

def test_a_database_url_that_keeps_nothing_is_refused(fresh, cli, monkeypatch):
    """`sqlite://` (in memory) was accepted: a search recorded into it, and it was gone when the command ended."""
    one_line_error(cli("runs", "list", "--db", "sqlite://"), "in-memory database")
    monkeypatch.setenv("EDGENAS_DB", "sqlite:///:memory:")
    one_line_error(cli(*SEARCH, "--out", "r"), "in-memory database")
    assert not (fresh / "r").exists()


def test_deploy_refuses_a_bad_database_url_before_measuring(proj, cli, tmp_path, monkeypatch):
    """`EDGENAS_DB=notaurl edgenas deploy ...` measured the model on the device (minutes on a board), then
    refused the URL and kept nothing."""
    from tests.cli.test_bad_input import good_arch

    monkeypatch.setenv("EDGENAS_DB", "notaurl")
    one_line_error(cli("deploy", "local", str(good_arch(tmp_path)), "--out", str(tmp_path / "exp")),
                   "'notaurl' is not a database URL")
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("damage", ["not a database", "cut short"])
def test_deploy_refuses_a_damaged_database_before_exporting_or_measuring(proj, cli, tmp_path, damage):
    """A deploy into a damaged database exported, pushed and measured the model, and only then refused the
    database (the measurement lost): it is refused first, and nothing is made, -wal and -shm files included."""
    from tests.cli.test_bad_input import good_arch

    arch = good_arch(tmp_path)
    db = proj / ".edgenas" / "edgenas.db"
    if damage == "cut short":
        assert cli("db", "upgrade").code == 0
        with open(db, "r+b") as f:
            f.truncate(100)
    else:
        db.parent.mkdir(exist_ok=True)
        db.write_text("hello\n")
    before = sorted(p.relative_to(proj) for p in proj.rglob("*"))
    one_line_error(cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp")),
                   f"database sqlite:///{db} is damaged")
    assert not (tmp_path / "exp").exists() and sorted(p.relative_to(proj) for p in proj.rglob("*")) == before


def test_tables_keep_their_values_when_piped_or_narrow(with_run, cli, monkeypatch):
    """Piped (80 columns) or narrow, `runs list` cut the values: `nb2…`, `evo…`, `ras…`."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(with_run))
    monkeypatch.setenv("COLUMNS", "50")
    text = "".join(cli("runs", "list").out.split())
    assert "nb201" in text and "evolution" in text and "raspi4_ms<=20ms" in text.replace("│", "")


def test_a_run_folder_name_this_locale_cannot_spell_still_gets_an_id(tmp_path):
    """Under a non-UTF-8 file-system encoding a folder name's bytes arrive as surrogates: hashing them for
    the run id was an internal error after the whole run was written."""
    from edgenas.search.record import run_id_for

    odd = tmp_path / "r\udcc3\udca9-2"
    assert len(run_id_for(odd, {"space": "nb201"})) == 12


def test_a_confirmation_with_stdin_closed_is_one_line(monkeypatch):
    """`device trust NAME 0<&-` (stdin closed): input() raised "lost sys.stdin", an internal error."""
    from edgenas.cli.cmd_device import _confirm
    from edgenas.errors import InputError

    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="the input is not a terminal") as exc:
        _confirm("Trust this key?", "--fingerprint")
    assert "--yes" in exc.value.hint


def test_python_dash_m_edgenas_is_the_cli(tmp_path):
    """``python -m edgenas`` was "No module named edgenas.__main__"."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-m", "edgenas", "search", "--space", "nope"], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2 and "unknown search space" in res.stderr.lower() and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []
    res = subprocess.run([sys.executable, "-m", "edgenas", "search", "--bogus"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 2 and "(see: edgenas search --help)" in res.stderr, res.stderr  # it said "-m edgenas"


def test_a_path_that_is_not_utf8_text_is_refused_before_anything_runs(tmp_path):
    """A search into a folder whose name is not UTF-8 text (bytes of another encoding, or any non-ASCII name
    under LC_ALL=C with PYTHONUTF8=0) ran to the end and then failed to record itself (exit 70); a table so
    named did the same, a report of such a folder was exit 70, and a profile in such a project blamed the
    device ("onnxruntime cannot load"). Each is now one line, exit 2, before anything is written."""
    project = tmp_path / "proj"
    project.mkdir()
    odd_table = os.fsencode(project) + b"/tab\xff.csv"
    os.symlink(TABLE, odd_table)
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(project), EDGENAS_NO_PROGRESS="1")

    def run(args, *, cwd=project, **extra):
        return subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", *args], cwd=cwd,
                              env={**env, **extra}, capture_output=True, timeout=300)

    cases = [
        ([*SEARCH, "--out", b"runs/bad\xff"], {}),
        ([*SEARCH, "--out", "runs/café"], {"LC_ALL": "C", "PYTHONUTF8": "0"}),
        ([a if a != str(TABLE) else odd_table for a in SEARCH] + ["--out", "runs/ok"], {}),
        (["report", b"runs/bad\xff"], {}),
        (["search", "--resume", b"runs/bad\xff"], {}),
    ]
    for args, extra in cases:
        res = run(args, **extra)
        err = res.stderr.decode("utf-8", "replace")
        assert res.returncode == 2 and "not UTF-8 text" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(project)) == [b"tab\xff.csv".decode("utf-8", "surrogateescape")]
    odd_project = os.fsencode(tmp_path) + b"/proj\xc3\xa9"
    os.mkdir(odd_project)
    res = run(["profile", "local", "--space", "mbv3-tiny"], cwd=odd_project, EDGENAS_PROJECT="", LC_ALL="C",
              PYTHONUTF8="0")
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2 and "the project folder" in err and "not UTF-8 text" in err, err
    assert os.listdir(odd_project) == []


def _closed(args: str, project: Path, redirect: str, env: str = "") -> subprocess.CompletedProcess:
    """``edgenas ARGS`` from a shell with ``redirect`` (``>&-`` closes stdout: Python has no sys.stdout)."""
    script = (f"{env} PYTHONPATH={ROOT} EDGENAS_PROJECT={project} EDGENAS_NO_PROGRESS=1 "
              f"{sys.executable} -c 'from edgenas.cli import main; main()' {args} {redirect}")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)


def test_columns_zero_still_prints(tmp_path):
    """rich takes an all-digit COLUMNS as the width and prints nothing at 0: every line, the error included."""
    for columns in ("0", "00", "1", "abc", "-3", "99999"):
        res = edgenas(["lut", "show", "nope.json"], tmp_path, env={"COLUMNS": columns, "LINES": "0"})
        assert res.returncode == 2 and res.stderr.startswith("error: LUT file not found"), (columns, res.stderr)
    listed = edgenas(["list"], tmp_path, env={"COLUMNS": "0"})
    assert listed.returncode == 0 and "nb201" in listed.stdout


def test_a_closed_stdout_is_one_line(with_run):
    """`runs list --json >&-` was "internal error: AttributeError: 'NoneType' object has no attribute 'write'"
    (exit 70) and `runs list >&-` printed its table nowhere with exit 0."""
    for args in ("runs list --json", "runs list"):
        res = _closed(args, with_run, ">&-")
        assert res.returncode == 6, (args, res.stderr)
        assert res.stderr.startswith("error: stdout is closed;") and len(res.stderr.splitlines()) == 1, res.stderr
        assert _closed(args, with_run, ">&- 2>&-").returncode == 6  # stderr closed too: still no internal error


def test_edgenas_debug_0_is_off(with_run):
    """`EDGENAS_DEBUG=0` turned debugging on: a traceback and exit 1 where one line and exit 6 were due."""
    for value in ("", "0", "false", "no", "off", "2"):
        res = _closed("runs list", with_run, ">/dev/full", env=f"EDGENAS_DEBUG={value}")
        assert res.returncode == 6 and "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, value
    res = _closed("runs list", with_run, ">/dev/full", env="EDGENAS_DEBUG=Yes")
    assert res.returncode == 1 and "Traceback" in res.stderr
    from edgenas.envflags import env_flag

    os.environ.pop("EDGENAS_TEST_FLAG", None)
    assert not env_flag("EDGENAS_TEST_FLAG")
    for value, on in (("1", True), ("TRUE", True), (" yes ", True), ("0", False), ("", False), ("on", False)):
        os.environ["EDGENAS_TEST_FLAG"] = value
        try:
            assert env_flag("EDGENAS_TEST_FLAG") is on, value
        finally:
            del os.environ["EDGENAS_TEST_FLAG"]


def test_too_few_file_descriptors_is_an_environment_error(tmp_path):
    """EMFILE was an internal error (exit 70) when a search wrote its run, and "cannot read ..." (exit 2, bad
    input) when it read a file: under any low `ulimit -n` a command ends well or with one line and exit 6."""
    import resource

    project = tmp_path / "proj"
    project.mkdir()
    failed = []
    for limit in range(5, 10):
        res = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", *SEARCH, "--out",
                              f"runs/n{limit}"], cwd=project, capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(project),
                                      EDGENAS_NO_PROGRESS="1"),
                             preexec_fn=lambda n=limit: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)))
        assert res.returncode in (0, 6), (limit, res.returncode, res.stderr[-2000:])
        if res.returncode == 6:
            failed.append(limit)
            assert len(res.stderr.splitlines()) == 1 and "too many open files" in res.stderr.lower(), res.stderr
            assert "ulimit -n" in res.stderr
    assert failed  # the limits reach the failures this test is about


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="needs setpriv to drop root's rights")
def test_a_database_this_user_cannot_write_or_read_is_one_clear_error(with_run):
    """The database file, or its folder (where SQLite keeps its journal), read-only: a search is refused before it
    runs, not when it records its result; a row of bad text in a database opened read-only is a damaged row; a file
    it cannot even read is one error, not an internal one."""
    prefix = (("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all", "--")
              if os.geteuid() == 0 else ())
    for target in (with_run / ".edgenas/edgenas.db", with_run / ".edgenas"):
        subprocess.run(["chmod", "a-w", str(target)], check=True)
        try:
            res = edgenas([*SEARCH, "--out", "runs/r2"], with_run, prefix=prefix)
        finally:
            subprocess.run(["chmod", "u+w", str(target)], check=True)
        assert res.returncode == 6 and len(res.stderr.splitlines()) == 1, res.stderr
        assert "is read-only for edgenas (the file or its folder)" in res.stderr, res.stderr
        assert "check their permissions" in res.stderr and not (with_run / "runs/r2").exists()
    con = sqlite3.connect(with_run / ".edgenas/edgenas.db")
    con.execute("UPDATE runs SET space = CAST(X'ff41' AS TEXT)")  # text that is not UTF-8: a damaged row
    con.commit()
    con.close()
    subprocess.run(["chmod", "-R", "a-w", str(with_run / ".edgenas")], check=True)
    try:  # opened read-only, the bad text is the row's damage too, not a failed listing
        res = edgenas(["runs", "list", "--json"], with_run, prefix=prefix)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(with_run / ".edgenas")], check=True)
    assert res.returncode == 0, res.stderr
    assert [(r["status"], "column space" in r["error"]) for r in json.loads(res.stdout)] == [("damaged", True)]
    (with_run / ".edgenas/edgenas.db").chmod(0)
    try:
        res = edgenas(["runs", "list"], with_run, prefix=prefix)
    finally:
        (with_run / ".edgenas/edgenas.db").chmod(0o644)
    assert res.returncode == 6 and len(res.stderr.splitlines()) == 1, res.stderr
    assert "cannot open database" in res.stderr and "unable to open database file" in res.stderr, res.stderr
