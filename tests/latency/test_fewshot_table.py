"""Issue 17, part 1: a latency table of other devices as few-shot references, with what is not additive."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot import cell_encoding
from edgenas.latency.fewshot_meta import DEFAULT, MetaFewShot, select_architectures
from edgenas.latency.fewshot_model import model_features
from edgenas.latency.fewshot_table import MIN_ROWS, TableCorrected, TableReferences
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


def test_measured_cells_are_the_tables_own_rows_in_gene_order(tmp_path):
    """``measured_cells``: each cell the table measured (a cell given twice: its last row), with the values
    the table has for it; ``parts`` of no architecture is empty, not one row. ``MIN_ROWS`` distinct cells are
    enough, and a cell given twice counts once towards them (60 rows of one cell made a per-edge model of it)."""
    path, genes, _ = make_table(tmp_path / "t.csv", n=MIN_ROWS)
    assert len({tuple(g) for g in genes}) == MIN_ROWS
    lines = path.read_text().splitlines()
    lines.append(lines[1].split(",", 1)[0] + "," + ",".join(lines[1].split(",")[1:2] + ["1.5", "2.5", "3.5"]))
    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")   # 49 distinct cells in 50 rows
    with pytest.raises(InputError, match=f"only {MIN_ROWS - 1} distinct cells have every latency column"):
        TableReferences.build(path, SPACE)
    path.write_text("\n".join(lines) + "\n")
    tref = TableReferences.build(path, SPACE)
    rows = {}
    for line in lines[1:]:
        _, arch, *values = line.split(",")
        rows[arch] = [float(v) for v in values]
    cells, measured = tref.measured_cells(SPACE)
    strings = [SPACE.to_dict(c)["arch"] for c in cells]
    assert sorted(strings) == sorted(rows) and measured.shape == (len(rows), 3)
    order = np.ravel_multi_index(SPACE.genes_matrix(cells).T, SPACE.gene_sizes())
    assert (np.diff(order) > 0).all()  # gene order, each cell once
    np.testing.assert_allclose(measured, [rows[s] for s in strings], rtol=1e-5)  # 6 significant digits, stored
    assert rows[lines[1].split(",")[1]] == [1.5, 2.5, 3.5] and tref.rows == MIN_ROWS + 1
    add, nonadd = tref.parts(SPACE, [])
    assert add.shape == nonadd.shape == (0, 3)
    with pytest.raises(InputError, match="table references of 'nb201' cannot serve 'mbv3-tiny'"):
        tref.parts(get_space("mbv3-tiny"), [])


def test_record_names_and_digest_are_checked_whole(table):
    """A column name of 1 + 63 characters before ``_ms`` is the longest; a newline after a name or the
    digest, a name from '/' or ' ', a digest with '/' are refused; records are schema 1."""
    import dataclasses

    tref, _, _ = table
    with pytest.raises(dataclasses.FrozenInstanceError):
        tref.rows = 1  # a record: shared by every model fitted on it
    rec = tref.to_dict()
    assert rec["schema"] == 1 and rec["kind"] == "table-references"
    # stored short (the record holds 2 x 15,625 values a column): 5 decimals of a log ratio, 6 digits of a time
    assert np.array_equal(tref.nonadditive, np.round(tref.nonadditive, 5))
    # the non-additive part is the log ratio of the measured to the additive: none for the purely additive GPU
    assert np.median(np.abs(tref.nonadditive[:, 2])) < 0.01 < np.median(np.abs(tref.nonadditive[:, 0]))
    assert np.array_equal(tref.additive, [[float(f"{v:.6g}") for v in row] for row in tref.additive])
    longest = "a" * 64 + "_ms"
    assert TableReferences.from_dict(dict(rec, columns=[longest, "b_ms", "c_ms"]), SPACE).columns[0] == longest
    for name in ("a" * 65 + "_ms", "arm_a_ms\n", "/arm_ms", " arm_ms"):
        with pytest.raises(InputError, match="bad latency column name"):
            TableReferences.from_dict(dict(rec, columns=[name, "b_ms", "c_ms"]), SPACE)
    for digest in (rec["sha256"] + "\n", "/" + rec["sha256"][1:], rec["sha256"][:63]):
        with pytest.raises(InputError, match="sha256 a SHA-256 in hex"):
            TableReferences.from_dict(dict(rec, sha256=digest), SPACE)


def _edited(rec, **fields):
    return dict(rec, **fields)  # from_dict changes nothing it reads


def test_an_edited_references_record_is_one_input_error_naming_what_is_wrong(table):
    from edgenas.latency.fewshot import MAX_LATENCY_COLUMNS, MAX_MS, MIN_MS

    tref, _, _ = table
    rec = json.loads(json.dumps(tref.to_dict()))
    n = len(rec["measured"][0])
    known = next(i for i, v in enumerate(rec["measured"][0]) if v is not None)

    def measured(value):
        m = json.loads(json.dumps(rec["measured"]))
        m[1][known] = value
        return m

    cases = [
        (dict(schema=2), "not table references of schema 1"), (dict(schema=True), "not table references"),
        (dict(kind="table"), "not table references"), (dict(source=5), "source must be a file name"),
        (dict(source=""), "not printable"), (dict(source="t" * 252 + ".csv"), "not printable"),
        (dict(columns=[]), "expected 1 to 16 distinct columns, got 0"),
        (dict(columns=["arm_a_ms", "arm_a_ms", "gpu_ms"]), "distinct columns, got 3"),
        (dict(columns=[f"c{i}_ms" for i in range(MAX_LATENCY_COLUMNS + 1)]), "distinct columns, got 17"),
        (dict(measured=rec["measured"][:2]), "measured: expected 3 lists"),
        (dict(measured={"a": 1}), "measured: expected 3 lists"),
        (dict(measured=rec["measured"][:2] + [rec["measured"][2][:-1]]), f"expected 3 lists of {n} values"),
        (dict(measured=measured("5")), "values must be numbers or null"),
        (dict(measured=measured(True)), "values must be numbers or null"),
        (dict(measured=measured(MIN_MS / 2)), "measured values must be latencies"),
        (dict(measured=measured(MAX_MS * 2)), "measured values must be latencies"),
        (dict(measured=measured(-1)), "measured values must be latencies"),
        (dict(rows=0), "rows must be a whole number from 1"), (dict(rows=2 ** 63), "rows must be a whole number"),
        (dict(rows=True), "rows must be a whole number"), (dict(columns=[5, "b_ms", "c_ms"]), "list of strings"),
        (dict(additive=[[0.0] * n] + rec["additive"][1:]), "additive must hold finite numbers > 0"),
        (dict(nonadditive=rec["nonadditive"][:2] + [[float("nan")] * n]), "nonadditive must hold finite numbers"),
        (dict(nonadditive=rec["nonadditive"][:2]), "nonadditive: expected 3 lists"),
    ]
    for fields, message in cases:
        with pytest.raises(InputError, match=message):
            TableReferences.from_dict(_edited(rec, **fields), SPACE)
    for value in (MIN_MS, MAX_MS, 7):  # the bounds are latencies; an int is a number
        back = TableReferences.from_dict(_edited(rec, measured=measured(value), rows=n), SPACE)
        assert back.measured[known, 1] == value and back.rows == n
    assert TableReferences.from_dict(_edited(rec, rows=1), SPACE).rows == 1
    for k in (1, MAX_LATENCY_COLUMNS):  # one column, and as many as a table may have
        cols = [f"c{i}_ms" for i in range(k)]
        back = TableReferences.from_dict(_edited(rec, columns=cols, **{
            part: [rec[part][i % 3] for i in range(k)] for part in ("additive", "nonadditive", "measured")}), SPACE)
        assert back.columns == tuple(cols) and back.additive.shape == (n, k)
    assert TableReferences.from_dict(_edited(rec, source="t" * 251 + ".csv"), SPACE).source.endswith(".csv")


def test_table_corrected_arguments_and_records_are_checked(table):
    """Too few references, features too narrow or with a non-finite non-additive part, targets that are no
    latencies, an additive part <= 0 where the anchor takes its log: one ``InputError`` each; a record whose
    parts do not fit together is one too; below ``MIN_K`` points the correction is 0."""
    from edgenas.latency.fewshot_meta import MIN_K

    tref, archs, y = table
    X = model_features(SPACE, archs[:40], [], tref)
    y, n = y[:40], len(tref.columns)
    with pytest.raises(InputError, match="at least one reference column"):
        TableCorrected(0)
    model = TableCorrected(n, config=DEFAULT, anchor=True)
    for features in (X[:, :2 * n - 1], X[0]):
        with pytest.raises(InputError, match=f"features must have at least {2 * n} columns"):
            model.fit(features, y)
    bad = X.copy()
    bad[4, -1] = np.nan
    with pytest.raises(InputError, match="non-additive parts must be finite"):
        model.fit(bad, y)
    for target in (y[:-1], np.where(np.arange(40) == 3, 0.0, y), np.where(np.arange(40) == 3, np.inf, y), y[:0]):
        with pytest.raises(InputError, match="need one finite target latency > 0 per row"):
            model.fit(X[:target.size] if target.size == 0 else X, target)
    bad = X.copy()
    bad[2, 0] = -1.0
    with pytest.raises(InputError, match="additive parts > 0"):
        model.fit(bad, y)
    few = TableCorrected(n, config=DEFAULT).fit(X[:MIN_K - 1], y[:MIN_K - 1])
    assert np.array_equal(few.w, np.zeros(n)) and few.describe()["correction_weights"] == [0.0] * n
    assert np.any(TableCorrected(n, config=DEFAULT).fit(X[:MIN_K], y[:MIN_K]).w != 0)

    fitted = TableCorrected(n, ["f"] * X.shape[1], config=DEFAULT, anchor=True).fit(X, y)
    rec = json.loads(json.dumps(fitted.to_dict()))
    assert rec["kind"] == "fewshot-meta-table" and rec["feature_names"] == ["f"] * X.shape[1]
    back = TableCorrected.from_dict(rec)
    assert back.feature_names == ["f"] * X.shape[1] and back.use_anchor and back.anchor_lam == fitted.anchor.lam
    d = back.describe()
    assert d["model"] == "meta-table" and d["correction_weights"] == [round(float(v), 4) for v in fitted.w]
    assert d["anchor_source"] == fitted.anchor.source and "averaged_with" not in d
    for edit, message in (
            (dict(kind="fewshot-meta"), "not a fewshot-meta-table record"),
            (dict(n_refs=0), "n_refs must be a whole number from 1"),
            (dict(n_refs=17), "n_refs must be a whole number from 1 to 16"),
            (dict(w=[0.0] * (n - 1)), f"w must hold {n} numbers"),
            (dict(n_refs=n - 1, w=[0.0] * (n - 1)), "correction weights do not match the references"),
            (dict(inner=[1]), "inner must be a JSON object"),
            (dict(feature_names="f"), "feature_names must be a list of strings")):
        with pytest.raises(InputError, match=message):
            TableCorrected.from_dict(dict(rec, **edit))
    plain = json.loads(json.dumps(TableCorrected(n - 1, config=DEFAULT, plain_config=DEFAULT).fit(
        X[:, 1:], y).to_dict()))["plain"]
    with pytest.raises(InputError, match="the plain model does not match the corrected one"):
        TableCorrected.from_dict(dict(rec, plain=plain))
    from edgenas.latency.fewshot_anchor import Anchor

    L = np.log(X[:, :n]) + X[:, -n:]
    other = Anchor().fit(L, X[:, n:n + 1], y).to_dict()  # one descriptor: the model has more
    with pytest.raises(InputError, match="the anchor's descriptors do not match the model's"):
        TableCorrected.from_dict(dict(rec, anchor=other))


def test_the_additive_part_is_floored_at_a_thousandth_of_the_median(tmp_path):
    """Where the per-edge fit goes to 0 or below (a latency that falls off faster than linearly with the
    number of 'none' edges), the additive part is a thousandth of the column's median, not less."""
    rng = np.random.default_rng(4)
    genes = rng.integers(0, len(OPS), (120, 6))
    nones = (genes == OPS.index("none")).sum(axis=1)
    y = 100.0 * np.exp(-1.5 * nones) * np.exp(rng.normal(0, 0.01, 120))
    cells = [SPACE.to_dict(SPACE.from_genes(g))["arch"] for g in genes]
    path = tmp_path / "t.csv"
    path.write_text("index,arch,a_ms\n" + "".join(f"{i},{c},{v:.6g}\n" for i, (c, v) in enumerate(zip(cells, y))))
    tref = TableReferences.build(path, SPACE)
    assert tref.rows == 120 and (y < 1).any()  # a latency under 1 ms is one
    floor = 1e-3 * np.median(np.array([float(f"{v:.6g}") for v in y]))
    assert tref.additive.min() == pytest.approx(floor, rel=1e-5)
    assert np.mean(np.isclose(tref.additive[:, 0], floor, rtol=1e-5)) > 0.01  # many cells are on the floor


