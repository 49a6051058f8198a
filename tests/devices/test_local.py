"""LocalTransport: install by hash, a real subprocess channel, verified atomic file copies."""

import hashlib
import os
import time

import pytest

from edgenas.errors import DeviceError, InputError
from edgenas.devices.agent_bundle import ensure_agent_bundle
from edgenas.devices.local import LocalTransport
from edgenas.devices.rpc import AgentClient
from edgenas.devices.session import open_session


def test_local_session_end_to_end(project):
    with open_session(project, "local") as s:
        client = s.client
        assert client.ping()
        path, version = ensure_agent_bundle(project)
        assert client.version == version
        assert (project.local_workdir / "agent" / f"edgenas-agent-{version}.pyz").is_file()
        assert client.hello["workdir"] == str(project.local_workdir)
    assert not client.channel.alive()


def test_agent_installed_once_per_hash(project):
    path, version = ensure_agent_bundle(project)
    with LocalTransport(project) as t:
        installed = t.install_agent(path, version)
        mtime = installed.stat().st_mtime_ns
        time.sleep(0.01)
        assert t.install_agent(path, version) == installed and installed.stat().st_mtime_ns == mtime
        with pytest.raises(DeviceError) as exc:
            t.install_agent(path, "0" * 64)
        assert "expected" in str(exc.value) and "device 'local'" in str(exc.value)
        assert not (project.local_workdir / "agent" / f"edgenas-agent-{'0' * 64}.pyz").exists()


def test_put_and_get_file_verify_sha(project, tmp_path):
    src = tmp_path / "blob.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    src.write_bytes(data)
    with LocalTransport(project) as t:
        sha = t.put_file(src, "models/blob.bin")
        assert sha == hashlib.sha256(data).hexdigest()
        assert (project.local_workdir / "models/blob.bin").read_bytes() == data
        back = tmp_path / "out" / "blob.bin"
        assert t.get_file("models/blob.bin", back) == sha and back.read_bytes() == data
        assert not [p for p in (project.local_workdir / "models").iterdir() if p.name.endswith(".tmp")]
        with pytest.raises(InputError):
            t.put_file(src, "../outside.bin")
        with pytest.raises(DeviceError):
            t.get_file("models/absent.bin", back)
        # removal: the file goes, a missing one is no error, a link goes and what it points at stays
        victim = tmp_path / "victim.txt"
        victim.write_text("keep")
        (project.local_workdir / "models/link.bin").symlink_to(victim)
        (project.local_workdir / "models/out").symlink_to(tmp_path)
        t.remove_file("models/blob.bin")
        t.remove_file("models/blob.bin")
        t.remove_file("models/link.bin")
        assert victim.read_text() == "keep"
        assert not (project.local_workdir / "models/blob.bin").exists()
        assert not (project.local_workdir / "models/link.bin").is_symlink()
        for bad in ("../victim.txt", "models/out/victim.txt", "models/.."):  # out of the work dir, or no file
            with pytest.raises(InputError):
                t.remove_file(bad)
        assert victim.read_text() == "keep"


def test_large_stdout_and_stderr_do_not_deadlock(script_zipapp, project, tmp_path):
    agent = (
        "import sys, json\n"
        "sys.stderr.write('e' * (4 << 20)); sys.stderr.flush()\n"  # far more than a pipe buffer
        "print(json.dumps({'hello': {'protocol': 1, 'version': 'x'}}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    req = json.loads(line)\n"
        "    sys.stderr.write('f' * (1 << 20))\n"
        "    print(json.dumps({'id': req['id'], 'result': 'r' * (2 << 20)}), flush=True)\n"
        "    if req['method'] == 'shutdown': break\n"
    )
    path, version = script_zipapp(tmp_path, agent)
    with LocalTransport(project) as t:
        client = AgentClient(t.start_agent(path, version), "local", hello_timeout_s=30)
        assert len(client.call("anything", timeout_s=30)) == 2 << 20
        assert client.channel.stderr_tail().endswith("f" * 100)
        client.close()
        assert not client.channel.alive()


def test_missing_python_is_a_device_error(project):
    path, version = ensure_agent_bundle(project)
    with LocalTransport(project, python="/nonexistent/python3") as t:
        with pytest.raises(DeviceError) as exc:
            t.start_agent(path, version)
    assert "/nonexistent/python3" in str(exc.value)


HANG_IN_INFO = """
import time
def _hang(*a, **k):
    time.sleep(3600)
M['info'] = _hang
"""


