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
        x, other = torch.randn(2, 3, arch.r, arch.r), torch.randn(2, 3, arch.r, arch.r)
        net.set_active(arch)
        with torch.no_grad():
            ref, out = net(x), model(x)
            assert (net(other) - ref).abs().max() > 0.01, "outputs that ignore the input hide a wrong copy"
        assert ref.abs().max() > 0.1, "degenerate outputs would hide a wrong copy"
        assert (ref - out).abs().max() < 1e-5, arch
        assert net.active_arch == arch


def test_extraction_restores_active_arch_and_is_independent(space, perturbed):
    net = perturbed(5)
    large, small = net.largest_arch(), net.smallest_arch()
    net.set_active(large)
    model = extract_subnet(net, small, space)
    assert net.active_arch == large
    counts = {int(m.num_batches_tracked) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert counts == {int(net.first_conv.bn.num_batches_tracked)} != {0}  # the statistics' count comes along
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


def test_a_supernet_of_another_config_than_its_space_is_one_input_error(space):
    """A checkpoint's supernet with a stem width of its own extracted into the space's blocks: the copy died
    in a RuntimeError (``ExtractionError``) naming a weight, not the checkpoint's config."""
    import dataclasses

    from edgenas.errors import InputError
    from edgenas.supernet import MBV3Supernet

    net = MBV3Supernet(dataclasses.replace(space.config, stem_width=space.config.stem_width + 8))
    with pytest.raises(InputError, match="another 'mbv3-small'.*stem_width"):
        extract_subnet(net, net.largest_arch())
    with pytest.raises(InputError, match="another 'mbv3-small'.*stem_width"):
        extract_subnet(net, net.largest_arch(), space)


def _misfits(net, space):
    """(model edit, message) pairs: the space's model of the active arch, changed so that it no longer fits."""
    import copy

    def first_se(model):
        return next(b for b in model[2:] if getattr(b, "se", None) is not None)

    def set_attr(pick, name, value):
        def edit(model):
            setattr(pick(model), name, value(model) if callable(value) else value)
        return edit

    return [
        (set_attr(lambda m: m[1], "residual", lambda m: not m[1].residual), "residual shortcut"),
        (set_attr(first_se, "se", None), "squeeze-excite"),
        (set_attr(lambda m: m[2], "expand", None), "no expansion conv"),
        (set_attr(lambda m: m[1], "expand", lambda m: copy.deepcopy(m[2].expand)), "first block must have no"),
        (lambda m: m.append(torch.nn.Identity()), "blocks, the supernet path"),
    ]


def test_copy_weights_refuses_a_model_that_does_not_fit_the_active_path(space, perturbed):
    from edgenas.supernet.extract import ExtractionError, copy_weights

    net = perturbed(7)
    large, small = net.largest_arch(), net.smallest_arch()
    net.set_active(large)
    for other in (small, type(large)(ks=large.ks, e=small.e, d=large.d, r=large.r),
                  type(large)(ks=small.ks, e=large.e, d=large.d, r=large.r)):  # depth, width, kernel
        with pytest.raises(ExtractionError):
            copy_weights(space.build_model(other), net)
    fits = space.build_model(large)
    with torch.no_grad():  # a model with weights of its own: every one of them is overwritten
        for t in list(fits.parameters()) + [b for b in fits.buffers() if b.is_floating_point()]:
            t.fill_(0.5)
        assert copy_weights(fits, net) is fits
        x = torch.randn(2, 3, large.r, large.r)
        assert (fits.eval()(x) - net(x)).abs().max() < 1e-5
    for edit, message in _misfits(net, space):
        model = space.build_model(large)
        edit(model)
        with pytest.raises(ExtractionError, match=message):
            copy_weights(model, net)
    assert net.active_arch == large