def test_a_non_additive_part_no_table_gives_is_refused_when_the_record_is_read(table):
    """A non-additive part of 1e6 (or -800: e^800 overflows) passed the record's check (``load_model``, which
    ``deploy`` runs before it writes anything) and failed only in the fit of the refit after the measurement,
    as "target latencies must be finite and > 0"; now reading the record refuses it. A built table's parts
    are far inside the bound (nb201_hw.csv's within 7)."""
    from edgenas.latency.fewshot_table import MAX_LOG_RATIO

    tref, _, _ = table
    assert np.abs(tref.nonadditive).max() < MAX_LOG_RATIO / 2
    rec = json.loads(json.dumps(tref.to_dict()))
    for v in (1e6, -800.0, MAX_LOG_RATIO * 1.01):
        bad = json.loads(json.dumps(rec))
        bad["nonadditive"][2][7] = v
        with pytest.raises(InputError, match="nonadditive: log ratios must be from -100 to 100"):
            TableReferences.from_dict(bad, SPACE)
    rec["nonadditive"][2][7] = -MAX_LOG_RATIO
    assert TableReferences.from_dict(rec, SPACE).nonadditive[7, 2] == -MAX_LOG_RATIO


def test_a_column_named_twice_is_refused_before_anything_is_fitted(tmp_path):
    """``build(columns=[c, c])`` wrote references whose record no reading accepts ("distinct columns")."""
    path, _, _ = make_table(tmp_path / "t.csv", n=60)
    with pytest.raises(InputError, match="latency column arm_a_ms given twice"):
        TableReferences.build(path, SPACE, columns=["arm_a_ms", "gpu_ms", "arm_a_ms"])
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:3] + ["2," + "x" * 200 + ",1,2,3"] + lines[4:]) + "\n")
    with pytest.raises(InputError, match=f"row 3: '{'x' * 80}' is not a nb201 cell"):  # cut to 80 characters
        TableReferences.build(bad, SPACE)


