"""The mbv3 search spaces: records, validation, genes, operators, vocab, exact min latency, models."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from edgenas.errors import InputError
from edgenas.spaces import SPACES, arch_from_dict, get_space
from edgenas.spaces.base import SearchSpace
from edgenas.spaces.mbv3 import MBV3Space
from edgenas.spaces.mbv3_config import MBV3_SMALL, MBV3Arch

torch.set_num_threads(1)
PRESETS = ["mbv3-small", "ofa-mbv3", "ofa-mbv3-w12"]


def ofa_dict(**over):
    d = {"wid": None, "ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": [224]}
    d.update(over)
    return d


def test_registered_presets_alias_and_help():
    assert set(PRESETS) <= set(SPACES.names())
    assert get_space("mbv3") is get_space("ofa-mbv3")
    for name in PRESETS:
        assert SPACES.describe()[name]
        assert get_space(name).name == name


@pytest.mark.parametrize("name", PRESETS)
def test_json_round_trip(name):
    space = get_space(name)
    rng = np.random.default_rng(1)
    for _ in range(20):
        arch = space.sample(rng)
        rec = json.loads(json.dumps(space.to_dict(arch)))
        assert rec["space"] == name and rec["schema"] == 1
        assert space.from_dict(rec) == arch
        assert arch_from_dict(rec)[1] == arch


def test_ofa_dicts_accepted():
    space = get_space("ofa-mbv3")
    a = space.from_dict(ofa_dict())
    b = space.from_dict({"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": 224})
    assert a == b == MBV3Arch(ks=(7,) * 20, e=(6,) * 20, d=(4,) * 5, r=224)
    assert space.from_dict({**space.to_dict(a), "space": "mbv3"}) == a  # the alias names the space too


@pytest.mark.parametrize("change, message", [
    ({"ks": [7, 7, 7, 4] + [7] * 16}, "ks[3]=4 is not one of 3, 5, 7"),
    ({"e": [6] * 19 + [5]}, "e[19]=5 is not one of 3, 4, 6"),
    ({"d": [4, 4, 1, 4, 4]}, "d[2]=1 is not one of 2, 3, 4"),
    ({"r": 100}, "r=100 is not one of 128, 132, ..., 224"),
    ({"r": [224, 160]}, "one-element list"),
    ({"r": "224"}, "r='224' is not an integer"),
    ({"ks": [7] * 19}, "ks has 19 entries, expected 20"),
    ({"d": [4] * 6}, "d has 6 entries, expected 5"),
    ({"ks": "7" * 20}, "ks must be a list"),
    ({"e": [6] * 19 + [6.0]}, "e[19]=6.0 is not an integer"),
    ({"ks": [True] * 20}, "ks[0]=True is not an integer"),
    ({"depth": 3}, "unknown key(s) depth"),
    ({"space": "nb201"}, "not 'ofa-mbv3'"),
    ({"schema": 2}, "unsupported architecture schema 2"),
    ({"schema": True}, "unsupported architecture schema True"),  # True == 1 in Python
    ({"wid": 1.2}, "wid=None"),
])
def test_validation_errors(change, message):
    with pytest.raises(InputError) as err:
        get_space("ofa-mbv3").from_dict(ofa_dict(**change))
    assert message in str(err.value)


def test_missing_key_and_non_mapping():
    space = get_space("ofa-mbv3")
    rec = ofa_dict()
    del rec["r"]
    with pytest.raises(InputError, match="missing key.*r"):
        space.from_dict(rec)
    with pytest.raises(InputError, match="must be an object"):
        space.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", [*PRESETS, "mbv3-tiny"])
@pytest.mark.parametrize("keys", [("r",), ("ks",), ("e",), ("d",), ("ks", "e", "d", "r")])
def test_a_missing_key_s_example_is_a_value_of_that_space(name, keys):
    """The hint said "r": 224 for every space, which mbv3-small (24, 28, 32) and mbv3-tiny (16) refuse: each
    missing key's example now comes from the space's config, and put back it makes a valid record."""
    space = get_space(name)
    rec = space.to_dict(space.sample(np.random.default_rng(0)))
    with pytest.raises(InputError) as err:
        space.from_dict({k: v for k, v in rec.items() if k not in keys})
    assert err.value.message == f"missing key(s) {', '.join(keys)} in {name} architecture"
    assert err.value.hint.startswith("e.g. ")
    example = json.loads("{" + err.value.hint[len("e.g. "):] + "}")
    assert list(example) == list(keys)
    space.from_dict({**rec, **example})  # a valid record: no InputError
    if keys == ("r",):
        assert example == {"r": max(space.config.resolutions)}  # mbv3-small: 32, not 224


@pytest.mark.parametrize("name", PRESETS)
def test_operators_valid_and_seeded(name):
    space = get_space(name)

    def run(seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(30):
            a, b = space.sample(rng), space.sample(rng)
            m, c = space.mutate(a, rng), space.crossover(a, b, rng)
            for x in (a, b, m, c):
                space.validate(x)
            assert m != a
            out += [a, b, m, c]
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("name", PRESETS)
def test_genes_and_codec_round_trip(name):
    space = get_space(name)
    rng = np.random.default_rng(2)
    assert space.dim == 1 + 2 * space.config.n_slots + space.config.n_stages
    for _ in range(50):
        arch = space.sample(rng)
        g = space.to_genes(arch)
        assert g.dtype == np.int64 and (g < np.asarray(space.gene_sizes())).all()
        assert space.from_genes(g) == arch
        assert space.decode(space.encode(arch)) == arch
    with pytest.raises(InputError, match="outside"):
        space.from_genes(np.full(space.dim, 5))
    with pytest.raises(InputError, match="entries"):
        space.from_genes([0, 1])


def test_canonical_and_arch_id():
    space = get_space("ofa-mbv3")
    a = space.from_dict(ofa_dict(d=[2] * 5))
    canon = space.canonical(a)
    assert canon.ks == ((7, 7, 3, 3) * 5) and canon.e == ((6, 6, 3, 3) * 5)
    b = dataclasses.replace(a, ks=(7, 7, 5, 5) * 5)  # differs only in inactive slots
    assert space.arch_id(a) == space.arch_id(b)
    assert space.block_keys(a) == space.block_keys(b)
    c = dataclasses.replace(a, ks=(7, 5, 3, 3) * 5)  # differs in an active slot
    assert space.arch_id(a) != space.arch_id(c)


@pytest.mark.parametrize("name", PRESETS)
def test_vocab_covers_and_vectorised_matrix_equals_loop(name):
    space = get_space(name)
    vocab = space.key_vocab()
    assert len(vocab) == len(set(vocab))
    genes = space.sample_genes(np.random.default_rng(3), 500)
    have = set(vocab)
    for g in genes[:500]:
        keys = space.block_keys(space.from_genes(g))
        assert set(keys) <= have
        assert len(keys) == 6 + sum(space.from_genes(g).d)
    fast = space.key_index_matrix(genes)
    slow = SearchSpace.key_index_matrix(space, genes)
    assert fast.shape == slow.shape and np.array_equal(fast, slow)


def tiny_space() -> MBV3Space:
    cfg = dataclasses.replace(MBV3_SMALL, name="tiny", stage_widths=(8, 16), stage_strides=(2, 1),
                              stage_act=("relu", "hswish"), stage_se=(False, True), d_choices=(1, 2),
                              ks_choices=(3, 5), e_choices=(3, 4), resolutions=(16,))
    return MBV3Space(cfg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_latency_exact_against_brute_force(seed):
    space = tiny_space()
    rng = np.random.default_rng(seed)
    cost = {k: float(rng.uniform(0.1, 2.0)) for k in space.key_vocab()}
    best, arch = space.min_latency(cost)
    all_genes = np.array(list(itertools.product(*(range(n) for n in space.gene_sizes()))))
    assert len(all_genes) == 2 ** 10
    totals = [sum(cost[k] for k in space.block_keys(space.from_genes(g))) for g in all_genes]
    assert best == pytest.approx(min(totals), abs=1e-9)
    assert sum(cost[k] for k in space.block_keys(arch)) == pytest.approx(best, abs=1e-9)
    assert space.canonical(arch) == arch


def test_min_latency_prefers_resolution_and_depth():
    space = get_space("mbv3-small")
    cost = {k: 1.0 for k in space.key_vocab()}
    best, arch = space.min_latency(cost)
    assert best == 6 + 5 * 2 and arch.d == (2,) * 5  # every block costs 1: fewest blocks wins
    with pytest.raises(InputError, match="no cost for 1 of"):
        space.min_latency({k: 1.0 for k in space.key_vocab()[1:]})


@pytest.mark.parametrize("name, resolutions", [("mbv3-small", (24, 28, 32)), ("ofa-mbv3", (160,)),
                                               ("ofa-mbv3-w12", (160,))])
def test_model_forward_shapes(name, resolutions):
    space = get_space(name)
    rng = np.random.default_rng(4)
    for r in resolutions:
        arch = dataclasses.replace(space.sample(rng), r=r)
        model = space.build_model(arch)
        assert space.input_shape(arch) == (1, 3, r, r)
        with torch.no_grad():
            y = model(torch.randn(space.input_shape(arch)))
        assert y.shape == (1, space.num_classes) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["mbv3-tiny", "mbv3-small"])
def test_cost_tables_add_up_to_the_block_key_sum(name):
    space = get_space(name)
    c = space.config
    rng = np.random.default_rng(0)
    cost = {k: float(v) for k, v in zip(space.key_vocab(), rng.random(len(space.key_vocab())))}
    fixed, slot = space.cost_tables(cost)
    assert fixed.shape == (len(c.resolutions),) and slot.shape == (len(c.resolutions), c.n_slots,
                                                                   len(c.ks_choices), len(c.e_choices))
    for _ in range(20):
        a = space.sample(rng)
        ri = c.resolutions.index(a.r)
        total = fixed[ri] + sum(slot[ri, s * c.max_depth + j, c.ks_choices.index(a.ks[s * c.max_depth + j]),
                                     c.e_choices.index(a.e[s * c.max_depth + j])]
                                for s, d in enumerate(a.d) for j in range(d))
        assert total == pytest.approx(sum(cost[k] for k in space.block_keys(a)), rel=1e-12)
    with pytest.raises(InputError, match="no cost for 1 of"):
        space.cost_tables({k: v for k, v in list(cost.items())[1:]})


def test_an_architecture_built_by_hand_is_checked_before_it_becomes_genes():
    space = get_space("ofa-mbv3")
    good = space.from_dict(ofa_dict())
    for bad, message in ((dataclasses.replace(good, ks=(7,) * 19), "ks has 19 entries, expected 20"),
                         (dataclasses.replace(good, e=(6,) * 19 + (5,)), "e[19]=5 is not one of 3, 4, 6"),
                         (dataclasses.replace(good, d=(4, 4, 4, 4, 1)), "d[4]=1 is not one of 2, 3, 4"),
                         (dataclasses.replace(good, r=225), "r=225 is not one of 128, 132, ..., 224")):
        with pytest.raises(InputError) as err:
            space.to_genes(bad)
        assert message in str(err.value)


def test_genes_that_are_not_integers_in_range_are_refused():
    space = get_space("mbv3-small")
    genes = space.to_genes(space.sample(np.random.default_rng(0)))
    with pytest.raises(InputError, match="genes must be integers, got float64"):
        space.from_genes(genes.astype(float))
    for bad in (-1, space.gene_sizes()[3]):  # the others all 0 and in range
        genes = np.zeros(space.dim, dtype=np.int64)
        genes[3] = bad
        with pytest.raises(InputError, match=rf"^gene 3 = {bad} is outside 0\.\.{space.gene_sizes()[3] - 1}$"):
            space.from_genes(genes)
    with pytest.raises(InputError, match="gene vectors must have"):
        space.from_genes(genes[None, None, :])
    two = np.zeros((2, space.dim), dtype=np.int64)  # the second row was dropped without a word
    with pytest.raises(InputError, match="one gene vector makes one architecture, got 2"):
        space.from_genes(two)
    assert space.from_genes(two[:1]) == space.from_genes(two[0])


def test_numpy_integers_are_integers_in_a_record():
    space = get_space("ofa-mbv3")
    rec = {"ks": [np.int64(7)] * 20, "e": [np.int32(6)] * 20, "d": [np.int8(4)] * 5, "r": np.int64(224)}
    assert space.from_dict(rec) == space.from_dict(ofa_dict())


def test_choices_are_listed_in_full_unless_a_long_even_run():
    from edgenas.spaces.mbv3 import _choices

    assert _choices(range(128, 228, 4)) == "128, 132, ..., 224"
    assert _choices([1, 2, 3, 4, 5, 6]) == "1, 2, 3, 4, 5, 6"  # six: in full
    assert _choices([1, 2, 3, 4, 5, 6, 7]) == "1, 2, ..., 7"
    assert _choices([1, 2, 3, 4, 5, 6, 8]) == "1, 2, 3, 4, 5, 6, 8"  # uneven: in full
    assert _choices([1, 2, 4, 5, 7, 8, 10]) == "1, 2, 4, 5, 7, 8, 10"


def test_block_labels_name_slots_by_their_genes_in_network_order():
    space = get_space("mbv3-tiny")  # two stages of at most two slots
    arch = space.from_dict({"ks": [3, 5, 5, 3], "e": [4, 3, 4, 4], "d": [2, 1], "r": 16})
    labels = space.block_labels(arch)
    assert [lab for lab, _ in labels] == ["stem", "first", "ks_0/e_0", "ks_1/e_1", "ks_2/e_2", "Conv_1",
                                          "AvgPool2D", "Conv_2", "Logits"]
    assert [k.split("-")[0] for _, k in labels] == ["Conv", "expanded_conv", "expanded_conv", "expanded_conv",
                                                    "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits"]
    assert "kernel:3" in labels[2][1] and "kernel:5" in labels[3][1] and "kernel:5" in labels[4][1]


def test_block_keys_of_mbv3_tiny_worked_out_by_hand():
    """16 px input, stem 8 channels at stride 1, stages (8, stride 2, relu) and (16, stride 2, hswish + SE):
    a slot's expand is make_divisible(its input channels x e, 8); identity skip where stride 1 and in == out."""
    space = get_space("mbv3-tiny")
    arch = space.from_dict({"ks": [3, 5, 5, 3], "e": [4, 3, 4, 4], "d": [2, 1], "r": 16})
    mb = "expanded_conv-input:{}-output:{}-expand:{}-kernel:{}-stride:{}-idskip:{}-se:{}-hs:{}"
    assert space.block_keys(arch) == [
        "Conv-input:16x16x3-output:16x16x8",
        mb.format("16x16x8", "16x16x8", 8, 3, 1, 1, 0, 0),  # the first block: expand = stem width
        mb.format("16x16x8", "8x8x8", 32, 3, 2, 0, 0, 0),
        mb.format("8x8x8", "8x8x8", 24, 5, 1, 1, 0, 0),
        mb.format("8x8x8", "4x4x16", 32, 5, 2, 0, 1, 1),  # slot 3 inactive (d = 1)
        "Conv_1-input:4x4x16-output:4x4x32", "AvgPool2D-input:4x4x32-output:1x1x32",
        "Conv_2-input:1x1x32-output:1x1x32", "Logits-input:1x1x32-output:10"]


