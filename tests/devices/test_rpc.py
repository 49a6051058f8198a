"""AgentClient over a real local agent (and real misbehaving subprocesses): handshake, errors, timeouts."""

import json
import os
import signal
import time

import pytest

from edgenas.errors import AgentError, DeviceError, RuntimeMissingError
from edgenas.devices.agent_bundle import ensure_agent_bundle
from edgenas.devices.local import LocalTransport
from edgenas.devices.rpc import AgentClient, AgentRuntimeMissingError


@pytest.fixture()
def transport(project):
    with LocalTransport(project, device="bench-box") as t:
        yield t


@pytest.fixture()
def client(transport, project):
    path, version = ensure_agent_bundle(project)
    c = AgentClient(transport.start_agent(path, version), "bench-box", expect_version=version)
    yield c
    c.close()


def test_handshake_and_calls(client):
    assert client.hello["protocol"] == 1 and len(client.version) == 64
    assert client.call("ping") == {"pong": True}
    ids_before = next(client._ids)
    client.call("ping")
    assert next(client._ids) == ids_before + 2  # every call gets a fresh id


def test_structured_error_is_agent_error_naming_device_and_call(client):
    with pytest.raises(AgentError) as exc:
        client.call("no.such.method")
    err = exc.value
    assert err.device == "bench-box" and err.type == "UnknownMethod"
    assert "no.such.method" in str(err) and "device 'bench-box'" in str(err)
    assert client.ping()  # a structured error leaves the connection usable


def test_protocol_mismatch_is_refused(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, "import json\nprint(json.dumps({'hello': {'protocol': 2}}), flush=True)\n"
                                            "import sys\nsys.stdin.read()\n")
    channel = transport.start_agent(path, version)
    with pytest.raises(DeviceError) as exc:
        AgentClient(channel, "bench-box")
    assert "protocol 2" in str(exc.value) and "bench-box" in str(exc.value)
    assert not channel.alive()


def test_version_mismatch_is_refused(transport, project):
    path, version = ensure_agent_bundle(project)
    channel = transport.start_agent(path, version)
    with pytest.raises(DeviceError) as exc:
        AgentClient(channel, "bench-box", expect_version="f" * 64)
    assert "expected " + "f" * 64 in str(exc.value)
    assert not channel.alive()  # the agent that is not ours is stopped


def test_agent_that_dies_before_hello_reports_stderr(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, "import sys\nsys.stderr.write('ImportError: no module named foo\\n')\n"
                                            "sys.exit(3)\n")
    with pytest.raises(DeviceError) as exc:
        AgentClient(transport.start_agent(path, version), "bench-box", hello_timeout_s=20)
    msg = str(exc.value)
    assert "bench-box" in msg and "code 3" in msg and "no module named foo" in msg


def test_agent_crash_mid_call_names_device_call_and_stderr(script_zipapp, transport, tmp_path):
    agent = ("import sys, json\nprint(json.dumps({'hello': {'protocol': 1}}), flush=True)\n"
             "sys.stdin.readline()\n"
             "sys.stderr.write('Fatal Python error: Segmentation fault\\n'); sys.stderr.flush()\n"
             "import os; os._exit(139)\n")
    path, version = script_zipapp(tmp_path, agent)
    c = AgentClient(transport.start_agent(path, version), "bench-box")
    with pytest.raises(DeviceError) as exc:
        c.call("bench", {"model": "m.onnx"}, timeout_s=30)
    msg = str(exc.value)
    assert "device 'bench-box'" in msg and "call 'bench'" in msg
    assert "139" in msg and "Segmentation fault" in msg
    with pytest.raises(DeviceError):
        c.call("ping")
    c.close()


def test_killed_real_agent_is_a_device_error(client):
    os.kill(client.channel.proc.pid, signal.SIGKILL)
    with pytest.raises(DeviceError) as exc:
        client.call("ping", timeout_s=10)
    assert "bench-box" in str(exc.value) and "ping" in str(exc.value)
    assert "-9" in str(exc.value)


