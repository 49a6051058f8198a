"""The Ray executor's checks before it connects (no head needed: real sockets that answer as something other
than Ray), and a batch that runs past its timeout or loses its worker on a REAL local head: one
``ExecutorError`` saying which, the batch's other tasks cancelled, and ``close`` leaving Ray shut down. A test
that connects runs its driver in a process of its own (``ray_cases``)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from edgenas.errors import InputError
from edgenas.evaluate.executor import ExecutorError, max_workers
from tests.evaluate.ray_cases import run_as_driver

pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgenas[ray]')")


#: what an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame (RFC 9113, 3.4)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


class _Server:
    """A TCP server on 127.0.0.1 that answers every connection that opens with the HTTP/2 preface with
    ``reply`` (as strict as a gRPC server: anything else gets no answer) and closes it."""

    def __init__(self, reply: bytes, hold_s: float = 0.0, piece: int = 1 << 16) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply, self.hold_s, self.piece = reply, hold_s, piece
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:  # the whole preface read first: closing on unread bytes resets the connection
                got = b""
                while len(got) < len(PREFACE) and (chunk := conn.recv(64)):
                    got += chunk
                if got == PREFACE:
                    for i in range(0, len(self.reply), self.piece):  # a reply in pieces: how TCP may deliver it
                        conn.sendall(self.reply[i:i + self.piece])
                        time.sleep(0.05 if self.piece < len(self.reply) else 0)
                time.sleep(self.hold_s)  # a server keeps the connection open: the reply's 9 bytes are enough

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    made: list[_Server] = []

    def make(reply: bytes, hold_s: float = 0.0, piece: int = 1 << 16) -> _Server:
        made.append(_Server(reply, hold_s, piece))
        return made[-1]
    yield make
    for s in made:
        s.close()


@pytest.mark.parametrize("address", ["127.0.0.1", ":6379", "127.0.0.1:port", "127.0.0.1:",
                                     # no port: the socket library wrapped 71915 round to 6379 (a typo reached
                                     # another cluster's port) and read other scripts' digits
                                     "127.0.0.1:71915", "127.0.0.1:0", "127.0.0.1:65536",
                                     "127.0.0.1:\u0666\u0663\u0667\u0669",
                                     "127.0.0.1:" + "0" * 4400 + "1"])  # past int()'s 4300 digits: a ValueError
def test_an_address_without_host_and_port_is_refused_before_anything_connects(address):
    from edgenas.evaluate.ray_executor import _check_reachable

    with pytest.raises(InputError, match="is not HOST:PORT"):
        _check_reachable(address)


def test_what_answers_at_the_address_decides(server):
    from edgenas.evaluate.ray_executor import _check_reachable

    settings = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # an empty HTTP/2 SETTINGS frame: what a gRPC server sends
    _check_reachable(server(settings).address)
    _check_reachable("ray://" + server(settings + b"more").address)  # the scheme is not part of HOST:PORT
    t0 = time.monotonic()
    _check_reachable(server(settings, hold_s=5.0).address, timeout_s=2.0)  # no wait for more than the frame
    assert time.monotonic() - t0 < 1.5
    _check_reachable(server(settings, hold_s=1.0, piece=4).address)  # the frame in three pieces is still one frame
    for reply in (b"HTTP/1.1 400 Bad Request\r\n\r\n", settings[:8], b"", bytes([0, 0, 0, 1, 0, 0, 0, 0, 0])):
        with pytest.raises(ExecutorError, match="answers, but not as a Ray cluster"):
            _check_reachable(server(reply).address)
    with socket.socket() as bound:  # bound, never listening: the port is refused, and no one else can take it
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        with pytest.raises(ExecutorError, match=f"cannot connect to the Ray cluster at {address}"):
            _check_reachable(address)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"address": ""}, "is not an address"), ({"address": "127.0.0.1 :6379"}, "is not an address"),
    ({"address": 6379}, "is not an address"),
    ({"workers": 0}, "--workers must be an integer >= 1"), ({"workers": True}, "--workers must be an integer"),
    ({"workers": 2.0}, "--workers must be an integer"),
    ({"workers": max_workers() + 1}, f"at most {max_workers()}"),
    ({"timeout_s": 0.0}, "timeout_s > 0"), ({"timeout_s": float("nan")}, "timeout_s > 0"),
    ({"max_retries": -1}, "max_retries >= 0"),
])
def test_bad_settings_are_refused_before_ray_starts(kwargs, fragment):
    import ray

    from edgenas.evaluate.ray_executor import RayExecutor

    with pytest.raises(InputError, match=fragment):
        RayExecutor(**kwargs)
    assert not ray.is_initialized()


def test_an_address_lifts_the_local_worker_limit_and_is_checked_before_ray_starts(server):
    """With an address the local head's worker limit does not apply, and an address that is no Ray cluster is
    refused before ``ray.init`` (which would retry it for minutes)."""
    import ray

    from edgenas.evaluate.ray_executor import RayExecutor

    with pytest.raises(ExecutorError, match="not as a Ray cluster"):
        RayExecutor(server(b"HTTP/1.1 400 Bad Request\r\n\r\n").address, workers=max_workers() + 1)
    assert not ray.is_initialized()


@pytest.mark.slow
def test_a_batch_past_its_timeout_or_with_a_lost_worker_is_one_error_and_cancelled(ray_head):
    run_as_driver("timeout_or_lost_worker_is_one_error", ray_head.address)


class _FlakyRay:
    """Stands in for the ``ray`` module: ``init`` raises ConnectionError ``fails`` times, then connects."""

    def __init__(self, fails: int) -> None:
        self.fails, self.calls = fails, []

    def init(self, **kwargs) -> None:
        self.calls.append(kwargs)
        if len(self.calls) <= self.fails:
            raise ConnectionError(f"missed deadline {len(self.calls)}")


class _DeafRay:
    """Stands in for the ``ray`` module where a cancel is lost (Ray's is best effort; a local head does not lose
    one on demand): task ``"done"`` has finished, every other runs on whatever is cancelled. ``wait`` advances
    a clock of its own by its timeout instead of sleeping."""

    def __init__(self) -> None:
        self.now, self.cancelled = 0.0, []

    def wait(self, refs, num_returns=1, timeout=None, fetch_local=True):
        assert fetch_local is False  # a result is never fetched just to learn that it exists
        self.now += timeout
        ready = [r for r in refs if r == "done"][:num_returns]
        return ready, [r for r in refs if r not in ready]

    def cancel(self, ref, force=False):
        assert force is True and len(self.cancelled) < 100, "cancelled on and on"
        self.cancelled.append(ref)


def test_a_task_that_ignores_its_cancel_is_cancelled_each_second_for_10_seconds_then_left(monkeypatch):
    """``_cancel_unfinished`` never cancels a finished task (Ray 2.60 aborted the driver) and gives up on one
    that runs on after 10 s: a batch's error is raised then, not never."""
    from edgenas.evaluate.ray_executor import _cancel_unfinished

    ray = _DeafRay()
    monkeypatch.setattr(time, "monotonic", lambda: ray.now)
    _cancel_unfinished(ray, ["done", "a", "b"])
    assert ray.cancelled == ["a", "b"] * 11 and ray.now == 10.0  # at 0, 1, ..., 10 s
    ray = _DeafRay()
    _cancel_unfinished(ray, ["a"], grace_s=2.5)
    assert ray.cancelled == ["a"] * 4 and ray.now == 2.5  # at 0, 1, 2 and 2.5 s


