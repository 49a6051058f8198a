"""Block keys (OFA's LUT format): parsing, structure, per-key modules and identical ONNX subgraphs."""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgenas.errors import InputError
from edgenas.spaces import get_space
from edgenas.spaces.mbv3_blocks import BlockSpec, MBConv, build_block

torch.set_num_threads(1)

KEY = "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:0"


def test_parse_known_key():
    s = BlockSpec.parse(KEY)
    assert (s.kind, s.in_hw, s.in_ch, s.out_hw, s.out_ch) == ("expanded_conv", (112, 112), 24, (56, 56), 32)
    assert (s.expand, s.kernel, s.stride, s.idskip, s.se, s.hs) == (144, 5, 2, False, False, False)
    assert s.key == KEY
    assert BlockSpec.parse("Conv-input:164x164x3-output:82x82x24").stride == 2
    assert BlockSpec.parse("Conv-input:32x32x3-output:32x32x16").stride == 1


@pytest.mark.parametrize("key", [
    "", "expanded_conv", KEY + ":", KEY.replace("kernel:5", "kernel:05"), KEY.replace("se:0", "se:2"),
    "Conv-input:224x224-output:112x112x24", "Logits-input:1x1x1280-output:10x10", "Pool-input:7x7x9-output:1x1x9",
    KEY.replace("kernel:5", "kernel:4"), KEY.replace("stride:2", "stride:3"),
    KEY.replace("56x56x32", "55x56x32"), KEY.replace("idskip:0", "idskip:1"),
    "Conv-input:224x224x3-output:100x100x24", "Conv_1-input:7x7x160-output:6x6x960",
    "AvgPool2D-input:7x7x960-output:1x1x961", "Conv_2-input:2x2x960-output:2x2x1280",
    "Logits-input:7x7x1280-output:1000",
])
def test_malformed_or_inconsistent_keys(key):
    with pytest.raises(InputError):
        BlockSpec.parse(key)
    with pytest.raises(InputError):
        build_block(key)


def test_a_spec_is_a_value():
    s = BlockSpec.parse(KEY)
    assert {s, BlockSpec.parse(KEY)} == {s}  # hashable: equal keys, one spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.stride = 1


@pytest.mark.parametrize("key", [None, 5, KEY.encode(), [KEY]])
def test_a_key_that_is_not_a_string_is_an_input_error(key):
    with pytest.raises(InputError, match="block key must be a string"):
        BlockSpec.parse(key)


def test_fields_a_plain_key_does_not_name():
    """Conv_1, AvgPool2D, Conv_2 and Logits keys name no kernel, stride, expansion, skip or SE: a 1x1 layer at
    stride 1 without them; the stem is a 3x3 conv with h-swish at the stride its sizes give."""
    for key in ("Conv_1-input:7x7x160-output:7x7x960", "AvgPool2D-input:7x7x960-output:1x1x960",
                "Conv_2-input:1x1x960-output:1x1x1280", "Logits-input:1x1x1280-output:1000"):
        s = BlockSpec.parse(key)
        assert (s.expand, s.kernel, s.stride, s.idskip, s.se) == (0, 1, 1, False, False)
    s = BlockSpec.parse("Conv-input:224x224x3-output:112x112x24")
    assert (s.expand, s.kernel, s.stride, s.idskip, s.se, s.hs) == (0, 3, 2, False, False, True)
    assert BlockSpec.parse("Logits-input:1x1x1280-output:1000").out_hw == (1, 1)  # a vector: 1x1 of 1000


def test_a_key_of_a_non_square_input_round_trips():
    for key in ("Conv-input:224x160x3-output:112x80x24", "Conv_1-input:7x5x160-output:7x5x960",
                "expanded_conv-input:56x40x24-output:28x20x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0"):
        s = BlockSpec.parse(key)
        assert s.key == key and s.input_shape == (1, s.in_ch, s.in_hw[0], s.in_hw[1])
    assert BlockSpec.parse("Conv_1-input:7x5x160-output:7x5x960").input_shape == (1, 160, 7, 5)


