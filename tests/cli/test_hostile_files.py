"""Files and flags an attacker or an accident can hand the CLI: links planted in a run folder, device
files that never end, FIFOs, 5,000-digit numbers, options a resumed run would silently ignore. Each is
one error line, exit 2, and nothing created or changed (found by a hostile-input probe, 4 December)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line_error

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
SEARCH = ("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
          "--max-latency-ms", "20", "--strategy", "evolution")


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` -> its bytes (a link: where it points; a database: its rows, as SQLite
    moves them between the file and its write-ahead log when a reader closes it)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.name.endswith(("-shm", "-wal")):
            continue
        if p.suffix == ".db":
            with sqlite3.connect(p) as con:
                out[key] = "\n".join(con.iterdump())
            continue
        out[key] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


@pytest.fixture
def run10(fresh, cli):
    """A finished 10-evaluation run in runs/r (the project holds it and its database)."""
    res = cli(*SEARCH, "--budget", "10", "--out", "runs/r")
    assert res.code == 0, res.err
    return fresh / "runs/r"


def test_a_linked_lock_file_is_refused_and_what_it_points_at_is_untouched(fresh, cli, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("DATA\n")
    (fresh / "runs/new").mkdir(parents=True)
    (fresh / "runs/new/.edgenas.lock").symlink_to(victim)  # the lock's pid used to be written through it
    before = tree(fresh)
    one_line_error(cli(*SEARCH, "--budget", "5", "--out", "runs/new"), "lock file", "symbolic link")
    assert victim.read_text() == "DATA\n" and tree(fresh) == before


def test_a_log_linked_to_a_device_file_or_a_fifo_is_one_line_not_a_hang(run10, cli):
    before = tree(run10)
    log = run10 / "evaluations.jsonl"
    log.unlink()
    log.symlink_to("/dev/zero")  # never ends: read whole, it filled the memory
    for args in (("search", "--resume", str(run10)), ("report", str(run10)), ("runs", "import", str(run10))):
        one_line_error(cli(*args), "evaluations.jsonl", "symbolic link")
    log.unlink()
    os.mkfifo(log)
    for args in (("search", "--resume", str(run10)), ("report", str(run10))):
        one_line_error(cli(*args), "evaluations.jsonl", "not a regular file")
    log.unlink()
    before.pop("evaluations.jsonl")
    assert {k: v for k, v in tree(run10).items() if k != "evaluations.jsonl"} == before


def test_a_renumbered_evaluation_is_a_damaged_log_found_before_anything_runs(run10, cli):
    log = run10 / "evaluations.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[4])
    rec["number"] = 99
    lines[4] = json.dumps(rec)
    log.write_text("\n".join(lines) + "\n")
    before = tree(run10.parent.parent)
    for args in (("search", "--resume", str(run10)), ("runs", "import", str(run10)), ("report", str(run10))):
        one_line_error(cli(*args), "record 5 is evaluation number 99, expected 4", "damaged")
    assert tree(run10.parent.parent) == before  # not "recording it in the database failed" after a rerun


@pytest.mark.parametrize("flags, fragment", [
    (("--min-similarity", "nan"), "--min-similarity must be in [0, 1]"),
    (("--min-similarity", "7"), "--min-similarity must be in [0, 1]"),
    (("--transfer-ratio", "-0.5"), "--transfer-ratio must be in [0, 1]"),
    (("--time-budget", "nan"), "--time-budget must be a number of seconds > 0"),
    (("--epochs", "3"), "--epochs is an option of --strategy darts"),
    (("--eta", "0"), "--eta is an option of --strategy sh or hyperband"),
    (("--data", "/etc/passwd"), "--data is an option of --strategy darts"),
])
def test_a_flag_that_would_be_ignored_or_found_bad_after_the_run_is_refused_first(fresh, cli, flags, fragment):
    one_line_error(cli(*SEARCH, "--budget", "5", "--out", "runs/x", *flags), fragment)
    assert list(fresh.iterdir()) == []


def test_resume_refuses_settings_it_would_ignore(run10, cli):
    before = tree(run10.parent.parent)
    one_line_error(cli("search", "--resume", str(run10), "--max-latency-ms", "5", "--seed", "9", "--out", "o"),
                   "--resume resumes with the settings", "--max-latency-ms, --seed, --out cannot change them")
    one_line_error(cli("search", "--rerun", "abc123", "--strategy", "random"), "--rerun repeats", "--strategy")
    assert tree(run10.parent.parent) == before
    res = cli("search", "--resume", str(run10), "--json")  # what it may still set
    assert res.code == 0 and res.json()["evaluations"] == 10, res.err


def test_reading_commands_create_no_database_where_a_url_names_none(fresh, cli):
    for args in (("runs", "list", "--db", f"sqlite:///{fresh}/sub/x.db"), ("runs", "stale", "--db", "sqlite:///y.db")):
        assert cli(*args).code == 0
    one_line_error(cli("runs", "show", "abcdef", "--db", "sqlite:///z.db"), "no run")
    assert list(fresh.iterdir()) == []


def test_report_replaces_its_own_report_but_no_other_file_unless_forced(run10, cli):
    best = (run10 / "best.json").read_bytes()
    one_line_error(cli("report", str(run10), "--out", str(run10 / "best.json")), "not an edgenas report", "--force")
    assert (run10 / "best.json").read_bytes() == best
    assert cli("report", str(run10)).code == 0 and cli("report", str(run10)).code == 0  # its own: replaced
    assert (run10 / "report.html").read_bytes().startswith(b"<!DOCTYPE html>")
    other = run10.parent / "notes.html"
    other.write_text("<p>mine</p>")
    assert cli("report", str(run10), "--out", str(other), "--force").code == 0
    assert b"generator" in other.read_bytes()[:200]


def test_emoji_codes_in_names_print_as_they_are(fresh, cli, tmp_path):
    table = tmp_path / "t.csv"
    with open(TABLE) as src, open(table, "w") as dst:
        dst.write(src.readline().replace("raspi4_ms", ":x:_ms"))
        dst.write(src.read())
    res = cli("search", "--space", "nb201", "--table", str(table), "--latency-column", ":x:_ms",
              "--max-latency-ms", "50", "--strategy", "random", "--budget", "3", "--out", "runs/e")
    assert res.code == 0, res.err
    assert "budget on :x:_ms" in res.out and "\u274c" not in res.out + res.err


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_text('{"space": "mbv3-tiny", "r": ' + "9" * 5000 + "}"), "a number too large to read"),
    (lambda p: os.mkfifo(p), "not a regular file"),  # used to block in open() for ever
])
def test_an_arch_file_with_a_huge_integer_or_a_fifo_is_one_line(fresh, cli, tmp_path, make, fragment):
    arch = tmp_path / "arch.json"
    make(arch)
    for args in (("export", str(arch)), ("deploy", "local", str(arch))):
        one_line_error(cli(*args), fragment)
    assert list(fresh.iterdir()) == []


def test_a_project_folder_under_a_missing_parent_is_not_created(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "typo/x"))
    one_line_error(cli("runs", "list"), "EDGENAS_PROJECT names", "parent folder does not exist")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "afile"))
    one_line_error(cli("runs", "list"), "not a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # these two were internal errors (RuntimeError)
    for value in (str(tmp_path / "loop"), "~no-such-user-here/x"):
        monkeypatch.setenv("EDGENAS_PROJECT", value)
        one_line_error(cli("device", "list"), "EDGENAS_PROJECT names", "not a usable folder")


def test_supernet_resume_with_nothing_to_resume_is_refused(tmp_path):
    from edgenas.errors import InputError
    from edgenas.supernet.train import TrainConfig, train_supernet

    with pytest.raises(InputError, match="nothing to resume"):
        train_supernet(TrainConfig(space="mbv3-tiny", steps=2, out=str(tmp_path / "sn")), resume=True)
    assert not (tmp_path / "sn").exists()


def test_ctrl_c_during_a_process_pool_search_prints_no_worker_traceback(fresh):
    env = dict(os.environ, EDGENAS_PROJECT=str(fresh), EDGENAS_NO_PROGRESS="1")
    proc = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", *SEARCH, "--budget",
                             "15000", "--executor", "process", "--workers", "2", "--out", "runs/c"], cwd=fresh, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as from a terminal: a test run started in the background inherits Ctrl-C ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = fresh / "runs/c/evaluations.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size > 1_000_000):  # a few thousand evaluations in: the workers
        # are busy (an interrupt in the first seconds did not show the traceback)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "search --resume runs/c" in err


def test_a_search_started_with_ctrl_c_ignored_keeps_its_workers_ignoring_it(fresh):
    # a background job of a script (`edgenas search ... &`) inherits Ctrl-C ignored: the workers must not
    # start to answer it (they would stop their tasks while the search goes on)
    env = dict(os.environ, EDGENAS_PROJECT=str(fresh), EDGENAS_NO_PROGRESS="1")
    proc = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", *SEARCH, "--budget",
                             "3000", "--executor", "process", "--workers", "2", "--out", "runs/c", "--json"],
                            cwd=fresh, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    log = fresh / "runs/c/evaluations.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size > 100_000):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out)["evaluations"] == 3000


def test_a_yaml_alias_bomb_is_read_at_once_not_walked_a_billion_times(fresh, cli):
    # 561 bytes: nine levels of ten aliases each; walked as a tree, 10^9 nodes (the command hung)
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    (fresh / "ofa").mkdir()
    (fresh / "ofa/160_lookup_table.yaml").write_text("\n".join(levels) + "\n")
    t0 = time.monotonic()
    one_line_error(cli("lut", "import-ofa", "ofa"), "entry 'l0' must have count, mean and std")
    assert time.monotonic() - t0 < 20
    assert sorted(p.name for p in fresh.iterdir()) == ["ofa"]


@pytest.mark.parametrize("mean, problem", [
    ("1" + "0" * 400, "a number too large to read"),  # an int no float holds: float() was an OverflowError
    ("9" * 5000, "a number too large to read"),  # over Python's 4,300 digits: a ValueError out of PyYAML
    ('"\\ud800"', "text that is not Unicode"),  # a lone surrogate: a UnicodeEncodeError wherever it was written
])
def test_a_yaml_value_no_table_holds_is_one_error(fresh, cli, mean, problem):
    (fresh / "ofa").mkdir()
    (fresh / "ofa/160_lookup_table.yaml").write_text("Conv-input:160x160x3-output:80x80x24:\n  count: 498\n"
                                                     f"  mean: {mean}\n  std: 0.01\n")
    one_line_error(cli("lut", "import-ofa", "ofa"), f"160_lookup_table.yaml: {problem}")
    assert sorted(p.name for p in fresh.iterdir()) == ["ofa"]


def test_check_depth_still_sees_a_shared_list_nested_too_deep():
    from edgenas.errors import InputError
    from edgenas.limits import check_depth

    shared: list = []
    deep = shared
    for _ in range(60):
        deep.append([])
        deep = deep[0]
    check_depth({"a": shared}, "x")  # 61 levels: fine
    with pytest.raises(InputError, match="nested more than 64"):
        check_depth({"b": [[[[shared]]]], "a": shared}, "x")  # met at level 2 first (stack order), then at 5
    with pytest.raises(InputError, match="more than 10 lists"):
        check_depth([[i] for i in range(20)], "x", max_nodes=10)


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-1", "1e400"])
def test_a_malformed_input_limit_is_one_line_not_an_internal_error(value):
    env = dict(os.environ, EDGENAS_MAX_INPUT_MB=value)
    res = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", "lut", "show", "x.json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"EDGENAS_MAX_INPUT_MB must be a number of MB above 0 and at most 1048576, got '{value}'" in res.stderr


@pytest.mark.parametrize("name, fragment", [  # refused by its kind, whatever its name (a rename was hinted)
    ("model.bin", "is not a regular file, not a model file"),
    ("model.onnx", "is not a regular file, not a model file"),
])
def test_a_fifo_given_to_measure_is_one_line_not_a_hang(fresh, cli, tmp_path, name, fragment):
    model = tmp_path / name
    os.mkfifo(model)  # opened plainly, a FIFO blocks for ever
    one_line_error(cli("measure", "local", str(model)), fragment)
    assert list(fresh.iterdir()) == []


def test_an_out_folder_that_is_a_link_to_nothing_is_named_as_such_by_every_command(fresh, cli, tmp_path):
    os.symlink(tmp_path / "nowhere", fresh / "dangling")  # check_out_dir, shared by export, search, supernet
    before = tree(fresh)
    one_line_error(cli(*SEARCH, "--budget", "5", "--out", "dangling"), "--out dangling",
                   "symbolic link to a missing target")
    one_line_error(cli("supernet", "train", "--space", "mbv3-tiny", "--steps", "1", "--out", "dangling/sn"),
                   "dangling is a symbolic link to a missing target")
    assert tree(fresh) == before


def test_a_fifo_in_an_image_folder_is_one_line_not_a_hang(fresh, cli, tmp_path):
    """torchvision's ImageFolder opened it and waited for a writer for ever."""
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / cls / "0.png")
    os.mkfifo(tmp_path / "imgs" / "a" / "1.png")
    res = cli("supernet", "train", "--space", "mbv3-tiny", "--data", str(tmp_path / "imgs"), "--steps", "1",
              "--out", "sn")
    one_line_error(res, "1.png: not a regular file")
    assert not (fresh / "sn").exists()


