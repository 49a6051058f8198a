"""Few-shot latency prediction from k measurements: synthetic laws, real NB201 tables, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot import FewShotPredictor, HwTable, fewshot_from_table, op_counts

NB201 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nb201" / "nb201_hw.csv"
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def _arch(rng) -> str:
    o = rng.choice(OPS, 6)
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def write_table(path: Path, columns: dict[str, np.ndarray], archs: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "arch", "cifar10_test", "cifar100_test", "imagenet16_test", *columns])
        for i, a in enumerate(archs):
            w.writerow([i, a, 90.0, 70.0, 40.0, *(f"{columns[c][i]:.6g}" for c in columns)])
    return path


def test_power_law_of_one_reference_is_recovered():
    rng = np.random.default_rng(0)
    ref = rng.uniform(1, 50, (200, 2))
    y = 2.0 * ref[:, 0] ** 1.1
    m = FewShotPredictor().fit(ref[:10], y[:10])
    assert m.model in ("single", "ridge")
    np.testing.assert_allclose(m.predict(ref[10:]), y[10:], rtol=0.01)


def test_ridge_wins_when_references_combine():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 20, (300, 3))
    y = ref[:, 0] * ref[:, 1] * np.exp(rng.normal(0, 0.01, 300))  # neither reference alone suffices
    m = FewShotPredictor().fit(ref[:20], y[:20])
    assert m.model == "ridge"
    rel = np.abs(m.predict(ref[20:]) / y[20:] - 1)
    assert np.mean(rel <= 0.10) > 0.95
    single = FewShotPredictor().fit(ref[:3], y[:3])  # too few points for ridge: one reference
    assert single.model == "single" and single.reference in (0, 1, 2)


def test_one_point_is_a_ratio_to_a_reference():
    m = FewShotPredictor().fit([[4.0, 9.0]], [8.0])
    assert m.model == "single"
    np.testing.assert_allclose(m.predict([[1.0, 1.0], [3.0, 1.0]])[0] * 3, m.predict([[3.0, 1.0]])[0])


def test_bad_features_and_targets_rejected():
    with pytest.raises(InputError, match="finite"):
        FewShotPredictor().fit([[1.0], [-1.0]], [1.0, 2.0])
    with pytest.raises(InputError, match="target"):
        FewShotPredictor().fit([[1.0], [2.0]], [1.0, 0.0])
    with pytest.raises(InputError, match="before fit"):
        FewShotPredictor().predict([[1.0]])


def test_target_column_is_never_a_feature(tmp_path):
    rng = np.random.default_rng(2)
    n = 400
    archs = [_arch(rng) for _ in range(n)]
    target = rng.uniform(1, 10, n)
    cols = {"a_ms": target * np.exp(rng.normal(0, 0.05, n)), "target_ms": target,
            "b_ms": target ** 0.9 * np.exp(rng.normal(0, 0.05, n))}
    path = write_table(tmp_path / "t.csv", cols, archs)
    r = fewshot_from_table(path, "target_ms", 20, 0)
    assert "target_ms" not in r["features"]
    assert 0.8 < r["spearman"] < 0.999  # good, yet not the perfect score a leaked target would give
    assert r["k"] == 20 and r["n_test"] == n - 20


def test_descriptors_alone_when_no_other_device(tmp_path):
    rng = np.random.default_rng(3)
    archs = [_arch(rng) for _ in range(300)]
    counts, names = op_counts(archs)
    cost = {"n_nor_conv_3x3": 0.5, "n_nor_conv_1x1": 0.2, "n_avg_pool_3x3": 0.1}
    y = np.exp(sum(cost.get(nm, 0.0) * counts[:, i] for i, nm in enumerate(names)))
    path = write_table(tmp_path / "t.csv", {"only_ms": y}, archs)
    r = fewshot_from_table(path, "only_ms", 15, 1)
    assert r["model"] in ("ridge", "additive") and r["within10"] > 0.95 and r["features"][:len(names)] == names


def test_unknown_column_lists_the_latency_columns(tmp_path):
    rng = np.random.default_rng(4)
    path = write_table(tmp_path / "t.csv", {"x_ms": rng.uniform(1, 2, 10), "y_ms": rng.uniform(1, 2, 10)},
                       [_arch(rng) for _ in range(10)])
    with pytest.raises(InputError) as err:
        fewshot_from_table(path, "cifar10_test", 3, 0)
    assert "x_ms, y_ms" in str(err.value)
    with pytest.raises(InputError, match="k must be between 1 and 9"):
        fewshot_from_table(path, "x_ms", 10, 0)
    with pytest.raises(InputError, match="not found"):
        fewshot_from_table(tmp_path / "missing.csv", "x_ms", 3, 0)


@pytest.mark.skipif(not NB201.exists(), reason=f"reference data not present: {NB201}")
def test_nb201_ten_measurements_rank_well_and_are_reproducible():
    table = HwTable(NB201)
    r = fewshot_from_table(table, "gold_6226_ms", 10, 0)
    assert r["spearman"] > 0.85 and r["n_test"] == 15625 - 10
    assert fewshot_from_table(table, "gold_6226_ms", 10, 0) == r  # same seed, same answer
    gpu = fewshot_from_table(table, "1080ti_1_ms", 10, 3)
    assert gpu["spearman"] > 0.93 and gpu["within10"] > 0.8
    assert "1080ti_1_ms" not in gpu["features"]


def test_a_predictor_record_of_every_model_is_read_back_and_an_edited_one_is_one_input_error():
    import json

    mean = FewShotPredictor(is_latency=[False]).fit([[1.0], [2.0]], [2.0, 8.0])  # geometric mean: 4 ms
    back = FewShotPredictor.from_dict(json.loads(json.dumps(mean.to_dict())))
    assert back.model == "mean" and back.predict([[5.0]]).tolist() == [4.0]
    single = FewShotPredictor(is_latency=[False, True], feature_names=["n", "ref"]).fit([[3.0, 4.0]], [8.0])
    rec = json.loads(json.dumps(single.to_dict()))
    assert rec["reference"] == 1 and FewShotPredictor.from_dict(rec).describe()["reference"] == "ref"
    rng = np.random.default_rng(0)
    X = rng.uniform(1.0, 5.0, (10, 2))
    fitted = FewShotPredictor(additive=False).fit(X, X[:, 0] * X[:, 1])
    ridge = json.loads(json.dumps(fitted.to_dict()))
    assert ridge["model"] == "ridge" and ridge["keep"] == [True, True]
    back = FewShotPredictor.from_dict(ridge)
    assert (back.alpha, back.reference, back.loo_mse) == (ridge["alpha"], None, ridge["loo_mse"])
    assert back.predict(X).tolist() == fitted.predict(X).tolist()
    no_floor = FewShotPredictor.from_dict({k: v for k, v in ridge.items() if k not in ("floor", "loo_mse")})
    assert no_floor._floor == 0.0 and np.isnan(no_floor.loo_mse)
    for base, edits, message in (
            (ridge, {"schema": 2}, "unsupported few-shot model schema 2"),
            (ridge, {"schema": True}, "unsupported few-shot model schema True"),
            (ridge, {"is_latency": [1, 1]}, "is_latency must be a list of true/false"),
            (ridge, {"is_latency": "tt"}, "is_latency must be a list of true/false"),
            (ridge, {"is_latency": [True]}, "inconsistent ridge parameters"),
            (ridge, {"feature_names": "ab"}, "feature_names must be a list of strings"),
            (ridge, {"loo_mse": -1}, "loo_mse must be >= 0"),
            (ridge, {"alpha": 0}, "alpha must be > 0"),
            (ridge, {"reference": -1}, "reference must be a whole number"),
            (ridge, {"keep": [True]}, "keep must be a list of 2 true/false"),
            (ridge, {"keep": [1, 1]}, "keep must be a list of 2 true/false"),
            (ridge, {"keep": "tt"}, "keep must be a list of 2 true/false"),
            (ridge, {"keep": [True, False]}, "w must hold 1 numbers, got 2"),
            (ridge, {"sd": [1.0, 0.0]}, "inconsistent ridge parameters"),
            (ridge, {"sd": [1.0]}, "sd must hold 2 numbers"),
            (ridge, {"ybar": "1"}, "ybar must be a finite number"),
            (ridge, {"floor": -1.0}, "floor must be >= 0"),
            (ridge, {"model": "magic"}, "unknown model 'magic'"),
            (ridge, {"model": "m" * 50}, f"unknown model '{'m' * 40}'"),  # the name cut to 40 characters
            (rec, {"reference": None}, "single model without a reference latency column"),
            (rec, {"reference": 0}, "single model without a reference latency column"),
            (rec, {"reference": 2}, "single model without a reference latency column"),
            (mean.to_dict(), {"mean": "x"}, "mean must be a finite number"),
    ):
        with pytest.raises(InputError, match=message):
            FewShotPredictor.from_dict({**base, **edits})
    with_zero_sd = {**ridge, "sd": [1.0, 0.0], "keep": [True, False], "w": ridge["w"][:1]}
    assert FewShotPredictor.from_dict(with_zero_sd).predict(X).shape == (10,)  # a column left out may be flat


def test_a_table_holds_at_most_16_latency_columns_and_cells_from_1e_6_to_1e7_ms(tmp_path):
    rng = np.random.default_rng(5)
    archs = [_arch(rng) for _ in range(3)]
    cols = {f"d{i}_ms": np.ones(3) for i in range(16)}
    assert len(HwTable(write_table(tmp_path / "16.csv", cols, archs)).ms_columns) == 16
    with pytest.raises(InputError, match="17 latency \\(\\*_ms\\) columns, more than the 16"):
        HwTable(write_table(tmp_path / "17.csv", {**cols, "d16_ms": np.ones(3)}, archs))
    path = tmp_path / "cells.csv"
    path.write_text("index,arch,a_ms\n" + "".join(f"{i},{archs[0]},{v}\n" for i, v in enumerate(
        ["1e-06", "1.5e-06", "9e-07", "1e7", "1.1e7", "", "x"])))
    got = HwTable(path).column("a_ms")
    assert got[:2].tolist() == [1e-06, 1.5e-06] and got[3] == 1e7
    assert np.isnan(got[[2, 4, 5, 6]]).all()


def test_a_table_without_the_arch_or_index_column_or_a_latency_column_is_one_input_error(tmp_path):
    path = tmp_path / "t.csv"
    for header in ("index,a_ms", "arch,a_ms"):
        path.write_text(f"{header}\n0,1.0\n")
        with pytest.raises(InputError, match="expected a header with columns index, arch"):
            HwTable(path)
    path.write_text(f"index,arch,cifar10_test\n0,{_arch(np.random.default_rng(0))},90.0\n")
    with pytest.raises(InputError, match="no latency \\(\\*_ms\\) columns"):
        HwTable(path)


def test_short_rows_read_as_missing_cells_and_unparsed_cells_give_no_descriptors(tmp_path):
    arch = _arch(np.random.default_rng(0))
    path = tmp_path / "t.csv"
    path.write_text(f"index,arch,a_ms\n0,{arch},2.0\n1,{arch}\n2\n")
    t = HwTable(path)
    assert t.arch == [arch, arch, ""] and t.latency["a_ms"][0] == 2.0 and np.isnan(t.latency["a_ms"][1:]).all()
    assert t.descriptors.shape == (3, 0) and t.descriptor_names == []  # the empty arch does not parse
    counts, names = op_counts(["|nor_conv_3x3~0|", "junk"])
    assert counts.shape == (2, 0) and names == []


def test_ridge_takes_part_from_five_points_and_a_record_needs_a_fit():
    """``MIN_K_RIDGE``: four points of a product of two references are one reference's calibration, five are
    ridge's; ``describe`` of a ridge model names no reference; ``to_dict`` before ``fit`` is an InputError."""
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 20, (10, 3))
    y = ref[:, 0] * ref[:, 1]
    assert FewShotPredictor(additive=False).fit(ref[:4], y[:4]).model == "single"
    ridge = FewShotPredictor(feature_names=["a", "b", "c"], additive=False).fit(ref[:5], y[:5])
    assert ridge.model == "ridge" and ridge.describe()["reference"] is None and ridge.to_dict()["floor"] == 0.0
    np.testing.assert_allclose(ridge.predict(ref[5:]), y[5:], rtol=0.01)
    with pytest.raises(InputError, match="to_dict called before fit"):
        FewShotPredictor().to_dict()


