"""The operators every space inherits from ``SearchSpace``: mutation, crossover, the continuous codec."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.spaces import get_space
from edgenas.spaces.base import SearchSpace, require


def test_mutation_changes_one_gene_in_expectation_and_every_gene_at_rate_one():
    """At rate 1/D each of the D genes changes with probability 1/D, and one is forced when none did: on
    average 1 + (1 - 1/D)^D genes change (1.33 for nb201's six)."""
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    a = space.from_genes([0, 1, 2, 3, 4, 0])
    changed = [int((space.to_genes(space.mutate(a, rng)) != space.to_genes(a)).sum()) for _ in range(2000)]
    assert min(changed) == 1 and np.mean(changed) == pytest.approx(1 + (5 / 6) ** 6, abs=0.06)
    assert all((space.to_genes(space.mutate(a, rng, rate=1.0)) != space.to_genes(a)).all() for _ in range(50))


def test_mutation_leaves_a_gene_of_one_choice_alone():
    """mbv3-tiny has one resolution: its gene has nothing to change to, even at rate 1."""
    space = get_space("mbv3-tiny")
    assert space.gene_sizes()[0] == 1
    rng = np.random.default_rng(0)
    a = space.sample(rng)
    for _ in range(20):
        m = space.mutate(a, rng, rate=1.0)
        assert m.r == 16 and (space.to_genes(m)[1:] != space.to_genes(a)[1:]).all()


def test_crossover_takes_each_gene_from_either_parent_at_even_odds():
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    a, b = space.from_genes([0] * 6), space.from_genes([4] * 6)
    kids = np.array([space.to_genes(space.crossover(a, b, rng)) for _ in range(1000)])
    assert set(np.unique(kids)) == {0, 4}
    assert (kids == 4).mean() == pytest.approx(0.5, abs=0.03)


def test_codec_bins_every_real_vector():
    """``encode`` is the centre of each gene's bin; ``decode`` clips any real vector into [0, 1) and bins it."""
    space = get_space("nb201")  # 5 choices a gene: bins of width 0.2
    arch = space.from_genes([0, 1, 2, 3, 4, 0])
    assert space.encode(arch).tolist() == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9, 0.1])
    x = [-3.0, 0.0, 0.1999, 0.2, 1.0, 7.5]
    assert space.to_genes(space.decode(x)).tolist() == [0, 0, 0, 1, 4, 4]


def test_require_and_num_classes():
    require(True, "unused")
    with pytest.raises(InputError, match=r"^the message \(the hint\)$") as err:
        require(False, "the message", hint="the hint")
    assert err.value.hint == "the hint"
    assert get_space("nb201").num_classes == 10


def test_arch_id_is_the_canonical_record_as_compact_sorted_json():
    nb = get_space("nb201")
    s = "|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"
    assert nb.arch_id(nb.from_string(s)) == '{"arch":"' + s + '","schema":1,"space":"nb201"}'
    tiny = get_space("mbv3-tiny")
    arch = tiny.from_dict({"ks": [5, 5, 5, 5], "e": [4, 4, 4, 4], "d": [1, 2], "r": 16})  # slot 1 inactive
    assert tiny.arch_id(arch) == '{"d":[1,2],"e":[4,3,4,4],"ks":[5,3,5,5],"r":16,"schema":1,"space":"mbv3-tiny"}'


def test_validate_refuses_an_architecture_built_by_hand():
    from edgenas.spaces.nb201 import NB201Arch

    nb = get_space("nb201")
    nb.validate(nb.from_genes([1] * 6))
    with pytest.raises(InputError, match="malformed NAS-Bench-201"):
        nb.validate(NB201Arch(("conv_5x5",) * 6))


def test_mutation_of_a_space_without_a_choice_returns_the_architecture():
    import dataclasses

    from edgenas.spaces.mbv3 import MBV3Space
    from edgenas.spaces.mbv3_config import MBV3_TINY

    space = MBV3Space(dataclasses.replace(MBV3_TINY, name="fixed", ks_choices=(3,), e_choices=(3,), d_choices=(2,)))
    assert set(space.gene_sizes()) == {1}
    arch = space.sample(np.random.default_rng(0))
    assert space.mutate(arch, np.random.default_rng(0)) is arch
    # one gene of two choices (the resolution): every mutation flips it
    space = MBV3Space(dataclasses.replace(space.config, name="one", resolutions=(16, 20)))
    rng = np.random.default_rng(0)
    arch = space.sample(rng)
    for _ in range(20):
        arch, before = space.mutate(arch, rng), arch
        assert arch.r == 36 - before.r


def test_mutation_at_the_default_rate_never_picks_a_gene_of_one_choice():
    space = get_space("mbv3-tiny")
    rng = np.random.default_rng(1)
    arch = space.sample(rng)
    for _ in range(300):
        arch, before = space.mutate(arch, rng), arch
        assert arch != before and arch.r == 16


def test_sampling_draws_every_choice_of_every_gene():
    space = get_space("mbv3-small")
    rng = np.random.default_rng(0)
    genes = space.sample_genes(rng, 2000)
    assert genes.shape == (2000, space.dim)
    assert [len(np.unique(col)) for col in genes.T] == list(space.gene_sizes())
    drawn = np.array([space.to_genes(space.sample(rng)) for _ in range(300)])
    assert [len(np.unique(col)) for col in drawn.T] == list(space.gene_sizes())


class PairSpace(SearchSpace):
    """Two genes of two choices and one block whose key is both: costs that couple the genes."""

    name = "pair-test"

    def from_dict(self, data):
        return tuple(data["g"])

    def to_dict(self, arch):
        return {"space": self.name, "schema": 1, "g": list(arch)}

    def gene_sizes(self):
        return (2, 2)

    def to_genes(self, arch):
        return np.array(arch, dtype=np.int64)

    def from_genes(self, genes):
        return tuple(int(x) for x in genes)

    def block_keys(self, arch):
        return [f"k{arch[0]}{arch[1]}"]

    def key_vocab(self):
        return ["k00", "k01", "k10", "k11"]

    def input_shape(self, arch):
        return (1, 1)

    build_model = build_block = block_input_shape = input_shape


def test_the_fallback_min_latency_goes_on_while_it_improves():
    """Greedy coordinate descent, from any start: on every 2x2 cost table whose only local minimum is the global
    one it ends there, including those that take two rounds (gene 1 first, then gene 0)."""
    space = PairSpace()
    cells = [(0, 0), (0, 1), (1, 0), (1, 1)]
    for values in itertools.permutations([1.0, 2.0, 3.0, 4.0]):
        cost = dict(zip(cells, values))
        best = min(cells, key=cost.get)
        far = (1 - best[0], 1 - best[1])
        if cost[far] < min(cost[(far[0], best[1])], cost[(best[0], far[1])]):
            continue  # a second local minimum: greedy descent may stop there
        ms, arch = space.min_latency({f"k{a}{b}": v for (a, b), v in cost.items()})
        assert (ms, arch) == (1.0, best)
