from __future__ import annotations

import json

import numpy as np
import pytest

from exporters import parity
from exporters.errors import ExportCheckError
from exporters.onnx_export import export_onnx
from exporters.parity import check_parity, compare_arrays

torch = pytest.importorskip("torch")


def test_parity_passes_fp32(net, exported):
    report = check_parity(net, exported.path)
    assert report.passed
    assert report.n_inputs == 3 and report.seed == 0 and report.batch == 1
    assert report.tolerances == {"atol": 1e-4, "rtol": 1e-3}
    (out,) = report.outputs
    assert out.name == "output" and out.n_elements == 3 * 10
    assert 0 <= out.max_abs < 1e-4
    assert out.median_abs <= out.max_abs
    report.raise_if_failed()  # no exception


def test_parity_is_reproducible(net, exported):
    a = check_parity(net, exported.path, seed=5)
    b = check_parity(net, exported.path, seed=5)
    assert a.to_dict() == b.to_dict()


def test_parity_dynamic_batch(net, exported_dynamic):
    report = check_parity(net, exported_dynamic.path, batch=4, n_inputs=2)
    assert report.passed and report.outputs[0].n_elements == 2 * 4 * 10


def test_static_batch_mismatch_is_clear(net, exported):
    with pytest.raises(ExportCheckError, match="static batch of 1.*batch 2"):
        check_parity(net, exported.path, batch=2)


def test_modified_weights_detected(fresh_net, tmp_path):
    net = fresh_net()
    info = export_onnx(net, (1, 3, 32, 32), tmp_path / "m.onnx")
    with torch.no_grad():
        net.head[2].weight.add_(0.05)  # change the module after export
    report = check_parity(net, info.path)
    assert not report.passed
    assert report.max_abs > 1e-3
    assert report.outputs[0].n_violations > 0
    with pytest.raises(ExportCheckError) as err:
        report.raise_if_failed()
    text = str(err.value)
    assert "m.onnx" in text and "max_abs=" in text and "atol=0.0001" in text and "rtol=0.001" in text
    assert f"{report.max_abs:.3g}" in text


def test_to_dict_is_json(net, exported):
    d = check_parity(net, exported.path).to_dict()
    again = json.loads(json.dumps(d))
    assert again["passed"] is True and again["precision"] == "fp32"
    assert again["outputs"][0]["max_abs"] == d["max_abs"]


def test_fp16_judged_on_median():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(10_000) * 3
    fp16_like = ref.astype(np.float16).astype(np.float64)
    fp16_like[:5] += 0.05  # a few outliers: fine for FP16, fatal for FP32
    assert compare_arrays("y", ref, fp16_like, "fp16").passed
    assert not compare_arrays("y", ref, fp16_like, "fp32").passed
    biased = ref + 0.02  # every element off by 2e-2: median error above FP16_MEDIAN_ATOL
    res = compare_arrays("y", ref, biased, "fp16")
    assert not res.passed and res.n_violations == 0 and res.median_abs > parity.FP16_MEDIAN_ATOL


def test_fp16_bounds_shrink_with_an_untrained_networks_small_logits():
    """Logits of about 1e-3 (a classifier initialised at N(0, 0.01)): the unscaled bounds (1e-2 median,
    0.1 elementwise) were ten times the whole output, and zeros, a negation or a shuffle passed."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(30) * 1e-3
    for wrong in (np.zeros(30), -ref, rng.permutation(ref), ref * 10):
        assert not compare_arrays("o", ref, wrong, "fp16").passed
    assert compare_arrays("o", ref, ref.astype(np.float16).astype(np.float64), "fp16").passed
    assert compare_arrays("o", ref * 1e3, ref * 1e3 + 0.005, "fp16").passed  # at scale 1 the bounds stay


def test_fp16_loose_max_catches_gross_errors():
    ref = np.linspace(-1, 1, 1000)
    out = ref.copy()
    out[0] = 5.0
    res = compare_arrays("y", ref, out, "fp16")
    assert not res.passed and res.n_violations == 1 and res.median_abs == 0.0


def test_nan_is_a_failure():
    ref = np.ones(10)
    out = ref.copy()
    out[3] = np.nan
    res = compare_arrays("y", ref, out, "fp32")
    assert not res.passed and res.max_abs == np.inf


def test_fp32_bound_is_elementwise_relative():
    ref = np.array([1000.0, 0.0])
    assert compare_arrays("y", ref, ref + [0.5, 0.0], "fp32").passed  # 0.5 <= 1e-4 + 1e-3 * 1000
    assert not compare_arrays("y", ref, ref + [0.0, 2e-4], "fp32").passed


def test_fp16_end_to_end_on_fp32_graph(net, exported):
    report = check_parity(net, exported.path, precision="fp16")
    assert report.passed and "median_atol" in report.tolerances


def test_unknown_precision(net, exported):
    with pytest.raises(ExportCheckError, match="int8"):
        check_parity(net, exported.path, precision="int8")


def test_shape_mismatch_raises():
    with pytest.raises(ExportCheckError, match="shape"):
        compare_arrays("y", np.zeros((2, 3)), np.zeros((3, 2)), "fp32")


def test_fp32_floor_scales_with_small_outputs():
    """The networks a search exports untrained have logits of about 1e-3, where a fixed floor of 1e-4 was
    a tenth of the output; the floor is now 1e-4 times the output's scale below 1, unchanged above."""
    ref = np.array([1e-3, -5e-4, 2e-4])
    assert compare_arrays("y", ref, ref + 1e-9, "fp32").passed  # float32 noise at this scale
    assert not compare_arrays("y", ref, ref * 1.045, "fp32").passed  # 4.5% off: was within 1e-4
    big = np.array([3.0, -2.0, 0.0])
    assert compare_arrays("y", big, big + [0.0, 0.0, 9e-5], "fp32").passed  # outputs from 1 up: as before


def test_a_wrong_hardsigmoid_slope_in_an_export_is_caught(tmp_path):
    """ONNX's HardSigmoid defaults to slope 0.2, PyTorch's is 1/6: an exporter that dropped the attribute
    moves an untrained mbv3-small's logits by about 4.5%, which the fixed floor let pass."""
    onnx = pytest.importorskip("onnx")
    from edgenas.spaces import get_space

    space = get_space("mbv3-small")
    arch = space.sample(np.random.default_rng(0))
    net = space.build_model(arch).eval()
    info = export_onnx(net, tuple(space.input_shape(arch)), tmp_path / "m.onnx")
    assert check_parity(net, info.path).passed
    graph = onnx.load(str(info.path))
    gates = [n for n in graph.graph.node if n.op_type == "HardSigmoid"]
    assert gates, "mbv3-small's squeeze-excite gates export as HardSigmoid"
    for n in gates:
        for a in n.attribute:
            if a.name == "alpha":
                a.f = 0.2
    onnx.save(graph, str(tmp_path / "bad.onnx"))
    report = check_parity(net, tmp_path / "bad.onnx")
    assert not report.passed and report.outputs[0].ref_max_abs < 1e-2
