"""Issue 17, part 1: a latency table of other devices as few-shot references, with what is not additive."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot import cell_encoding
from edgenas.latency.fewshot_meta import DEFAULT, MetaFewShot, select_architectures
from edgenas.latency.fewshot_model import model_features
from edgenas.latency.fewshot_table import TableCorrected, TableReferences
from edgenas.spaces import get_space
from edgenas.spaces.nb201 import OPS

SPACE = get_space("nb201")


def _shared_part(ops: np.ndarray) -> np.ndarray:
    """A non-additive effect all "ARM" devices share: a 3x3 convolution on the first edge AND the
    last one costs 30% more, a cell without any 1x1 convolution 15% less."""
    conv3 = OPS.index("nor_conv_3x3")
    both = (ops[:, 0] == conv3) & (ops[:, 5] == conv3)
    no_1x1 = ~(ops == OPS.index("nor_conv_1x1")).any(axis=1)
    return 0.3 * both - 0.15 * no_1x1


def make_table(path, n=3000, seed=0, devices=("arm_a_ms", "arm_b_ms", "gpu_ms"), strength=(1.0, 0.8, 0.0)):
    """A CSV of ``n`` cells: per device a per-edge cost table (additive; a random mix of three kinds of
    hardware) times exp(strength x the shared part), 1% noise. Returns (path, the cells' genes, a new
    ARM device's latencies for them)."""
    rng = np.random.default_rng(seed)
    genes = rng.integers(0, len(OPS), (n, 6))
    cells = [SPACE.to_dict(SPACE.from_genes(g))["arch"] for g in genes]
    E, _ = cell_encoding(cells, OPS)
    shared = _shared_part(genes)
    kinds = rng.uniform(0.05, 1.0, (E.shape[1], 3))

    def device(s: float) -> np.ndarray:
        return (1.0 + E @ kinds @ rng.uniform(0.2, 1.0, 3)) * np.exp(s * shared + rng.normal(0, 0.01, n))

    cols = {d: device(s) for d, s in zip(devices, strength)}
    lines = ["index,arch," + ",".join(devices)]
    lines += [f"{i},{c}," + ",".join(f"{cols[d][i]:.6f}" for d in devices) for i, c in enumerate(cells)]
    path.write_text("\n".join(lines) + "\n")
    return path, genes, device(1.1)


def _within10(p, y):
    return float(np.mean(np.abs(p / y - 1) <= 0.10))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path, genes, target = make_table(tmp_path_factory.mktemp("t") / "hw.csv")
    return TableReferences.build(path, SPACE), [SPACE.from_genes(g) for g in genes], target


def test_the_non_additive_part_carries_over_to_a_new_device(table):
    tref, archs, y = table
    X = model_features(SPACE, archs, [], tref)
    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, 20, 0, "stratified")
    rest = np.setdiff1d(np.arange(len(y)), idx)
    plain = MetaFewShot(n, config=DEFAULT).fit(X[idx, :-n], y[idx]).predict(X[rest, :-n])
    model = TableCorrected(n, config=DEFAULT).fit(X[idx], y[idx])
    corrected = model.predict(X[rest])
    # the ARM columns' smoothed parts find the shared effect; the GPU column, which has none, gets ~0
    assert _within10(corrected, y[rest]) > _within10(plain, y[rest]) + 0.15
    assert abs(model.w[2]) < max(abs(model.w[0]), abs(model.w[1]))
    again = TableCorrected.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(again.predict(X[rest]), corrected)