def test_ceil_spatial_rule():
    BlockSpec.parse("expanded_conv-input:41x41x32-output:21x21x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0")
    with pytest.raises(InputError, match="does not follow"):
        BlockSpec.parse("expanded_conv-input:41x41x32-output:20x20x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0")


def test_a_stride_other_than_1_or_2_is_refused_where_the_sizes_follow_from_it():
    with pytest.raises(InputError, match="stride 3 must be 1 or 2"):  # 48 / 3 = 16
        BlockSpec.parse("expanded_conv-input:48x48x24-output:16x16x32-expand:72-kernel:3-stride:3-idskip:0-se:0-hs:0")


@pytest.mark.parametrize("key", [
    "expanded_conv-input:56x56x24-output:28x28x24-expand:72-kernel:3-stride:2-idskip:1-se:0-hs:0",  # stride 2
    "expanded_conv-input:28x28x24-output:28x28x40-expand:72-kernel:3-stride:1-idskip:1-se:0-hs:0",  # 24 -> 40
])
def test_an_identity_skip_needs_both_stride_1_and_equal_channels(key):
    with pytest.raises(InputError, match="idskip:1 needs stride 1 and in == out channels"):
        BlockSpec.parse(key)
    assert BlockSpec.parse("expanded_conv-input:28x28x40-output:28x28x40-expand:120-kernel:5-stride:1-idskip:1-se:1-"
                           "hs:0").idskip


@pytest.mark.parametrize("name", ["mbv3-small", "ofa-mbv3", "ofa-mbv3-w12"])
def test_every_vocab_key_round_trips(name):
    for key in get_space(name).key_vocab():
        assert BlockSpec.parse(key).key == key


def test_network_structure_rules():
    space = get_space("ofa-mbv3-w12")
    arch = space.from_dict({"ks": [3] * 20, "e": [3] * 20, "d": [2, 3, 4, 2, 3], "r": 224})
    keys = space.block_keys(arch)
    kinds = [k.split("-", 1)[0] for k in keys]
    assert kinds == ["Conv"] + ["expanded_conv"] * 15 + ["Conv_1", "AvgPool2D", "Conv_2", "Logits"]
    specs = [BlockSpec.parse(k) for k in keys]
    for a, b in zip(specs, specs[1:]):  # shapes chain
        assert (b.in_ch, b.in_hw) == (a.out_ch, a.out_hw) or b.kind == "Logits"
    for s in specs[1:16]:
        assert s.idskip == (s.stride == 1 and s.in_ch == s.out_ch)
    assert specs[1].expand == specs[1].in_ch == 24  # OFA's first block: no expansion conv
    assert keys[0] == "Conv-input:224x224x3-output:112x112x24"
    assert keys[-1] == "Logits-input:1x1x1536-output:1000"


def test_block_modules_follow_spec():
    s = BlockSpec.parse(KEY.replace("se:0-hs:0", "se:1-hs:1"))
    m = build_block(s)
    assert isinstance(m, MBConv) and m.expand is not None and m.se is not None and not m.training
    assert m.se.reduce.out_channels == 40  # make_divisible(144 // 4, 8)
    assert isinstance(m.depthwise.act, torch.nn.Hardswish)
    first = build_block("expanded_conv-input:16x16x16-output:16x16x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0")
    assert first.expand is None and first.residual
    for key in get_space("mbv3-small").key_vocab()[:40] + ["Logits-input:1x1x256-output:10"]:
        spec = BlockSpec.parse(key)
        with torch.no_grad():
            y = build_block(key)(torch.randn(spec.input_shape))
        want = (1, spec.out_ch) if spec.kind == "Logits" else (1, spec.out_ch, *spec.out_hw)
        assert tuple(y.shape) == want


