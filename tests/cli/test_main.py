"""``edgenas.cli.main``: how each way a command can end reaches the user: a usage error with the command's
``--help``, help for a bare group, Ctrl-C or SIGTERM while waiting on a device, what to do after an
interruption, a full disk or a bug behind stdout, and a stream that is not UTF-8. Found by mutation testing:
these branches of ``main`` were run by slow tests only, or by none."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, line", [
    (("runs", "show"), "error: Missing argument 'run'. (see: edgenas runs show --help)"),
    (("nosuch",), "error: No such command 'nosuch'. (see: edgenas --help)"),
    (("list", "--bogus", "[red]x"), "error: No such option: --bogus (see: edgenas list --help)"),
])
def test_a_usage_error_is_one_line_naming_the_commands_help(fresh, cli, args, line):
    res = cli(*args)
    assert (res.code, res.out, res.err) == (2, "", line + "\n")


def test_a_bare_group_shows_its_help_and_exits_0(fresh, cli):
    res = cli()
    assert res.code == 0 and "Usage: edgenas [OPTIONS] COMMAND [ARGS]..." in res.out + res.err
    assert "--install-completion" not in res.out + res.err  # no shell-completion options
    listed = (res.out + res.err).split("Commands:")[1].split()
    for command in ("profile", "search", "export", "deploy", "measure", "list", "report", "serve", "device", "lut",
                    "fleet", "supernet", "runs", "db"):  # every module registered its commands
        assert command in listed, command
    for group, commands in (("device", {"list", "trust", "info", "add"}), ("fleet", {"status", "refresh"}),
                            ("supernet", {"train", "eval"}), ("db", {"upgrade"}),
                            ("lut", {"list", "pull", "show", "calibrate", "import-ofa"}),
                            ("runs", {"list", "show", "compare", "import", "stale"})):
        res = cli(group)
        assert res.code == 0 and f"Usage: edgenas {group}" in res.out + res.err
        assert commands <= set((res.out + res.err).split("Commands:")[1].split())
    assert list(fresh.iterdir()) == []


def test_an_error_is_printed_as_text_with_its_hint(fresh, cli):
    res = cli("runs", "show", "[bold]x[/bold]")  # markup in an echoed value is text
    assert res.code == 2 and res.err == ("error: '[bold]x[/bold]' is not a run id (run ids are hex strings; "
                                         "see: edgenas runs list)\n")


def test_a_full_disk_behind_stdout_is_one_line_and_a_bug_one_line_unless_debugging(fresh, cli, monkeypatch):
    full = open("/dev/full", "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", full)
    res = cli("device", "list", "--json")
    with pytest.raises(OSError):  # what is left in its buffer cannot be written either (the file is closed)
        full.close()
    assert res.code == 6 and res.err.startswith("error: cannot write a file: the disk is full"), res.err
    assert len(res.err.splitlines()) == 1
    closed = open(os.devnull, "w", encoding="utf-8")
    closed.close()  # writing to it is a ValueError: not the user's fault, an internal error
    monkeypatch.setattr(sys, "stdout", closed)
    res = cli("device", "list", "--json")
    assert res.code == 70 and res.err == ("internal error: ValueError: I/O operation on closed file. (re-run with "
                                          "EDGENAS_DEBUG=1 for a traceback and report it)\n")
    monkeypatch.setenv("EDGENAS_DEBUG", "1")
    with pytest.raises(ValueError, match="closed file"):
        cli("device", "list", "--json")


def test_what_to_do_after_an_interruption_depends_on_the_command(monkeypatch):
    from edgenas.cli import _interrupted_hint

    kept = "the files written are complete; run it again to go on (the blocks already timed are kept)"
    assert _interrupted_hint(["profile", "pi", "--space", "nb201"]) == kept
    assert _interrupted_hint(["--json", "fleet", "refresh", "--space", "nb201"]) == kept
    assert _interrupted_hint(["device", "add", "pi", "--fewshot", "5"]) == \
        "the architectures measured so far are kept; run it again to measure the rest and fit the model"
    assert _interrupted_hint(["supernet", "train", "--out", "sn"]).startswith("the checkpoints written are complete")
    plain = "the files written are complete; run the command again"
    for argv in (["fleet", "status"], ["device", "info", "pi"], ["lut", "profile"], ["runs", "profile"], []):
        assert _interrupted_hint(argv) == plain, argv
    monkeypatch.setattr(sys, "argv", ["edgenas", "profile", "local"])
    assert _interrupted_hint(None) == kept


@pytest.mark.parametrize("sig, code, what", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_while_a_device_keeps_silent_is_one_line(tmp_path, sig, code, what):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles" / "mute.toml").write_text(
            f'[device]\nname = "mute"\nhost = "127.0.0.1"\nport = {server.getsockname()[1]}\nconnect_timeout_s = 60\n')
        env = dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(tmp_path), EDGENAS_NO_PROGRESS="1")
        env.pop("EDGENAS_DEBUG", None)
        p = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", "device", "info", "mute"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        conn, _ = server.accept()  # the command waits for an SSH banner that never comes
        with conn:
            time.sleep(0.3)
            p.send_signal(sig)
            out, err = p.communicate(timeout=60)
    assert (p.returncode, out, err) == (code, "", f"error: {what}; the files written are complete; run the command "
                                                  "again\n")


def test_a_stream_that_is_not_utf8_prints_what_it_can(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.toml").write_text('[device]\nname = "bad"\nruntime = "réal"\n', encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(tmp_path), PYTHONIOENCODING="ascii")
    res = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", "device", "list"],
                         cwd=tmp_path, env=env, capture_output=True, encoding="ascii", timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "runtime 'r?al' is not one of" in res.stdout


def test_a_read_that_fails_for_want_of_file_descriptors_is_said_as_such(fresh, cli):
    """A reader says "cannot read ..." (exit 2, bad input) for any OSError: ``main`` tells EMFILE apart."""
    import resource

    (fresh / "t.json").write_text("{}")
    first = cli("lut", "show", "t.json")  # everything the command imports is loaded now
    assert first.code == 2 and "too many open files" not in first.err
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor left to open
    try:
        res = cli("lut", "show", "t.json")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (res.code, res.out) == (6, "") and res.err.startswith("error: too many open files"), res.err
    assert "(raise the limit on open files (ulimit -n), or close other programs)" in res.err
    assert len(res.err.splitlines()) == 1


def test_a_closed_stdout_is_one_line_before_the_command_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGENAS_PROJECT=str(tmp_path))
    res = subprocess.run(["bash", "-c", f"{sys.executable} -c 'from edgenas.cli import main; main()' device list >&-"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 6 and res.stderr == ("error: stdout is closed; the command has nowhere to print its "
                                                  "results (run it with stdout open; to discard the output, "
                                                  "redirect it: >/dev/null)\n"), res.stderr


HOOKS = """
import logging, signal, threading
from edgenas.cli import main
from edgenas.quiet import on_sigterm
try:
    main(["device", "list", "--json"])