def test_the_average_with_a_plain_model_is_their_geometric_mean_and_round_trips(table):
    """``plain_config``: the corrected model averaged in log space with a plain ``MetaFewShot`` fitted on
    the same points with its own configuration; records without it (before the average) still load."""
    from edgenas.latency.fewshot_meta import MetaConfig

    tref, archs, y = table
    X = model_features(SPACE, archs, [], tref)
    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, 20, 1, "stratified")
    plain_config = MetaConfig("log", 0.1, 10.0, "random")
    model = TableCorrected(n, config=DEFAULT, plain_config=plain_config).fit(X[idx], y[idx])
    corrected = TableCorrected(n, config=DEFAULT).fit(X[idx], y[idx]).predict(X)
    plain = MetaFewShot(n, config=plain_config).fit(X[idx, :-n], y[idx]).predict(X[:, :-n])
    averaged = model.predict(X)
    assert np.array_equal(averaged, np.sqrt(corrected * plain))
    assert not np.allclose(averaged, corrected) and model.describe()["averaged_with"]["space"] == "log"
    rec = json.loads(json.dumps(model.to_dict()))
    assert np.array_equal(TableCorrected.from_dict(rec).predict(X), averaged)
    old = dict(rec, plain=None)  # a record of the corrected model alone
    assert np.array_equal(TableCorrected.from_dict(old).predict(X), model.meta.predict(X[:, :-n]) * np.exp(
        X[:, -n:] @ model.w))
    del old["plain"]
    assert TableCorrected.from_dict(old).plain is None
    bad = json.loads(json.dumps(rec))
    bad["plain"]["width"] = bad["plain"]["width"] + 1
    with pytest.raises(InputError, match="malformed"):
        TableCorrected.from_dict(bad)
    bad["plain"] = {"kind": "fewshot-meta"}
    with pytest.raises(InputError, match="malformed"):
        TableCorrected.from_dict(bad)


def test_huber_loss_holds_the_corrected_model_when_a_few_readings_are_slow(table):
    """Both fits of ``TableCorrected`` (the additive model and the correction weights) use the
    configuration's loss: with 3 of 20 readings 1.5-2.4x slow, Huber's (the default) keeps most
    predictions within 10%, the squared loss does not; on clean readings they agree."""
    from edgenas.latency.fewshot_meta import MetaConfig

    tref, archs, y = table
    X = model_features(SPACE, archs, [], tref)
    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, 20, 0, "stratified")
    rest = np.setdiff1d(np.arange(len(y)), idx)
    slow = y[idx].copy()
    slow[[2, 7, 13]] *= (1.7, 2.4, 1.5)
    share = {}
    for loss in ("huber", "squared"):
        model = TableCorrected(n, config=MetaConfig(loss=loss))
        share[loss] = (_within10(model.fit(X[idx], y[idx]).predict(X[rest]), y[rest]),
                       _within10(model.fit(X[idx], slow).predict(X[rest]), y[rest]))
    assert min(share["huber"][0], share["squared"][0]) > 0.99
    assert share["huber"][1] > 0.7 and share["squared"][1] < share["huber"][1] - 0.3


def test_references_cover_every_cell_and_round_trip_as_json(table):
    tref, archs, _ = table
    assert tref.columns == ("arm_a_ms", "arm_b_ms", "gpu_ms") and tref.rows == 3000
    assert tref.additive.shape == (15625, 3) and (tref.additive > 0).all()
    back = TableReferences.from_dict(json.loads(json.dumps(tref.to_dict())), SPACE)
    every = SPACE.all_archs()
    for a, b in zip(tref.parts(SPACE, every), back.parts(SPACE, every)):
        assert np.array_equal(a, b)
    # cells the table does not have are served too (the parts are functions of the cell)
    add, _ = tref.parts(SPACE, [SPACE.from_genes([3] * 6), SPACE.from_genes([0] * 6)])
    assert add[0, 0] > add[1, 0]


def test_bad_tables_and_records_are_one_input_error(tmp_path, table):
    tref, _, _ = table
    with pytest.raises(InputError, match="nb201 space only"):
        TableReferences.build(tmp_path / "x.csv", get_space("mbv3-tiny"))
    path, _, _ = make_table(tmp_path / "t.csv", n=60)
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:5] + ["9,|conv~0|+|x|,1,2,3"] + lines[6:]) + "\n")
    with pytest.raises(InputError, match="row 5: .* is not a nb201 cell"):
        TableReferences.build(bad, SPACE)
    with pytest.raises(InputError, match="no latency column nope_ms"):
        TableReferences.build(path, SPACE, columns=["nope_ms"])
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:30]) + "\n")
    with pytest.raises(InputError, match="at least 50"):
        TableReferences.build(short, SPACE)
    rec = tref.to_dict()
    rec["additive"] = rec["additive"][:1]
    with pytest.raises(InputError, match="malformed"):
        TableReferences.from_dict(rec, SPACE)
    rec = dict(tref.to_dict(), space="mbv3-tiny")
    with pytest.raises(InputError, match="malformed"):
        TableReferences.from_dict(rec, SPACE)


