"""The nb201 space: exact arch strings, genes, block keys, exact min latency, the torch network."""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.spaces import SPACES
from edgenas.spaces import nb201  # noqa: F401
from edgenas.spaces.nb201 import OPS, NB201Arch

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
S = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture
def space():
    return SPACES.get("nb201")


def test_record_round_trip_is_exact(space):
    arch = space.from_dict({"space": "nb201", "schema": 1, "arch": S})
    assert arch.ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3",
                        "skip_connect")
    assert space.to_dict(arch) == {"space": "nb201", "schema": 1, "arch": S}
    assert space.to_genes(arch).tolist() == [3, 3, 4, 1, 3, 1]


def test_every_table_string_round_trips(space):
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    import csv

    with open(TABLE, newline="") as fh:
        strings = [row["arch"] for row in csv.DictReader(fh)]
    assert len(strings) == 15625
    assert [space.from_string(s).string for s in strings] == strings
    assert {space.from_string(s) for s in strings} == set(space.all_archs())


def test_all_archs_count_in_base_5_first_edge_slowest(space):
    genes = [space.to_genes(a).tolist() for a in space.all_archs()]
    assert genes == [list(g) for g in itertools.product(range(5), repeat=6)]


@pytest.mark.parametrize("bad", [
    "", "|nor_conv_3x3~0|", S.replace("~2|", "~1|"), S.replace("avg_pool_3x3", "max_pool_3x3"),
    S[:-1], S.replace("+", "+ "), S + "+|none~0|", S.replace("~0", "0", 1),
    "_" + S[1:], S[:-1] + "_", S.replace("|+|", "_+_", 1),  # a node not between bars
    "|none~0|+|none~0|+|none~0|none~1|none~2|",  # node 2 with one edge: five ops
    "|none~0|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",  # node 1 with two edges: seven ops
])
def test_malformed_strings_are_input_errors(space, bad):
    with pytest.raises(InputError, match="malformed NAS-Bench-201"):
        space.from_dict({"space": "nb201", "schema": 1, "arch": bad})


@pytest.mark.parametrize("arch", [None, 5, [S], S.encode()])
def test_an_arch_that_is_not_a_string_is_an_input_error(space, arch):
    with pytest.raises(InputError, match="malformed NAS-Bench-201"):
        space.from_dict({"space": "nb201", "schema": 1, "arch": arch})


def test_bad_records(space):
    with pytest.raises(InputError, match="expected a JSON object"):
        space.from_dict([("space", "nb201"), ("schema", 1), ("arch", S)])
    with pytest.raises(InputError, match=r"not an nb201 architecture \(space='ofa-mbv3'\)"):
        space.from_dict({"space": "ofa-mbv3", "schema": 1, "arch": S})
    with pytest.raises(InputError, match="not an nb201 architecture"):
        space.from_dict({"schema": 1, "arch": S})
    with pytest.raises(InputError, match='missing "arch" string'):
        space.from_dict({"space": "nb201", "schema": 1})
    with pytest.raises(InputError, match="schema"):
        space.from_dict({"space": "nb201", "schema": 2, "arch": S})
    with pytest.raises(InputError, match="unsupported schema True"):  # True == 1 in Python
        space.from_dict({"space": "nb201", "schema": True, "arch": S})
    with pytest.raises(InputError, match="unknown key"):
        space.from_dict({"space": "nb201", "schema": 1, "arch": S, "ks": [3]})
    with pytest.raises(InputError, match=r"nb201 genes must be 6 integers in 0\.\.4, got \[0, 1, 2, 3, 4, 5\]"):
        space.from_genes([0, 1, 2, 3, 4, 5])
    for bad in ([-1, 0, 0, 0, 0, 0], [0] * 5, [[0] * 6]):
        with pytest.raises(InputError, match="nb201 genes must be 6 integers"):
            space.from_genes(bad)


def test_genes_that_are_not_integers_are_refused_as_mbv3_refuses_them(space):
    genes = space.to_genes(space.sample(np.random.default_rng(0)))
    for bad in (genes + 0.7, genes.astype(float), genes.astype(bool), [0.0] * 6):  # 0.7 was cut to gene 0
        with pytest.raises(InputError, match="nb201 genes must be 6 integers in 0..4"):
            space.from_genes(bad)
    assert space.from_genes(genes.astype(np.uint8)) == space.from_genes(list(map(int, genes)))


