"""Issue 17, part 1: the nearest reference as an anchor for a few-shot latency model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot_anchor import DEFAULT_LAM, LAMS, Anchor
from edgenas.latency.fewshot_meta import DEFAULT, MetaConfig, select_architectures
from edgenas.latency.fewshot_model import model_features
from edgenas.latency.fewshot_table import TableCorrected, TableReferences
from edgenas.spaces import get_space
from tests.latency.test_fewshot_table import make_table

SPACE = get_space("nb201")


def _world(n=2000, seed=0, noise=0.01):
    """Three references' smoothed log latencies and two descriptors; the new device is reference 1 times
    1.3, with 5% more per unit of the first descriptor and ``noise`` (log-normal)."""
    rng = np.random.default_rng(seed)
    D = rng.integers(0, 6, (n, 2)).astype(float)
    base = rng.normal(0.0, 0.5, n)
    L = np.column_stack([base + rng.normal(0, 0.3, n), base + 0.2 * D[:, 1], -1.0 + 0.5 * base + rng.normal(0, 0.2, n)])
    y = np.exp(L[:, 1] + np.log(1.3) + 0.05 * D[:, 0] + rng.normal(0, noise, n))
    return L, D, y


def test_the_closest_reference_is_the_source_and_its_shape_is_kept():
    L, D, y = _world()
    fit, rest = np.arange(20), np.arange(20, len(y))
    a = Anchor().fit(L[fit], D[fit], y[fit])
    assert a.source == 1 and a.lam in LAMS
    rel = np.abs(a.predict(L[rest], D[rest]) / y[rest] - 1)
    assert np.mean(rel <= 0.05) > 0.95  # 20 points, a 1.3x level and a 5% per-unit slope learned
    # the other references are far: anchored on them, most predictions are off by more than 10%
    for other in (0, 2):
        far = np.exp(L[rest, other] - np.median(L[fit, other] - np.log(y[fit])))
        assert np.mean(np.abs(far / y[rest] - 1) <= 0.10) < 0.5


def test_the_shrinkage_is_chosen_by_leave_one_out_unless_given_or_too_few_points():
    L, D, y = _world(noise=0.05)
    assert Anchor(10.0).fit(L[:20], D[:20], y[:20]).lam == 10.0
    assert Anchor().fit(L[:4], D[:4], y[:4]).lam == DEFAULT_LAM
    # a descriptor effect 20x the usual: leave-one-out prefers the least shrinkage
    y_strong = y * np.exp(0.9 * D[:, 0])
    assert Anchor().fit(L[:30], D[:30], y_strong[:30]).lam == LAMS[0]
    # no descriptor effect at all: more shrinkage than the least
    y_none = np.exp(L[:, 1] + np.random.default_rng(3).normal(0, 0.05, len(y)))
    assert Anchor().fit(L[:30], D[:30], y_none[:30]).lam > LAMS[0]


def test_records_round_trip_and_bad_ones_are_one_input_error():
    L, D, y = _world()
    a = Anchor().fit(L[:20], D[:20], y[:20])
    rec = json.loads(json.dumps(a.to_dict()))
    assert np.array_equal(Anchor.from_dict(rec, 3).predict(L, D), a.predict(L, D))
    with pytest.raises(InputError, match="malformed"):
        Anchor.from_dict(rec, 1)  # its source is reference 1: one reference is too few
    for key, value in (("scale", [1.0, 0.0]), ("mu", [0.0]), ("lam", -1.0), ("schema", 2), ("ratio", {})):
        with pytest.raises(InputError):
            Anchor.from_dict(dict(rec, **{key: value}), 3)
    with pytest.raises(InputError, match="before fit"):
        Anchor().predict(L, D)
    with pytest.raises(InputError, match="finite"):
        Anchor().fit(L[:20], D[:20], -y[:20])
    with pytest.raises(InputError, match="do not match"):
        a.predict(L[:, :1], D)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path, genes, target = make_table(tmp_path_factory.mktemp("t") / "hw.csv")
    return TableReferences.build(path, SPACE), [SPACE.from_genes(g) for g in genes], target


def test_table_corrected_averages_the_anchor_and_older_records_still_load(table):
    """``anchor=True``: the prediction is the geometric mean of the model's own and the anchor on the
    references' smoothed parts (log additive + non-additive); records without it load as before."""
    tref, archs, y = table
    X = model_features(SPACE, archs, [], tref)
    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, 20, 0, "stratified")
    plain = MetaConfig("log", 0.1, 10.0, "random")
    model = TableCorrected(n, config=DEFAULT, plain_config=plain, anchor=True).fit(X[idx], y[idx])
    without = TableCorrected(n, config=DEFAULT, plain_config=plain).fit(X[idx], y[idx]).predict(X)
    anchor = Anchor().fit(np.log(X[idx, :n]) + X[idx, -n:], X[idx, n:-n], y[idx])
    both = model.predict(X)
    rec = json.loads(json.dumps(model.to_dict()))
    assert np.array_equal(TableCorrected.from_dict(rec).predict(X), both)
    old = dict(rec)
    del old["anchor"]  # a record from before the anchor: its own prediction, without the average
    own = TableCorrected.from_dict(old).predict(X)
    assert np.allclose(both, np.sqrt(own * anchor.predict(np.log(X[:, :n]) + X[:, -n:], X[:, n:-n])), rtol=1e-12)
    assert model.anchor.source == anchor.source and model.describe()["anchor_lam"] == anchor.lam
    # the model's own part differs from the one fitted without the anchor through its correction weights
    # (pulled toward the nearest reference, next test) and the additive fit that follows them: a little
    assert not np.array_equal(model.w, TableCorrected(n, config=DEFAULT, plain_config=plain).fit(X[idx], y[idx]).w)
    assert np.median(np.abs(np.log(own / without))) < 0.05
    fixed = TableCorrected(n, config=DEFAULT, plain_config=plain, anchor=True, anchor_lam=100.0).fit(X[idx], y[idx])
    assert fixed.anchor.lam == 100.0
    # from 4 points there is nothing to check the anchor on: none, and the prediction is the one without it
    few = TableCorrected(n, config=DEFAULT, plain_config=plain, anchor=True).fit(X[idx[:4]], y[idx[:4]])
    assert few.anchor is None and few.to_dict()["anchor"] is None
    assert np.array_equal(few.predict(X), TableCorrected(n, config=DEFAULT, plain_config=plain).fit(
        X[idx[:4]], y[idx[:4]]).predict(X))
    bad = json.loads(json.dumps(rec))
    bad["anchor"]["mu"], bad["anchor"]["scale"] = [0.0], [1.0]
    with pytest.raises(InputError, match="malformed"):
        TableCorrected.from_dict(bad)