def test_a_hung_info_call_fails_within_the_profiles_call_timeout(project, tmp_path, monkeypatch):
    """``info`` waited a fixed 120 s (``fleet status`` 60 s) whatever the profile's ``call_timeout_s``: a hung
    agent held a fleet slot that long where its group allows 8 s."""
    import dataclasses

    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.fleet.status import device_status
    from tests.fleet.hostile import hostile_agent, use_agent

    use_agent(monkeypatch, hostile_agent(tmp_path, HANG_IN_INFO))
    profile = dataclasses.replace(LOCAL_PROFILE, call_timeout_s=2.0)
    t0 = time.monotonic()
    with open_session(project, profile) as s:
        with pytest.raises(DeviceError, match="'info'.*timed out after 2 s"):
            s.info()
    row = device_status(project, profile, [])
    assert not row.reachable and "timed out after 2 s" in row.error
    assert time.monotonic() - t0 < 40


@pytest.mark.parametrize("patch, call, needle", [
    ("import time\ntime.sleep(3600)\n", None, "no hello line within 2 s"),  # the agent never says hello
    (HANG_IN_INFO.replace("M['info']", "M['lut.list']"), "lut.list", "'lut.list'.*timed out after 2 s"),
    (HANG_IN_INFO.replace("M['info']", "M['file.stat']"), "push", "'file.stat'.*timed out after 2 s"),
])
def test_quick_calls_and_the_hello_wait_no_longer_than_the_profile_allows(project, tmp_path, monkeypatch,
                                                                          patch, call, needle):
    """The agent's hello, ``lut.list``/``lut.get`` and the ``file.stat`` of every push waited a fixed 60 s
    whatever the profile's ``call_timeout_s`` (the fix for ``info`` missed them)."""
    import dataclasses

    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.fleet.lutsync import device_luts
    from tests.fleet.hostile import hostile_agent, use_agent

    use_agent(monkeypatch, hostile_agent(tmp_path, patch))
    profile = dataclasses.replace(LOCAL_PROFILE, call_timeout_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=needle):
        if call == "lut.list":
            device_luts(project, profile)
        else:
            with open_session(project, profile) as s:
                s.push(next(tmp_path.glob("*.pyz")))  # any file: its stat is asked first
    assert time.monotonic() - t0 < 30


def test_each_local_transport_device_has_its_own_work_dir(project):
    """Every ``transport = "local"`` profile ran its agent in ``.edgenas/devices/local``: a second one saw
    (and resumed from, and listed) the first one's tables, and ``lut pull local`` then failed on them."""
    import dataclasses

    from edgenas.devices.profiles import LOCAL_PROFILE

    twin = dataclasses.replace(LOCAL_PROFILE, name="twin", threads=2)
    with open_session(project, LOCAL_PROFILE) as a, open_session(project, twin) as b:
        dirs = a.client.hello["workdir"], b.client.hello["workdir"]
    assert dirs == (str(project.local_workdir), str(project.state_dir / "devices" / "twin"))
    with pytest.raises(ValueError):
        project.local_workdir_of("../x")


class _RecordingClient:
    """An agent client that records each call's timeout and answers none (the test needs only the timeout)."""

    def __init__(self) -> None:
        self.timeouts: list[tuple[str, float]] = []

    def call(self, method, params, *, timeout_s, on_progress=None):
        self.timeouts.append((method, timeout_s))
        raise DeviceError("slow", f"call '{method}': timed out after {timeout_s:g} s")


def test_info_and_fleet_status_wait_as_long_as_the_profile_allows(project, monkeypatch):
    """A group with ``call_timeout_s = 900`` (slow boards) was cut off at 120 s (60 s in ``fleet status``)."""
    import contextlib
    import dataclasses

    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.devices.session import Session
    from edgenas.fleet import status

    profile = dataclasses.replace(LOCAL_PROFILE, name="slow", call_timeout_s=900.0)
    client = _RecordingClient()
    with pytest.raises(DeviceError):
        Session(profile, None, client).info()
    with pytest.raises(DeviceError):
        Session(profile, None, client).info(timeout_s=5)  # an explicit timeout still wins
    @contextlib.contextmanager
    def recording_session(project, p):
        yield Session(p, None, client)

    monkeypatch.setattr(status, "open_session", recording_session)
    assert not status.device_status(project, profile, []).reachable
    assert client.timeouts == [("info", 900.0), ("info", 5), ("info", 900.0)]


