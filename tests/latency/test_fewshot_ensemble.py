"""Issue 17: graph-aware descriptors, the additive model, the ensemble, stratified choice, JSON records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot import FewShotPredictor, HwTable, graph_descriptors
from edgenas.latency.fewshot_ensemble import FewShotEnsemble, select_stratified

NB201 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nb201" / "nb201_hw.csv"
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def _cell(o) -> str:
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def test_graph_descriptors_separate_live_from_dead_edges():
    # node 1 <- conv3 from 0; node 2 <- none, none (dead end); node 3 <- skip from 0, none, conv1 from 2
    g, names = graph_descriptors([_cell(["nor_conv_3x3", "none", "none", "skip_connect", "none", "nor_conv_1x1"]),
                                  _cell(["none"] * 6)])
    row = dict(zip(names, g[0]))
    assert row["dead_nor_conv_3x3"] == 1 and row["live_nor_conv_3x3"] == 0  # node 1 feeds nothing used
    assert row["dead_nor_conv_1x1"] == 1  # node 2 is unreachable from the input
    assert row["live_skip_connect"] == 1 and row["output_reachable"] == 1
    assert dict(zip(names, g[1]))["output_reachable"] == 0
    assert graph_descriptors(["resnet18"])[0].shape == (1, 0)  # not a cell: no descriptors


def _synthetic(n=600, seed=0):
    rng = np.random.default_rng(seed)
    cells = [_cell(rng.choice(OPS, 6)) for _ in range(n)]
    g, names = graph_descriptors(cells)
    cost = np.array([0.3 if n.startswith("live_") else 0.05 if n.startswith("dead_") else 0.2 for n in names])
    y = 0.5 + g @ cost  # an additive, pruning runtime
    ref = (1.0 + g[:, : len(names) // 2].sum(1)) * np.exp(rng.normal(0, 0.02, n))  # counts all live ops
    return np.column_stack([ref, g]), y, names


def test_additive_model_recovers_an_additive_device_and_round_trips_through_json():
    X, y, names = _synthetic()
    m = FewShotPredictor(is_latency=[False] * (X.shape[1] - 1)).fit(X[:30, 1:], y[:30])
    assert m.model == "additive"
    assert np.mean(np.abs(m.predict(X[30:, 1:]) / y[30:] - 1) <= 0.01) > 0.95
    back = FewShotPredictor.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.array_equal(back.predict(X[30:, 1:]), m.predict(X[30:, 1:]))
    before = FewShotPredictor(is_latency=[False] * (X.shape[1] - 1), additive=False).fit(X[:30, 1:], y[:30])
    assert before.model == "ridge"  # the old candidates only


def test_ensemble_fits_predicts_and_round_trips():
    X, y, names = _synthetic(seed=1)
    graph = list(range(1, X.shape[1]))
    e = FewShotEnsemble([True] + [False] * len(names), ["ref_ms"] + names, graph).fit(X[:20], y[:20])
    assert [n for n, _, _ in e.members] == ["all", "references", "graph"]
    p = e.predict(X[20:])
    assert np.mean(np.abs(p / y[20:] - 1) <= 0.10) > 0.9
    rec = json.loads(json.dumps(e.to_dict()))
    assert np.array_equal(FewShotEnsemble.from_dict(rec).predict(X[20:]), p)
    rec["members"][0]["columns"] = [99]
    with pytest.raises(InputError, match="malformed few-shot latency model"):
        FewShotEnsemble.from_dict(rec)
    with pytest.raises(InputError, match="schema"):
        FewShotEnsemble.from_dict({**e.to_dict(), "schema": 7})
    with pytest.raises(InputError, match="shape"):
        e.predict(X[:, :3])
    with pytest.raises(InputError, match="graph columns"):
        FewShotEnsemble([True, False], graph_columns=[0])


def test_stratified_selection_spans_the_range_and_is_seeded():
    score = np.random.default_rng(0).normal(size=1000)
    sel = select_stratified(score, 10, 3)
    ranks = np.argsort(np.argsort(score))[sel]
    assert len(set(sel.tolist())) == 10 and all(100 * i <= r < 100 * (i + 1) for i, r in enumerate(ranks))
    assert np.array_equal(sel, select_stratified(score, 10, 3))
    assert not np.array_equal(sel, select_stratified(score, 10, 4))
    with pytest.raises(InputError, match="cannot choose"):
        select_stratified(score, 0, 0)


@pytest.mark.skipif(not NB201.exists(), reason=f"reference data not present: {NB201}")
def test_nb201_raspi4_left_out_ensemble_beats_the_old_predictor_on_its_worst_seed():
    t = HwTable(NB201)
    from edgenas.latency.fewshot import op_counts

    counts = op_counts(t.arch)[0]
    refs = [c for c in t.ms_columns if c != "raspi4_ms"]
    R = np.column_stack([t.latency[c] for c in refs])
    X = np.column_stack([R, t.descriptors])
    graph = [len(refs) + i for i, n in enumerate(t.descriptor_names) if not n.startswith("n_")]
    y = t.latency["raspi4_ms"]
    Xb = np.column_stack([R, counts])
    worst, worst_before = 1.0, 1.0
    for seed in (0, 1, 2):
        train = select_stratified(np.log(R).mean(1), 20, seed)
        test = np.setdiff1d(np.arange(len(y)), train)
        e = FewShotEnsemble([True] * len(refs) + [False] * t.descriptors.shape[1], None, graph)
        p = e.fit(X[train], y[train]).predict(X[test])
        worst = min(worst, float(np.mean(np.abs(p / y[test] - 1) <= 0.10)))
        rnd = np.random.default_rng(seed).permutation(len(y))  # the old way: random k, old model
        b = FewShotPredictor(is_latency=[True] * len(refs) + [False] * counts.shape[1], additive=False)
        pb = b.fit(Xb[rnd[:20]], y[rnd[:20]]).predict(Xb[rnd[20:]])
        worst_before = min(worst_before, float(np.mean(np.abs(pb / y[rnd[20:]] - 1) <= 0.10)))
    assert worst > worst_before + 0.05, (worst, worst_before)


def test_op_counts_columns_are_the_ops_seen_or_the_ops_given():
    from edgenas.latency.fewshot import op_counts

    cells = [_cell(["nor_conv_3x3"] * 6), _cell(["none", "skip_connect", "none", "none", "none", "none"])]
    X, names = op_counts(cells)
    assert names == ["n_none", "n_nor_conv_3x3", "n_skip_connect"] and X.sum() == 12
    X2, names2 = op_counts(cells[:1], OPS)
    assert names2 == [f"n_{o}" for o in sorted(OPS)] and X2[0, names2.index("n_nor_conv_3x3")] == 6


def test_ensemble_arguments_and_call_order_are_checked():
    """A mismatched name list, features of another width (wider too: no column is silently dropped), a call
    before fit: each is one ``InputError``; ``describe`` names every member; records are schema 1."""
    X, y, names = _synthetic(seed=2)
    assert FewShotEnsemble([False, True, False], graph_columns=[0, 2]).graph_columns == [0, 2]
    with pytest.raises(InputError, match="graph columns must be descriptor"):
        FewShotEnsemble([False, True], graph_columns=[2])
    with pytest.raises(InputError, match="2 feature names for 3 columns"):
        FewShotEnsemble([True, False, False], ["a", "b"])
    e = FewShotEnsemble([True] + [False] * len(names))
    with pytest.raises(InputError, match="before fit"):
        e.predict(X[:3])
    with pytest.raises(InputError, match="before fit"):
        e.to_dict()
    with pytest.raises(InputError, match="shape"):
        e.fit(np.column_stack([X[:20], X[:20, :1]]), y[:20])
    with pytest.raises(InputError, match="shape"):
        e.fit(X[0], y[:1])
    e.fit(X[:20], y[:20])
    assert set(e.describe()["members"]) == {"all", "references"} and e.describe()["model"] == "ensemble"
    rec = e.to_dict()
    assert rec["schema"] == 1 and rec["kind"] == "fewshot-ensemble"
    # every column a latency: the "references" member would repeat "all", so there is none
    lat = np.column_stack([X[:, 0], X[:, 0] * 1.5 + 0.1])
    assert [n for n, _, _ in FewShotEnsemble([True, True]).fit(lat[:20], y[:20]).members] == ["all"]


def test_stratified_selection_takes_one_or_every_candidate_and_refuses_non_finite_scores():
    score = np.random.default_rng(1).normal(size=50)
    assert select_stratified(score, 1, 0).shape == (1,)
    assert sorted(select_stratified(score, 50, 0).tolist()) == list(range(50))
    with pytest.raises(InputError, match="cannot choose 51 of 50"):
        select_stratified(score, 51, 0)
    score[7] = np.nan
    with pytest.raises(InputError, match="finite"):
        select_stratified(score, 5, 0)


def test_graph_member_from_min_k_ridge_points_on():
    from edgenas.latency.fewshot import MIN_K_RIDGE

    X, y, names = _synthetic(seed=3)
    e = FewShotEnsemble([True] + [False] * len(names), None, list(range(1, X.shape[1])))
    assert [n for n, _, _ in e.fit(X[:MIN_K_RIDGE], y[:MIN_K_RIDGE]).members] == ["all", "references", "graph"]
    assert [n for n, _, _ in e.fit(X[:MIN_K_RIDGE - 1], y[:MIN_K_RIDGE - 1]).members] == ["all", "references"]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(is_latency=[1] + [0] * (len(r["is_latency"]) - 1)), "is_latency must be a list of true/false"),
    (lambda r: r.update(graph_columns="1"), "graph_columns and members must be lists"),
    (lambda r: r.update(members={"all": 1}), "graph_columns and members must be lists"),
    (lambda r: r.update(members=[]), "no members"),
    (lambda r: r["members"][0].update(name=5), "a member must have a name and columns"),
    (lambda r: r["members"].append([]), "a member must have a name and columns"),
    (lambda r: r["members"][0].update(columns="0"), "a member must have a name and columns"),
    (lambda r: r["members"][1].update(columns=[]), "has columns outside"),
    (lambda r: r["members"][0].update(columns=[99] * len(r["members"][0]["columns"])), "has columns outside"),
    (lambda r: r["members"][1].update(columns=[len(r["is_latency"])]), r"has columns outside 0\.\.9\)"),
    (lambda r: r["members"][1].update(columns=[1]), "its latency flags do not match its columns"),
    (lambda r: r["members"][1].update(name="m" * 60, columns=[1]), f"member '{'m' * 40}': its latency flags"),
    (lambda r: r["members"][1].update(name="m" * 60, columns=[99]), f"member '{'m' * 40}' has columns outside"),
    (lambda r: r["members"][1].update(name="m" * 60, columns=["x"]), f"a column of member '{'m' * 40}' must be"),
])
def test_an_edited_ensemble_record_names_what_is_wrong(edit, message):
    X, y, names = _synthetic(seed=1)
    rec = FewShotEnsemble([True] + [False] * len(names)).fit(X[:20], y[:20]).to_dict()
    assert [m["name"] for m in rec["members"]] == ["all", "references"]
    rec = json.loads(json.dumps(rec))
    edit(rec)
    with pytest.raises(InputError, match=message):
        FewShotEnsemble.from_dict(rec)
