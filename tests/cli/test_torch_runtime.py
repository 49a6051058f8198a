"""The ``torch`` runtime and the ``provider`` setting end to end on local devices: TorchScript blocks and
models are traced on the host (with their input shapes inside), profiled, deployed and calibrated; a
file of the other format, or a GPU the machine lacks, is one clear error that changes nothing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.protocols import FAST

torch = pytest.importorskip("torch")


def _profile(proj, name: str, **settings: str) -> None:
    lines = ["[device]", f'name = "{name}"', 'transport = "local"'] + [f'{k} = "{v}"' for k, v in settings.items()]
    (proj / "profiles").mkdir(exist_ok=True)
    (proj / "profiles" / f"{name}.toml").write_text("\n".join(lines) + "\n")


def _arch_file(tmp_path, seed: int = 3):
    from edgenas.spaces import get_space

    space = get_space("mbv3-tiny")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(seed)))))
    return path


def test_torch_profile_deploy_calibrate(proj, cli, tmp_path):
    from edgenas.fleet.profiler import profile_device
    from edgenas.io import sha256_file
    from edgenas.latency.lut import Lut
    from edgenas.project import Project
    from edgenas.store import open_store
    from exporters.torchscript_export import stored_meta

    _profile(proj, "cpu-torch", runtime="torch")
    _profile(proj, "gpu-half", runtime="torch", provider="cuda", precision="fp16")
    listed = {r["name"]: r for r in cli("device", "list", "--json").json()}
    assert (listed["cpu-torch"]["runtime"], listed["cpu-torch"]["provider"]) == ("torch", "cpu")
    assert (listed["gpu-half"]["provider"], listed["gpu-half"]["precision"]) == ("cuda", "fp16")
    assert listed["local"]["provider"] == "cpu"
    res = profile_device(Project(proj), "cpu-torch", "mbv3-tiny", protocol=FAST)
    assert res.n_entries == 22 and res.measured == 22
    lut = Lut.load(res.lut_path)
    assert lut.runtime == "torch" and lut.fingerprint["settings"]["runtime"] == "torch"
    assert "provider" not in lut.fingerprint["settings"]  # the CPU: no provider sent, fingerprints unchanged
    blocks = list((proj / ".edgenas" / "blocks" / "mbv3-tiny").glob("*.pt"))
    assert len(blocks) == 22 and all(stored_meta(p)["input_shapes"] for p in blocks)
    assert lut.reference["ms"] > 0  # timed against the TorchScript copy of the speed reference
    onnx_lut = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    assert Lut.load(onnx_lut).fingerprint_hash != lut.fingerprint_hash

    arch = _arch_file(tmp_path)
    d = cli("deploy", "cpu-torch", str(arch), "--out", str(tmp_path / "exp"), "--json")
    assert d.code == 0, d.err
    d = d.json()
    assert d["measured_ms"] > 0 and d["predicted_ms"] > 0 and d["stats"]["n"] >= 1
    meta = stored_meta(tmp_path / "exp" / "model.pt")
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert meta["onnx_sha256"] == manifest["onnx_sha256"] and meta["input_shapes"] == [manifest["input_shape"]]
    (m,) = open_store(Project(proj)).list(device="cpu-torch")
    assert m.runtime == "torch" and m.fingerprint_hash == lut.fingerprint_hash
    # the hash of the file that was timed, the TorchScript one (it was the ONNX file's)
    assert m.artifact_sha256 == d["artifact_sha256"] == sha256_file(tmp_path / "exp" / "model.pt")
    assert m.stats["ref_sha256"] == lut.reference["sha256"]

    shown = cli("lut", "show", str(res.lut_path), "--json").json()
    assert (shown["runtime"], shown["provider"], shown["precision"]) == ("torch", "cpu", "fp32")
    c = cli("lut", "calibrate", "cpu-torch", "--space", "mbv3-tiny", "--json")
    assert c.code == 0, c.err
    assert c.json()["n_points"] == 1


def test_deploy_runtime_override_and_export_format(proj, cli, tmp_path):
    arch = _arch_file(tmp_path, seed=5)
    e = cli("export", str(arch), "--out", str(tmp_path / "exp"), "--format", "torchscript", "--json")
    assert e.code == 0, e.err
    pt = tmp_path / "exp" / "model.pt"
    assert e.json()["torchscript_path"] == str(pt) and pt.is_file()
    before = pt.stat().st_mtime_ns
    again = cli("export", str(arch), "--out", str(tmp_path / "exp"), "--format", "torchscript", "--json")
    assert again.code == 0 and pt.stat().st_mtime_ns == before  # traced once per ONNX file

    remembered = proj / ".edgenas" / "fingerprints" / "local.json"
    before_fp = json.loads(remembered.read_text())["fingerprint_hash"]
    d = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"), "--runtime", "torch", "--json")
    assert d.code == 0, d.err
    assert d.json()["runtime"] == "torch" and d.json()["measured_ms"] > 0
    # the onnxruntime LUT does not predict a torch measurement, and the override is not a device change
    assert d.json()["predicted_ms"] is None and "per runtime" in d.json()["note"]
    assert json.loads(remembered.read_text())["fingerprint_hash"] == before_fp
    m = cli("measure", "local", str(pt), "--runtime", "torch", "--json")
    assert m.code == 0, m.err
    assert m.json()["session"]["runtime"] == "torch" and m.json()["stats"]["median_ms"] > 0


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_wrong_format_is_one_error_and_changes_nothing(proj, cli, tmp_path, snapshot):
    arch = _arch_file(tmp_path, seed=7)
    assert cli("export", str(arch), "--out", str(tmp_path / "exp"), "--format", "torchscript").code == 0
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a TorchScript archive")
    plain = tmp_path / "plain.pt"  # TorchScript without the shapes edgenas stores
    torch.jit.trace(torch.nn.ReLU(), torch.randn(1, 4)).save(str(plain))
    cases = [
        (("measure", "local", str(tmp_path / "exp" / "model.pt")), "runtime onnxruntime times ONNX"),
        (("measure", "local", str(tmp_path / "exp" / "model.onnx"), "--runtime", "torch"), "TorchScript (.pt)"),
        (("measure", "local", str(junk), "--runtime", "torch"), "not a TorchScript file"),
        (("measure", "local", str(plain), "--runtime", "torch"), "with its input shapes"),
    ]
    before = snapshot(proj)
    for args, text in cases:
        res = cli(*args)
        assert res.code != 0 and text in res.err, (args, res.err)
        assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert snapshot(proj) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_missing_is_one_error(proj, cli):
    _profile(proj, "gpu", runtime="torch", provider="cuda")
    res = cli("profile", "gpu", "--space", "mbv3-tiny")
    assert res.code != 0 and "torch has no CUDA device here" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not (proj / "luts" / "gpu").exists()


def test_provider_setting():
    from edgenas.devices.profiles import profile_from_dict
    from edgenas.devices.session import runtime_params
    from edgenas.errors import InputError

    cpu = profile_from_dict({"name": "a", "transport": "local", "provider": "cpu"})
    assert runtime_params(cpu) == runtime_params(profile_from_dict({"name": "a", "transport": "local"}))
    gpu = profile_from_dict({"name": "b", "transport": "local", "provider": "cuda"})
    assert runtime_params(gpu) == {"runtime": "onnxruntime", "threads": 1, "precision": "fp32", "provider": "cuda"}
    half = profile_from_dict({"name": "b", "transport": "local", "runtime": "torch", "provider": "cuda",
                              "precision": "fp16"})
    assert runtime_params(half) == {"runtime": "torch", "threads": 1, "precision": "fp16", "provider": "cuda"}
    assert runtime_params(half, "onnxruntime")["precision"] == "fp32"  # what ONNX Runtime on CUDA measures
    trt_ep = profile_from_dict({"name": "c", "transport": "local", "provider": "tensorrt", "precision": "fp16"})
    assert runtime_params(trt_ep, "torch") == {"runtime": "torch", "threads": 1, "precision": "fp16",
                                               "provider": "cuda"}  # torch's GPU
    assert "provider" not in runtime_params(trt_ep, "tensorrt")   # an engine always runs on the GPU
    int8 = profile_from_dict({"name": "e", "transport": "local", "runtime": "tensorrt", "precision": "int8"})
    assert runtime_params(int8, "torch")["precision"] == "fp32"  # deploy's fallback measures what it can
    for bad, text in (({"provider": "rocm"}, "provider 'rocm' is not one of cpu, cuda, tensorrt"),
                      ({"runtime": "torch", "provider": "tensorrt"}, "is not one of cpu, cuda"),
                      ({"runtime": "tensorrt", "provider": "cuda"}, "not a setting of runtime 'tensorrt'"),
                      ({"provider": 1}, "provider must be a string"),
                      ({"precision": "fp16"}, "precision 'fp16' is not measured by runtime 'onnxruntime'"),
                      ({"provider": "cuda", "precision": "fp16"}, "on provider 'cuda'"),
                      ({"runtime": "torch", "precision": "int8"}, "it measures fp32, fp16")):
        with pytest.raises(InputError, match=text):
            profile_from_dict(dict({"name": "d", "transport": "local"}, **bad))


def test_refresh_of_a_torch_device_uses_torchscript(proj):
    """fleet refresh exports each file format its devices need before the parallel phase, and the drift
    check of a torch table re-times TorchScript sentinels against the TorchScript reference."""
    from edgenas.devices.profiles import load_profile
    from edgenas.fleet.profiler import profile_device
    from edgenas.fleet.refresh import RefreshStatus, prepare_blocks, refresh_device
    from edgenas.project import Project

    project = Project(proj)
    blocks = proj / ".edgenas" / "blocks" / "mbv3-tiny"
    assert prepare_blocks(project, "mbv3-tiny", runtimes={"torch", "onnxruntime"}) == 22  # the ONNX ones exist
    assert len(list(blocks.glob("*.pt"))) == 22 and len(list(blocks.glob("*.onnx"))) == 22
    assert prepare_blocks(project, "mbv3-tiny", runtimes={"torch", "tensorrt"}) == 0  # cached; TensorRT: ONNX
    for name in ("reference-conv16", "overhead-relu8"):
        assert (proj / ".edgenas" / "blocks" / f"{name}.pt").is_file()

    _profile(proj, "cpu-torch", runtime="torch")
    profile_device(project, "cpu-torch", "mbv3-tiny", protocol=FAST)
    res = refresh_device(project, load_profile(project, "cpu-torch"), "mbv3-tiny", protocol=FAST, drift_floor=10.0)
    assert res.status is RefreshStatus.VERIFIED, res.reason
    assert res.drift is not None and res.speed_change is not None  # timed against the reference


@pytest.mark.parametrize("provider, shown", [("cuda", "cuda"), (None, "cpu"), ("../../x\nfake: 1", "unknown"),
                                             (["cuda"], "unknown")])
def test_lut_show_names_the_provider(proj, cli, tmp_path, provider, shown):
    lut = json.loads(next((proj / "luts" / "local").glob("mbv3-tiny-*.json")).read_text())
    lut["fingerprint"]["settings"]["provider"] = provider
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(lut))
    res = cli("lut", "show", str(path), "--json")
    assert res.code == 0, res.err
    assert res.json()["provider"] == shown


def test_which_runtimes_overlap_their_calls():
    from edgenas.devices.runtimes import calls_overlap
    from edgenas.fleet.measure import LUT_PROTOCOL, OVERLAP_RUNS_PER_SAMPLE, lut_protocol_for, runs_per_sample

    assert calls_overlap("torch", "cuda") and calls_overlap("tensorrt", None)
    assert not calls_overlap("torch", None) and not calls_overlap("onnxruntime", "cuda")
    assert not calls_overlap("onnxruntime", "tensorrt")  # ONNX Runtime's run() returns host outputs
    assert lut_protocol_for({"runtime": "onnxruntime"}) == LUT_PROTOCOL  # CPU tables: unchanged
    assert lut_protocol_for({"runtime": "torch", "provider": "cuda"})["runs_per_sample"] == OVERLAP_RUNS_PER_SAMPLE
    assert lut_protocol_for({"runtime": "tensorrt"})["runs_per_sample"] == OVERLAP_RUNS_PER_SAMPLE
    for bad in ("10", 0, -3, 2.5, True, None, 10 ** 9, [10]):  # a table's protocol is file data
        assert runs_per_sample({"runs_per_sample": bad}) == 1
    assert runs_per_sample({}) == 1 and runs_per_sample({"runs_per_sample": 7}) == 7
    from device_agents.edgenas_agent.measure import K_MAX
    from edgenas.fleet.measure import MAX_RUNS_PER_SAMPLE

    assert MAX_RUNS_PER_SAMPLE == K_MAX  # the host reads back what the agent accepts, no more


def test_a_table_timed_in_runs(proj, cli, monkeypatch):
    """A profile timed in runs (what torch on CUDA and TensorRT get; forced here on the CPU) times the
    entries and the overhead in runs, the overhead model once more one call at a time (``sync``), and the
    drift check of that table re-times its sentinels in runs too."""
    from edgenas.devices.profiles import load_profile
    from edgenas.fleet import drift
    from edgenas.fleet.profiler import profile_device
    from edgenas.fleet.refresh import refresh_device
    from edgenas.latency.lut import Calibration, Lut
    from edgenas.latency.store import LutStore
    from edgenas.project import Project

    project = Project(proj)
    _profile(proj, "runs")
    res = profile_device(project, "runs", "mbv3-tiny", protocol=dict(FAST, runs_per_sample=3))
    lut = Lut.load(res.lut_path)
    assert lut.protocol["runs_per_sample"] == 3
    assert all(e.k == 3 for e in lut.entries.values()) and lut.overhead.k == 3
    assert lut.sync is not None and lut.sync.k == 1 and lut.sync.n >= 200 and lut.sync.ratio is None
    shown = cli("lut", "show", str(res.lut_path), "--json").json()
    assert shown["runs_per_sample"] == 3 and shown["sync_extra_ms"] == pytest.approx(lut.sync_extra_ms)

    # the CLI's profile (here reusing that table) says to fit such a table to whole models, until it is
    said = cli("profile", "runs", "--space", "mbv3-tiny")
    assert said.code == 0 and "lut calibrate runs --space mbv3-tiny --measure 8" in " ".join(said.out.split())
    assert cli("profile", "runs", "--space", "mbv3-tiny", "--json").json()["runs_per_sample"] == 3
    LutStore(project.luts_dir).save(lut.with_calibration(Calibration("loglinear", {"a": 0.0, "b": 1.0}, 8)))
    said = cli("profile", "runs", "--space", "mbv3-tiny")
    assert said.code == 0 and "entries" in said.out and "lut calibrate" not in said.out
    assert cli("profile", "runs", "--space", "mbv3-tiny", "--json").json()["calibrated"] is True

    sent = []
    real = drift._sentinel_pass
    monkeypatch.setattr(drift, "_sentinel_pass",
                        lambda s, t, k, params, th: sent.append(params) or real(s, t, k, params, th))
    refresh_device(project, load_profile(project, "runs"), "mbv3-tiny", protocol=FAST, drift_floor=10.0)
    assert sent and sent[0]["protocol"]["runs_per_sample"] == 3
    plain = profile_device(project, "local", "mbv3-tiny", protocol=FAST, force=True)
    assert Lut.load(plain.lut_path).sync is None and "runs_per_sample" not in Lut.load(plain.lut_path).protocol
    said = cli("profile", "local", "--space", "mbv3-tiny")
    assert said.code == 0 and "entries" in said.out and "lut calibrate" not in said.out


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load's deprecation, as in the tests above
def test_an_nb201_export_is_the_same_network_every_time_and_in_both_formats(fresh, cli, tmp_path):
    """nb201's layers took PyTorch's default initialisation from the global generator: two exports of one
    record were different files, and model.pt beside model.onnx a different network (outputs 0.38 apart)."""
    import onnxruntime as ort

    arch = tmp_path / "cell.json"
    arch.write_text(json.dumps({"space": "nb201", "schema": 1, "arch": "|nor_conv_3x3~0|+|nor_conv_1x1~0|"
                                "skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"}))
    shas = []
    for name in ("a", "b"):
        res = cli("export", str(arch), "--out", str(tmp_path / name), "--format", "torchscript", "--json")
        assert res.code == 0, res.err
        shas.append(hashlib.sha256((tmp_path / name / "model.onnx").read_bytes()).hexdigest())
    assert shas[0] == shas[1]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "a" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        pt_out = torch.jit.load(str(tmp_path / "a" / "model.pt"))(torch.from_numpy(x)).numpy()
    assert np.abs(onnx_out - pt_out).max() < 1e-4 * max(1.0, float(np.abs(onnx_out).max()))


def test_a_model_pt_beside_an_export_of_an_earlier_version_is_refused_not_another_network(fresh, cli, tmp_path,
                                                                                         monkeypatch):
    """An nb201 folder exported before the weights were seeded was reused, and model.pt traced from today's
    seeded network beside it: two networks 0.32 apart. It is now refused, and --force makes both anew."""
    import torch

    from edgenas import export as export_mod

    arch = tmp_path / "cell.json"
    arch.write_text(json.dumps({"space": "nb201", "schema": 1, "arch": "|nor_conv_3x3~0|+|nor_conv_1x1~0|"
                                "skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"}))
    seeded = export_mod.build_for_export

    def unseeded(space, a):  # what the earlier version built: PyTorch's default initialisation, another draw
        torch.manual_seed(12345)
        return space.build_model(a).eval()

    monkeypatch.setattr(export_mod, "build_for_export", unseeded)
    assert cli("export", str(arch), "--out", str(tmp_path / "e")).code == 0
    monkeypatch.setattr(export_mod, "build_for_export", seeded)
    res = cli("export", str(arch), "--out", str(tmp_path / "e"), "--format", "torchscript")
    assert res.code == 5 and "--force" in res.err and not (tmp_path / "e" / "model.pt").exists(), res.err
    res = cli("export", str(arch), "--out", str(tmp_path / "e"), "--format", "torchscript", "--force")
    assert res.code == 0, res.err
    assert (tmp_path / "e" / "model.pt").is_file()