class _FakeDevice:
    """An agent client and transport in one: ``file.stat`` answers from ``files`` (remote path -> SHA-256),
    ``put_file`` stores there (a wrong hash when ``corrupt``), ``info`` answers a fixed fingerprint."""

    def __init__(self, corrupt: bool = False) -> None:
        self.files: dict[str, str] = {}
        self.calls: list[tuple[str, dict, float]] = []
        self.puts: list[str] = []
        self.removed: list[str] = []
        self.corrupt = corrupt

    def call(self, method, params, *, timeout_s, on_progress=None):
        self.calls.append((method, params, timeout_s))
        if method == "file.stat":
            sha = self.files.get(params["path"])
            return {"exists": sha is not None, "sha256": sha}
        assert method == "info"
        return {"fingerprint": {"runtime": params["runtime"]}, "fingerprint_hash": "ab" * 32, "state": {},
                "runtimes": {"onnxruntime": {"version": "1.20"}}}

    def put_file(self, local, remote_rel):
        self.puts.append(remote_rel)
        self.files[remote_rel] = "0" * 64 if self.corrupt else hashlib.sha256(local.read_bytes()).hexdigest()
        return self.files[remote_rel]

    def put_files(self, files):
        return [self.put_file(local, rel) for local, rel in files]

    def remove_file(self, remote_rel):
        self.removed.append(remote_rel)
        raise DeviceError("local", "the connection is gone") if remote_rel == "a" else OSError("disk gone")


def test_push_uploads_a_file_under_its_hash_unless_the_device_has_it(tmp_path):
    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.devices.session import Session

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    remote = f"models/{hashlib.sha256(b'model').hexdigest()}.onnx"
    dev = _FakeDevice()
    s = Session(LOCAL_PROFILE, dev, dev)
    assert s.push(model) == remote and dev.puts == [remote]
    assert dev.calls == [("file.stat", {"path": remote}, 60.0)]  # a quick call: 60 s, not the profile's 600
    assert s.push(model) == remote and len(dev.calls) == 1  # pushed in this session: not even a stat
    assert Session(LOCAL_PROFILE, dev, dev).push(model) == remote and dev.puts == [remote]  # the device has it
    dev.files[remote] = "1" * 64  # another file under that name: replaced
    assert Session(LOCAL_PROFILE, dev, dev).push(model) == remote and dev.puts == [remote, remote]
    bad = _FakeDevice(corrupt=True)
    with pytest.raises(DeviceError, match=r"device 'local': upload of .*m.onnx arrived corrupted \(sha256 0{12}…\)"):
        Session(LOCAL_PROFILE, bad, bad).push(model)


def test_info_is_asked_once_per_runtime_and_forget_fails_nothing():
    import dataclasses

    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.devices.session import Session

    dev = _FakeDevice()
    s = Session(dataclasses.replace(LOCAL_PROFILE, name="bench", call_timeout_s=30.0), dev, dev)
    info = s.info()
    assert s.device == "bench" and info.device == "bench" and info.fingerprint == {"runtime": "onnxruntime"}
    assert s.info() is info and s.info("torch").fingerprint == {"runtime": "torch"} and s.info("torch") is not info
    assert [(c[0], c[2]) for c in dev.calls] == [("info", 30.0), ("info", 30.0)]
    assert s.quick_timeout_s == 30.0
    s.forget("a")
    s.forget("b")
    assert dev.removed == ["a", "b"]


def test_open_session_closes_the_transport_also_when_the_agent_fails_to_start(project, monkeypatch):
    closed = []
    real_close = LocalTransport.close
    monkeypatch.setattr(LocalTransport, "close", lambda self: (closed.append(self.device), real_close(self))[1])
    with open_session(project, "local") as s:
        assert s.client.ping() and closed == []
    assert closed == ["local"]

    def no_agent(self, zipapp, version):
        raise DeviceError(self.device, "the agent did not start")

    monkeypatch.setattr(LocalTransport, "start_agent", no_agent)
    with pytest.raises(DeviceError, match="the agent did not start"):
        with open_session(project, "local"):
            pass
    assert closed == ["local", "local"]


