"""The budget repair of the mbv3 relaxation's derived network, on a synthetic table of ``mbv3-tiny`` (no profiling:
each test runs in well under a second): the log-probability it trades, the single changes it considers, the
change it takes, and what it returns when no network fits (mutation audit)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from edgenas.latency.predictor import LatencyPredictor
from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3, _log_prob, _neighbours, repair_to_budget
from edgenas.spaces import get_space
from tests.search.tables import one_sample, random_lut
from edgenas.spaces.mbv3_config import MBV3Arch


def _pred(seed: int = 0) -> LatencyPredictor:
    return LatencyPredictor(random_lut("mbv3-tiny", seed, high_ms=3.0), get_space("mbv3-tiny"))


def _logp(seed: int) -> dict[str, np.ndarray]:
    c = get_space("mbv3-tiny").config
    rng = np.random.default_rng(seed)

    def norm(a: np.ndarray) -> np.ndarray:
        return a - np.log(np.exp(a).sum(-1, keepdims=True))

    return {"ke": norm(rng.normal(size=(c.n_slots, len(c.ks_choices) * len(c.e_choices)))),
            "d": norm(rng.normal(size=(c.n_stages, len(c.d_choices)))), "r": norm(rng.normal(size=len(c.resolutions)))}


def _all(space) -> list[MBV3Arch]:
    """Every canonical network of the space (mbv3-tiny: 4 slots of 2x2 choices, 2 stages of depth 1 or 2)."""
    c = space.config
    out = set()
    for ks in itertools.product(c.ks_choices, repeat=c.n_slots):
        for e in itertools.product(c.e_choices, repeat=c.n_slots):
            for d in itertools.product(c.d_choices, repeat=c.n_stages):
                for r in c.resolutions:
                    out.add(space.canonical(MBV3Arch(ks, e, d, r)))
    return sorted(out, key=repr)


def test_the_log_probability_sums_the_resolution_each_depth_and_only_the_active_blocks():
    space = get_space("mbv3-tiny")
    c, n_e = space.config, len(space.config.e_choices)
    logp = _logp(1)
    for arch in _all(space)[::7]:
        want = logp["r"][c.resolutions.index(arch.r)]
        for s, d in enumerate(arch.d):
            want += logp["d"][s][c.d_choices.index(d)]
            for j in range(c.max_depth):
                i = s * c.max_depth + j
                if j < d:  # a skipped slot's kernel and expand are not decisions of the network
                    want += logp["ke"][i][c.ks_choices.index(arch.ks[i]) * n_e + c.e_choices.index(arch.e[i])]
        assert _log_prob(arch, logp, c) == pytest.approx(want, abs=1e-12)
    # a probability: exp(log p) over every network of the space sums to 1
    assert sum(np.exp(_log_prob(a, logp, c)) for a in _all(space)) == pytest.approx(1.0, abs=1e-9)


def test_the_neighbours_are_every_single_change_of_one_decision():
    space = get_space("mbv3-tiny")
    c = space.config
    for arch in _all(space)[::5]:
        got = _neighbours(arch, c)
        want = []
        for other in _all(space):
            stages = [s for s in range(c.n_stages) if arch.d[s] != other.d[s]]
            blocks = [i for i in range(c.n_slots) if (arch.ks[i], arch.e[i]) != (other.ks[i], other.e[i])]
            if other.r == arch.r and not stages and len(blocks) == 1:  # another kernel/expand in one block
                want.append(other)
            elif other.r == arch.r and len(stages) == 1 and other.d[stages[0]] < arch.d[stages[0]] and \
                    space.canonical(MBV3Arch(arch.ks, arch.e, other.d, arch.r)) == other:
                want.append(other)  # a smaller depth in one stage (never a larger one), the rest kept
            elif other.r != arch.r and not stages and not blocks:
                want.append(other)  # another resolution
        assert sorted(map(space.canonical, got), key=repr) == want and len(got) == len(set(got))
    small = get_space("mbv3-small")  # three resolutions (mbv3-tiny has one): each other one is a neighbour
    arch = small.sample(np.random.default_rng(0))
    moved = [a for a in _neighbours(arch, small.config) if a.r != arch.r]
    assert sorted(a.r for a in moved) == sorted(r for r in small.config.resolutions if r != arch.r)
    assert all((a.ks, a.e, a.d) == (arch.ks, arch.e, arch.d) for a in moved)


def test_the_repair_takes_the_change_that_gives_up_least_probability_per_unit_of_excess():
    space = get_space("mbv3-tiny")
    pred = _pred(0)
    logp = _logp(2)
    c = space.config
    archs = _all(space)
    lat = pred.predict_many(archs)
    start = archs[int(np.argmax(lat))]
    here, top = _log_prob(start, logp, c), float(lat.max())
    cands = [space.canonical(a) for a in _neighbours(start, c)]
    nl = pred.predict_many(cands)
    for budget in (top * 0.98, top * 0.9):
        gain = (top / budget - 1) - np.maximum(0.0, nl / budget - 1)
        rate = [(max(here - _log_prob(a, logp, c), 0.0) + 1e-9) / g if g > 1e-12 else np.inf
                for a, g in zip(cands, gain)]
        first = cands[int(np.argmin(rate))]
        arch, steps, how = repair_to_budget(space, start, logp, [pred], [budget])
        assert float(pred.predict_many([arch])[0]) <= budget and how == "greedy repair" and steps >= 1
        if float(pred.predict_many([first])[0]) <= budget:  # one change is enough: the best one by the rule
            assert (arch, steps) == (first, 1)
    # from the most probable network (what the repair starts from), with a budget that every faster neighbour
    # meets: each removes the whole excess, so the one giving up the least log-probability is taken
    for seed in range(4):
        lp = _logp(seed)
        mode = max(archs, key=lambda a: _log_prob(a, lp, c))
        ms = float(pred.predict_many([mode])[0])
        faster = [a for a in map(space.canonical, _neighbours(mode, c)) if float(pred.predict_many([a])[0]) < ms]
        budget = float(max(pred.predict_many(faster)))
        best = max(faster, key=lambda a: _log_prob(a, lp, c))
        assert repair_to_budget(space, mode, lp, [pred], [budget]) == (best, 1, "greedy repair")
    assert ExpectedLatencyMBV3("t", pred, space).of_arch(arch) == pytest.approx(float(pred.predict_many([arch])[0]))
    # a device without a budget is no constraint; a network within every budget is kept as it is
    for budgets in ([None], [top], [None, top + 1]):
        models = [pred] * len(budgets)
        assert repair_to_budget(space, start, logp, models, budgets) == (start, 0, "argmax")


def test_a_budget_below_every_network_ends_with_the_fastest_reached_and_says_none_fits():
    space = get_space("mbv3-tiny")
    fast, slow = _pred(0), _pred(5)
    archs = _all(space)
    start = archs[int(np.argmax(fast.predict_many(archs)))]
    lo = fast.min_latency()[0]
    arch, steps, how = repair_to_budget(space, start, _logp(3), [fast], [lo * 0.5])
    assert how == "none met every budget" and steps >= 1
    assert float(fast.predict_many([arch])[0]) == pytest.approx(lo)  # the greedy descent ends at the fastest
    # the greedy path can stall where another device's fastest network meets every budget: that one is returned
    lo_s, fastest_s = slow.min_latency()
    budgets = [float(fast.predict_many([fastest_s])[0]), lo_s]
    arch, _, how = repair_to_budget(space, start, _logp(3), [fast, slow], budgets)
    assert float(fast.predict_many([arch])[0]) <= budgets[0] and float(slow.predict_many([arch])[0]) <= lo_s
    assert how in ("greedy repair", "fastest network")


def test_a_repair_stalled_in_a_local_minimum_falls_back_to_the_fastest_network():
    """mbv3-small's resolution changes every block's key: a network cheap at one resolution whose every single
    change (another block, another resolution) is slower stalls the greedy descent above budget, though the
    fastest network, at another resolution with other blocks, meets it: that one is returned, with no steps."""
    space = get_space("mbv3-small")
    c = space.config
    n = c.n_slots
    slow_r = space.canonical(MBV3Arch((3,) * n, (3,) * n, (min(c.d_choices),) * c.n_stages, c.resolutions[0]))
    first = range(c.max_depth)  # the first stage only: the last runs at 2x2 at both resolutions (shared keys)
    fast_r = space.canonical(MBV3Arch(tuple(7 if i in first else 3 for i in range(n)),
                                      tuple(6 if i in first else 3 for i in range(n)), slow_r.d, c.resolutions[-1]))
    lut = random_lut("mbv3-small", 0)
    ms = dict.fromkeys(lut.entries, 2.0) | dict.fromkeys(space.block_keys(slow_r), 0.5) \
        | dict.fromkeys(space.block_keys(fast_r), 0.2)
    pred = LatencyPredictor(dataclasses.replace(lut, entries={k: one_sample(v) for k, v in ms.items()}), space)
    stuck, lo = (float(pred.predict_many([a])[0]) for a in (slow_r, fast_r))
    assert pred.min_latency()[1] == fast_r and lo < stuck
    assert min(pred.predict_many([space.canonical(a) for a in _neighbours(slow_r, c)])) > stuck  # a local minimum
    logp = {"ke": np.zeros((n, 9)), "d": np.zeros((c.n_stages, 3)), "r": np.zeros(3)}
    for budget in (lo, (lo + stuck) / 2):
        assert repair_to_budget(space, slow_r, logp, [pred], [budget]) == (fast_r, 0, "fastest network")
    arch, steps, how = repair_to_budget(space, slow_r, logp, [pred], [lo * 0.99])  # below the fastest: kept
    assert (arch, steps, how) == (slow_r, 0, "none met every budget")


def test_a_budget_of_exactly_the_fastest_latency_is_met_by_the_repair():
    """``min_latency`` is the bound a launch accepts a budget at; it summed the blocks in another order than
    ``predict_many``, one bit lower for these tables, and the repair then found every network over that budget
    ("none met every budget", within_budget false)."""
    space = get_space("mbv3-tiny")
    archs = _all(space)
    for seed in (2, 7, 11):
        pred = _pred(seed)
        lo, fastest = pred.min_latency()
        assert lo == float(pred.predict_many([fastest])[0]) == float(pred.predict_many(archs).min())
        start = archs[int(np.argmax(pred.predict_many(archs)))]
        arch, steps, how = repair_to_budget(space, start, _logp(3), [pred], [lo])
        assert how == "greedy repair" and float(pred.predict_many([arch])[0]) <= lo