def test_the_anchor_pulls_the_correction_toward_the_nearest_references_non_additive_part(table):
    """With the anchor, the correction weights are shrunk toward 1 on the nearest reference instead of 0:
    where the references' non-additive parts are too small for the points to weigh (as the GPUs' on
    NAS-Bench-201), they keep the relative's; where the points speak, they decide."""
    tref, archs, y = table
    X = model_features(SPACE, archs, [], tref)
    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, 20, 0, "stratified")
    model = TableCorrected(n, config=DEFAULT, anchor=True).fit(X[idx], y[idx])
    src = model.anchor.source
    faint = X.copy()
    faint[:, -n:] *= 1e-3  # non-additive parts of a tenth of a percent: 20 points cannot weigh them
    pulled = TableCorrected(n, config=DEFAULT, anchor=True).fit(faint[idx], y[idx])
    assert pulled.anchor.source == src
    assert abs(pulled.w[src] - 1.0) < 0.01 and np.abs(np.delete(pulled.w, src)).max() < 0.01
    assert np.abs(TableCorrected(n, config=DEFAULT).fit(faint[idx], y[idx]).w).max() < 0.01  # without: 0
    # from 4 points no anchor and no pull
    assert np.abs(TableCorrected(n, config=DEFAULT, anchor=True).fit(faint[idx[:4]], y[idx[:4]]).w).max() < 0.01
    # parts large enough to weigh: the fit follows the points, not the prior. A new device with about twice
    # the first ARM column's non-additive effect (the two ARM columns share it; the GPU column has none)
    strong = y * np.exp(X[:, -n])
    pulled = TableCorrected(n, config=DEFAULT, anchor=True).fit(X[idx], strong[idx])
    assert pulled.anchor.source == 0 and pulled.w[:2].sum() > 1.8
    assert TableCorrected(n, config=DEFAULT).fit(X[idx], strong[idx]).w[:2].sum() > 1.8