def test_genes_codec_and_operators_stay_in_space(space):
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = space.sample(rng)
        assert space.from_genes(space.to_genes(a)) == a
        assert space.decode(space.encode(a)) == a
        m = space.mutate(a, rng)
        assert m != a and (space.to_genes(m) != space.to_genes(a)).sum() >= 1


def test_block_keys_are_in_vocab_and_count_cells(space):
    arch = space.from_string(S)
    keys = space.block_keys(arch)
    assert len(keys) == 1 + 2 + 1 + 3 * 5 * 6
    vocab = space.key_vocab()
    assert len(vocab) == len(set(vocab)) == 4 + 3 * len(OPS)
    assert set(keys) <= set(vocab)
    assert keys.count("nb201-op-nor_conv_3x3-c32-s16") == 5 * 3


def test_min_latency_is_exact_against_enumeration(space):
    rng = np.random.default_rng(1)
    vocab = space.key_vocab()
    archs = space.all_archs()
    genes = np.array([space.to_genes(a) for a in archs])
    all_idx = space.key_index_matrix(genes)
    assert all_idx.shape == (15625, 94)
    for i in range(0, 15625, 997):  # the vectorised matrix is block_keys, in order
        assert [vocab[j] for j in all_idx[i]] == space.block_keys(archs[i])
    for _ in range(3):
        cost = {k: float(rng.uniform(0, 1)) for k in vocab}
        ms, arch = space.min_latency(cost)
        c = np.array([cost[k] for k in vocab])
        brute = c[all_idx].sum(axis=1)
        assert ms == pytest.approx(brute.min())
        assert sum(cost[k] for k in space.block_keys(arch)) == pytest.approx(ms)


def test_build_model_is_the_nb201_network(space):
    if importlib.util.find_spec("edgenas.spaces.nb201_net") is None:
        pytest.skip("edgenas.spaces.nb201_net is not written yet")
    import torch

    none = sum(p.numel() for p in space.build_model(NB201Arch(("none",) * 6)).parameters())
    conv = sum(p.numel() for p in space.build_model(NB201Arch(("nor_conv_3x3",) * 6)).parameters())
    assert (none, conv) == (73306, 1531546)  # NAS-Bench-201: 0.073 M and 1.531 M
    model = space.build_model(space.from_string(S))
    assert model(torch.zeros(space.input_shape(None))).shape == (1, 10)
    for key in space.key_vocab():
        block = space.build_block(key)
        y = block(torch.zeros(space.block_input_shape(key)))
        assert torch.isfinite(y).all()
        if "-op-" in key:
            assert y.shape == space.block_input_shape(key)


def test_edges_name_the_nodes_of_each_gene_as_the_arch_string_does(space):
    """EDGES (DARTS wires its supernet by it, the LLM codec names genes by it) is (to, from) of each gene:
    the one conv of a one-hot gene vector stands in node ``to``'s list as ``~from``."""
    for i, (to, src) in enumerate(nb201.EDGES):
        genes = [0] * 6
        genes[i] = 3
        nodes = space.from_genes(genes).string.split("+")
        assert f"|nor_conv_3x3~{src}|" in nodes[to - 1] and all("conv" not in n for n in nodes[:to - 1] + nodes[to:])


@pytest.mark.parametrize("key", ["nb201-stem-c16-s32\n", "xnb201-stem-c16-s32", "nb201-conv-c16-s32", "stem",
                                 "nb201-op-max_pool_3x3-c16-s32", "nb201-head-c64-s8", "nb201-reduction-c16-s32",
                                 # int() took these, the letter before each number was cut unread
                                 "nb201-stem-x16-s32", "nb201-stem-c16-s32 ", "nb201-stem-c+16-s32",
                                 "nb201-stem-c1_6-s32", "nb201-op-nor_conv_3x3-c16-s32-s3", "nb201-head-c64-s8-q10",
                                 "nb201-reduction-x16to32-s32",
                                 "nb201-stem-c\u0661\u0666-s32", "nb201-stem-c1234567-s32",
                                 # a count of 0 built a block of empty tensors; a leading zero a second key of it
                                 "nb201-stem-c0-s32", "nb201-op-nor_conv_3x3-c0-s32", "nb201-head-c64-s8-k0",
                                 "nb201-reduction-c16to32-s0", "nb201-stem-c016-s32"])
