"""``edgenas export`` as text: the ONNX file, the TorchScript file beside it and the parity check, as ``--json``
gives them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def test_export_as_text_says_what_json_holds(fresh, cli, tmp_path, monkeypatch):
    from edgenas.spaces import get_space

    monkeypatch.setenv("COLUMNS", "300")
    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(3)))))
    res = cli("export", str(arch), "--out", str(tmp_path / "exp"), "--format", "torchscript")
    assert res.code == 0, res.err
    e = cli("export", str(arch), "--out", str(tmp_path / "exp"), "--format", "torchscript", "--json").json()
    p = e["parity"]
    assert e["reused"] and e["torchscript_path"] == str(tmp_path / "exp" / "model.pt") and e["engine"] is None
    assert res.out.splitlines() == [
        f"ONNX: {tmp_path / 'exp' / 'model.onnx'} (exported, sha256 {e['sha256'][:12]}…)",
        f"TorchScript: {e['torchscript_path']} (input shape {e['input_shape']} stored inside)",
        f"parity vs PyTorch: max |diff| {p['max_abs']:.2e}, median {p['median_abs']:.2e} -> pass"]


def test_export_options_reach_the_model_and_its_manifest(fresh, cli, tmp_path):
    """The defaults are opset 17 and a static batch of 1; --opset and --dynamic-batch are an export of their
    own in the same folder (not the earlier one reused), and --json names the files in the project."""
    import onnx

    from edgenas.spaces import get_space

    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(3)))))
    seen = []
    for extra, opset, dynamic in (((), 17, False), (("--opset", "18", "--dynamic-batch"), 18, True)):
        res = cli("export", str(arch), *extra, "--json")
        assert res.code == 0, res.err
        e = res.json()
        assert sorted(e) == ["engine", "input_shape", "manifest_path", "onnx_path", "parity", "reused", "sha256",
                             "torchscript_path"]
        assert not e["reused"] and e["engine"] is None and e["torchscript_path"] is None
        folder = Path(e["onnx_path"]).parent
        assert Path(e["manifest_path"]).parent == folder and folder.parent == fresh / "exports"
        man = json.loads(Path(e["manifest_path"]).read_text())
        assert (man["opset"], man["dynamic_batch"]) == (opset, dynamic)
        model = onnx.load(e["onnx_path"])
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == opset
        batch = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert (batch.dim_param != "") is dynamic and (batch.dim_value == 1) is not dynamic
        seen.append(e["onnx_path"])
    assert seen[0] == seen[1]  # one architecture, one default folder


def test_export_and_deploy_check_a_hand_edited_manifest_again(fresh, cli, tmp_path):
    """A manifest that says the parity check failed (edgenas writes none), or gives another input shape than the
    space's, is not reused: ``export`` printed "-> FAIL" with exit 0 and ``deploy`` measured that export."""
    from edgenas.spaces import get_space

    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    a = space.sample(np.random.default_rng(3))
    arch.write_text(json.dumps(space.to_dict(a)))
    exp = tmp_path / "exp"
    assert cli("export", str(arch), "--out", str(exp)).code == 0
    manifest = exp / "manifest.json"
    honest = json.loads(manifest.read_text())

    def edit(**fields):
        m = json.loads(manifest.read_text())
        m.update(fields)
        manifest.write_text(json.dumps(m))

    edit(parity=dict(honest["parity"], passed=False))
    res = cli("export", str(arch), "--out", str(exp))
    assert res.code == 0 and "(exported, sha256" in res.out and res.out.rstrip().endswith("-> pass"), res.out
    assert json.loads(manifest.read_text())["parity"]["passed"] is True
    for fields in ({"parity": dict(honest["parity"], passed=False)}, {"input_shape": [1, 3, 1_000_000_000, 28]}):
        edit(**fields)
        res = cli("deploy", "local", str(arch), "--out", str(exp), "--no-calibrate", "--json")
        assert res.code == 0, res.err
        m = json.loads(manifest.read_text())
        assert m["parity"]["passed"] is True and m["onnx_sha256"] == honest["onnx_sha256"]  # made again, so
        assert m["input_shape"] == honest["input_shape"] == list(space.input_shape(a))  # measured as checked