def test_one_reference_column_is_enough():
    assert TableCorrected(1).n_refs == 1 and TableCorrected(1).w.shape == (1,)


def test_a_table_corrected_model_takes_features_with_no_descriptors_and_anchors_from_its_fifth_point():
    """Features of exactly ``2 * n_refs`` columns (additive and non-additive parts, no descriptors) are a
    model's; one fewer is refused. The anchor is fitted from ``MIN_LOO`` (5) measured points, not 4."""
    from edgenas.latency.fewshot_anchor import MIN_LOO

    rng = np.random.default_rng(0)
    add = rng.uniform(1.0, 10.0, size=(12, 2))
    nonadd = rng.normal(0.0, 0.05, size=(12, 2))
    X = np.hstack([add, nonadd])
    y = add @ np.array([0.7, 0.4]) * np.exp(nonadd[:, 0])
    model = TableCorrected(2).fit(X, y)
    assert model.predict(X).shape == (12,) and np.isfinite(model.predict(X)).all()
    with pytest.raises(InputError, match=r"features must have at least 4 columns, got shape \(12, 3\)"):
        TableCorrected(2).fit(X[:, 1:], y)
    assert MIN_LOO == 5
    assert TableCorrected(2, anchor=True).fit(X[:MIN_LOO], y[:MIN_LOO]).anchor is not None
    assert TableCorrected(2, anchor=True).fit(X[:MIN_LOO - 1], y[:MIN_LOO - 1]).anchor is None