def test_a_foreign_block_key_is_an_input_error(space, key):
    for call in (space.build_block, space.block_input_shape):
        with pytest.raises(InputError, match="block key"):
            call(key)


def test_block_keys_are_the_cifar_network_stage_by_stage(space):
    """NAS-Bench-201's CIFAR network, written out: a 16-channel stem at 32x32, five cells per stage at 16@32x32,
    32@16x16 and 64@8x8, a residual reduction between stages, the head on 64@8x8 with 10 classes."""
    arch = space.from_string(S)
    cells = [[f"nb201-op-{op}-c{c}-s{s}" for op in arch.ops] * 5 for c, s in ((16, 32), (32, 16), (64, 8))]
    assert space.block_keys(arch) == ["nb201-stem-c16-s32", *cells[0], "nb201-reduction-c16to32-s32", *cells[1],
                                      "nb201-reduction-c32to64-s16", *cells[2], "nb201-head-c64-s8-k10"]
    assert space.block_input_shape("nb201-reduction-c32to64-s16") == (1, 32, 16, 16)
    assert space.block_input_shape("nb201-stem-c16-s32") == (1, 3, 32, 32)


@pytest.mark.parametrize("key, shape_in, shape_out, params", [
    ("nb201-stem-c16-s32", (1, 3, 32, 32), (1, 16, 32, 32), 3 * 16 * 9 + 2 * 16),  # conv 3x3, no bias; BN
    ("nb201-op-nor_conv_3x3-c32-s16", (1, 32, 16, 16), (1, 32, 16, 16), 32 * 32 * 9 + 2 * 32),
    ("nb201-reduction-c16to32-s32", (1, 16, 32, 32), (1, 32, 16, 16), None),
    ("nb201-head-c64-s8-k10", (1, 64, 8, 8), (1, 10), 2 * 64 + 64 * 10 + 10),  # BN, linear
])
def test_a_block_built_from_its_key_alone(space, key, shape_in, shape_out, params):
    import torch

    block = space.build_block(key)
    assert space.block_input_shape(key) == shape_in
    assert block(torch.zeros(shape_in)).shape == shape_out
    assert params is None or sum(p.numel() for p in block.parameters()) == params


@pytest.mark.parametrize("bad", [[[0] * 6, [0] * 5], [[0] * 6, [[0] * 6]], [0, 0, 0, 0, 0, [0]]])
def test_gene_rows_of_different_lengths_are_an_input_error_as_in_mbv3(space, bad):
    for method in (space.from_genes, space.key_index_matrix):  # numpy's ValueError "inhomogeneous shape" before
        with pytest.raises(InputError, match=r"^nb201 genes must be 6 integers in 0\.\.4( per row)?, got rows of "
                                             r"different lengths$"):
            method(bad)


def test_the_key_matrix_refuses_what_from_genes_refuses(space):
    genes = space.to_genes(space.sample(np.random.default_rng(0)))
    assert space.key_index_matrix(genes).tolist() == space.key_index_matrix([genes, genes])[:1].tolist()
    assert space.key_index_matrix(genes.astype(np.uint8)).tolist() == space.key_index_matrix(genes).tolist()
    vocab = space.key_vocab()
    assert [vocab[i] for i in space.key_index_matrix(genes)[0]] == space.block_keys(space.from_genes(genes))
    # a row of 5 or 7 gave 79 or 109 keys, a gene of -1 was op 4 (avg_pool_3x3), 0.7 and True were op 0 and 1
    for bad, got in ((np.zeros((2, 5), int), "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"), ([[0] * 7], "[0, 0, 0, 0, 0, 0, 0]"),
                     ([[0] * 5 + [-1]], "[0, 0, 0, 0, 0, -1]"), ([[0] * 5 + [5]], "[0, 0, 0, 0, 0, 5]"),
                     (np.full((1, 6), 0.7), "[0.7, 0.7, 0.7, 0.7, 0.7, 0.7]"), ([[True] * 6], "[True, True"),
                     (np.zeros((1, 2, 6), int), "[0, 0"),
                     (np.zeros((4, 6)), "[0.0, 0.0"),  # up to 24 entries listed, more in a word
                     (np.zeros((5, 5), int), "an array of shape (5, 5) (int64)")):
        with pytest.raises(InputError, match=r"^nb201 genes must be 6 integers in 0\.\.4 per row, got ") as err:
            space.key_index_matrix(bad)
        assert got in str(err.value)
