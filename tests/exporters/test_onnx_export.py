from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from exporters.errors import ExportCheckError
from exporters.onnx_export import MIN_OPSET, export_onnx

torch = pytest.importorskip("torch")
INPUT_SHAPE = (1, 3, 32, 32)


def test_export_passes_checker_and_records_graph(exported):
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    assert exported.opset == MIN_OPSET == 17
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert exported.input_shape == INPUT_SHAPE
    assert exported.n_nodes == len(model.graph.node)
    assert sum(exported.op_counts.values()) == exported.n_nodes
    # BN folded into the convs by constant folding; depthwise conv, SE multiply and Gemm present
    assert "BatchNormalization" not in exported.op_counts
    assert exported.op_counts["Conv"] == 6
    assert {"Mul", "HardSigmoid", "HardSwish", "Gemm", "Add"} <= set(exported.op_counts)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    assert exported.dynamic_batch is False and exported.simplified is False


def test_sha256_matches_file(exported):
    import hashlib

    assert exported.sha256 == hashlib.sha256(exported.path.read_bytes()).hexdigest()


def test_same_module_gives_same_bytes(net, exported, tmp_path):
    again = export_onnx(net, INPUT_SHAPE, tmp_path / "again.onnx")
    assert again.path.read_bytes() == exported.path.read_bytes()
    assert again.sha256 == exported.sha256


def test_different_weights_give_different_bytes(fresh_net, exported, tmp_path):
    other = fresh_net(seed=1)
    info = export_onnx(other, INPUT_SHAPE, tmp_path / "other.onnx")
    assert info.sha256 != exported.sha256


@pytest.mark.parametrize("opset", [11, 13, 16])
def test_old_opset_rejected(net, tmp_path, opset):
    with pytest.raises(ExportCheckError, match=f"opset {opset}.*>= 17"):
        export_onnx(net, INPUT_SHAPE, tmp_path / "old.onnx", opset=opset)
    assert not (tmp_path / "old.onnx").exists()


def test_newer_opset_accepted(net, tmp_path):
    info = export_onnx(net, INPUT_SHAPE, tmp_path / "o18.onnx", opset=18)
    model = onnx.load(str(info.path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 18


def test_dynamic_batch_runs_batch_3_and_matches_torch(net, exported_dynamic):
    model = onnx.load(str(exported_dynamic.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(exported_dynamic.path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x})
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_static_batch_rejects_other_batch(exported):
    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})


def test_training_mode_restored_and_eval_used(fresh_net, tmp_path):
    net = fresh_net()
    net.train()
    info = export_onnx(net, INPUT_SHAPE, tmp_path / "t.onnx")
    assert net.training is True
    assert "BatchNormalization" not in info.op_counts  # exported in eval mode (folded BN)


def test_simplify_flag_is_reported(net, tmp_path):
    try:
        import onnxslim  # noqa: F401

        have = True
    except ImportError:
        try:
            import onnxsim  # noqa: F401

            have = True
        except ImportError:
            have = False
    if have:
        info = export_onnx(net, INPUT_SHAPE, tmp_path / "s.onnx", simplify=True)
        assert info.simplified is True
    else:
        with pytest.warns(RuntimeWarning, match="skipped.*onnxslim"):
            info = export_onnx(net, INPUT_SHAPE, tmp_path / "s.onnx", simplify=True)
        assert info.simplified is False
        assert "skipped" in info.notes[0]
    onnx.checker.check_model(onnx.load(str(info.path)), full_check=True)


def test_tuple_outputs_named(tmp_path):
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return y, y.mean(dim=(2, 3))

    info = export_onnx(Two(), (1, 3, 8, 8), tmp_path / "two.onnx", output_name="y")
    model = onnx.load(str(info.path))
    assert [o.name for o in model.graph.output] == ["y_0", "y_1"]


@pytest.mark.parametrize("shape", [(), (1, 0, 32, 32), (1, -3, 32, 32), "abc"])
def test_bad_input_shape(net, tmp_path, shape):
    with pytest.raises(ExportCheckError, match="input_shape"):
        export_onnx(net, shape, tmp_path / "bad.onnx")


def test_wrong_channel_count_is_clear(net, tmp_path):
    with pytest.raises(ExportCheckError, match=r"fails on an input of shape \(1, 4, 32, 32\)"):
        export_onnx(net, (1, 4, 32, 32), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_failure_leaves_old_file(net, exported, tmp_path):
    target = tmp_path / "keep.onnx"
    target.write_bytes(exported.path.read_bytes())
    with pytest.raises(ExportCheckError):
        export_onnx(net, (1, 4, 32, 32), target)
    assert target.read_bytes() == exported.path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["keep.onnx"]


def test_not_a_module(tmp_path):
    with pytest.raises(ExportCheckError, match="torch.nn.Module"):
        export_onnx(lambda x: x, INPUT_SHAPE, tmp_path / "f.onnx")
