from __future__ import annotations

import json

import pytest

from exporters.errors import ExportCheckError
from exporters.manifest import SCHEMA, Manifest
from exporters.parity import check_parity

ARCH = {"space": "mbv3", "schema": 1, "ks": [3, 5], "e": [4, 6], "d": [2], "r": 32}


@pytest.fixture
def manifest(net, exported):
    report = check_parity(net, exported.path)
    return Manifest.for_export(exported, space="mbv3", arch=ARCH, parity=report)


def test_round_trip(manifest, tmp_path):
    path = manifest.save(tmp_path / "m.json")
    back = Manifest.load(path)
    assert back == manifest
    assert back.schema == SCHEMA == 1
    assert back.input_shape == (1, 3, 32, 32)
    assert back.parity["passed"] is True and back.parity["max_abs"] < 1e-4
    assert set(back.versions) == {"torch", "onnx", "onnxruntime"}
    assert back.versions["onnx"] != "absent"
    assert back.created_at.endswith("+00:00")
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_hash_matches_file(manifest, exported):
    assert manifest.onnx_file == exported.path.name
    assert manifest.verify_onnx(exported.path.parent) == exported.path


def test_changed_file_detected(manifest, exported, tmp_path):
    (tmp_path / manifest.onnx_file).write_bytes(exported.path.read_bytes() + b"\0")
    with pytest.raises(ExportCheckError, match="SHA-256"):
        manifest.verify_onnx(tmp_path)
    with pytest.raises(ExportCheckError, match="missing"):
        manifest.verify_onnx(tmp_path / "elsewhere")


def _mutated(manifest, **changes):
    d = json.loads(manifest.to_json())
    d.update(changes)
    return json.dumps(d)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"schema": 2}, "schema 2 is not supported"),
        ({"extra": 1}, "unknown keys"),
        ({"opset": "17"}, "'opset' has the wrong type"),
        ({"dynamic_batch": 1}, "'dynamic_batch' has the wrong type"),
        ({"opset": True}, "'opset' has the wrong type"),
        ({"input_shape": [1, 0, 32]}, "input_shape"),
        ({"onnx_file": "../x.onnx"}, "malformed"),
    ],
)
def test_strict_reading(manifest, changes, match):
    with pytest.raises(ExportCheckError, match=match):
        Manifest.from_json(_mutated(manifest, **changes))


def test_missing_key(manifest):
    d = json.loads(manifest.to_json())
    del d["onnx_sha256"]
    with pytest.raises(ExportCheckError, match=r"missing keys \['onnx_sha256'\]"):
        Manifest.from_dict(d)


def test_bad_json_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ExportCheckError, match="broken.json: not valid JSON"):
        Manifest.load(path)


def test_save_is_atomic_and_leaves_no_temp(manifest, tmp_path):
    manifest.save(tmp_path / "m.json")
    manifest.save(tmp_path / "m.json")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_create_hashes_file(exported):
    man = Manifest.create(arch=ARCH, space="mbv3", opset=17, input_shape=[1, 3, 32, 32],
                          dynamic_batch=False, onnx_path=exported.path, parity=None)
    assert man.onnx_sha256 == exported.sha256 and man.input_shape == (1, 3, 32, 32)
    assert Manifest.from_json(man.to_json()) == man