def test_column_and_file_names_are_checked_before_use(tmp_path, table):
    tref, _, _ = table
    path, _, _ = make_table(tmp_path / "t.csv", n=60, devices=("a_ms", "\x1b[31mred_ms", "c_ms"))
    with pytest.raises(InputError, match="bad latency column name"):
        TableReferences.build(path, SPACE)
    rec = dict(tref.to_dict(), columns=["../x_ms", "b_ms", "c_ms"])
    with pytest.raises(InputError, match="bad latency column name"):
        TableReferences.from_dict(rec, SPACE)
    rec = dict(tref.to_dict(), source="a\nb.csv")
    with pytest.raises(InputError, match="not printable"):
        TableReferences.from_dict(rec, SPACE)


def test_a_column_left_out_is_never_read(tmp_path):
    """Leave one device out: the references built without column c are the same whatever c holds."""
    path, _, _ = make_table(tmp_path / "a.csv", n=300)
    rows = [line.split(",") for line in path.read_text().splitlines()]
    for r in rows[1:]:
        r[-1] = f"{float(r[-1]) * 7.3 + 1.0:.6f}"  # gpu_ms, the left-out column, changed everywhere
    other = tmp_path / "b.csv"
    other.write_text("\n".join(",".join(r) for r in rows) + "\n")
    a, b = (TableReferences.build(p, SPACE, columns=["arm_a_ms", "arm_b_ms"]) for p in (path, other))
    assert a.columns == b.columns == ("arm_a_ms", "arm_b_ms")
    for x, y in ((a.additive, b.additive), (a.nonadditive, b.nonadditive), (a.measured, b.measured)):
        assert np.array_equal(x, y, equal_nan=True)
    assert a.sha256 != b.sha256


def test_inner_tasks_fit_the_corrected_model_without_the_left_out_pair(table):
    """``choose_config(paired=True, model=...)``: a reference playing the new device leaves the
    references with its additive AND its non-additive column, and the inner tasks fit that model."""
    from edgenas.latency.fewshot_meta import CONFIGS, choose_config

    tref, archs, _ = table
    X = model_features(SPACE, archs[:400], [], tref)
    n, seen = len(tref.columns), []

    def model(n_refs, config):
        reg = TableCorrected(n_refs, config=config)
        fit = reg.fit

        def checked(F, y):
            seen.append((n_refs, F.shape[1]))
            return fit(F, y)
        reg.fit = checked
        return reg

    targets = X[:, :n] * np.exp(X[:, -n:])
    config, inner = choose_config(X, n, 10, targets=targets, configs=CONFIGS[:2], seeds=(0,), paired=True,
                                  model=model)
    assert config in CONFIGS[:2] and inner["tasks"] == n
    assert seen and set(seen) == {(n - 1, X.shape[1] - 2)}


def test_table_config_builds_the_table_features_once_for_both_models_and_every_k(table, monkeypatch):
    """``fleet.fewshot.table_config``: the corrected and the plain model, at two k, share one build of the
    table's features, and that build is ``model_features`` of the cells the table measured."""
    import edgenas.fleet.fewshot as ff
    import edgenas.latency.fewshot_model as fmod

    tref, _, _ = table
    calls = []
    real = fmod.model_features

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(fmod, "model_features", counted)
    monkeypatch.setattr(ff, "_TABLE_CONFIGS", {})
    monkeypatch.setattr(ff, "_TABLE_FEATURES", {})
    answers = [ff.table_config(SPACE, tref, k, plain=p)[0] for k in (5, 8) for p in (False, True)]
    assert len(calls) == 1 and all(a.loss == "huber" for a in answers)
    X, measured = next(iter(ff._TABLE_FEATURES.values()))
    cells, want = tref.measured_cells(SPACE)
    np.testing.assert_array_equal(measured, want)
    np.testing.assert_array_equal(X, real(SPACE, cells, [], tref))
    assert not X.flags.writeable and not measured.flags.writeable  # shared: read-only
