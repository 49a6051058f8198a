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