def test_without_ray_installed_the_executor_says_how_to_install_it(monkeypatch):
    import sys

    from edgenas.evaluate.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # what ``import ray`` finds where Ray is not installed
    with pytest.raises(InputError, match="the ray executor needs Ray") as err:
        RayExecutor()
    assert "pip install 'edgenas[ray]'" in str(err.value)


def test_a_busy_head_is_tried_three_times_two_seconds_apart(monkeypatch):
    from edgenas.evaluate.ray_executor import _init_with_retries

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    ok = _FlakyRay(fails=2)
    _init_with_retries(ok, {"address": "a:1"})
    assert ok.calls == [{"address": "a:1"}] * 3 and slept == [2.0, 2.0]
    slept.clear()
    down = _FlakyRay(fails=3)
    with pytest.raises(ConnectionError, match="missed deadline 3"):
        _init_with_retries(down, {})
    assert len(down.calls) == 3 and slept == [2.0, 2.0]


def test_a_peer_that_accepts_and_says_nothing_times_out_as_one_error():
    from edgenas.evaluate.ray_executor import _check_reachable

    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nothing ever answers
        t0 = time.monotonic()
        with pytest.raises(ExecutorError, match="cannot connect to the Ray cluster at .*: timed out"):
            _check_reachable(f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        assert time.monotonic() - t0 < 3.0


def test_a_port_that_does_not_exist_is_one_red_line_and_no_run_folder(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    r = cli("search", "--space", "mbv3-tiny", "--budget", "2", "--executor", "ray",
            "--ray-address", "127.0.0.1:71915", "--out", str(tmp_path / "run"))
    assert r.code == InputError.exit_code and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert "'127.0.0.1:71915' is not HOST:PORT (a port from 1 to 65535)" in r.err
    assert not (tmp_path / "run").exists()