def test_num_classes_is_the_config_head():
    assert (get_space("mbv3-small").num_classes, get_space("ofa-mbv3").num_classes) == (10, 1000)


def test_a_list_of_the_wrong_length_says_what_each_entry_is():
    with pytest.raises(InputError, match="ks has 19 entries, expected 20") as err:
        get_space("ofa-mbv3").from_dict(ofa_dict(ks=[7] * 19))
    assert err.value.hint == "ks and e have one entry per block slot (n_stages * max_depth), d one per stage"


def test_make_divisible_rounds_to_the_nearest_multiple_never_more_than_10_percent_down():
    from edgenas.spaces.mbv3_config import make_divisible

    assert [make_divisible(v) for v in (36, 12, 3, 144 * 1.2)] == [40, 16, 8, 176]  # half up; 8 at least
    assert [make_divisible(v) for v in (19.2, 35.9)] == [24, 40]  # 16 and 32 are over 10 % down: one step up
    assert make_divisible(10, 9) == 9  # exactly 10 % down is kept
    assert make_divisible(12, 8, min_value=24) == 24


def test_block_keys_of_ofa_mbv3_worked_out_by_hand():
    """Once-for-All's MobileNetV3 at width 1.0 and 224 px: stem 16 at stride 2, stages 24, 40, 80, 112, 160 at
    strides 2, 2, 2, 1, 2 (h-swish from the third, SE in the second, fourth and fifth), head 960, 1280, 1000."""
    space = get_space("ofa-mbv3")
    arch = space.from_dict({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 224})
    mb = "expanded_conv-input:{}-output:{}-expand:{}-kernel:3-stride:{}-idskip:{}-se:{}-hs:{}"
    assert space.block_keys(arch) == [
        "Conv-input:224x224x3-output:112x112x16",
        mb.format("112x112x16", "112x112x16", 16, 1, 1, 0, 0),
        mb.format("112x112x16", "56x56x24", 48, 2, 0, 0, 0), mb.format("56x56x24", "56x56x24", 72, 1, 1, 0, 0),
        mb.format("56x56x24", "28x28x40", 72, 2, 0, 1, 0), mb.format("28x28x40", "28x28x40", 120, 1, 1, 1, 0),
        mb.format("28x28x40", "14x14x80", 120, 2, 0, 0, 1), mb.format("14x14x80", "14x14x80", 240, 1, 1, 0, 1),
        mb.format("14x14x80", "14x14x112", 240, 1, 0, 1, 1), mb.format("14x14x112", "14x14x112", 336, 1, 1, 1, 1),
        mb.format("14x14x112", "7x7x160", 336, 2, 0, 1, 1), mb.format("7x7x160", "7x7x160", 480, 1, 1, 1, 1),
        "Conv_1-input:7x7x160-output:7x7x960", "AvgPool2D-input:7x7x960-output:1x1x960",
        "Conv_2-input:1x1x960-output:1x1x1280", "Logits-input:1x1x1280-output:1000"]


