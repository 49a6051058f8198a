"""Issue 10: ordinary faults are user errors: one clear line, a distinct non-zero exit, nothing
created or changed on disk; no traceback from any thread. Real CLI (in-process ``cli`` fixture, or a
real subprocess where signals, resource limits or other threads matter), real files, real agent."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgenas.errors import InputError, OutputError, SearchInterrupted
from tests.procs import running

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"
TINY = {"space": "mbv3-tiny", "schema": 1, "ks": [3] * 4, "e": [3] * 4, "d": [2, 2], "r": 16}


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


def edgenas_proc(args, cwd, *, fsize: int | None = None, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(cwd), EDGENAS_NO_PROGRESS="1")

    def limit() -> None:
        # a command started in the background by a non-interactive shell (nohup ... &, as a CI job may be)
        # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler; the tests send
        # Ctrl-C as a terminal does, to a command whose SIGINT is at its default
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if fsize is not None:  # writes past fsize bytes fail with EFBIG, as on a full disk
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
                            **kw)


def run_edgenas(args, cwd, timeout=240, **kw) -> tuple[int, str, str]:
    p = edgenas_proc(args, cwd, **kw)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


@pytest.fixture
def arch(proj) -> Path:
    path = proj / "arch.json"
    path.write_text(json.dumps(TINY))
    return path


# ------------------------------------------------------------------ output paths
def test_out_that_is_a_file_or_under_a_file_or_unwritable(cli, proj, arch, snapshot):
    (proj / "afile").write_text("keep me")
    before = snapshot(proj)
    for out in (proj / "afile", proj / "afile" / "sub", Path("/sys/edgenas-test-out/x")):
        for args in (("export", str(arch), "--out", str(out)),
                     ("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "3", "--out", str(out))):
            res = cli(*args)
            assert res.code == OutputError.exit_code, (args, res.err)
            assert one_line(res.err) and "internal error" not in res.err and str(out) in res.err
    assert snapshot(proj) == before
    assert not Path("/sys/edgenas-test-out").exists()


@pytest.mark.slow
def test_disk_full_during_export_leaves_nothing(proj, arch, snapshot):
    before = snapshot(proj)
    code, _, err = run_edgenas(["export", str(arch), "--out", str(proj / "new" / "exp")], proj, fsize=8000)
    assert code == OutputError.exit_code, err
    assert one_line(err) and "disk is full" in err
    assert not (proj / "new").exists() and snapshot(proj) == before


@pytest.mark.slow
def test_disk_full_during_search_stays_resumable(tmp_path):
    run = tmp_path / "run"
    args = ["search", "--space", "nb201", "--table", str(TABLE), "--strategy", "random", "--budget", "300",
            "--seed", "1", "--out", str(run), "--json"]
    code, _, err = run_edgenas(["db", "upgrade"], tmp_path)  # the experiment database exists before the disk fills
    assert code == 0, err
    # 64 kB: above SQLite's 32 kB shared-memory file, below what 300 evaluations write
    code, _, err = run_edgenas(args, tmp_path, fsize=64_000)
    assert code == OutputError.exit_code, err
    assert one_line(err) and "disk is full" in err and f"edgenas search --resume {run}" in err
    n_before = len((run / "evaluations.jsonl").read_text().splitlines())
    assert 0 < n_before < 300
    code, out, err = run_edgenas(["search", "--resume", str(run), "--json"], tmp_path)
    assert code == 0, err
    assert json.loads(out)["evaluations"] == 300


def test_a_search_that_cannot_write_its_first_file_leaves_no_folder(cli, tmp_path, monkeypatch):
    """A full disk at the run's first file (request.json): exit 6, but the --out folder stayed behind holding
    only the run lock it had taken, against "no file or folder created"."""
    import errno

    from edgenas.search import launch

    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    real = launch.atomic_write_json

    def full(path, obj, **kw):
        if Path(path).name == "request.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj, **kw)

    monkeypatch.setattr(launch, "atomic_write_json", full)
    res = cli("search", "--space", "nb201", "--table", str(TABLE), "--strategy", "random", "--budget", "3",
              "--out", str(tmp_path / "new" / "run"))
    assert res.code == OutputError.exit_code and one_line(res.err) and "disk is full" in res.err, res.err
    assert not (tmp_path / "new").exists()


def _table_run(cli, tmp_path, monkeypatch):
    """A finished 3-evaluation table search, ``tmp_path / "run"``, in the project ``tmp_path``."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    run = tmp_path / "run"
    res = cli("search", "--space", "nb201", "--table", str(TABLE), "--strategy", "random", "--budget", "3",
              "--out", str(run))
    assert res.code == 0, res.err
    return run