def test_the_anchor_reads_each_references_smoothed_latency_its_additive_part_times_its_non_additive_part():
    """A new device that is reference 1's smoothed latency itself (additive part x exp(non-additive part)):
    the anchor takes reference 1 and predicts the device exactly from those smoothed latencies (mutation audit)."""
    rng = np.random.default_rng(3)
    add = rng.uniform(1.0, 10.0, size=(12, 3))
    nonadd = rng.normal(0.0, 0.3, size=(12, 3))
    y = add[:, 1] * np.exp(nonadd[:, 1])
    model = TableCorrected(3, anchor=True).fit(np.hstack([add, nonadd]), y)
    assert model.anchor.source == 1
    np.testing.assert_allclose(model.anchor.predict(np.log(add) + nonadd, np.zeros((12, 0))), y, rtol=1e-9)


def test_a_table_giving_a_cell_twice_beyond_the_spaces_size_makes_a_record_that_reads_back(tmp_path):
    """A cell given twice counts twice in ``rows`` (the table rows used): every cell of the space and one of
    them again built references of 15,626 rows whose record no reading accepted ("rows must be a whole number
    from 1 to 15625"), and refitting, which the message advised, wrote the same record again."""
    cells = [SPACE.to_dict(a)["arch"] for a in SPACE.all_archs()]
    values = np.random.default_rng(0).uniform(1.0, 2.0, len(cells) + 1)
    path = tmp_path / "t.csv"
    path.write_text("index,arch,a_ms\n" + "".join(f"{i},{c},{v:.4f}\n" for i, (c, v) in
                                                   enumerate(zip(cells + cells[:1], values))))
    tref = TableReferences.build(path, SPACE)
    assert tref.rows == len(cells) + 1
    back = TableReferences.from_dict(json.loads(json.dumps(tref.to_dict())), SPACE)
    assert back.rows == tref.rows and np.array_equal(back.measured, tref.measured)
    assert back.measured[0, 0] == float(f"{values[-1]:.4f}")  # the cell given twice: its last row


