"""The agent end to end: a real zipapp subprocess, real ONNX Runtime, the JSON-lines protocol."""

import json
import os
import signal

import pytest

from edgenas.errors import AgentError, RuntimeMissingError
from edgenas.io import sha256_file

STATS_FIELDS = {"n", "k", "warmup_n", "median_ms", "mean_ms", "std_ms", "cov", "p90_ms", "p99_ms",
                "min_ms", "max_ms", "stable", "total_s"}


def test_hello_names_protocol_version_and_workdir(client, bundle, project):
    assert client.hello["protocol"] == 1 and client.hello["agent"] == "edgenas-agent"
    assert client.hello["version"] == bundle[1] == sha256_file(bundle[0])
    assert client.hello["workdir"] == str(project.local_workdir)
    assert client.ping()


def test_bad_line_gives_bad_request_and_agent_keeps_serving(client):
    client.channel.send_line("{this is not json")
    reply = None
    while reply is None:
        reply = client.channel.recv_line(5)
    msg = json.loads(reply)
    assert msg["id"] is None and msg["error"]["type"] == "BadRequest"
    client.channel.send_line(json.dumps({"id": 99, "params": {}}))  # no method
    msg = json.loads(client.channel.recv_line(5) or "{}")
    assert msg == {"id": 99, "error": {"type": "BadRequest", "message": "request has no method"}}
    assert client.ping()


def test_unknown_method_and_bad_params(client, fast):
    with pytest.raises(AgentError) as exc:
        client.call("bogus")
    assert exc.value.type == "UnknownMethod" and "device 'local'" in str(exc.value)
    with pytest.raises(AgentError) as exc:
        client.call("bench", {"model": "x.onnx", "protocol": {"min_n": -3}})
    assert exc.value.type == "BadRequest" and "min_n" in exc.value.agent_message
    with pytest.raises(AgentError) as exc:
        client.call("bench", {"model": "models/absent.onnx", "protocol": fast})
    assert exc.value.type == "FileNotFoundError"


def test_bench_onnxruntime_stats_cold_start_and_state(client, model_rel, fast):
    progress = []
    r = client.call("bench", {"model": model_rel, "threads": 1, "protocol": fast}, on_progress=progress.append)
    s = r["stats"]
    assert STATS_FIELDS <= set(s)
    assert 0 < s["min_ms"] <= s["median_ms"] <= s["max_ms"] and s["n"] >= 10
    assert s["total_s"] <= fast["max_s"] + 0.5
    assert r["cold_start"]["session_ms"] > 0 and r["cold_start"]["first_run_ms"] > 0
    assert r["session"]["providers"] == ["CPUExecutionProvider"]
    assert r["session"]["intra_op_num_threads"] == 1 and r["session"]["inter_op_num_threads"] == 1
    assert "before" in r["state"] and "after" in r["state"]
    assert r["protocol"]["max_s"] == fast["max_s"]


def test_threads_are_honoured(client, model_rel, fast):
    one = client.call("bench", {"model": model_rel, "threads": 1, "protocol": fast})["session"]
    three = client.call("bench", {"model": model_rel, "threads": 3, "protocol": fast})["session"]
    assert one["intra_op_num_threads"] == 1 and three["intra_op_num_threads"] == 3
    assert three["os_threads"] >= one["os_threads"] + 2  # ORT's intra-op pool: threads - 1 workers


def test_runtime_missing_lists_what_the_device_has(client, model_rel, fast):
    with pytest.raises(RuntimeMissingError) as exc:
        client.call("bench", {"model": model_rel, "runtime": "tensorrt", "protocol": fast})
    assert exc.value.type == "RuntimeMissing"
    assert "onnxruntime" in exc.value.agent_message and "tensorrt" in exc.value.agent_message
    with pytest.raises(RuntimeMissingError):
        client.call("bench", {"model": model_rel, "provider": "cuda", "protocol": fast})
    with pytest.raises(RuntimeMissingError):
        client.call("build_engine", {"model": model_rel})