def test_block_keys_of_mbv3_small_worked_out_by_hand():
    """The CPU demo space at 32 px: stem 16 at stride 1, first block 16, stages 16, 24, 40, 48, 64 at strides
    2, 2, 2, 1, 2 (OFA's activations and SE: h-swish from the third, SE in the second, fourth and fifth), head
    192, 256, 10 classes."""
    space = get_space("mbv3-small")
    arch = space.from_dict({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 32})
    mb = "expanded_conv-input:{}-output:{}-expand:{}-kernel:3-stride:{}-idskip:{}-se:{}-hs:{}"
    assert space.block_keys(arch) == [
        "Conv-input:32x32x3-output:32x32x16",
        mb.format("32x32x16", "32x32x16", 16, 1, 1, 0, 0),
        mb.format("32x32x16", "16x16x16", 48, 2, 0, 0, 0), mb.format("16x16x16", "16x16x16", 48, 1, 1, 0, 0),
        mb.format("16x16x16", "8x8x24", 48, 2, 0, 1, 0), mb.format("8x8x24", "8x8x24", 72, 1, 1, 1, 0),
        mb.format("8x8x24", "4x4x40", 72, 2, 0, 0, 1), mb.format("4x4x40", "4x4x40", 120, 1, 1, 0, 1),
        mb.format("4x4x40", "4x4x48", 120, 1, 0, 1, 1), mb.format("4x4x48", "4x4x48", 144, 1, 1, 1, 1),
        mb.format("4x4x48", "2x2x64", 144, 2, 0, 1, 1), mb.format("2x2x64", "2x2x64", 192, 1, 1, 1, 1),
        "Conv_1-input:2x2x64-output:2x2x192", "AvgPool2D-input:2x2x192-output:1x1x192",
        "Conv_2-input:1x1x192-output:1x1x256", "Logits-input:1x1x256-output:10"]