def test_model_equals_blocks_in_sequence_and_same_key_same_weights():
    space = get_space("mbv3-small")
    arch = space.sample(np.random.default_rng(5))
    model, keys = space.build_model(arch), space.block_keys(arch)
    x = torch.randn(space.input_shape(arch))
    with torch.no_grad():
        y, h = model(x), x
        for key in keys:
            assert space.block_input_shape(key) == tuple(h.shape)
            h = space.build_block(key)(h)
    assert torch.equal(y, h)
    a, b = build_block(keys[3]).state_dict(), build_block(keys[3]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def onnx_graph(module: torch.nn.Module, shape: tuple[int, ...], path) -> tuple[list, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(shape),), str(path), opset_version=17, dynamo=False)
    g = onnx.load(str(path)).graph
    nodes = [(n.op_type, [(a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute]) for n in g.node]
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    return nodes, inits


def test_same_key_same_onnx_subgraph(tmp_path):
    space = get_space("mbv3-small")
    rng = np.random.default_rng(6)
    a, b = space.sample(rng), space.sample(rng)
    while not (shared := [k for k in space.block_keys(a) if "se:1" in k and k in space.block_keys(b)]):
        b = space.sample(rng)
    key = shared[0]
    assert a != b
    ma, mb = space.build_model(a), space.build_model(b)
    blk_a, blk_b = ma[space.block_keys(a).index(key)], mb[space.block_keys(b).index(key)]
    shape = space.block_input_shape(key)
    nodes_a, init_a = onnx_graph(blk_a, shape, tmp_path / "a.onnx")
    nodes_b, init_b = onnx_graph(blk_b, shape, tmp_path / "b.onnx")
    assert nodes_a == nodes_b and {"Conv", "HardSigmoid", "Mul"} <= {n[0] for n in nodes_a}
    assert sorted(init_a) == sorted(init_b)
    for name in init_a:
        assert init_a[name].shape == init_b[name].shape
        assert np.array_equal(init_a[name], init_b[name])
    # different keys (another kernel; another expand) give different graphs
    k = int(re.search(r"kernel:(\d+)", key).group(1))
    for other in (key.replace(f"kernel:{k}", f"kernel:{3 if k != 3 else 5}"),
                  re.sub(r"expand:(\d+)", lambda m: f"expand:{int(m.group(1)) + 8}", key)):
        nodes_c, init_c = onnx_graph(build_block(other), shape, tmp_path / "c.onnx")
        shapes_a = sorted(v.shape for v in init_a.values())
        assert nodes_c != nodes_a or sorted(v.shape for v in init_c.values()) != shapes_a


def test_block_weights_follow_the_documented_init_from_a_fixed_seed():
    """Convs kaiming-normal over fan-out (a depthwise conv's fan-out is k * k), linear N(0, 0.01), biases 0, BN
    the identity; the seed is the key's SHA-256, the same in every process and every release."""
    from edgenas.spaces.mbv3_blocks import key_seed

    key = "expanded_conv-input:7x7x160-output:7x7x160-expand:960-kernel:7-stride:1-idskip:1-se:1-hs:1"
    assert key_seed(key) == 1154989054696745609
    m = build_block(key)
    for conv, fan_out in ((m.expand.conv, 960), (m.depthwise.conv, 7 * 7), (m.se.reduce, 240), (m.se.expand, 960),
                          (m.project.conv, 160)):
        assert float(conv.weight.detach().std()) == pytest.approx((2 / fan_out) ** 0.5, rel=0.03)
    assert not m.se.reduce.bias.any() and not m.se.expand.bias.any()
    for bn in (m.expand.bn, m.depthwise.bn, m.project.bn):
        assert bn.weight.eq(1).all() and bn.running_var.eq(1).all()
        assert not bn.bias.any() and not bn.running_mean.any()
    head = build_block("Conv_2-input:1x1x960-output:1x1x1280")  # conv with a bias, no BN
    assert [name for name, _ in head.named_children()] == ["conv", "act"]
    assert float(head.conv.weight.detach().std()) == pytest.approx((2 / 1280) ** 0.5, rel=0.03)
    assert not head.conv.bias.any()
    logits = build_block("Logits-input:1x1x1280-output:1000")
    assert float(logits.linear.weight.detach().std()) == pytest.approx(0.01, rel=0.03) and not logits.linear.bias.any()


def test_an_identity_skip_adds_the_input_to_the_projection():
    m = build_block("expanded_conv-input:8x8x16-output:8x8x16-expand:48-kernel:3-stride:1-idskip:1-se:1-hs:1")
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        y = m(x)
        m.residual = False
        assert torch.allclose(y, x + m(x)) and not torch.allclose(y, m(x))
