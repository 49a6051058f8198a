"""``edgenas serve`` out of file descriptors: the 503, and one rate-limited line per kind of loop error."""

from __future__ import annotations

import errno
import importlib
import io
import json
import os
import resource
import sys

import pytest

from edgenas.api import fdlimit
from edgenas.errors import EdgenasError, InputError

pytest.importorskip("fastapi", reason="needs fastapi (the test extra)")


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch):
    """Each test starts with no notice printed yet."""
    monkeypatch.setattr(fdlimit, "_last", {})


def _age(kind: str, seconds: float) -> None:
    """As if the last notice of ``kind`` was printed ``seconds`` ago (those held back since are kept)."""
    when, held = fdlimit._last[kind]
    fdlimit._last[kind] = (when - seconds, held)


def test_a_notice_is_printed_once_then_held_back_and_counted(capsys):
    fdlimit.notice("k", "first")
    assert capsys.readouterr().err == "edgenas serve: first\n"
    for _ in range(3):
        fdlimit.notice("k", "again")
    fdlimit.notice("other", "another kind")  # kinds are limited each on its own
    assert capsys.readouterr().err == "edgenas serve: another kind\n"
    _age("k", 9.0)
    fdlimit.notice("k", "still held back")
    assert capsys.readouterr().err == ""
    _age("k", 1.5)  # 10.5 s since the first: printed, with the count of those held back
    fdlimit.notice("k", "later")
    assert capsys.readouterr().err == "edgenas serve: later (4 more like it since the last)\n"
    _age("k", 10.5)
    fdlimit.notice("k", "quiet since")
    assert capsys.readouterr().err == "edgenas serve: quiet since\n"


def test_a_notice_on_a_closed_stderr_is_dropped(monkeypatch):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    fdlimit.notice("k", "nobody reads this")  # no exception: the answer to the request still goes out
    monkeypatch.setattr(sys, "stderr", None)
    fdlimit.notice("j", "nor this")


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE])
def test_out_of_descriptors_is_a_503(code, capsys):
    try:
        try:
            raise OSError(code, os.strerror(code))
        except OSError:
            raise InputError("cannot read run record") from None  # the cause kept as its context
    except InputError as exc:
        r = fdlimit.response_for(exc)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert json.loads(r.body) == fdlimit.ERROR
    err = capsys.readouterr().err
    assert err == "edgenas serve: too many open files: requests get 503 until some close (raise the limit: ulimit -n)\n"


@pytest.mark.parametrize("exc", [ValueError("a bug"), InputError("bad input"), ImportError("cannot import name x"),
                                 OSError(errno.EACCES, "Permission denied")])
def test_other_errors_are_not_a_503_while_files_open(exc, capsys):
    assert fdlimit.response_for(exc) is None
    assert capsys.readouterr().err == ""


def _while_out_of_descriptors(call):
    """``call()`` while three quarters of the limit on open files are in use (``fds_exhausted`` says so)."""
    importlib.import_module("fastapi.responses")  # imported before: no file to open for it then

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 2, hard))
    try:
        return call()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_error_naming_no_errno_is_a_503_only_while_out_of_descriptors_and_no_edgenas_error():
    lazy = ImportError("cannot import name 'x' from partially initialized module")
    assert _while_out_of_descriptors(lambda: fdlimit.response_for(lazy)).status_code == 503
    assert _while_out_of_descriptors(lambda: fdlimit.response_for(EdgenasError("a run's record is damaged"))) is None


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_failed_accepts_are_one_line_at_most_every_ten_seconds(code, capsys):
    exc = OSError(code, os.strerror(code))
    for _ in range(50):
        fdlimit.loop_errors(None, {"message": "socket.accept() out of system resource", "exception": exc})
    err = capsys.readouterr().err
    assert err == (f"edgenas serve: cannot accept connections ({os.strerror(code)}): they wait until some close "
                   "(raise the limit: ulimit -n)\n")


def test_other_loop_errors_name_the_message_and_the_exception(capsys):
    fdlimit.loop_errors(None, {"message": "Exception in callback", "exception": OSError(errno.ECONNRESET, "reset")})
    fdlimit.loop_errors(None, {"message": "Exception in callback", "exception": ValueError("x")})  # held back
    fdlimit.loop_errors(None, {"message": "Task was destroyed but it is pending!"})
    fdlimit.loop_errors(None, {"message": "", "exception": RuntimeError("boom")})
    assert capsys.readouterr().err.splitlines() == [
        "edgenas serve: Exception in callback: ConnectionResetError: [Errno 104] reset",
        "edgenas serve: Task was destroyed but it is pending!",
        "edgenas serve: error in the event loop: RuntimeError: boom",
    ]
    fdlimit._last.clear()
    fdlimit.loop_errors(None, {})
    assert capsys.readouterr().err == "edgenas serve: error in the event loop\n"


def test_a_long_loop_error_is_cut_to_300_characters(capsys):
    fdlimit.loop_errors(None, {"message": "m" * 500, "exception": ValueError("v" * 500)})
    assert capsys.readouterr().err == "edgenas serve: " + "m" * 300 + "\n"
    fdlimit.loop_errors(None, {"message": "short", "exception": ValueError("v" * 500)})
    line = capsys.readouterr().err
    assert line == "edgenas serve: " + ("short: ValueError: " + "v" * 500)[:300] + "\n"