except SystemExit as exc:
    assert not exc.code, exc.code
logging.getLogger("paramiko.transport").error("Exception (client): Error reading SSH banner")
t = threading.Thread(target=lambda: 1 / 0, name="late")
t.start()
t.join()
print(signal.getsignal(signal.SIGTERM) is on_sigterm)
"""


def _python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("EDGENAS_DEBUG", "EDGENAS_MAX_INPUT_MB")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**full, "PYTHONPATH": str(ROOT), **env})


def test_main_quiets_paramiko_and_other_threads_and_takes_sigterm(tmp_path):
    res = _python(HOOKS, EDGENAS_PROJECT=str(tmp_path))
    assert res.stdout.endswith("]\nTrue\n"), res.stdout + res.stderr
    assert res.stderr == "edgenas: background thread late stopped: ZeroDivisionError: division by zero\n"


def test_a_malformed_input_limit_is_one_line_before_anything_runs(tmp_path):
    res = _python("from edgenas.cli import main; main()", "device", "list", EDGENAS_PROJECT=str(tmp_path),
                  EDGENAS_MAX_INPUT_MB="lots")
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: ") and "EDGENAS_MAX_INPUT_MB" in res.stderr


def test_edgenas_debug_shows_a_bug_as_a_plain_traceback(tmp_path):
    """Not typer's framed one, which lists every local variable of every frame (a token among them)."""
    code = ("import os, sys\nclosed = open(os.devnull, 'w')\nclosed.close()\nsys.stdout = closed\n"
            "from edgenas.cli import main\nmain()")
    res = _python(code, "device", "list", "--json", EDGENAS_PROJECT=str(tmp_path), EDGENAS_DEBUG="1")
    assert res.returncode == 1 and res.stderr.startswith("Traceback (most recent call last):"), res.stderr
    assert "ValueError: I/O operation on closed file." in res.stderr and "╭" not in res.stderr


def test_a_command_that_ends_with_an_exit_code_exits_with_it(fresh, cli):
    """``fleet refresh`` with a failed device ends with exit 3 (typer returns the code to ``main``)."""
    with socket.socket() as s:  # a port nothing listens on (once closed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (fresh / "profiles").mkdir()
    (fresh / "profiles" / "gone.toml").write_text(f'[device]\nname = "gone"\nhost = "127.0.0.1"\nport = {port}\n')
    (fresh / "profiles" / "fleet.toml").write_text('[fleet]\ndevices = ["gone"]\n')
    res = cli("fleet", "refresh", "--space", "mbv3-tiny", "--json")
    assert res.code == 3 and [r["status"] for r in res.json()] == ["failed"], res.err


def test_an_os_error_that_is_no_disk_problem_is_an_internal_error(tmp_path):
    """Only the disk's and the file system's errors (a full disk, a read-only one, permissions) are the user's:
    another OSError (here writing to a descriptor closed under Python) is a bug, one line and exit 70."""
    code = "import os\nos.close(1)\nfrom edgenas.cli import main\nmain()"
    res = _python(code, "device", "list", "--json", EDGENAS_PROJECT=str(tmp_path))
    assert res.returncode == 70 and res.stderr == ("internal error: OSError: [Errno 9] Bad file descriptor (re-run "
                                                   "with EDGENAS_DEBUG=1 for a traceback and report it)\n"), res.stderr


def test_main_prints_to_a_stream_without_an_encoding(fresh, cli, monkeypatch):
    """A Python caller may collect the output in an ``io.StringIO`` (no encoding, nothing to reconfigure)."""
    import io
    import json

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    res = cli("device", "list", "--json")
    assert res.code == 0 and [r["name"] for r in json.loads(buffer.getvalue())] == ["local"], res.err