def test_hints_give_commands_that_work_as_written(fresh, cli, tmp_path):
    """Hints a user pastes: the resume of a folder whose name needs quoting (it printed `--resume my run`);
    the --llm-* hint (it said to add --llm-share to tpe, which has none); flags nothing reads are refused."""
    import shlex

    out = fresh / "my run"
    assert cli(*SEARCH, "--budget", "3", "--out", str(out)).code == 0
    res = cli(*SEARCH, "--budget", "3", "--out", str(out))
    one_line_error(res, "already holds a search run")
    assert f"edgenas search --resume {shlex.quote(str(out))}" in " ".join(res.err.split())
    again = cli("search", "--resume", str(out))  # the hint's own command works
    assert again.code == 0, again.err
    before = tree(fresh)
    one_line_error(cli(*SEARCH[:-2], "--llm-opt", "temperature=1", "--out", "x"),
                   "--strategy evolution or ri-iwoa with --llm-share, or --strategy llm-evolution")
    one_line_error(cli(*SEARCH[:-2], "--strategy", "random", "--population", "5", "--out", "x"), "has no population")
    one_line_error(cli(*SEARCH, "--workers", "2", "--out", "x"), "--workers needs --executor process or ray")
    assert tree(fresh) == before
    assert cli(*SEARCH[:-2], "--strategy", "tpe", "--population", "8", "--budget", "3", "--warm-start", "auto",
               "--out", "w").code == 0  # with a warm start it sizes the transferred share