def test_invalid_model_is_a_structured_error(client, transport, tmp_path, fast):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    transport.put_file(bad, "models/bad.onnx")
    with pytest.raises(AgentError) as exc:
        client.call("bench", {"model": "models/bad.onnx", "protocol": fast})
    assert exc.value.type == "InvalidModel"
    assert client.ping()


def _items(transport, tmp_path, n, tiny_conv_onnx):
    items = []
    for i in range(n):
        sha = tiny_conv_onnx(tmp_path / f"m{i}.onnx", channels=4 + i, size=8, seed=i)
        transport.put_file(tmp_path / f"m{i}.onnx", f"models/{sha}.onnx")
        items.append({"key": f"blk{i}", "model": f"models/{sha}.onnx"})
    return items


def test_bench_many_writes_partial_and_reuses_it(client, transport, tmp_path, project, fast, make_onnx):
    items = _items(transport, tmp_path, 3, make_onnx)
    params = {"items": items, "threads": 1, "protocol": fast, "partial": "partial/p1.jsonl"}
    seen = []
    first = client.call("bench_many", params, on_progress=seen.append)
    assert sorted(first["results"]) == ["blk0", "blk1", "blk2"] and first["reused"] == []
    assert [p["done"] for p in seen] == [1, 2, 3] and seen[-1]["total"] == 3
    lines = (project.local_workdir / "partial/p1.jsonl").read_text().splitlines()
    assert [json.loads(l)["key"] for l in lines] == ["blk0", "blk1", "blk2"]
    again = client.call("bench_many", params)
    assert sorted(again["reused"]) == ["blk0", "blk1", "blk2"] and again["measured"] == []
    assert again["results"] == first["results"]
    other = client.call("bench_many", dict(params, threads=2))  # other settings: nothing reusable
    assert other["reused"] == [] and len(other["measured"]) == 3


def test_bench_many_resumes_after_the_agent_is_killed(client, transport, bundle, tmp_path, project, fast, make_onnx):
    from edgenas.errors import DeviceError
    from edgenas.devices.rpc import AgentClient

    items = _items(transport, tmp_path, 4, make_onnx)
    params = {"items": items, "threads": 1, "protocol": fast, "partial": "partial/p2.jsonl"}

    def kill_after_two(p):
        if p["done"] == 2:
            os.kill(client.channel.proc.pid, signal.SIGKILL)

    with pytest.raises(DeviceError):
        client.call("bench_many", params, on_progress=kill_after_two)
    partial = project.local_workdir / "partial/p2.jsonl"
    with open(partial, "a") as fh:
        fh.write('{"key": "blk2", "stats": {"n"')  # a torn line, as a crash mid-write leaves
    done_before = [json.loads(l)["key"] for l in partial.read_text().splitlines()[:-1]]
    assert done_before[:2] == ["blk0", "blk1"]
    with AgentClient(transport.start_agent(*bundle), "local") as fresh:
        r = fresh.call("bench_many", params)
    assert sorted(r["reused"]) == sorted(done_before)
    assert sorted(r["measured"]) == sorted(set(["blk0", "blk1", "blk2", "blk3"]) - set(done_before))
    assert sorted(r["results"]) == ["blk0", "blk1", "blk2", "blk3"]


def _lut(n_entries=1):
    entry = {"n": 20, "median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.01, "cov": 0.01, "p90_ms": 1.1,
             "p99_ms": 1.2, "min_ms": 0.9, "max_ms": 1.3, "stable": True}
    return {"schema": 1, "device": "local", "space": "mbv3", "fingerprint_hash": "ab" * 32,
            "fingerprint": {}, "runtime": "onnxruntime", "precision": "fp32", "threads": 1,
            "protocol": {}, "overhead": entry, "entries": {f"k{i}": entry for i in range(n_entries)}}