def test_features_and_targets_of_the_wrong_shape_or_value_are_named():
    """Each check of ``fit``'s and ``predict``'s input says what is wrong (a fitted model, so that nothing
    later in the fit is what refuses them)."""
    m = FewShotPredictor(is_latency=[True, False]).fit([[1.0, 0.0], [2.0, 1.0], [4.0, 0.0]], [2.0, 4.0, 8.0])
    for features, message in (([1.0, 2.0], "features must be a 2-D array \\(n, F\\), got shape \\(2,\\)"),
                              ([[1.0]], "1 feature columns but is_latency has 2"),
                              ([[np.nan, 0.0]], "features must be finite"),
                              ([[1.0, np.inf]], "features must be finite"),
                              ([[0.0, 1.0]], "latency features > 0"), ([[-1.0, 1.0]], "latency features > 0")):
        with pytest.raises(InputError, match=message):
            m.predict(features)
    assert m.predict([[1.0, -1.0]]).shape == (1,)  # a descriptor may be negative
    for y, message in (([1.0, 2.0], "need one target per row: 3 rows, 2 targets"), ([], "3 rows, 0 targets")):
        with pytest.raises(InputError, match=message):
            FewShotPredictor().fit([[1.0], [2.0], [3.0]], y)
    with pytest.raises(InputError, match="need one target per row: 0 rows, 0 targets"):
        FewShotPredictor().fit(np.zeros((0, 1)), [])
    for y in ([1.0, np.nan], [1.0, -2.0], [np.inf, 1.0]):
        with pytest.raises(InputError, match="target latencies must be finite and > 0"):
            FewShotPredictor().fit([[1.0], [2.0]], y)


