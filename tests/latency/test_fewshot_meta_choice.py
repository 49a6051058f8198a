"""How ``choose_config`` scores configurations (mutation audit, 6 December): each inner task's share within
+-10% on the rows it did not fit, averaged over seeds and then over the left-out references; the best mean
wins, the first of equals; a pool no larger than ``n_pool`` is used whole and in order; a paired pool drops
the left-out reference's own pair. The regressor is a small real one passed through ``model=``, so the
scores are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.latency.fewshot_meta import MetaConfig, _within10, choose_config, select_architectures


class Scaled:
    """Predicts the first reference times ``config.lam_ref``: exact where the target is that reference."""

    def __init__(self, n_refs: int, config: MetaConfig) -> None:
        self.n_refs, self.scale = n_refs, config.lam_ref

    def fit(self, X, y):
        assert X.shape == (len(y), self.n_refs)   # the left-out reference's column is gone
        return self

    def predict(self, X):
        return X[:, 0] * self.scale


def _configs(*scales):
    return tuple(MetaConfig("ms", s, None, "random", "squared") for s in scales)


def _pool(n=40, seed=0):
    base = np.random.default_rng(seed).uniform(0.2, 5.0, n)   # latencies under 1 ms too
    return np.column_stack([base, base, base])   # three identical references


def test_the_configuration_that_predicts_the_left_out_reference_wins_wherever_it_is_in_the_grid():
    X = _pool()
    for configs in (_configs(0.5, 2.0, 1.0), _configs(1.0, 0.5, 2.0)):
        best, info = choose_config(X, 3, 5, configs=configs, model=Scaled)
        assert best.lam_ref == 1.0 and info == {"tasks": 9, "inner_within10": 1.0, "k": 5}


def test_equal_scores_go_to_the_first_configuration_and_shares_are_averaged_over_seeds():
    X = _pool()
    best, info = choose_config(X, 3, 5, configs=_configs(0.5, 1.05, 1.0), model=Scaled)
    assert best.lam_ref == 1.05 and info["inner_within10"] == 1.0   # 5% off counts as within 10%
    best, info = choose_config(X, 3, 5, configs=_configs(0.5, 1.15, 0.85), model=Scaled, seeds=(0, 1))
    assert best.lam_ref == 0.5 and info == {"tasks": 6, "inner_within10": 0.0, "k": 5}


def _expected(X, T, k, seeds, rule="random"):
    """The mean share within 10% of ``Scaled`` at 1.0, task by task (the pool in order)."""
    n_refs = X.shape[1]
    shares = []
    for j in range(n_refs):
        Xj, yj = np.delete(X, j, axis=1), T[:, j]
        share = 0.0
        for s in seeds:
            test = np.setdiff1d(np.arange(len(X)), select_architectures(Xj, n_refs - 1, k, s, rule))
            share += _within10(Xj[test, 0], yj[test]) / len(seeds)
        shares.append(share)
    return float(np.mean(shares))


def test_the_score_is_the_mean_share_rounded_to_four_places_and_a_pool_of_n_pool_rows_is_used_in_order():
    X = _pool()
    T = np.where((np.arange(40) % 3 == 1)[:, None], X, 2.0 * X)   # a third of each target is the references
    want = _expected(X, T, 5, (0, 1, 2))
    assert 0.2 < want < 0.5 and round(want, 4) != round(want, 5)
    for n_pool in (40, 41, 2000):
        best, info = choose_config(X, 3, 5, targets=T, configs=_configs(0.5, 1.0), model=Scaled, n_pool=n_pool)
        assert best.lam_ref == 1.0 and info == {"tasks": 9, "inner_within10": round(want, 4), "k": 5}


def test_three_points_are_enough_to_choose():
    best, info = choose_config(_pool(), 3, 3, configs=_configs(0.5, 1.0), model=Scaled)
    assert best.lam_ref == 1.0 and info["tasks"] == 9 and info["k"] == 3


def test_a_paired_pool_drops_the_left_out_references_own_pair():
    X = _pool()
    X[:, 1:] *= [1.5, 2.0]    # distinct references, each with its pair (100 x itself) at the end
    pool = np.column_stack([X, 100.0 * X])

    class Paired(Scaled):
        def fit(self, X, y):
            np.testing.assert_array_equal(X[:, self.n_refs:], 100.0 * X[:, : self.n_refs])
            assert not any(np.array_equal(c, y) for c in X.T)   # the target is in no column
            return self

    best, info = choose_config(pool, 3, 5, configs=_configs(0.5, 1.0), model=Paired, paired=True)
    assert info["tasks"] == 9
    with pytest.raises(AssertionError):   # not paired: the left-out pair stays and the check sees it
        choose_config(pool, 3, 5, configs=_configs(0.5, 1.0), model=Paired)


def test_within_ten_percent_is_a_relative_error_either_way():
    y = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    assert _within10(np.array([10.0, 10.95, 9.05, 11.5, 8.5]), y) == 0.6
    assert _within10(np.array([19.0, 1.0, 10.0, 12.0, 10.5]), y) == 0.4


def test_stratified_tasks_choose_their_rows_on_the_other_references():
    X = np.random.default_rng(1).uniform(0.2, 5.0, (40, 3))   # three unrelated references
    configs = tuple(MetaConfig("ms", s, None, "stratified", "squared") for s in (0.5, 1.0))
    want = _expected(X, X, 4, (0, 1, 2), "stratified")
    best, info = choose_config(X, 3, 4, configs=configs, model=Scaled)
    assert best.lam_ref == 1.0 and info == {"tasks": 9, "inner_within10": round(want, 4), "k": 4}
    assert round(want, 4) != round(want, 5)


def test_too_few_references_or_points_get_the_default_with_the_first_configurations_loss_and_say_why():
    X = _pool()
    one = (MetaConfig("log", 1.0, None, "random", "squared"),)
    for n_refs, k, reason in ((1, 5, "fewer than 2 references"), (2, 2, "k < 3")):
        assert choose_config(X[:, :n_refs], n_refs, k, configs=one) == (MetaConfig(loss="squared"),
                                                                       {"tasks": 0, "reason": reason})


def test_one_row_may_be_chosen_and_an_unknown_rule_or_too_many_rows_are_named():
    from edgenas.errors import InputError

    X = _pool(n=3)[:, :2]
    for rule in ("random", "stratified"):
        assert len(select_architectures(X, 2, 1, 0, rule)) == 1
        with pytest.raises(InputError, match="cannot choose 4 of 3 candidates") as err:
            select_architectures(X, 2, 4, 0, rule)
        assert err.value.hint == "k must be 1..3"
    with pytest.raises(InputError, match="unknown selection rule 'best'"):
        select_architectures(X, 2, 1, 0, "best")
