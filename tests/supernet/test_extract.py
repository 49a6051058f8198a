"""Standalone sub-networks: parity with the supernet path and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.supernet import extract_subnet


def _archs(net, n_random: int = 3):
    rng = np.random.default_rng(7)
    return [net.largest_arch(), net.smallest_arch()] + [net.random_arch(rng) for _ in range(n_random)]


def test_extracted_subnets_match_supernet_path(space, perturbed):
    net = perturbed(4)
    for arch in _archs(net):
        model = extract_subnet(net, arch, space)
        assert isinstance(model, torch.nn.Sequential)
        assert len(model) == len(space.block_keys(arch))
        x = torch.randn(2, 3, arch.r, arch.r)
        net.set_active(arch)
        with torch.no_grad():
            ref, out = net(x), model(x)
        assert ref.abs().max() > 0.1, "degenerate outputs would hide a wrong copy"
        assert (ref - out).abs().max() < 1e-5, arch
        assert net.active_arch == arch


def test_extraction_restores_active_arch_and_is_independent(space, perturbed):
    net = perturbed(5)
    large, small = net.largest_arch(), net.smallest_arch()
    net.set_active(large)
    model = extract_subnet(net, small, space)
    assert net.active_arch == large
    x = torch.randn(1, 3, small.r, small.r)
    with torch.no_grad():
        before = model(x)
        net.first_conv.conv.weight.add_(1.0)  # a standalone copy does not follow the supernet
        assert torch.equal(model(x), before)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_extracted_subnet_exports_to_onnx(space, perturbed, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = perturbed(6)
    arch = net.random_arch(np.random.default_rng(3))
    model = extract_subnet(net, arch, space)
    x = torch.randn(1, 3, arch.r, arch.r)
    path = tmp_path / "subnet.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(got - ref).max() < 1e-4
