"""``edgenas export`` as text: the ONNX file, the TorchScript file beside it and the parity check, as ``--json``
gives them."""

from __future__ import annotations

import json

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
    assert e["reused"] and e["torchscript"] == str(tmp_path / "exp" / "model.pt") and e["engine"] is None
    assert res.out.splitlines() == [
        f"ONNX: {tmp_path / 'exp' / 'model.onnx'} (exported, sha256 {e['sha256'][:12]}…)",
        f"TorchScript: {e['torchscript']} (input shape {e['input_shape']} stored inside)",
        f"parity vs PyTorch: max |diff| {p['max_abs']:.2e}, median {p['median_abs']:.2e} -> pass"]