def test_the_parts_are_per_edge_least_squares_and_trees_on_the_one_hot_edges(tmp_path):
    """As the module says: the additive part is the column's per-edge least squares on ``cell_encoding`` (floored
    at a thousandth of its median), the non-additive part 300 gradient-boosted trees on the one-hot edges fitted
    to log(measured / additive), both over every cell of the space (as stored: 6 significant digits, 5 decimals)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    path, _, _ = make_table(tmp_path / "t.csv", n=200, devices=("a_ms",), strength=(1.0,))
    tref = TableReferences.build(path, SPACE)
    E, grid, additive, log_ratio = _by_hand(path)
    np.testing.assert_allclose(tref.additive[:, 0], additive, rtol=1e-5)
    edges = slice(0, 6 * len(OPS))
    trees = HistGradientBoostingRegressor(max_iter=300, random_state=0).fit(E[:, edges], log_ratio)
    np.testing.assert_allclose(tref.nonadditive[:, 0], trees.predict(grid[:, edges]), rtol=0, atol=1e-5)


def _by_hand(path):
    """What ``TableReferences.build`` computes from a table of one column, by hand: the rows' edge encodings,
    every cell's, the per-edge least squares over every cell (floored at a thousandth of the median) and the
    rows' log ratio to it."""
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    y = np.array([float(r[2]) for r in rows])
    E, _ = cell_encoding([r[1] for r in rows], OPS)
    grid, _ = cell_encoding([SPACE.to_dict(a)["arch"] for a in SPACE.all_archs()], OPS)
    A, G = np.column_stack([E, np.ones(len(E))]), np.column_stack([grid, np.ones(len(grid))])
    w = np.linalg.lstsq(A, y, rcond=None)[0]
    floor = 1e-3 * float(np.median(y))
    return E, grid, np.maximum(G @ w, floor), np.log(y / np.maximum(A @ w, floor))


def test_the_additive_model_and_the_correction_are_fitted_in_turn_rounds_times_each(table):
    """As the module says: ``MetaFewShot`` on y / exp(correction), then the correction weights (ridge on the log
    ratio, with the configuration's loss) given it, in turn ``ROUNDS`` times each from no correction, with either
    loss; each round still moves the fit on these points, and the module's docstring gives the same count (a
    fourth round, or a second, went unseen by every test: mutation audit)."""
    import edgenas.latency.fewshot_table as ft
    from edgenas.latency.fewshot_meta import MetaConfig, huber_irls

    tref, archs, y = table
    X = model_features(SPACE, archs, [], tref)
    n = len(tref.columns)
    idx = select_architectures(X[:, :-n], n, 20, 0, "stratified")
    features, t = X[idx], y[idx]
    F, H = features[:, :-n], features[:, -n:]  # views, as the model takes them: the same sums to the last bit
    for config in (DEFAULT, MetaConfig(loss="squared")):
        corr, fits = np.zeros(t.size), []
        for _ in range(ft.ROUNDS):
            meta = MetaFewShot(n, None, config).fit(F, t / np.exp(corr))
            target = np.log(t / meta.predict(F))

            def solve(weights, target=target):
                return np.linalg.solve(H.T @ (H * weights[:, None]) + ft.RIDGE * np.eye(n), H.T @ (weights * target))

            w = solve(np.ones(t.size)) if config.loss == "squared" else huber_irls(
                solve, lambda w, target=target: target - H @ w, t.size)
            corr = H @ w
            fits.append(meta.predict(X[:, :-n]) * np.exp(X[:, -n:] @ w))
        model = TableCorrected(n, config=config).fit(features, t)
        assert np.array_equal(model.w, w) and np.array_equal(model.predict(X), fits[-1])
        steps = [np.abs(np.log(b / a)).max() for a, b in zip(fits, fits[1:])]  # converging; the last round counts
        assert all(b < a for a, b in zip(steps, steps[1:])) and steps[-1] > 1e-5
    counts = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
    assert f"fitted in turn on the measured points, {counts[ft.ROUNDS]} each" in " ".join(ft.__doc__.split())