def test_a_space_configuration_is_frozen():
    from edgenas.spaces.mbv3_config import MBV3_SMALL

    with pytest.raises(dataclasses.FrozenInstanceError):
        MBV3_SMALL.stem_width = 8


def test_width_1_2_rounds_every_width_of_width_1_0_up_by_a_fifth():
    from edgenas.spaces.mbv3_config import OFA_MBV3_W12

    c = OFA_MBV3_W12  # 19.2 -> 24 (16 is over 10 % down), 28.8 -> 32, 134.4 -> 136, 960 x 1.2 = 1152
    assert (c.stem_width, c.first_block_width, c.final_expand_width, c.feature_mix_width) == (24, 24, 1152, 1536)
    assert c.stage_widths == (32, 48, 96, 136, 192)


def test_an_architecture_is_a_hashable_value():
    a = get_space("mbv3-tiny").from_dict({"ks": [3, 5, 5, 3], "e": [4, 3, 4, 4], "d": [2, 1], "r": 16})
    assert {a, dataclasses.replace(a)} == {a}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.r = 32


def test_a_space_with_too_many_depth_patterns_to_tabulate_gives_the_same_key_matrix():
    """Ten stages of depth 1..3 have 3 ** 10 = 59,049 depth patterns, over the 50,000 that are tabulated (one
    Python loop step each): key_index_matrix takes the general path, with the same result as the loop."""
    from edgenas.spaces.mbv3_config import MBV3_TINY

    cfg = dataclasses.replace(MBV3_TINY, name="deep", stage_widths=(8,) * 10, stage_strides=(1,) * 10,
                              stage_act=("relu",) * 10, stage_se=(False,) * 10, d_choices=(1, 2, 3))
    space = MBV3Space(cfg)
    assert space._compaction is None
    genes = space.sample_genes(np.random.default_rng(0), 40)
    fast = space.key_index_matrix(genes)
    assert fast.dtype == np.int64 and np.array_equal(fast, SearchSpace.key_index_matrix(space, genes))
    assert np.array_equal(space.key_index_matrix(genes.astype(np.uint8)), fast)
    for s in (space, get_space("mbv3-small")):  # no genes, no blocks: on either path
        assert s.key_index_matrix(np.zeros((0, s.dim), dtype=np.int64)).shape == (0, 0)