def test_a_report_under_a_file_and_a_log_that_cannot_be_opened_are_said_as_such(cli, tmp_path, monkeypatch):
    """``report --out afile/x.html`` said "File exists (afile)"; a log the run cannot append to (a read-only or
    immutable file: EPERM) was "the folder is damaged; move the file aside" (exit 2), though the file was fine."""
    import errno

    run = _table_run(cli, tmp_path, monkeypatch)
    (tmp_path / "afile").write_text("keep me")
    res = cli("report", str(run), "--out", str(tmp_path / "afile" / "x.html"))
    assert res.code == OutputError.exit_code and one_line(res.err), res.err
    assert "lies under" in res.err and "which is a file" in res.err
    real_open = os.open

    def immutable(path, flags, *a):
        if str(path).endswith("evaluations.jsonl") and flags & os.O_APPEND:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", immutable)
    (run / "checkpoint.json").unlink()  # an interrupted run, to be resumed
    res = cli("search", "--resume", str(run))
    assert res.code == OutputError.exit_code and one_line(res.err), res.err
    assert "Operation not permitted" in res.err and "damaged" not in res.err


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(f.relative_to(root)): (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(root.rglob("*"))
            if f.is_file()}


#: ``edgenas ARGS`` in a process whose opens of an ``evaluations.jsonl`` to read are refused as the kernel refuses a
#: file this user may not read (chmod does not stop root, whom the tests may run as)
_UNREADABLE_LOG = """
import errno, os, sys
real_open = os.open
def unreadable(path, flags, *a):
    if str(path).endswith("evaluations.jsonl") and not flags & (os.O_WRONLY | os.O_RDWR):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_open(path, flags, *a)
os.open = unreadable
from edgenas.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("args", [("report", "{run}", "--out", "{tmp}/r.html"), ("search", "--resume", "{run}")])
def test_a_log_this_user_may_not_read_is_unreadable_input_not_an_unwritable_one(tmp_path, args):
    """A run's ``evaluations.jsonl`` this user may not read (mode 000, another user's run) was "cannot write the
    log ...: Permission denied (check the path and its permissions ...)", exit 6, from ``report`` too, which writes
    no log: opening a log to read it took the appender's errors. A refused resume also rewrote the run's lock file
    (its pid and time). Processes of their own: in-process database connections change the -wal and -shm files
    when they are collected."""
    run = tmp_path / "run"
    code, _, err = run_edgenas(["search", "--space", "nb201", "--table", str(TABLE), "--strategy", "random",
                                "--budget", "3", "--out", str(run)], tmp_path)
    assert code == 0, err
    (run / "checkpoint.json").unlink()  # an interrupted run, to be resumed
    before = _tree(tmp_path)
    res = subprocess.run([sys.executable, "-c", _UNREADABLE_LOG, *(a.format(run=run, tmp=tmp_path) for a in args)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(tmp_path)))
    assert res.returncode == InputError.exit_code and one_line(res.stderr), res.stderr
    said = " ".join(res.stderr.split())
    assert f"cannot read the log {run}/evaluations.jsonl: permission denied" in said
    assert "cannot write" not in said and "give this user read permission" in said
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("name, says", [
    ("best.json", "a folder stands where the file goes: move it away, then resume with: edgenas search --resume"),
    ("evaluations.jsonl", "evaluations.jsonl is not a regular file"),
])
def test_a_folder_where_a_run_file_goes_is_not_called_a_full_disk(cli, tmp_path, monkeypatch, name, says):
    """A folder named like a run file was "cannot write the run folder ...: Is a directory (free some space,
    then resume ...)": EISDIR counted as a full disk, and the log's folder was read with a bare fdopen."""
    run = _table_run(cli, tmp_path, monkeypatch)
    (run / name).unlink()
    (run / name).mkdir()
    res = cli("search", "--resume", str(run))
    assert res.code in (InputError.exit_code, OutputError.exit_code) and one_line(res.err), res.err
    assert says in " ".join(res.err.split()) and "free some space" not in res.err


# ------------------------------------------------------------------ numbers
def test_negative_seed_and_measure_change_nothing(cli, proj, arch, snapshot):
    before = snapshot(proj)
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--seed", "-1", "--out", str(proj / "r"))
    assert res.code == InputError.exit_code and one_line(res.err) and "--seed" in res.err
    res = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--measure", "-3")
    assert res.code == InputError.exit_code and one_line(res.err) and "--measure" in res.err
    res = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--seed", "-5", "--measure", "1")
    assert res.code == InputError.exit_code and "--seed" in res.err
    res = cli("supernet", "train", "--space", "mbv3-tiny", "--steps", "1", "--seed", "-1", "--out", str(proj / "sn"))
    assert res.code == InputError.exit_code and one_line(res.err) and "--seed" in res.err
    assert snapshot(proj) == before and not (proj / "measurements").exists() and not (proj / "r").exists()
    assert not (proj / "sn").exists()


def test_budget_beyond_a_finite_space_is_capped_and_said(cli, proj):
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "1000000000000",
              "--time-budget", "1", "--evaluator", "params", "--out", str(proj / "r"), "--json")
    assert res.code == 0, res.err
    assert "capped at 1024" in res.err
    assert json.loads((proj / "r" / "config.json").read_text())["budget_evals"] == 1024
    # stopped by its time budget, it goes on for as long again when asked (it could not be continued)
    n = len((proj / "r" / "evaluations.jsonl").read_text().splitlines())
    more = cli("search", "--resume", str(proj / "r"), "--time-budget", "1", "--json")
    assert more.code == 0, more.err
    assert len((proj / "r" / "evaluations.jsonl").read_text().splitlines()) > n
    bad = cli("search", "--resume", str(proj / "r"), "--time-budget", "-1")
    assert bad.code == 2 and "--time-budget must be a number of seconds > 0" in bad.err