def test_call_timeout_is_a_device_error_and_stops_the_agent(client, project, tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    (project.local_workdir_of("bench-box") / "models").mkdir(parents=True, exist_ok=True)
    (project.local_workdir_of("bench-box") / "models" / "relu.onnx").write_bytes(m.SerializeToString())
    slow = {"fixed_n": 10**7, "warmup_min_n": 1, "warmup_min_s": 0.0}  # minutes of work
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        client.call("bench", {"model": "models/relu.onnx", "protocol": slow}, timeout_s=1.0)
    assert time.monotonic() - t0 < 8
    assert "timed out after 1 s" in str(exc.value) and "call 'bench'" in str(exc.value)
    assert not client.channel.alive()
    with pytest.raises(DeviceError) as exc:
        client.call("ping")
    assert "unusable" in str(exc.value)


def test_progress_callbacks_arrive_before_the_result(client, project, tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    (project.local_workdir_of("bench-box") / "models").mkdir(parents=True, exist_ok=True)
    (project.local_workdir_of("bench-box") / "models" / "r.onnx").write_bytes(m.SerializeToString())
    fast = {"warmup_min_n": 2, "warmup_min_s": 0.0, "min_n": 5, "min_s": 0.0, "max_s": 0.3, "max_cov": 1.0}
    seen = []
    r = client.call("bench_many", {"items": [{"key": "a", "model": "models/r.onnx"},
                                             {"key": "b", "model": "models/r.onnx"}], "protocol": fast},
                    on_progress=seen.append)
    assert [s["key"] for s in seen] == ["a", "b"] and sorted(r["results"]) == ["a", "b"]


def test_close_is_polite_and_idempotent(client):
    proc = client.channel.proc
    client.close()
    assert proc.wait(timeout=5) == 0  # shutdown, not a kill
    client.close()
    with pytest.raises(DeviceError):
        client.call("ping")


# -- a device is untrusted: whatever its agent writes, the host gets one answer or one DeviceError ----------

HELLO = "import sys, json\nprint(json.dumps({'hello': {'protocol': 1}}), flush=True)\n"


def answering(lines: str) -> str:
    """An agent that says hello, then writes ``lines`` (Python expressions, one a line, with the request's
    ``req``) after each request it reads."""
    body = "".join(f"        print({ln}, flush=True)\n" for ln in lines.strip().splitlines())
    return HELLO + f"for raw in sys.stdin:\n    req = json.loads(raw)\n    if True:\n{body}"


def refused_call(script_zipapp, transport, tmp_path, answer: str) -> tuple[AgentClient, str]:
    """A client of an agent ``answering(answer)``, and the DeviceError its ``lut.list`` call raised."""
    path, version = script_zipapp(tmp_path, answering(answer))
    c = AgentClient(transport.start_agent(path, version), "bench-box")
    with pytest.raises(DeviceError) as exc:
        c.call("lut.list", timeout_s=20)
    return c, str(exc.value)


@pytest.mark.parametrize("depth", [65, 100_000])
def test_an_answer_nested_too_deeply_is_one_device_error_and_ends_the_connection(script_zipapp, transport, tmp_path,
                                                                                  depth):
    answer = f"'{{\"id\": %d, \"result\": ' % req['id'] + '[' * {depth - 1} + ']' * {depth - 1} + '}}'"
    c, error = refused_call(script_zipapp, transport, tmp_path, answer)
    assert "call 'lut.list' (id 1): the agent sent an answer nested more than 64 levels deep" in error
    assert not c.channel.alive()
    with pytest.raises(DeviceError, match="unusable: the agent sent a malformed answer"):
        c.call("ping")


@pytest.mark.parametrize("value, problem", [
    ("1" + "0" * 400, "with a number too large to read"),  # JSON's int; float() of it was an OverflowError
    ('"\\ud800"', "with text that is not Unicode"),  # writing it as UTF-8 was a UnicodeEncodeError
    ('{"\\udfff": 1}', "with text that is not Unicode"),  # in a key too
    # no JSON number; the agent sends null: a device's NaN went on into its LUT file, which JSON readers refuse
    ('{"ram_mb": NaN}', "with the number NaN (the protocol sends null for a number that is not finite)"),
    ("-Infinity", "with the number -Infinity"),
])
def test_an_answer_with_a_value_no_record_holds_is_one_device_error(script_zipapp, transport, tmp_path, value,
                                                                     problem):
    answer = f"'{{\"id\": %d, \"result\": {{\"entries\": [%s]}}}}' % (req['id'], {value!r})"
    c, error = refused_call(script_zipapp, transport, tmp_path, answer)
    assert f"call 'lut.list' (id 1): the agent sent an answer {problem}" in error
    assert not c.channel.alive()


def test_a_hello_with_a_value_no_record_holds_is_one_device_error(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, "import sys\nprint('{\"hello\": {\"protocol\": 1, \"version\": "
                                            "\"\\\\ud800\"}}', flush=True)\nsys.stdin.read()\n")
    channel = transport.start_agent(path, version)
    with pytest.raises(DeviceError) as exc:
        AgentClient(channel, "bench-box", hello_timeout_s=20)
    assert exc.value.message.startswith("device 'bench-box': agent start: the agent sent a hello with text that "
                                        "is not Unicode")
    assert not channel.alive()


def test_a_hello_or_progress_with_nan_is_one_device_error(script_zipapp, transport, tmp_path):
    hello = "{\"hello\": {\"protocol\": 1, \"cpus\": Infinity}}"
    path, version = script_zipapp(tmp_path, f"import sys\nprint({hello!r}, flush=True)\nsys.stdin.read()\n")
    with pytest.raises(DeviceError, match="agent start: the agent sent a hello with the number Infinity"):
        AgentClient(transport.start_agent(path, version), "bench-box", hello_timeout_s=20)
    c, error = refused_call(script_zipapp, transport, tmp_path,
                            "'{\"id\": %d, \"progress\": {\"done\": NaN}}' % req['id']")
    assert "call 'lut.list' (id 1): the agent sent an answer with the number NaN" in error
    assert not c.channel.alive()


def test_another_calls_line_with_nan_is_skipped_as_a_stray_line(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, answering("'{\"id\": 99, \"result\": NaN}'\n"
                                                      "json.dumps({'id': req['id'], 'result': {'ok': 1}})"))
    with AgentClient(transport.start_agent(path, version), "bench-box") as c:
        assert c.call("lut.list", timeout_s=20) == {"ok": 1}


def test_an_answer_nested_64_levels_deep_is_an_answer(script_zipapp, transport, tmp_path):
    path, version = script_zipapp(tmp_path, answering("'{\"id\": %d, \"result\": ' % req['id'] + '[' * 63 + "
                                                      "']' * 63 + '}'"))
    with AgentClient(transport.start_agent(path, version), "bench-box") as c:
        got = c.call("lut.list", timeout_s=20)
        for _ in range(62):
            (got,) = got
        assert got == []


def test_stray_lines_and_junk_progress_are_skipped(script_zipapp, transport, tmp_path):
    """Only a dict with the request's id is its answer; progress reaches the callback only as a dict."""
    lines = """
        'not json'
        json.dumps([req['id']])
        json.dumps({'id': req['id'] + 1, 'result': 'late'})
        '{"id": %d, "result": %s}' % (req['id'] + 1, '[' * 70 + ']' * 70)
        json.dumps({'id': req['id'], 'progress': 'half'})
        json.dumps({'id': req['id'], 'progress': {'done': 1}})
        json.dumps({'id': req['id'], 'nothing': 'yet'})
        json.dumps({'id': req['id'], 'result': {'n': req['id']}})
    """
    path, version = script_zipapp(tmp_path, answering(lines))
    seen = []
    with AgentClient(transport.start_agent(path, version), "bench-box") as c:
        assert c.call("bench", timeout_s=20, on_progress=seen.append) == {"n": 1}
        assert c.call("bench", timeout_s=20) == {"n": 2}  # no callback: progress is skipped
    assert seen == [{"done": 1}]


@pytest.mark.parametrize("error, cls, text", [
    ({"type": "RuntimeMissing", "message": "no tensorrt"}, AgentRuntimeMissingError,
     "agent error RuntimeMissing: bench: no tensorrt"),
    ({"type": "BadParams"}, AgentError, "agent error BadParams: bench: "),
    ("boom", AgentError, "agent error Internal: bench: 'boom'"),
])
def test_an_agent_error_of_any_shape_is_one_agent_error(script_zipapp, transport, tmp_path, error, cls, text):
    path, version = script_zipapp(tmp_path, answering(f"json.dumps({{'id': req['id'], 'error': {error!r}}})"))
    with AgentClient(transport.start_agent(path, version), "bench-box") as c:
        with pytest.raises(AgentError) as exc:
            c.call("bench", timeout_s=20)
    assert type(exc.value) is cls and exc.value.message.endswith(text)
    assert isinstance(exc.value, RuntimeMissingError) == (cls is AgentRuntimeMissingError)
    assert cls is AgentError or "install the runtime" in exc.value.hint


def test_a_login_banner_and_other_lines_before_the_hello_are_skipped(script_zipapp, transport, tmp_path):
    """A line nested too deeply for json to parse was a RecursionError out of AgentClient (an internal error of
    every command); it is skipped as any other line that is not the hello."""
    banner = ("import sys, json\nprint('Welcome to the lab'); print('[1, 2]'); print(json.dumps({'hello': 'hi'}))\n"
              "print('[' * 100_000); print('{\"hello\": ' + '[' * 100_000 + ']' * 100_000 + '}')\n"
              "print(json.dumps({'hello': {'protocol': 1, 'version': 'v7'}}), flush=True)\n"
              "print(json.dumps({'id': json.loads(sys.stdin.readline())['id'], 'result': {}}), flush=True)\n")
    path, version = script_zipapp(tmp_path, banner)
    with AgentClient(transport.start_agent(path, version), "bench-box", expect_version="v7") as c:
        assert c.version == "v7"
    assert not c.channel.alive()  # leaving the block stops the agent


@pytest.mark.parametrize("n, shown", [(3000, "..." + "x" * 1497 + "END"), (1497, "x" * 1497 + "END")])
def test_no_hello_within_the_wait_is_a_device_error_with_the_last_1500_characters_of_stderr(
        script_zipapp, transport, tmp_path, n, shown):
    path, version = script_zipapp(tmp_path, "import sys, time\nprint('still booting', flush=True)\n"
                                            f"sys.stderr.write('x' * {n} + 'END'); sys.stderr.flush()\n"
                                            "time.sleep(30)\n")
    channel = transport.start_agent(path, version)
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as exc:
        AgentClient(channel, "bench-box", hello_timeout_s=1.5)
    assert 1.5 <= time.monotonic() - t0 < 6 and not channel.alive()
    assert exc.value.message == f"device 'bench-box': agent start: no hello line within 1.5 s; agent stderr: {shown}"


def test_each_request_tells_the_agent_its_method_params_and_timeout(script_zipapp, transport, tmp_path):
    """What the agent reads: ``call`` waits 600 s unless told, ``info`` 120 s, ``ping`` 30 s and the shutdown of
    ``close`` 10 s; a structured error leaves the connection as it was."""
    log = tmp_path / "requests.jsonl"
    agent = HELLO + (f"for raw in sys.stdin:\n    req = json.loads(raw)\n"
                     f"    open({str(log)!r}, 'a').write(raw)\n"
                     "    answer = {'result': {'pong': True, 'got': req}}\n"
                     "    if req['method'] == 'fail':\n"
                     "        answer = {'error': {'type': 'X', 'message': 'no'}}\n"
                     "    print(json.dumps(dict(answer, id=req['id'])), flush=True)\n"
                     "    if req['method'] == 'shutdown':\n"
                     "        sys.exit(0)\n")
    path, version = script_zipapp(tmp_path, agent)
    c = AgentClient(transport.start_agent(path, version), "bench-box")
    assert c.call("bench", {"model": "m.onnx"})["got"] == {"id": 1, "method": "bench", "params": {"model": "m.onnx"},
                                                            "timeout_s": 600}
    assert c.info(runtime="tensorrt")["got"] == {"id": 2, "method": "info", "params": {"runtime": "tensorrt"},
                                                 "timeout_s": 120}
    with pytest.raises(AgentError, match="agent error X: fail: no"):
        c.call("fail", timeout_s=5)
    assert c.ping() is True
    proc = c.channel.proc
    c.close()
    assert proc.wait(timeout=5) == 0  # it shut itself down
    sent = [json.loads(raw) for raw in log.read_text().splitlines()]
    assert [(r["method"], r["timeout_s"]) for r in sent] == [("bench", 600), ("info", 120), ("fail", 5), ("ping", 30),
                                                             ("shutdown", 10)]


def test_close_stops_an_agent_that_refuses_to_shut_down(script_zipapp, transport, tmp_path):
    agent = HELLO + ("for raw in sys.stdin:\n    req = json.loads(raw)\n"
                     "    print(json.dumps({'id': req['id'], 'error': {'type': 'Busy'}}), flush=True)\n")
    path, version = script_zipapp(tmp_path, agent)
    c = AgentClient(transport.start_agent(path, version), "bench-box")
    c.close()
    assert not c.channel.alive()
