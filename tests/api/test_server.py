"""``edgenas serve``'s own steps without a report project: the bind rules, the socket, the app's host guard,
the preload, SIGTERM and the event loop's handler (fast; the API itself is tested in tests/report/test_api.py)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from tests.ports import free_port as _free_port

pytest.importorskip("fastapi", reason="needs fastapi (the test extra)")
uvicorn = pytest.importorskip("uvicorn", reason="needs uvicorn (the test extra)")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("port", [1, 8765, 65535])
def test_ports_at_the_bounds_are_taken(port, monkeypatch):
    from edgenas.api.server import check_bind

    monkeypatch.delenv("EDGENAS_TOKEN", raising=False)
    assert check_bind("127.0.0.1", port, None) is None


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_ports_past_the_bounds_are_refused(port):
    from edgenas.api.server import check_bind

    with pytest.raises(InputError, match=rf"--port must be in 1\.\.65535, got {port}"):
        check_bind("127.0.0.1", port, None)


def test_the_token_to_require_comes_from_the_flag_or_the_environment(monkeypatch):
    from edgenas.api.server import check_bind

    monkeypatch.delenv("EDGENAS_TOKEN", raising=False)
    assert check_bind("0.0.0.0", 8765, "12345678") == "12345678"  # 8 characters: enough
    assert check_bind("127.0.0.1", 8765, "") is None
    monkeypatch.setenv("EDGENAS_TOKEN", "from-the-environment")
    assert check_bind("0.0.0.0", 8765, None) == "from-the-environment"
    assert check_bind("::1", 8765, "the-flags-own") == "the-flags-own"
    monkeypatch.setenv("EDGENAS_TOKEN", "")
    assert check_bind("localhost", 8765, None) is None


@pytest.mark.parametrize("token, problem", [("1234567", "too short"), ("with spaces in it", "holds spaces"),
                                            ("tab\there-too", "printable ASCII"),
                                            ("new\nline-in-it", "printable ASCII"), ("ünïcödé-token", "printable")])
def test_bad_tokens_are_refused(token, problem, monkeypatch):
    from edgenas.api.server import check_bind

    monkeypatch.delenv("EDGENAS_TOKEN", raising=False)
    with pytest.raises(InputError, match=problem):
        check_bind("127.0.0.1", 8765, token)


@pytest.mark.parametrize("host", ["[::1]", "[127.0.0.1]", "[]"])
def test_bracketed_hosts_are_refused_even_with_a_token(host):
    from edgenas.api.server import check_bind

    with pytest.raises(InputError, match="without brackets") as info:
        check_bind(host, 8765, "abcdefghijkl")
    assert info.value.hint == f"--host {host[1:-1]}"


@pytest.mark.parametrize("host", ["example.org", "my_box.lan.", "10.0.0.7", "fe80::1%eth0"])
def test_a_host_name_or_address_off_loopback_needs_a_token(host, monkeypatch):
    from edgenas.api.server import check_bind

    monkeypatch.delenv("EDGENAS_TOKEN", raising=False)
    assert check_bind(host, 8765, "abcdefghijkl") == "abcdefghijkl"
    with pytest.raises(InputError, match="needs a token"):
        check_bind(host, 8765, None)


@pytest.mark.parametrize("host, shown", [("[::1", "[::1"), ("::1]", "::1]"), ("", ""), ("a..b", "a..b"),
                                         ("\x1b[31mhost", "\\x1b[31mhost"), ("host\n", "host\\n"),
                                         ("http://h", "http://h"), ("-h", "-h"), ("h\udc9b", "h\\udc9b")])
def test_a_host_that_is_no_address_or_name_is_refused_before_the_token_check(host, shown, monkeypatch):
    """'\x1b[31mhost' said "serving on host ... needs a token": the escape dropped, as if no address were wrong."""
    from edgenas.api.server import check_bind

    monkeypatch.delenv("EDGENAS_TOKEN", raising=False)
    for token in (None, "abcdefghijkl"):
        with pytest.raises(InputError) as info:
            check_bind(host, 8765, token)
        assert info.value.message == f"--host '{shown}' is not an address: give an IP address or a host name"
        assert "brackets" not in str(info.value) and "--host 127.0.0.1" in info.value.hint


def test_bind_gives_a_listening_socket_that_reuses_the_address():
    from edgenas.api.server import bind

    port = _free_port()
    with bind("127.0.0.1", port) as sock:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM


def test_bind_to_a_busy_port_is_one_error_and_leaves_no_socket_open():
    from edgenas.api.server import bind

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = _open_fds()
        with pytest.raises(InputError, match=f"port {port} is in use on 127.0.0.1") as info:
            bind("127.0.0.1", port)
        assert _open_fds() == before
    assert "choose another --port" in info.value.hint


def test_bind_to_an_address_of_another_machine_says_it_cannot_listen():
    from edgenas.api.server import bind

    before = _open_fds()
    with pytest.raises(InputError, match=r"cannot listen on 192\.0\.2\.1:\d+: ") as info:
        bind("192.0.2.1", _free_port())  # TEST-NET-1: no address of this machine
    assert _open_fds() == before
    assert "in use" not in info.value.message and "check --host" in info.value.hint


def test_bind_to_an_unknown_name_is_one_error():
    from edgenas.api.server import bind

    with pytest.raises(InputError, match=r"--host no such host! is not an address of this machine"):
        bind("no such host!", _free_port())


@pytest.mark.parametrize("token, host, local_only", [(None, "127.0.0.1", True), (None, "localhost", True),
                                                     (None, None, False), ("abcdefghijkl", "127.0.0.1", False),
                                                     ("abcdefghijkl", "0.0.0.0", False)])
def test_build_app_answers_other_host_names_only_with_a_token_or_off_loopback(tmp_path, token, host, local_only):
    from fastapi.testclient import TestClient

    from edgenas.api.server import build_app

    auth = {"Authorization": f"Bearer {token}"} if token else {}
    with TestClient(build_app(Project(tmp_path), token, host)) as client:
        other = client.get("/api/runs", headers={"host": "evil.example", **auth})
        local = client.get("/api/runs", headers={"host": "127.0.0.1:8765", **auth})
    assert local.status_code == 200 and local.json() == []
    assert other.status_code == (421 if local_only else 200), other.text


def test_preload_imports_what_requests_import_lazily(tmp_path):
    """In a fresh interpreter: every module of ``PRELOAD``, the built-in spaces and the migrations' revisions
    are loaded by ``preload()``, none of them before."""
    code = ("import json, sys\n"
            "from edgenas.api import server\n"
            "from edgenas.spaces import SPACES\n"
            "from edgenas.store import db\n"
            "def state():\n"
            "    return [[m for m in server.PRELOAD if m in sys.modules], SPACES._next == len(SPACES.builtins),\n"
            "            bool(db._SCRIPTS)]\n"
            "before = state()\n"
            "server.preload()\n"
            "print(json.dumps([before, state()]))\n")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    before, after = json.loads(out.stdout)
    from edgenas.api.server import PRELOAD

    assert after == [list(PRELOAD), True, True]
    assert before[1:] == [False, False] and len(before[0]) < len(PRELOAD)


def test_serve_without_uvicorn_is_one_error(tmp_path, monkeypatch):
    from edgenas.api.server import serve

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as where it is not installed: import raises ImportError
    with pytest.raises(InputError, match="edgenas serve needs uvicorn and fastapi") as info:
        serve(Project(tmp_path), port=_free_port())
    assert info.value.hint == "pip install 'edgenas[serve]'"


def test_serve_serves_this_machine_on_port_8765_by_default():
    import inspect

    from edgenas.api.server import serve

    params = inspect.signature(serve).parameters
    assert (params["host"].default, params["port"].default, params["token"].default) == ("127.0.0.1", 8765, None)


def test_serve_refuses_a_bad_bind_before_anything_else(tmp_path):
    from edgenas.api.server import serve

    called = []
    with pytest.raises(InputError, match="needs a token"):
        serve(Project(tmp_path), host="0.0.0.0", port=_free_port(), ready=lambda: called.append(1))
    assert called == []


def test_serve_refuses_a_database_every_reading_command_refuses_before_it_says_it_serves(tmp_path, cli,
                                                                                           monkeypatch):
    """A newer edgenas's database: serve said it served, then answered 500 on /runs/ID and /api/measurements (200
    on /api/runs). Refused at start-up now, with the red line and exit code of every other command, before it
    binds the port, and with no -wal or -shm file left beside it."""
    import sqlite3

    from edgenas.api.server import serve
    from edgenas.store import DatabaseError, ExperimentDB

    ExperimentDB(None, Project(tmp_path)).close()
    path = tmp_path / ".edgenas" / "edgenas.db"
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0002'")
    con.commit()
    con.close()
    monkeypatch.delenv("EDGENAS_DB", raising=False)

    def served() -> None:
        raise AssertionError("serve said it serves")

    with pytest.raises(DatabaseError, match="schema revision 0002, newer than this edgenas knows"):
        serve(Project(tmp_path), port=_free_port(), ready=served)
    monkeypatch.setattr("edgenas.api.server.bind", lambda *_: served())
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("serve", "--port", str(_free_port()))
    assert res.code == 6 and "newer than this edgenas knows" in res.err and len(res.err.splitlines()) == 1, res.err
    assert "serving" not in res.out and sorted(p.name for p in path.parent.glob("edgenas.db-*")) == []


def test_serve_starts_on_a_good_database_and_on_none(tmp_path, monkeypatch):
    """The start-up check reads a database that is there and creates none where there is none."""
    from edgenas.api.server import check_database
    from edgenas.store import ExperimentDB

    monkeypatch.delenv("EDGENAS_DB", raising=False)
    check_database(Project(tmp_path))
    assert not (tmp_path / ".edgenas").exists()
    ExperimentDB(None, Project(tmp_path)).close()
    check_database(Project(tmp_path))


def test_serve_says_ready_once_bound_answers_and_stops_on_sigterm_with_exit_0(tmp_path):
    """A real process: ``ready`` runs once the port is bound (binding it again fails) and the modules requests
    import lazily are imported, the API answers,
    and SIGTERM ends it as Ctrl-C does: exit 0, nothing on stderr."""
    import httpx

    port = _free_port()
    code = ("import socket, sys\n"
            "from edgenas.api.server import PRELOAD, serve\n"
            "from edgenas.project import Project\n"
            "def ready():\n"
            "    loaded = all(m in sys.modules for m in PRELOAD)\n"
            "    with socket.socket() as s:\n"
            "        try:\n"
            f"            s.bind(('127.0.0.1', {port}))\n"
            "        except OSError as exc:\n"
            "            print('ready', exc.errno, loaded, flush=True)\n"
            f"serve(Project(sys.argv[1]), port={port}, ready=ready)\n")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        # ready: called once, after the preload, with the port taken (by serve)
        assert select.select([proc.stdout], [], [], 60)[0], "ready was not called"
        line = proc.stdout.readline()
        assert line == f"ready {errno.EADDRINUSE} True\n", (line, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not answer"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json() == []
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", headers={"host": "evil.example"}).status_code == 421
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err == "", (proc.returncode, err)


def test_sigterm_does_nothing_while_serving_and_the_handler_is_restored():
    from edgenas.api.server import _sigterm_stops_quietly

    before = signal.getsignal(signal.SIGTERM)
    with _sigterm_stops_quietly():
        during = signal.getsignal(signal.SIGTERM)
        assert during is not before and callable(during)
        os.kill(os.getpid(), signal.SIGTERM)  # handled: this process goes on
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_handler_is_left_alone_off_the_main_thread():
    from edgenas.api.server import _sigterm_stops_quietly

    before, seen = signal.getsignal(signal.SIGTERM), []

    def worker() -> None:
        try:
            with _sigterm_stops_quietly():
                seen.append(signal.getsignal(signal.SIGTERM))
        except BaseException as exc:  # signal.signal off the main thread raises ValueError
            seen.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert seen == [before] and signal.getsignal(signal.SIGTERM) is before


def test_the_server_class_sets_the_loops_exception_handler(tmp_path):
    from edgenas.api.fdlimit import loop_errors
    from edgenas.api.server import _quiet_server, bind, build_app

    async def main() -> object:
        sock = bind("127.0.0.1", _free_port())
        server = _quiet_server()(uvicorn.Config(build_app(Project(tmp_path)), log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        handler = asyncio.get_running_loop().get_exception_handler()
        server.should_exit = True
        await task
        sock.close()
        return handler

    assert asyncio.run(main()) is loop_errors