def test_a_channel_reports_the_agents_exit_and_a_line_too_long_at_every_later_read(script_zipapp, project,
                                                                                    tmp_path, monkeypatch):
    from edgenas.devices import transport

    monkeypatch.setattr(transport, "MAX_LINE_BYTES", 100)
    with LocalTransport(project) as t:
        path, version = script_zipapp(tmp_path, "import sys\nprint('x' * 100, flush=True)\nsys.exit(3)\n")
        ch = t.start_agent(path, version)
        assert ch.recv_line(30) == "x" * 100  # 100 bytes before its newline: the longest line allowed, as over SSH
        for _ in range(2):  # the exit is seen by every later read, not only the first
            with pytest.raises(DeviceError, match="agent exited with code 3"):
                ch.recv_line(30)
        path, version = script_zipapp(tmp_path, "import time\nprint('x' * 101, flush=True)\ntime.sleep(60)\n")
        ch = t.start_agent(path, version)
        for _ in range(2):
            with pytest.raises(DeviceError, match="the agent sent a line of more than"):
                ch.recv_line(30)
        t.close()  # the transport stops the agents it started
        assert not ch.alive()


def test_a_transport_closes_when_its_with_block_ends_even_on_an_error():
    from edgenas.devices.transport import Transport

    class Counting(Transport):
        device = "dev"
        closed = 0
        start_agent = put_file = get_file = remove_file = None

        def close(self) -> None:
            self.closed += 1

    t = Counting()
    with t as entered:
        assert entered is t and t.closed == 0
    assert t.closed == 1
    with pytest.raises(ValueError, match="boom"):   # the error goes on
        with t:
            raise ValueError("boom")
    assert t.closed == 2


class _Pipe:
    """A pipe of an agent process that gives ``chunks`` and then the end."""

    def __init__(self, chunks) -> None:
        self.chunks = list(chunks)

    def read1(self, n):
        return self.chunks.pop(0) if self.chunks else b""

    def readline(self, n):
        return b""


def _stderr_tail_of(chunks) -> str:
    import types

    from edgenas.devices.local import LocalChannel

    ch = LocalChannel(types.SimpleNamespace(stdout=_Pipe([]), stderr=_Pipe(chunks)), "local")
    for t in ch._threads:
        t.join(10)
    return ch.stderr_tail()


def test_the_stderr_tail_keeps_whole_chunks_up_to_16_kib():
    assert _stderr_tail_of([b"a" * 10, b"b" * 16374]) == "a" * 10 + "b" * 16374  # 16 KiB: all kept
    assert _stderr_tail_of([b"a" * 11, b"b" * 16374]) == "b" * 16374  # one byte more: the oldest chunk goes
    assert _stderr_tail_of([b"a" * 10, b"b" * 16384]) == "b" * 16384

def test_get_file_over_its_limit_copies_nothing_and_makes_no_folder(project, tmp_path):
    with LocalTransport(project, device="fresh") as t:
        assert t.workdir.is_dir() and t.workdir == project.local_workdir_of("fresh")
        (t.workdir / "big.bin").write_bytes(b"x" * 100)
        with pytest.raises(DeviceError, match="big.bin on the device is larger than"):
            t.get_file("big.bin", tmp_path / "new" / "in" / "big.bin", max_bytes=99)
        assert not (tmp_path / "new").exists()
        got = t.get_file("big.bin", tmp_path / "new" / "in" / "big.bin", max_bytes=100)
        assert got == hashlib.sha256(b"x" * 100).hexdigest()


def test_a_copy_whose_hash_changes_on_disk_is_an_error_and_leaves_nothing(project, tmp_path, monkeypatch):
    from edgenas.devices import local

    src = tmp_path / "m.bin"
    src.write_bytes(b"model")
    monkeypatch.setattr(local, "sha256_file", lambda path: "0" * 64)  # what the disk gave back differs
    with LocalTransport(project) as t:
        with pytest.raises(DeviceError, match="copy of .*m.bin to .*m.bin is corrupt"):
            t.put_file(src, "models/m.bin")
        assert list((t.workdir / "models").iterdir()) == []


def test_the_devices_python_is_a_path_or_a_name_on_the_path(project, monkeypatch):
    import sys
    from pathlib import Path

    path, version = ensure_agent_bundle(project)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    with LocalTransport(project, python=Path(sys.executable).name) as t:
        assert AgentClient(t.start_agent(path, version), "local", hello_timeout_s=30).ping()
    with LocalTransport(project, python="/nonexistent/python3") as t:
        with pytest.raises(DeviceError, match="python '/nonexistent/python3' not found") as exc:
            t.start_agent(path, version)
    assert exc.value.hint == "fix the device's python"