def test_two_points_rank_the_references_and_five_admit_the_additive_model():
    """From two points on, each reference is scored on the point left out (one point keeps the first);
    from ``MIN_K_RIDGE`` (5) points on, the additive model competes: an exactly additive device is it."""
    ref = np.array([[5.0, 1.0], [1.0, 3.0]])
    m = FewShotPredictor().fit(ref, 2.0 * ref[:, 1])
    assert (m.model, m.reference) == ("single", 1) and m.loo_mse == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(m.predict([[7.0, 4.0]]), [8.0])
    X = np.random.default_rng(0).integers(0, 5, (10, 2)).astype(float)
    y = 1.0 + 2.0 * X[:, 0] + 3.0 * X[:, 1]
    assert FewShotPredictor(is_latency=[False, False]).fit(X[:4], y[:4]).model == "ridge"
    additive = FewShotPredictor(is_latency=[False, False]).fit(X[:5], y[:5])
    assert additive.model == "additive"
    np.testing.assert_allclose(additive.predict(X[5:]), y[5:], rtol=1e-3)
    floor = y[:5].min() / 10  # a prediction below a tenth of the fastest point measured is floored there
    assert additive.to_dict()["floor"] == floor and additive.predict([[-9.0, -9.0]]).tolist() == [floor]