# ------------------------------------------------------------------ input files
def test_deep_and_huge_input_files(cli, proj, snapshot):
    deep = proj / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    huge = proj / "huge.json"
    with open(huge, "w") as fh:
        fh.write('{"space": "mbv3-tiny", "pad": "')
        fh.write("x" * (60 << 20))
        fh.write('"}')
    before = snapshot(proj)
    res = cli("export", str(deep))
    assert res.code == InputError.exit_code and one_line(res.err) and "nested too deeply" in res.err
    t0 = time.monotonic()
    res = cli("export", str(huge))
    assert res.code == InputError.exit_code and one_line(res.err) and "over the 1 MB limit" in res.err
    assert time.monotonic() - t0 < 5
    res = cli("lut", "show", str(deep))
    assert res.code == InputError.exit_code and "nested" in res.err
    assert snapshot(proj) == before


def test_truncated_local_lut_says_profile_force_rebuilds_it(cli, proj):
    from edgenas.fleet.profiler import profile_device
    from edgenas.project import Project

    from tests.protocols import FAST  # noqa: I001

    (lut,) = (proj / "luts" / "local").glob("mbv3-tiny-*.json")
    lut.write_bytes(lut.read_bytes()[:200])
    res = cli("profile", "local", "--space", "mbv3-tiny")
    assert res.code == InputError.exit_code and one_line(res.err)
    assert "damaged" in res.err and "edgenas profile local --space mbv3-tiny --force" in res.err
    assert "fix the JSON syntax" not in res.err
    res = profile_device(Project(proj), "local", "mbv3-tiny", force=True, protocol=FAST)
    assert res.n_entries == 22 and json.loads(lut.read_text())["entries"]


def test_malformed_yaml_inventory_gives_line_and_column(cli, proj):
    inv = proj / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    a: {ansible_host: x\n    b:\n")
    res = cli("fleet", "status", "--inventory", str(inv))
    assert res.code == InputError.exit_code and one_line(res.err)
    assert "line 4 column" in res.err and str(inv) in res.err


# ------------------------------------------------------------------ interrupts and threads
def _wait_for(cond, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)
    assert cond(), "the command did not get there in time"


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, what", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_in_a_profile_is_one_line_saying_what_to_do(fresh, sig, code, what):
    """typer turned Ctrl-C in any command but a search into a silent exit 130 (edgenas' own line never ran),
    and SIGTERM ended the process on the spot, with no line and no cleanup."""
    p = edgenas_proc(["profile", "local", "--space", "mbv3-small"], fresh)
    _wait_for(lambda: any((fresh / ".edgenas" / "blocks").rglob("*.onnx")))
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code and "Traceback" not in err, err
    assert err.strip().splitlines() == [f"error: {what}; the files written are complete; run it again to go on "
                                        "(the blocks already timed are kept)"], err


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, SearchInterrupted.exit_code), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_during_search_says_how_to_resume_and_indexes_the_run(proj, sig, code):
    """SIGTERM skipped the cleanup Ctrl-C runs: the run was missing from the experiment database."""
    run = proj / "run"
    p = edgenas_proc(["search", "--space", "mbv3-tiny", "--device", "local", "--budget", "200", "--out", str(run)],
                     proj)
    log = run / "evaluations.jsonl"
    _wait_for(lambda: log.exists() and log.read_text().count("\n") >= 2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    lines = err.strip().splitlines()  # notes (which LUT) may come first; the interrupt is one last line
    assert "Traceback" not in err and lines[-1].startswith("error: search interrupted")
    assert f"resume with: edgenas search --resume {run}" in lines[-1]
    assert (run / "request.json").exists()
    listed = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", "runs", "list", "--json"],
                            cwd=proj, env=dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(proj)),
                            capture_output=True, text=True, timeout=120)
    assert [r["status"] for r in json.loads(listed.stdout)] == ["stopped"], listed.stdout + listed.stderr


_POOL_THEN_SLEEP = """
import os, sys, time
from edgenas.evaluate.executor import ProcessExecutor
ex = ProcessExecutor(workers=2)
ex._start_workers()
print(" ".join(str(p) for p in ex._pool._processes), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_process_pool_workers_end_when_the_command_is_killed():
    """kill -9 (or the OOM killer) on the command left its workers, adopted by init, running for good."""
    p = subprocess.Popen([sys.executable, "-c", _POOL_THEN_SLEEP], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 2

    assert all(running(pid) for pid in pids)
    p.kill()
    p.wait(30)
    _wait_for(lambda: not any(running(pid) for pid in pids), timeout=20)


def test_port_that_never_speaks_ssh_gives_one_line_every_time(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles" / "mute.toml").write_text(
            f'[device]\nname = "mute"\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout_s = 1\n')
        procs = [edgenas_proc(["device", "info", "mute"], tmp_path) for _ in range(4)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 3 and one_line(err), err
        assert "no SSH handshake" in err