def test_writing_to_an_agent_that_closed_its_input_is_a_device_error(script_zipapp, project, tmp_path):
    agent = "import os, time\nos.close(0)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    path, version = script_zipapp(tmp_path, agent)
    with LocalTransport(project) as t:
        ch = t.start_agent(path, version)
        assert ch.recv_line(30) == "ready" and ch.alive()
        with pytest.raises(DeviceError, match="agent exited"):
            ch.send_line("{}")


def test_a_python_that_cannot_run_is_a_device_error(project, tmp_path):
    path, version = ensure_agent_bundle(project)
    fake = tmp_path / "python3"
    fake.write_bytes(b"\x7fnot a program")
    fake.chmod(0o755)
    with LocalTransport(project, python=str(fake)) as t:
        with pytest.raises(DeviceError, match="cannot start the agent: .*Exec format error"):
            t.start_agent(path, version)


def test_closing_a_channel_lets_the_agent_end_by_itself_and_closes_its_pipes(project):
    path, version = ensure_agent_bundle(project)
    with LocalTransport(project) as t:
        ch = t.start_agent(path, version)
        assert ch.recv_line(30) is not None  # the hello
        ch.close()
        assert ch.proc.returncode == 0  # its input ended: no signal was needed
        assert ch.proc.stdin.closed and ch.proc.stdout.closed and ch.proc.stderr.closed


def test_closing_an_agent_that_ignores_its_input_and_sigterm_kills_it(script_zipapp, project, tmp_path):
    import signal

    agent = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n"
             "while True:\n    time.sleep(1)\n")
    path, version = script_zipapp(tmp_path, agent)
    with LocalTransport(project) as t:
        ch = t.start_agent(path, version)
        assert ch.recv_line(30) == "up"
        ch.close()
        assert ch.proc.returncode == -signal.SIGKILL and not ch.alive()


class _Info:
    """What ``Session.info`` answers, as far as ``device_status`` reads it."""

    def __init__(self, fingerprint_hash: str) -> None:
        self.fingerprint_hash, self.agent_version = fingerprint_hash, "v7"

    def power_mode_note(self, expected):
        return None


def test_fleet_status_remembers_the_fingerprint_a_device_reports_and_refuses_one_that_is_no_hash(project,
                                                                                               monkeypatch):
    """The status row of each device, and its last known fingerprint (what deploy picks a table by)."""
    import contextlib
    import dataclasses

    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.fleet import status
    from edgenas.latency.store import LutStore

    answer = {"fingerprint_hash": "ab" * 32}

    @contextlib.contextmanager
    def session(project, p):
        yield type("S", (), {"info": lambda self: _Info(answer["fingerprint_hash"])})()

    monkeypatch.setattr(status, "open_session", session)
    profile = dataclasses.replace(LOCAL_PROFILE, name="board")
    [row] = status.fleet_status(project, [profile], ["nb201"])
    assert (row.device, row.reachable, row.agent_version, row.fingerprint_hash) == ("board", True, "v7", "ab" * 32)
    assert row.luts == {"nb201": "missing"} and row.error == ""
    assert LutStore(project.luts_dir).last_fingerprint("board") == "ab" * 32
    with pytest.raises(dataclasses.FrozenInstanceError):  # a record of what the device said
        row.reachable = False

    answer["fingerprint_hash"] = "../../etc"
    row = status.device_status(project, profile, ["nb201"])
    assert not row.reachable and row.error.startswith("device 'board': invalid fingerprint hash '../../etc'")
    assert row.luts == {} and LutStore(project.luts_dir).last_fingerprint("board") == "ab" * 32
    assert status.fleet_status(project, [], ["nb201"]) == []  # no devices: no rows


def test_an_agents_exit_message_shows_the_last_1500_characters_of_its_stderr(script_zipapp, project, tmp_path):
    agent = "import sys\nsys.stderr.write('a' * 3000 + 'b' * 1499 + 'z')\nsys.stderr.flush()\nsys.exit(3)\n"
    path, version = script_zipapp(tmp_path, agent)
    with LocalTransport(project) as t:
        ch = t.start_agent(path, version)
        with pytest.raises(DeviceError) as exc:
            ch.recv_line(30)
    assert str(exc.value).endswith("agent exited with code 3; stderr: " + "b" * 1499 + "z")


