"""``edgenas.quiet``: no traceback from another thread or from paramiko's log, Ctrl-C held off or ignored for a
block, SIGTERM on Ctrl-C's path. Real processes (signal handlers and ``threading.excepthook`` are the process's
own). Found by mutation testing: no test ran a background thread's failure, paramiko's log, ``sigint_ignored``
or ``install_sigterm_handler`` in a process of its own."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a new Python with Ctrl-C at its default (a job started in the background of a non-interactive
    shell, as CI may be, inherits it ignored; Python then installs no KeyboardInterrupt handler)."""
    full = {k: v for k, v in os.environ.items() if k != "EDGENAS_DEBUG"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**full, "PYTHONPATH": str(ROOT), **env},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


THREADS = """
import threading
from edgenas.quiet import install_thread_hook
install_thread_hook()
def boom():
    raise ValueError("bad\\nvalue [red]x[/red]" + "y" * 400)
def bye():
    raise SystemExit(3)
for target, name in ((boom, "worker-1"), (bye, "leaver")):
    t = threading.Thread(target=target, name=name)
    t.start()
    t.join()
threading.excepthook(threading.ExceptHookArgs((KeyError, KeyError("k"), None, None)))
print("main goes on")
"""


def test_a_failed_background_thread_is_one_cut_line_and_a_thread_that_exits_says_nothing():
    res = python(THREADS)
    assert res.returncode == 0 and res.stdout == "main goes on\n", res.stderr
    full = "edgenas: background thread worker-1 stopped: ValueError: bad value [red]x[/red]" + "y" * 400
    assert res.stderr.splitlines() == [f"{full[:300]}… ({len(full) - 300} more characters)",
                                       "edgenas: background thread ? stopped: KeyError: 'k'"]


def test_edgenas_debug_shows_a_background_threads_traceback():
    res = python(THREADS, EDGENAS_DEBUG="1")
    assert res.returncode == 0 and "main goes on" in res.stdout
    assert "Traceback" in res.stderr and "ValueError: bad" in res.stderr and "edgenas: background" not in res.stderr


def test_paramikos_error_log_goes_nowhere_and_is_silenced_once():
    res = python("import logging\nfrom edgenas.quiet import silence_library_logs\n"
                 "silence_library_logs()\nsilence_library_logs()\n"
                 "print(sum(isinstance(h, logging.NullHandler) for h in logging.getLogger('paramiko').handlers))\n"
                 "logging.getLogger('paramiko.transport').error('Exception (client): Error reading SSH banner')\n")
    assert (res.returncode, res.stdout, res.stderr) == (0, "1\n", "")


SIGNALS = """
import os, signal, threading, time
from edgenas.quiet import install_sigterm_handler, on_sigterm, sigint_ignored, signals_held, terminated
steps = []
def kill(sig):
    os.kill(os.getpid(), sig)
    time.sleep(0.2)
"""


def steps(code: str) -> list:
    res = python(SIGNALS + code + "\nprint(repr(steps))\n")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    return ast.literal_eval(res.stdout.strip())


def test_ctrl_c_in_an_ignored_block_is_dropped_and_the_handler_is_back_after_it():
    assert steps("""
with sigint_ignored():
    kill(signal.SIGINT)
    steps.append("block ended")
steps.append(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
try:
    kill(signal.SIGINT)
except KeyboardInterrupt:
    steps.append("interrupted after")
""") == ["block ended", True, "interrupted after"]


def test_sigterm_in_a_block_takes_effect_when_the_block_ends_on_ctrl_cs_path():
    assert steps("""
steps.append(terminated())
install_sigterm_handler()
steps.append(signal.getsignal(signal.SIGTERM) is on_sigterm)
for block in (sigint_ignored, signals_held):
    try:
        with block():
            kill(signal.SIGTERM)
            steps.append("block ended")
    except KeyboardInterrupt:
        steps.append(("interrupted", terminated()))
    steps.append(signal.getsignal(signal.SIGTERM) is on_sigterm)
""") == [False, True, "block ended", ("interrupted", True), True, "block ended", ("interrupted", True), True]


def test_a_held_ctrl_c_is_delivered_after_the_block_unless_it_was_ignored_before():
    assert steps("""
try:
    with signals_held():
        kill(signal.SIGINT)
        steps.append("block ended")
except KeyboardInterrupt:
    steps.append("interrupted")
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job in the background of a non-interactive shell
with signals_held():
    kill(signal.SIGINT)
    steps.append("block ended")
steps.append(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
""") == ["block ended", "interrupted", "block ended", True]


def test_other_threads_and_an_ignored_sigterm_keep_their_handlers():
    assert steps("""
def elsewhere():
    install_sigterm_handler()  # Python sets handlers from the main thread only: it does nothing here
    with sigint_ignored():
        steps.append(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    with signals_held():
        steps.append("held elsewhere")
t = threading.Thread(target=elsewhere)
t.start()
t.join()
steps.append(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
install_sigterm_handler()
steps.append(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
with sigint_ignored():  # an ignored SIGTERM is not taken over by the block either
    kill(signal.SIGTERM)
steps.append((signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, terminated()))
""") == [True, "held elsewhere", True, True, (True, False)]