def test_descriptors_alone_take_ridge_from_three_points():
    """With no reference latency, two points are their geometric mean and three a ridge fit in log space."""
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.exp(X[:, 0])
    mean = FewShotPredictor(is_latency=[False]).fit(X[:2], y[:2])
    assert mean.model == "mean"
    np.testing.assert_allclose(mean.predict(X[2:]), [np.exp(0.5)] * 2)
    ridge = FewShotPredictor(is_latency=[False]).fit(X[:3], y[:3])
    assert ridge.model == "ridge" and ridge.predict(X[3:])[0] > y[2]
    flat = FewShotPredictor(is_latency=[False]).fit(np.ones((3, 1)), [1.0, 2.0, 4.0])  # nothing to fit on
    assert (flat.model, flat.alpha, flat.to_dict()["keep"]) == ("ridge", 1e-4, [False])  # every alpha ties: the first
    np.testing.assert_allclose(flat.predict([[5.0]]), [2.0])


def _refit_without_each_point(Z, y, alpha, additive):
    """Leave-one-out by brute force: ridge (intercept not penalised) on the columns standardised over all
    points, refitted without each point in turn; its error in log space (``additive``: of the prediction
    floored at a tenth of the fastest point)."""
    k = len(y)
    A = np.hstack([np.ones((k, 1)), (Z - Z.mean(axis=0)) / Z.std(axis=0)])
    penalty = np.diag([0.0] + [alpha] * Z.shape[1])
    err = []
    for i in range(k):
        keep = np.arange(k) != i
        pred = A[i] @ np.linalg.solve(A[keep].T @ A[keep] + penalty, A[keep].T @ y[keep])
        err.append(np.log(max(pred, y.min() / 10) / y[i]) if additive else y[i] - pred)
    return float(np.mean(np.square(err)))