def test_a_source_that_grows_past_its_limit_while_copied_is_refused_and_leaves_nothing(tmp_path):
    import threading

    from edgenas.devices.local import _copy_verified

    src = tmp_path / "growing.bin"
    os.mkfifo(src)  # its size on disk is 0, so only the count taken while copying can stop it

    def write() -> None:
        try:
            src.write_bytes(b"x" * (3 << 20))
        except BrokenPipeError:  # the copy stopped reading, as it should
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with pytest.raises(DeviceError, match="growing.bin on the device is larger than"):
        _copy_verified(src, tmp_path / "out" / "growing.bin", "local", max_bytes=(1 << 20) + 1)
    writer.join(10)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_transport_makes_its_work_dir_and_its_parents_and_opens_again_on_it(tmp_path):
    from edgenas.project import Project

    project = Project(tmp_path / "new" / "proj")
    for _ in range(2):
        with LocalTransport(project, device="d1") as t:
            assert t.workdir == project.local_workdir_of("d1") and t.workdir.is_dir()


def test_an_agent_that_floods_its_output_while_no_call_reads_waits_for_the_host(project, tmp_path, monkeypatch):
    """Lines nobody reads yet are held up to ``MAX_QUEUED_LINES``, then the agent waits for its pipe: unbounded,
    the host grew by hundreds of MB a second while busy elsewhere between two calls. Closing still ends the agent
    and both readers (one waiting for room in the queue)."""
    from tests.fleet.hostile import FLOOD, check_flood_waits, hostile_agent

    with LocalTransport(project) as t:
        check_flood_waits(t.start_agent(*hostile_agent(tmp_path, FLOOD)))


def test_a_call_that_times_out_while_its_agent_floods_is_one_error_and_no_reader_dies(project, tmp_path, monkeypatch):
    """Closing the channel after the timeout closed the agent's stdout while its reader was inside readline: the
    reader died with "ValueError: PyMemoryView_FromBuffer()", a stray line after the error (in some runs)."""
    import dataclasses
    import threading

    from edgenas.devices.profiles import LOCAL_PROFILE
    from tests.fleet.hostile import FLOOD, hostile_agent, use_agent

    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(f"{args.exc_type.__name__}: "
                                                                          f"{args.exc_value}"))
    use_agent(monkeypatch, hostile_agent(tmp_path, FLOOD))
    with open_session(project, dataclasses.replace(LOCAL_PROFILE, call_timeout_s=5.0)) as s:
        with pytest.raises(DeviceError, match="call 'ping' .id 1.: timed out after 1 s"):
            s.call("ping", timeout_s=1)
        ch = s.client.channel
    for thread in ch._threads:
        thread.join(5)
    assert not ch.alive() and not any(x.is_alive() for x in ch._threads) and died == []


def test_many_progress_lines_of_one_call_all_arrive_also_while_the_host_is_slow_to_take_them(project, tmp_path,
                                                                                            monkeypatch):
    """The bounded queue makes the agent wait, never drops a line: three queues full of progress, the first one
    taken only after a second."""
    from edgenas.devices import transport
    from tests.fleet.hostile import hostile_agent, use_agent

    n = 3 * transport.MAX_QUEUED_LINES
    use_agent(monkeypatch, hostile_agent(tmp_path, f"M['ping'] = lambda w, p, pr: [pr({{'i': i}}) for i in "
                                                   f"range({n})] and {{'pong': True}}\n"))
    seen: list[int] = []

    def slow_at_first(progress: dict) -> None:
        if not seen:
            time.sleep(1)
        seen.append(progress["i"])

    with open_session(project, "local") as s:
        assert s.call("ping", timeout_s=30, on_progress=slow_at_first) == {"pong": True}
    assert seen == list(range(n))


def test_closing_an_agent_whose_child_still_holds_its_pipes_ends_both_at_once(project, tmp_path, monkeypatch):
    """A process the agent started (a runtime's worker) kept its output pipes open: closing waited for it to end
    (a minute here), blocked in closing a pipe whose reader was inside readline. The agent's process group goes."""
    from tests.fleet.hostile import hostile_agent, use_agent
    from tests.procs import running

    child_pid = tmp_path / "child.pid"
    use_agent(monkeypatch, hostile_agent(tmp_path, (
        "import os, time\n"
        "real_hello = server.Server.hello\n"
        "def hello(self):\n"
        "    real_hello(self)\n"
        "    if os.fork() == 0:\n"
        f"        open({str(child_pid)!r}, 'w').write(str(os.getpid()))\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "server.Server.hello = hello\n")))
    with open_session(project, "local") as s:
        assert s.client.ping()
        deadline = time.monotonic() + 10
        while not child_pid.exists() or not child_pid.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pid = int(child_pid.read_text())
        assert running(pid)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 8
    deadline = time.monotonic() + 5  # its pipes close as it exits, a moment before it is gone
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)