def test_gene_rows_of_different_lengths_are_an_input_error():
    space = get_space("mbv3-tiny")
    good = list(map(int, space.to_genes(space.sample(np.random.default_rng(0)))))
    for bad in ([good, good[:-1]], [good, [good]]):
        with pytest.raises(InputError, match="got rows of different lengths"):
            space.key_index_matrix(bad)
        with pytest.raises(InputError, match="got rows of different lengths"):
            space.from_genes(bad)


def test_a_block_input_shape_is_read_from_its_key_and_its_block_runs_on_it():
    space = get_space("mbv3-tiny")
    keys = space.block_keys(space.from_dict({"ks": [3, 5, 5, 3], "e": [4, 3, 4, 4], "d": [2, 1], "r": 16}))
    assert [space.block_input_shape(k) for k in keys] == [
        (1, 3, 16, 16), (1, 8, 16, 16), (1, 8, 16, 16), (1, 8, 8, 8), (1, 8, 8, 8), (1, 16, 4, 4), (1, 32, 4, 4),
        (1, 32, 1, 1), (1, 32, 1, 1)]
    with torch.no_grad():
        y = space.build_block(keys[4])(torch.zeros(space.block_input_shape(keys[4])))  # stride 2, 8 -> 16
    assert y.shape == (1, 16, 4, 4)