def test_over_10000_rows_the_trees_early_stopping_is_seeded(tmp_path):
    """Over 10,000 rows scikit-learn's gradient boosting holds 10% of them out to stop early, drawn with its
    ``random_state``: the non-additive part is the trees' of ``random_state=0`` (the same table builds the same
    references), and another seed gives other trees on this table (mutation audit)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from edgenas.latency.fewshot_table import TREE_ITERATIONS

    path, _, _ = make_table(tmp_path / "t.csv", n=10_001, devices=("a_ms",), strength=(0.0,))
    tref = TableReferences.build(path, SPACE)
    E, grid, _, log_ratio = _by_hand(path)
    edges = slice(0, 6 * len(OPS))
    parts = [np.round(HistGradientBoostingRegressor(max_iter=TREE_ITERATIONS, random_state=seed).fit(
        E[:, edges], log_ratio).predict(grid[:, edges]), 5) for seed in (0, 1)]
    assert tref.rows == 10_001 and np.array_equal(tref.nonadditive[:, 0], parts[0])
    assert not np.array_equal(parts[0], parts[1])


def test_targets_and_additive_parts_of_0_are_refused_by_the_model_itself_and_sub_millisecond_ones_fitted():
    """A target of 0 ms, or an additive part of 0 where the anchor takes its log, is this model's one
    ``InputError`` with or without the anchor, not a later one from the models inside it; latencies under 1 ms
    are fitted like any others: the same points in hundredths of their values predict hundredths (mutation audit)."""
    rng = np.random.default_rng(0)
    add = rng.uniform(1.0, 10.0, size=(12, 2))
    nonadd = rng.normal(0.0, 0.05, size=(12, 2))
    X, small = np.hstack([add, nonadd]), np.hstack([add / 100, nonadd])
    y = add @ np.array([0.7, 0.4]) * np.exp(nonadd[:, 0])
    assert (y / 100).max() < 1.0
    for anchor in (False, True):
        want = TableCorrected(2, anchor=anchor).fit(X, y).predict(X) / 100
        np.testing.assert_allclose(TableCorrected(2, anchor=anchor).fit(small, y / 100).predict(small), want,
                                   rtol=1e-12)
        with pytest.raises(InputError, match="need one finite target latency > 0 per row"):
            TableCorrected(2, anchor=anchor).fit(X, np.where(np.arange(12) == 3, 0.0, y))
    zero = X.copy()
    zero[2, 0] = 0.0
    with pytest.raises(InputError, match="features must be finite, and additive parts > 0"):
        TableCorrected(2, anchor=True).fit(zero, y)


def test_a_bad_column_name_and_the_file_name_are_cut_to_80_characters_in_the_message(table):
    """Names from a file or a record end up on the terminal: the message shows the first 80 characters of each
    (mutation audit)."""
    tref, _, _ = table
    rec = dict(tref.to_dict(), source="s" * 100 + ".csv", columns=["x" * 100 + " _ms", "b_ms", "c_ms"])
    with pytest.raises(InputError) as err:
        TableReferences.from_dict(rec, SPACE)
    assert err.value.message == f"table references: '{'s' * 80}': bad latency column name '{'x' * 80}'"
    with pytest.raises(InputError) as err:
        TableReferences.from_dict(dict(rec, source="s" * 100 + "\n.csv", columns=["a_ms", "b_ms", "c_ms"]), SPACE)
    assert err.value.message == f"table references: the table's file name '{'s' * 80}' is not printable"