@pytest.mark.parametrize("additive", [False, True])
def test_ridges_leave_one_out_error_is_that_of_refitting_without_each_point(additive):
    """The hat-matrix shortcut is exact: the error it gives is brute force's, at the alpha it picks, and that
    alpha is the one of ``ALPHAS`` with the smallest brute-force error."""
    from edgenas.latency.fewshot import ALPHAS

    rng = np.random.default_rng(7)
    Z = rng.uniform(0.0, 3.0, (8, 3))
    y = 1.0 + Z @ np.array([1.0, 0.5, 0.2]) + rng.normal(0, 0.3, 8)
    got = FewShotPredictor()._ridge_candidate(Z, y, additive=additive)
    assert got["model"] == ("additive" if additive else "ridge")
    assert got["loo_mse"] == pytest.approx(_refit_without_each_point(Z, y, got["alpha"], additive), rel=1e-9)
    brute = [_refit_without_each_point(Z, y, a, additive) for a in ALPHAS]
    assert got["alpha"] == ALPHAS[int(np.argmin(brute))]


def test_a_record_whose_names_or_columns_do_not_fit_the_features_is_one_input_error():
    """``from_dict`` read ``feature_names`` of another length than ``is_latency`` (``describe`` then failed with
    an IndexError), and a record without ``is_latency`` (every column a latency) whose reference column or
    ridge width the features do not have (``predict`` failed with an IndexError)."""
    single = FewShotPredictor(is_latency=[False, True], feature_names=["n", "ref"]).fit([[3.0, 4.0]], [8.0])
    with pytest.raises(InputError, match="feature_names must hold 2 names, got 1"):
        FewShotPredictor.from_dict({**single.to_dict(), "feature_names": ["n"]})
    free = FewShotPredictor(feature_names=["a", "b"]).fit([[3.0, 4.0]], [8.0]).to_dict()
    assert FewShotPredictor.from_dict({**free, "reference": 1}).describe()["reference"] == "b"
    with pytest.raises(InputError, match="single model without a reference latency column"):
        FewShotPredictor.from_dict({**free, "reference": 2})
    unnamed = FewShotPredictor.from_dict({**free, "feature_names": None, "reference": 7})
    with pytest.raises(InputError, match="the model reads feature column 7, the features have 2"):
        unnamed.predict([[1.0, 2.0]])
    X = np.random.default_rng(0).uniform(1.0, 5.0, (10, 2))
    ridge = FewShotPredictor.from_dict(FewShotPredictor(additive=False).fit(X, X[:, 0] * X[:, 1]).to_dict())
    assert ridge.model == "ridge" and ridge.predict(X).shape == (10,)
    for width in (1, 3):
        with pytest.raises(InputError, match=f"{width} feature columns but the model takes 2"):
            ridge.predict(np.ones((1, width)))


def test_only_rows_with_a_target_and_references_complete_on_them_are_used(tmp_path):
    """Rows without a target value are left out, and so is a reference column missing a value on a row that
    has one (a column missing values only where the target is missing is kept). One measured point of a
    device twice as slow as a reference predicts every other row of it, to the table's 6 digits."""
    rng = np.random.default_rng(5)
    n = 30
    t = rng.uniform(1, 10, n)
    a, b = t / 2, rng.uniform(1, 10, n)
    t[3] = a[3] = np.nan  # a: missing only where the target is
    b[7] = np.nan
    path = write_table(tmp_path / "t.csv", {"a_ms": a, "t_ms": t, "b_ms": b}, ["junk"] * n)
    r = fewshot_from_table(path, "t_ms", 1, 7)
    assert (r["column"], r["k"], r["seed"], r["n_test"], r["model"], r["reference"], r["features"]) == (
        "t_ms", 1, 7, 28, "single", "a_ms", ["a_ms"])
    assert r["within10"] == 1.0 and r["mape"] < 1e-5 and r["spearman"] > 0.999 and r["kendall"] > 0.999
    assert fewshot_from_table(HwTable(path), "t_ms", 1, 7) == r
    for k in (0, 29):
        with pytest.raises(InputError, match="k must be between 1 and 28, got"):
            fewshot_from_table(path, "t_ms", k, 0)
    only_b = write_table(tmp_path / "b.csv", {"t_ms": t, "b_ms": b}, ["junk"] * n)
    with pytest.raises(InputError, match="nothing to predict 't_ms' from"):
        fewshot_from_table(only_b, "t_ms", 5, 0)
