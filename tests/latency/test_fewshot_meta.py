"""Issue 17, part 1: the meta-learned few-shot model - JSON records, no leak of the new device, seeded choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot import HwTable, cell_encoding
from edgenas.latency.fewshot_meta import (CONFIGS, DEFAULT, LOSSES, SPACES, MetaConfig, MetaFewShot, choose_config,
                                          config_grid, fit_new_device, huber_weights, select_architectures)

NB201 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nb201" / "nb201_hw.csv"
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def _devices(n=1500, seed=0):
    """Five devices that are per-operation cost tables over one set of cells, with 2% noise."""
    rng = np.random.default_rng(seed)
    ops = rng.choice(OPS, (n, 6))
    cells = [f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|" for o in ops]
    E, _ = cell_encoding(cells, OPS)
    costs = rng.uniform(0.1, 2.0, (E.shape[1], 3))
    base = 1.0 + E @ costs  # three "kinds" of hardware
    mix = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.8, 0.2], [0.5, 0.5, 0.5]])
    clean = base @ mix.T
    return clean * np.exp(rng.normal(0, 0.02, clean.shape)), E


@pytest.mark.parametrize("config", [DEFAULT, MetaConfig("log", 0.1, 10.0, "random"),
                                    MetaConfig("ms", 1.0, 1.0, "stratified")])
@pytest.mark.parametrize("k", [1, 2, 20])
def test_json_round_trip_gives_identical_predictions(config, k):
    lat, E = _devices()
    X = np.column_stack([lat[:, 1:], E[:, :8]])
    m = MetaFewShot(4, [f"f{i}" for i in range(X.shape[1])], config).fit(X[:k], lat[:k, 0])
    m.inner = {"tasks": 3}
    rec = json.loads(json.dumps(m.to_dict()))
    back = MetaFewShot.from_dict(rec)
    assert np.array_equal(back.predict(X), m.predict(X))
    assert back.config == config and back.describe() == m.describe()
    assert m.kind == ("ridge" if k >= 3 else "ratio")


def test_the_ratio_model_predicts_a_device_that_is_a_multiple_of_its_references_exactly():
    """k < 3: the ratio to the references. Its level was the targets' geometric mean over the references'
    arithmetic one, low by G(R)/A(R) whenever the references' values differ: a device exactly 2x its
    reference came out [1.6, 6.4, 3.2] for [2, 8, 4]. With several references it is a multiple of their
    geometric mean; in-sample, the log residuals average to zero."""
    m = MetaFewShot(1).fit([[1.0], [4.0]], [2.0, 8.0])
    assert m.kind == "ratio"
    np.testing.assert_allclose(m.predict([[1.0], [4.0], [2.0]]), [2.0, 8.0, 4.0], rtol=1e-12)
    lat, E = _devices(n=50)
    X = np.column_stack([lat[:, 1:], E[:, :8]])
    shape = np.exp(np.log(lat[:, 1:]).mean(axis=1))  # the references' geometric mean, per row
    for k in (1, 2):
        m = MetaFewShot(4, config=MetaConfig("log", 0.1, 10.0, "random")).fit(X[:k], 3.5 * shape[:k])
        np.testing.assert_allclose(m.predict(X), 3.5 * shape, rtol=1e-12)
        back = MetaFewShot.from_dict(json.loads(json.dumps(m.to_dict())))
        assert np.array_equal(back.predict(X), m.predict(X))
        residuals = np.log(MetaFewShot(4).fit(X[:k], lat[:k, 0]).predict(X[:k]) / lat[:k, 0])
        assert abs(residuals.mean()) < 1e-12


def test_without_references_it_uses_descriptors_or_the_mean():
    lat, E = _devices()
    m = MetaFewShot(0).fit(E[:30], lat[:30, 0])
    assert m.kind == "ridge" and np.array_equal(MetaFewShot.from_dict(m.to_dict()).predict(E), m.predict(E))
    empty = np.zeros((30, 0))
    m0 = MetaFewShot(0).fit(empty, lat[:30, 0])
    assert m0.kind == "mean" and np.allclose(m0.predict(np.zeros((3, 0))), np.exp(np.log(lat[:30, 0]).mean()))


def test_a_mix_of_references_is_recovered_from_twenty_points():
    lat, E = _devices()
    X = np.column_stack([lat[:, 1:], E])
    m, idx = fit_new_device(X, 4, 20, 0, lambda i: lat[i, 0])
    test = np.setdiff1d(np.arange(len(lat)), idx)
    assert np.mean(np.abs(m.predict(X[test]) / lat[test, 0] - 1) <= 0.10) > 0.9


def test_huber_loss_keeps_the_fit_on_the_bulk_when_a_few_readings_are_slow():
    """Heavy-tailed measurements (an edge device's slow spells): 3 of 20 points read 1.6-2.5x slow.
    The squared loss is pulled towards them; Huber's (the default) stays on the other 17."""
    lat, E = _devices()
    X = np.column_stack([lat[:, 1:], E[:, :8]])
    y = lat[:20, 0].copy()
    y[[3, 9, 15]] *= (1.6, 2.5, 1.9)
    rest = np.arange(20, len(lat))

    def share_within(config, tol):
        p = MetaFewShot(4, config=config).fit(X[:20], y).predict(X[rest])
        return float(np.mean(np.abs(p / lat[rest, 0] - 1) <= tol))

    for space in ("ms", "log"):
        huber, squared = MetaConfig(space, 1e-2, 10.0), MetaConfig(space, 1e-2, 10.0, loss="squared")
        assert share_within(huber, 0.10) > 0.95  # 0.999 without the slow readings, either loss
        assert share_within(squared, 0.10) < 0.4
    w = huber_weights(np.array([0.0, 0.01, -0.02, 0.5, -0.4]))
    assert np.array_equal(w[:3], [1.0, 1.0, 1.0]) and 0 < w[3] < w[4] < 0.2


def test_the_loss_is_part_of_the_configuration_and_old_records_were_squared():
    lat, E = _devices(n=300)
    X = np.column_stack([lat[:, 1:], E[:, :4]])
    assert all(c.loss == "huber" for c in CONFIGS) and DEFAULT.loss == "huber"
    squared = config_grid("squared")
    assert len(squared) == len(CONFIGS) and all(c.loss == "squared" for c in squared)
    assert [c.space for c in squared] == [c.space for c in CONFIGS]
    m = MetaFewShot(4, config=MetaConfig(loss="squared")).fit(X[:20], lat[:20, 0])
    rec = json.loads(json.dumps(m.to_dict()))
    assert rec["config"]["loss"] == "squared" and m.describe()["loss"] == "squared"
    del rec["config"]["loss"]  # a record written before the loss was a choice
    old = MetaFewShot.from_dict(rec)
    assert old.config.loss == "squared" and np.array_equal(old.predict(X), m.predict(X))
    # too little to meta-learn on: the default configuration, with the grid's loss
    assert choose_config(X[:, [0] + list(range(4, X.shape[1]))], 1, 10, configs=squared)[0].loss == "squared"
    with pytest.raises(InputError, match="loss"):
        MetaConfig(loss="absolute")
    with pytest.raises(InputError, match="loss in"):
        MetaFewShot.from_dict({**m.to_dict(), "config": {**m.to_dict()["config"], "loss": "l1"}})


def test_bad_records_and_inputs_are_input_errors():
    lat, E = _devices(n=200)
    X = np.column_stack([lat[:, 1:], E[:, :4]])
    m = MetaFewShot(4).fit(X[:20], lat[:20, 0])
    rec = m.to_dict()
    for broken in ({**rec, "w": rec["w"][:-1]}, {**rec, "schema": 9}, {**rec, "fit": "magic"},
                   {k: v for k, v in rec.items() if k != "mu"}, {**rec, "config": {"space": "cubic"}},
                   # an edited record: a zero or negative scale divided by (was a RuntimeWarning and NaN
                   # latencies), an infinite width (was an OverflowError, not an InputError)
                   {**rec, "scale_r": [0.0] * 4}, {**rec, "scale_r": [-1.0] * 4}, {**rec, "width": float("inf")},
                   {**rec, "floor": float("nan")}):
        with pytest.raises(InputError):
            MetaFewShot.from_dict(broken)
    with pytest.raises(InputError, match="shape"):
        m.predict(X[:, :3])
    with pytest.raises(InputError, match="> 0"):
        MetaFewShot(4).fit(X[:20], -lat[:20, 0])
    with pytest.raises(InputError, match="cannot choose"):
        select_architectures(X, 4, 0, 0, "random")
    with pytest.raises(InputError, match="unknown selection"):
        select_architectures(X, 4, 5, 0, "psychic")


def test_selection_and_configuration_are_deterministic_per_seed():
    lat, E = _devices()
    X = np.column_stack([lat[:, 1:], E[:, :8]])
    for rule in ("random", "stratified"):
        a, b = select_architectures(X, 4, 20, 3, rule), select_architectures(X, 4, 20, 3, rule)
        assert np.array_equal(a, b) and len(set(a.tolist())) == 20
        assert not np.array_equal(a, select_architectures(X, 4, 20, 4, rule))
    strat = select_architectures(X, 4, 10, 0, "stratified")
    ranks = np.argsort(np.argsort(np.log(X[:, :4]).mean(axis=1)))[strat]
    assert sorted(r // 150 for r in ranks) == list(range(10))  # one per decile of the score
    c1, i1 = choose_config(X, 4, 20)
    c2, i2 = choose_config(X, 4, 20)
    assert c1 == c2 and i1 == i2 and c1 in CONFIGS and i1["tasks"] == 12
    assert choose_config(X[:, [0] + list(range(4, X.shape[1]))], 1, 20)[0] == DEFAULT  # one reference


def test_the_new_device_is_seen_only_through_the_k_measured_rows():
    """Leave-one-device-out leak check on the real NB-201 table: everything but the k measured
    values of the scored column may change and the chosen rows, configuration and predictions do not."""
    t = HwTable(NB201)
    rows = np.random.default_rng(0).permutation(len(t.arch))[:3000]
    col, refs = t.ms_columns[0], t.ms_columns[1:]
    X = np.column_stack([np.column_stack([t.latency[c][rows] for c in refs]), t.descriptors[rows]])
    y = t.latency[col][rows]
    asked: list[np.ndarray] = []

    def measure(idx):
        asked.append(np.asarray(idx))
        return y[idx]

    m1, idx1 = fit_new_device(X, len(refs), 20, 0, measure)
    assert len(asked) == 1 and np.array_equal(asked[0], idx1) and len(idx1) == 20
    y2 = y * np.exp(np.random.default_rng(1).normal(0, 0.5, y.size))  # a different device...
    y2[idx1] = y[idx1]  # ...that agrees on the k measured rows
    m2, idx2 = fit_new_device(X, len(refs), 20, 0, lambda i: y2[i])
    assert np.array_equal(idx1, idx2) and m1.config == m2.config
    assert np.array_equal(m1.predict(X), m2.predict(X))


def test_records_of_either_regressor_load_and_unknown_kinds_do_not():
    from edgenas.latency.fewshot_ensemble import FewShotEnsemble
    from edgenas.latency.fewshot_model import regressor_from_dict

    lat, E = _devices(n=200)
    X = np.column_stack([lat[:, 1:], E[:, :4]])
    meta = MetaFewShot(4).fit(X[:20], lat[:20, 0])
    old = FewShotEnsemble([True] * 4 + [False] * 4).fit(X[:20], lat[:20, 0])  # records written before
    for m in (meta, old):
        assert np.array_equal(regressor_from_dict(json.loads(json.dumps(m.to_dict()))).predict(X), m.predict(X))
    with pytest.raises(InputError, match="unknown regressor kind"):
        regressor_from_dict({**meta.to_dict(), "kind": "pickle"})


def test_a_record_is_checked_against_its_own_fit_references_and_configuration():
    lat, E = _devices(n=200)
    X = np.column_stack([lat[:, 1:], E[:, :4]])  # 4 references, 4 descriptors
    y = lat[:20, 0]

    def rec(m, **edits):
        return {**json.loads(json.dumps(m.to_dict())), **edits}

    plain = MetaFewShot(4).fit(X[:20], y)  # no correction: the 4 references only
    corrected = MetaFewShot(4, config=MetaConfig(lam_desc=1.0)).fit(X[:20], y)
    ratio, mean = MetaFewShot(4).fit(X[:2], y[:2]), MetaFewShot(0).fit(X[:2, 4:], y[:2])
    alone = MetaFewShot(0).fit(X[:20, 4:], y)  # no references: ridge on the descriptors
    kinds = (plain.kind, corrected.kind, ratio.kind, mean.kind, alone.kind)
    assert kinds == ("ridge", "ridge", "ratio", "mean", "ridge")
    for m, size in ((plain, 4), (corrected, 8), (ratio, 0), (mean, 0), (alone, 4)):
        back = MetaFewShot.from_dict(rec(m))
        assert len(back._mu) == len(back._w) == size and back.inner == {}
        assert np.array_equal(back.predict(X[:, -m._width:]), m.predict(X[:, -m._width:]))
    old = rec(plain)
    del old["config"]["loss"], old["inner"]
    assert MetaFewShot.from_dict(old).config.loss == "squared" and MetaFewShot.from_dict(old).inner == {}
    assert MetaFewShot.from_dict(rec(plain, ym=-1.5))._ym == -1.5  # a ridge level may be negative
    one = MetaFewShot(1).fit(X[:2, :1], y[:2])
    assert one.kind == "ratio" and MetaFewShot.from_dict(rec(one)).kind == "ratio"  # one reference is enough
    with pytest.raises(InputError, match="a mean fit with 1 references"):
        MetaFewShot.from_dict(rec(one, fit="mean"))
    for broken, message in (
            (rec(ratio, n_refs=0, scale_r=[], width=4), "a ratio fit with 0 references"),
            (rec(mean, n_refs=2, scale_r=[1.0, 1.0]), "a mean fit with 2 references"),
            (rec(plain, fit=5), "unknown fit 5"), (rec(plain, kind="fewshot-ensemble"), "not a meta few-shot model"),
            (rec(plain, schema=True), "not a meta few-shot model"),
            (rec(plain, n_refs=10_001), "n_refs must be a whole number from 0 to 10000"),
            (rec(plain, width=3), "width must be a whole number from 4 to 10000"),
            (rec(plain, width=10_001), "width must be a whole number from 4 to 10000"),
            (rec(plain, mu=corrected.to_dict()["mu"]), "mu must hold 4 numbers, got 8"),
            (rec(corrected, w=plain.to_dict()["w"]), "w must hold 8 numbers, got 4"),
            (rec(alone, width=5), "mu must hold 5 numbers, got 4"),
            (rec(ratio, ym=0.0), "ym must be > 0"), (rec(mean, ym=-1.0), "ym must be > 0"),
            (rec(plain, scale_y=0.0), "scale_y must be > 0"), (rec(plain, floor=-0.1), "floor must be >= 0"),
            (rec(plain, config=None), "malformed few-shot latency model"),
            (rec(plain, config={**plain.config.to_dict(), "loss": 5}), "space, selection and loss must be strings"),
            (rec(plain, config={**plain.config.to_dict(), "lam_ref": 0}), "config lam_ref must be > 0"),
            (rec(plain, config={**plain.config.to_dict(), "lam_desc": -1}), "config lam_desc must be > 0"),
            (rec(plain, inner=[1]), "inner must be a JSON object"),
            (rec(plain, feature_names=[1]), "feature_names must be a list of strings"),
    ):
        with pytest.raises(InputError, match=message):
            MetaFewShot.from_dict(broken)


def test_ridge_penalties_of_a_configuration_must_be_positive():
    assert MetaConfig(lam_ref=1e-9, lam_desc=1e-9).lam_desc == 1e-9
    for lam_ref, lam_desc in ((0.0, None), (-1.0, None), (1.0, 0.0), (1.0, -1.0)):
        with pytest.raises(InputError, match=f"ridge penalties must be > 0, got {lam_ref}, {lam_desc}"):
            MetaConfig(lam_ref=lam_ref, lam_desc=lam_desc)


def test_features_that_are_not_references_then_descriptors_are_one_input_error():
    """``fit``, ``predict`` and ``choose_config`` read features as ``[references | descriptors]``: a flat row,
    fewer columns than references, a non-finite value or a reference latency <= 0 is one ``InputError``."""
    X = np.array([[1.0, 2.0, 0.5], [2.0, 3.0, 0.1], [4.0, 5.0, 0.3]])
    y = np.array([2.0, 4.0, 8.0])
    fitted = MetaFewShot(2).fit(X, y)
    for features in (X[0], X[:, :1]):
        with pytest.raises(InputError, match="features must be a 2-D array with at least 2 reference columns"):
            MetaFewShot(2).fit(features, y[:features.shape[0]])
    with pytest.raises(InputError, match="at least 4 reference columns, got shape"):
        MetaFewShot(4).fit(X, y)
    for i, j, v in ((0, 2, np.nan), (1, 0, np.inf), (2, 1, 0.0), (0, 0, -1.0)):
        bad = X.copy()
        bad[i, j] = v
        with pytest.raises(InputError, match="features must be finite, and reference latencies > 0"):
            MetaFewShot(2).fit(bad, y)
        with pytest.raises(InputError, match="features must be finite, and reference latencies > 0"):
            fitted.predict(bad)
    assert MetaFewShot(2).fit(np.where(X == 0.1, -0.1, X), y).kind == "ridge"  # a descriptor may be <= 0
    for features in (X[:, :2], X[0], np.column_stack([X, X[:, 2]])):  # the references alone, a row, one more
        with pytest.raises(InputError, match=r"features must have shape \(n, 3\), got"):
            fitted.predict(features)
    for rows, targets, counts in ((X, y[:2], "3 rows, 2 targets"), (X[:0], y[:0], "0 rows, 0 targets")):
        with pytest.raises(InputError, match=f"need one target per row: {counts}"):
            MetaFewShot(2).fit(rows, targets)


def test_what_to_measure_is_chosen_by_the_references_else_the_first_descriptor():
    """``selection_score``: the references' mean log latency, else the log of the first descriptor (0 where
    it is not positive), else nothing to go by; ``k`` may be every candidate, not one more."""
    from edgenas.latency.fewshot_meta import selection_score

    X = np.array([[2.0, 8.0, 5.0], [4.0, 2.0, -1.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(selection_score(X, 2), np.log([4.0, 2.0 ** 1.5, 1.0]), rtol=1e-12)
    np.testing.assert_allclose(selection_score(X[:, 2:], 0), np.log([5.0 + 1e-9, 1e-9, 1e-9]), rtol=1e-12)
    assert selection_score(np.zeros((3, 0)), 0).tolist() == [0.0, 0.0, 0.0]
    for rule in ("random", "stratified"):
        every = select_architectures(X, 2, 3, 0, rule)
        assert sorted(every.tolist()) == [0, 1, 2] and every.dtype == np.int64
        with pytest.raises(InputError, match="cannot choose 4 of 3 candidates"):
            select_architectures(X, 2, 4, 0, rule)
    scores = np.array([[10.0], [1.0], [5.0], [0.1]])  # no references: strata of the descriptor
    for seed in range(6):
        low, high = select_architectures(scores, 0, 2, seed, "stratified")
        assert low in (1, 3) and high in (0, 2)


def test_choosing_the_configuration_needs_two_references_three_points_and_a_pool_to_score_on():
    lat, E = _devices(n=40)
    X = np.column_stack([lat[:, :3], E[:, :2]])
    configs = (MetaConfig("ms", 1e-2, None, "random", "squared"), MetaConfig("log", 1.0, 10.0, "random", "squared"))
    best, info = choose_config(X, 3, 5, configs=configs, seeds=(0,))
    assert best in configs and info["tasks"] == 3 and info["k"] == 5 and 0 <= info["inner_within10"] <= 1
    assert choose_config(X, 3, 5, configs=configs, seeds=(0,)) == (best, info)  # deterministic
    assert choose_config(X[:, [0, 1, 3, 4]], 2, 5, configs=configs, seeds=(0,))[1]["tasks"] == 2  # 2 are enough
    for n_refs, k, reason in ((1, 5, "fewer than 2 references"), (3, 2, "k < 3")):
        chosen, why = choose_config(X, n_refs, k, configs=configs, seeds=(0,))
        assert chosen == MetaConfig(loss="squared") and why == {"tasks": 0, "reason": reason}
    assert choose_config(X, 3, 10, configs=configs, seeds=(0,), n_pool=10)[1] == {"tasks": 0,
                                                                                 "reason": "pool too small"}
    assert choose_config(X, 3, 9, configs=configs, seeds=(0,), n_pool=10)[1]["tasks"] == 3
    for targets in (lat[:, :2], np.where(np.arange(40)[:, None] == 5, 0.0, lat[:, :3]),
                    np.where(np.arange(40)[:, None] == 5, np.nan, lat[:, :3])):
        with pytest.raises(InputError, match="inner targets must be finite, > 0 and of shape"):
            choose_config(X, 3, 5, targets=targets, configs=configs, seeds=(0,))


def test_the_default_configuration_the_record_schema_and_hubers_weights_are_as_documented():
    """``DEFAULT`` (what fewer than 2 references or ``MIN_K`` points get) is frozen and hashable; records are
    schema 1; Huber's weights are 1 within ``HUBER_C`` (1.345) robust scales (1.4826 x the median absolute
    residual, at least ``SCALE_FLOOR``, 1%) and ``HUBER_C s / |r|`` beyond."""
    import dataclasses

    assert DEFAULT.to_dict() == {"space": "ms", "lam_ref": 0.01, "lam_desc": None, "selection": "stratified",
                                 "loss": "huber"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.space = "log"
    assert {DEFAULT: 1}[MetaConfig()] == 1
    rec = MetaFewShot(1).fit([[1.0], [2.0]], [2.0, 4.0]).to_dict()
    assert (rec["schema"], rec["kind"], rec["fit"]) == (1, "fewshot-meta", "ratio")
    floor = huber_weights(np.array([0.0, 0.0, 0.0, 0.01, -0.02, 0.5]))  # median 0: the scale is the 1% floor
    np.testing.assert_allclose(floor, [1, 1, 1, 1, 1.345 * 0.01 / 0.02, 1.345 * 0.01 / 0.5], rtol=1e-12)
    s = 1.4826 * 0.1
    w = huber_weights(np.array([0.1, -0.1, 0.1, 0.1, -0.5, 1.345 * s]))
    np.testing.assert_allclose(w, [1, 1, 1, 1, 1.345 * s / 0.5, 1], rtol=1e-12)


def test_a_target_of_zero_is_refused_and_an_ms_fit_is_floored_at_a_tenth_of_the_fastest_point():
    """In ``"ms"`` space a linear fit can go to 0 ms or below off its points: it is floored at a tenth of the
    smallest measured latency. Without references the descriptors' penalty is 1 unless configured."""
    R, y = np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([1.0, 3.0, 5.0, 7.0])  # y = 2 R - 1
    with pytest.raises(InputError, match="target latencies must be finite and > 0"):
        MetaFewShot(1).fit(R, np.where(y == 3.0, 0.0, y))
    for loss in LOSSES:
        m = MetaFewShot(1, config=MetaConfig("ms", 1e-3, None, "random", loss)).fit(R, y)
        p = m.predict([[0.1], [3.0]])
        assert p[0] == 0.1 and p[1] == pytest.approx(5.0, rel=1e-3) and m.to_dict()["floor"] == 0.1
    D = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    default = MetaFewShot(0).fit(D, y).predict(D)
    assert np.array_equal(default, MetaFewShot(0, config=MetaConfig(lam_desc=1.0)).fit(D, y).predict(D))
    assert not np.allclose(default, MetaFewShot(0, config=MetaConfig(lam_desc=2.0)).fit(D, y).predict(D))


def test_an_unfitted_model_neither_predicts_nor_writes_a_record():
    for call in (lambda m: m.predict([[1.0]]), lambda m: m.to_dict()):
        with pytest.raises(InputError, match="called before fit"):
            call(MetaFewShot(1))


def test_either_loss_recovers_a_device_that_is_a_sum_of_its_references():
    """In ``"ms"`` space a device whose latency is ``2 R0 + R1`` is fitted from 5 points to within 0.2% (1% off them),
    with the squared loss as with Huber's (the squared fit was checked only against slow readings)."""
    R = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0], [5.0, 4.0]])
    y = 2 * R[:, 0] + R[:, 1]
    new = np.array([[10.0, 1.0], [0.5, 8.0]])
    for loss in LOSSES:
        m = MetaFewShot(2, config=MetaConfig("ms", 1e-3, None, "random", loss)).fit(R, y)
        np.testing.assert_allclose(m.predict(np.vstack([R, new])), np.r_[y, 2 * new[:, 0] + new[:, 1]], rtol=1e-2)
        assert np.abs(m.predict(R) / y - 1).max() < 2e-3


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("space", SPACES)
def test_a_larger_ridge_penalty_shrinks_the_fit_towards_the_mean(loss, space):
    R = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0], [5.0, 4.0]])
    y = 2 * R[:, 0] + R[:, 1]
    spread = [float(np.std(np.log(MetaFewShot(2, config=MetaConfig(space, lam, None, "random", loss)).fit(R, y)
                                  .predict(R)))) for lam in (1e-3, 1.0, 100.0)]
    assert abs(spread[0] - np.std(np.log(y))) < 1e-2 and spread[0] > spread[1] > spread[2] and spread[2] < 0.05