def test_bad_arguments_are_one_input_error():
    L, D, y = _world(n=40)
    for lam in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="ridge penalty must be > 0"):
            Anchor(lam)
    assert Anchor(0.5).fit(L, D, y).lam == 0.5  # any penalty > 0
    for log_refs, desc in ((L[:, 0], D), (L, D[:, 0]), (L[:30], D), (L[:, :0], D)):
        with pytest.raises(InputError, match=r"need log references \(n, >= 1\) and descriptors"):
            Anchor().fit(log_refs, desc, y[:log_refs.shape[0]])
    bad = L.copy()
    bad[3, 2] = np.inf
    with pytest.raises(InputError, match="must be finite"):
        Anchor().fit(bad, D, y)
    a = Anchor().fit(L, D, y)
    assert a.describe() == {"anchor_source": 1, "anchor_lam": a.lam}
    bad = D.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="must be finite"):
        a.predict(L, bad)


def test_targets_are_checked_and_leave_one_out_starts_at_five_points():
    L, D, y = _world(n=40, noise=0.05)
    for target in (y[:-1], y * 0, np.where(np.arange(40) == 5, np.nan, y), -y):
        with pytest.raises(InputError, match="need one finite target latency > 0 per row"):
            Anchor().fit(L, D, target)
    with pytest.raises(InputError, match="need one finite target latency > 0 per row"):
        Anchor().fit(L[:0], D[:0], y[:0])
    strong = y * np.exp(0.9 * D[:, 0])  # leave-one-out prefers the least shrinkage (as above)
    assert Anchor().fit(L[:5], D[:5], strong[:5]).lam == LAMS[0] != DEFAULT_LAM


def test_the_nearest_reference_is_judged_by_the_spread_of_its_ratio_not_its_level():
    from edgenas.latency.fewshot_anchor import nearest_reference

    rng = np.random.default_rng(5)
    y = rng.uniform(2.0, 20.0, 30)
    close_but_slower = np.log(y) + 3.0 + rng.normal(0, 0.01, 30)  # 20x off, in step with y
    same_level = np.log(y) + rng.normal(0, 0.2, 30)
    assert nearest_reference(np.column_stack([same_level, close_but_slower]), y) == 1
    assert nearest_reference(np.column_stack([close_but_slower - 6.0, same_level]), y) == 0


def test_a_descriptor_constant_over_the_points_is_no_division_by_zero():
    L, D, y = _world(n=60)
    D = D.copy()
    D[:20, 1] = 4.0  # constant over the 20 fitted points
    a = Anchor().fit(L[:20], D[:20], y[:20])
    p = a.predict(L, D)
    assert np.isfinite(p).all() and np.mean(np.abs(p[20:] / y[20:] - 1) <= 0.10) > 0.9
    assert np.array_equal(Anchor.from_dict(json.loads(json.dumps(a.to_dict())), 3).predict(L, D), p)


def test_an_unfitted_anchor_has_no_record_and_a_record_must_match_its_ratio_model():
    assert Anchor().describe() == {"anchor_source": -1, "anchor_lam": None}
    with pytest.raises(InputError, match="to_dict called before fit"):
        Anchor().to_dict()
    L, D, y = _world()
    rec = json.loads(json.dumps(Anchor().fit(L[:20], D[:20], y[:20]).to_dict()))
    with pytest.raises(InputError, match="descriptor statistics do not match the ratio model"):
        Anchor.from_dict(dict(rec, mu=[0.0] * 3, scale=[1.0] * 3), 3)
    ratio = dict(rec["ratio"], n_refs=1)
    with pytest.raises(InputError, match="malformed|do not match"):
        Anchor.from_dict(dict(rec, ratio=ratio), 3)


def test_the_descriptors_units_do_not_matter():
    """The descriptors are standardised over the points: in other units (x 0.01, a spread below 1, or
    x 100), the same anchor."""
    L, D, y = _world(n=200, noise=0.03)
    p = Anchor().fit(L[:20], D[:20], y[:20]).predict(L, D)
    for scale in (0.01, 100.0):
        q = Anchor().fit(L[:20], D[:20] * scale, y[:20]).predict(L, D * scale)
        np.testing.assert_allclose(q, p, rtol=1e-9)