def test_lut_put_validates_keeps_previous_and_history(client, transport, tmp_path, project):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_lut(1)))
    sha = transport.put_file(good, "cache/upload.json")
    r = client.call("lut.put", {"name": "mbv3-local.json", "path": "cache/upload.json", "sha256": sha})
    assert r == {"path": "luts/mbv3-local.json", "sha256": sha}
    dest = project.local_workdir / "luts/mbv3-local.json"

    for text, kind in [("{broken json", "InvalidLut"), (json.dumps({"schema": 1}), "InvalidLut"),
                       (json.dumps(dict(_lut(), entries={})), "InvalidLut")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        bsha = transport.put_file(bad, "cache/bad.json")
        with pytest.raises(AgentError) as exc:
            client.call("lut.put", {"name": "mbv3-local.json", "path": "cache/bad.json", "sha256": bsha})
        assert exc.value.type == kind
        assert sha256_file(dest) == sha  # the previous LUT is intact
    with pytest.raises(AgentError) as exc:
        client.call("lut.put", {"name": "mbv3-local.json", "path": "cache/upload.json", "sha256": "0" * 64})
    assert exc.value.type == "HashMismatch"
    for evil in ("../escape.json", "mbv3-local.json\n"):
        with pytest.raises(AgentError) as exc:
            client.call("lut.put", {"name": evil, "path": "cache/upload.json"})
        assert exc.value.type == "BadRequest"

    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(_lut(2)))
    nsha = transport.put_file(newer, "cache/upload.json")
    client.call("lut.put", {"name": "mbv3-local.json", "path": "cache/upload.json", "sha256": nsha})
    assert sha256_file(dest) == nsha
    history = list((project.local_workdir / "luts/history").iterdir())
    assert [sha256_file(h) for h in history] == [sha]
    listed = client.call("lut.list")
    assert [(l["name"], l["sha256"]) for l in listed] == [("mbv3-local.json", nsha)]
    got = client.call("lut.get", {"name": "mbv3-local.json"})
    assert got["sha256"] == nsha and transport.get_file(got["path"], tmp_path / "back.json") == nsha
    with pytest.raises(AgentError):
        client.call("lut.get", {"name": "absent.json"})


def test_file_stat(client, model_rel, project):
    st = client.call("file.stat", {"path": model_rel})
    assert st["exists"] is True and st["sha256"] == model_rel.split("/")[1][:-5]
    assert st["size"] == (project.local_workdir / model_rel).stat().st_size
    assert client.call("file.stat", {"path": "models/nothing.onnx"}) == {"exists": False}


def test_info_hash_depends_on_settings(client):
    a = client.info(runtime="onnxruntime", threads=1, precision="fp32")
    b = client.info(runtime="onnxruntime", threads=1, precision="fp32")
    c = client.info(runtime="onnxruntime", threads=4, precision="fp32")
    assert a["fingerprint_hash"] == b["fingerprint_hash"] != c["fingerprint_hash"]
    assert a["fingerprint"]["software"]["agent_version"] == client.version
    assert a["runtimes"]["onnxruntime"]["version"] and a["runtimes"]["tensorrt"] is None


def test_bench_many_opens_the_speed_reference_once(tmp_path, fast, make_onnx, monkeypatch):
    """Issue 17: one reference session per bench_many (not one per entry); fixed_n opens none."""
    from device_agents.edgenas_agent import bench, runtimes

    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    for i in range(3):
        make_onnx(work / "models" / f"m{i}.onnx", channels=4 + i, size=8, seed=i)
    make_onnx(work / "models" / "ref.onnx", channels=16, size=16, seed=9)
    opened = []
    real = runtimes.open_runner

    def counting(runtime, model, settings):
        opened.append(model.rsplit("/", 1)[-1])
        return real(runtime, model, settings)

    monkeypatch.setattr(runtimes, "open_runner", counting)
    items = [{"key": f"b{i}", "model": f"models/m{i}.onnx"} for i in range(3)]
    out = bench.bench_many(str(work), {"items": items, "protocol": dict(fast, ref_every=4),
                                       "reference": "models/ref.onnx", "partial": "partial/a.jsonl"})
    assert opened.count("ref.onnx") == 1 and len(opened) == 4
    assert all(r["ratio"] > 0 and r["ref_ms"] > 0 for r in out["results"].values())
    opened.clear()
    bench.bench_many(str(work), {"items": items, "protocol": dict(fast, fixed_n=20),
                                 "reference": "models/ref.onnx", "partial": "partial/b.jsonl"})
    assert "ref.onnx" not in opened and len(opened) == 3
