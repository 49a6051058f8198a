"""A few-shot record (``luts/DEVICE/fewshot/SPACE.json``) edited by hand or planted: every array a flat list
of finite numbers of the right length, no bool or string for a number, counts whole, the device and space
those of its place, no link out of the project. Each is one ``InputError`` naming the file when it is
read (search, deploy, refit), never an IndexError or TypeError at the first prediction."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.fewshot_model import FewShotLatency, FewShotModel, arch_descriptors, load_model, save_model
from edgenas.latency.fewshot_table import TableReferences
from edgenas.spaces import get_space
from tests.latency.test_fewshot_table import make_table

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """A table-corrected record (meta, plain and anchor models, table references) fitted on 6 cells."""
    from edgenas.fleet.fewshot import _fit

    path, genes, target = make_table(tmp_path_factory.mktemp("t") / "hw.csv", n=400)
    tref = TableReferences.build(path, SPACE)
    archs = [SPACE.from_genes(g) for g in genes[:6]]
    reg, _ = _fit(SPACE, archs, target[:6], [], tref)
    model = FewShotModel(device="local", space="nb201", fingerprint_hash="ef" * 32, runtime="onnxruntime",
                         references=(), descriptor_names=tuple(arch_descriptors(SPACE, archs[:1])[1]),
                         ensemble=reg.to_dict(), n_points=6, table=tref.to_dict())
    assert model.ensemble["anchor"] is not None and model.ensemble["plain"] is not None
    return json.loads(json.dumps(model.to_dict())), archs


def _place(root, d):
    luts = root / "luts"
    path = luts / "local" / "fewshot" / "nb201.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return luts, path


def _set(d, keys, value):
    d = json.loads(json.dumps(d))
    o = d
    for k in keys[:-1]:
        o = o[k]
    o[keys[-1]] = value
    return d


def test_the_record_as_written_loads_and_predicts(record, tmp_path):
    good, archs = record
    luts, _ = _place(tmp_path, good)
    model = load_model(luts, "local", "nb201")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = FewShotLatency(model, SPACE, []).predict_many(archs)
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)


E, M = ("ensemble",), ("ensemble", "meta")
EDITS = [
    (M + ("w",), "nested", "w must be a list of numbers"),                 # w = [[0.1]] * len: an IndexError at search
    (M + ("w",), "strings", "w must be a list of numbers"),
    (M + ("w",), "bools", "w must be a list of numbers"),
    (M + ("mu",), "short", "mu must hold"),
    (M + ("scale_r",), "nested", "scale_r must be a list of numbers"),
    (M + ("scale_y",), True, "scale_y must be a finite number"),
    (M + ("ym",), 10 ** 400, "a number too large to read"),                # the file reader refuses it (loads_json)
    (M + ("width",), 10 ** 12, "width must be a whole number"),
    (M + ("n_refs",), 2, "must hold 2 numbers"),
    (M + ("config", "lam_ref"), True, "lam_ref must be a finite number"),
    (M + ("config", "space"), ["ms"], "must be strings"),
    (M + ("inner",), [1, 2], "inner must be a JSON object"),
    (E + ("plain", "width"), 3, "mu must hold 3 numbers"),
    (E + ("w",), [1.0, 2.0], "w must hold 3 numbers"),
    (E + ("n_refs",), True, "n_refs must be a whole number"),
    (E + ("anchor", "mu"), [[1.0]], "mu must be a list of numbers"),
    (E + ("anchor", "source"), True, "source must be a whole number"),
    (E + ("anchor", "lam"), "3", "lam must be a finite number"),
    (("n_points",), -5, "n_points must be a whole number from 1"),          # deploy printed "calibrated on -5"
    (("n_points",), True, "n_points must be a whole number from 1"),
    (("created_at",), "x", "created_at must be a finite number"),
    (("references",), "ab", "references must be a list"),
    (("descriptor_names",), "short", "does not take the features"),
    (("schema",), True, "not a few-shot latency model of schema 1"),
    (("table", "additive", 0, 0), [1.0], "additive must be a list of numbers"),
    (("table", "measured", 0, 0), 1e300, "measured values must be latencies"),
    (("table", "measured", 0, 0), "1", "values must be numbers or null"),
    (("table", "rows"), -1, "rows must be a whole number"),
    (("table", "sha256"), 5, "sha256 a SHA-256"),
    (("reference_calibrations",), [None], "reference_calibrations must be a list of 0 calibrations"),
    (("reference_calibrations",), "x", "reference_calibrations must be a list of 0 calibrations"),
    (("device",), "other", "of device 'other' and space 'nb201' lies where"),
    (("space",), "mbv3-tiny", "space 'mbv3-tiny' lies where"),
]


@pytest.mark.parametrize("keys,value,message", EDITS, ids=[f"{'.'.join(map(str, k))}={v!r:.12}" for k, v, _ in EDITS])
def test_an_edited_record_is_one_input_error_naming_the_file(record, tmp_path, keys, value, message):
    good, _ = record
    o = good
    for k in keys:
        o = o.get(k) if isinstance(o, dict) else o[k]  # a key the record lacks is added
    if value == "nested":
        value = [[v] for v in o]
    elif value == "strings":
        value = [str(v) for v in o]
    elif value == "bools":
        value = [True] * len(o)
    elif value == "short":
        value = o[:-1]
    luts, path = _place(tmp_path, _set(good, keys, value))
    with pytest.raises(InputError, match=message) as exc:
        load_model(luts, "local", "nb201")
    assert str(path) in str(exc.value) and "refit it: edgenas device add local" in str(exc.value)


def test_a_record_linked_from_outside_the_project_is_refused(record, tmp_path):
    """As for LUT files: a link is refused when read (search, deploy) and when written (a refit)."""
    from edgenas.fleet.fewshot import add_fewshot, check_record
    from edgenas.project import Project

    good, _ = record
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(good))
    root = tmp_path / "proj"
    path = root / "luts" / "local" / "fewshot" / "nb201.json"
    path.parent.mkdir(parents=True)
    path.symlink_to(outside)
    with pytest.raises(InputError, match="is a symbolic link or lies outside the project"):
        load_model(root / "luts", "local", "nb201")
    with pytest.raises(InputError, match="is a symbolic link"):
        check_record(Project(root), "local", SPACE)
    with pytest.raises(InputError, match="is a symbolic link"):
        save_model(root / "luts", FewShotModel.from_dict(good))
    table, _, _ = make_table(tmp_path / "hw.csv", n=100)
    with pytest.raises(InputError, match="is a symbolic link"):  # before a cell is measured
        add_fewshot(Project(root), "local", "nb201", 3, table=table)
    assert outside.read_text() == json.dumps(good) and sorted(p.name for p in root.iterdir()) == ["luts"]
    path.unlink()  # a linked folder on the way is refused too
    path.parent.rmdir()
    (tmp_path / "elsewhere").mkdir()
    path.parent.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "nb201.json").write_text(json.dumps(good))
    with pytest.raises(InputError, match="folder .* is a symbolic link"):
        load_model(root / "luts", "local", "nb201")
    with pytest.raises(InputError, match="folder .* is a symbolic link"):
        save_model(root / "luts", FewShotModel.from_dict(good))
    assert (tmp_path / "elsewhere" / "nb201.json").read_text() == json.dumps(good)


def test_the_record_checkers_accept_what_a_fitted_record_holds_and_name_what_they_refuse():
    """The checkers every model reads its part of a record with (``fewshot_records``), value by value."""
    from edgenas.latency.fewshot_records import record_count, record_number, record_strings, record_table, record_vector
    from edgenas.limits import is_schema

    n = record_number(3, "x")
    assert n == 3.0 and type(n) is float
    assert record_number(0, "x", low=0) == 0.0 and record_number(-2.5, "x") == -2.5  # low is a bound, met
    assert record_number(1e-300, "x", positive=True) == 1e-300
    for bad in (True, "3", None, float("nan"), float("inf"), 10 ** 400):
        with pytest.raises(ValueError, match="x must be a finite number"):
            record_number(bad, "x")
    with pytest.raises(ValueError, match=r"^x must be > 0, got 0$"):
        record_number(0, "x", positive=True)
    with pytest.raises(ValueError, match=r"^x must be >= 0, got -1.5$"):
        record_number(-1.5, "x", low=0)
    c = record_count(5, "n", low=1, high=5)
    assert c == 5 and type(c) is int and record_count(1, "n", low=1) == 1 and record_count(0, "n") == 0
    for bad, low, high in ((6, 1, 5), (0, 1, 5), (-1, 0, 5), (2.0, 0, 5), (True, 0, 5), ("2", 0, 5)):
        with pytest.raises(ValueError, match=f"^n must be a whole number from {low} to {high}, got "):
            record_count(bad, "n", low=low, high=high)
    v = record_vector([1, 2.5], "v", 2)
    assert isinstance(v, np.ndarray) and v.dtype == float and v.shape == (2,) and v.tolist() == [1.0, 2.5]
    assert record_vector([0.0, -1.0], "v").tolist() == [0.0, -1.0] and record_vector([], "v", 0).size == 0
    for bad, message in (((1.0, 2.0), "v must be a list of numbers, got"), ([1.0], "v must hold 2 numbers, got 1"),
                         ([1.0, True], "v must be a list of numbers, holds True"),
                         ([1.0, "2"], "v must be a list of numbers, holds '2'"),
                         ([1.0, [2.0]], r"v must be a list of numbers, holds \[2.0\]"),
                         ([1.0, float("nan")], "v must hold finite numbers$"),
                         ([1.0, 10 ** 400], "v must hold finite numbers$")):
        with pytest.raises(ValueError, match=message):
            record_vector(bad, "v", 2)
    assert record_vector([0.5, 1e-300], "v", positive=True).tolist() == [0.5, 1e-300]
    with pytest.raises(ValueError, match="v must hold finite numbers > 0"):
        record_vector([1.0, 0.0], "v", positive=True)
    names = ["a", "b"]
    got = record_strings(names, "s", 2)
    assert got == ["a", "b"] and got is not names and record_strings([], "s") == []
    for bad, message in (("ab", "s must be a list of strings, got 'ab'"), (["a", 1], "s must be a list of strings"),
                         (["a"], "s must hold 2 names, got 1"), (["a", "b", "c"], "s must hold 2 names, got 3")):
        with pytest.raises(ValueError, match=message):
            record_strings(bad, "s", 2)
    inner = {"tasks": 3}
    got = record_table(inner, "inner")
    assert record_table(None, "inner") == {} and got == inner and got is not inner
    with pytest.raises(ValueError, match=r"inner must be a JSON object, got \[1, 2\]"):
        record_table([1, 2], "inner")
    assert is_schema(1, 1) and not is_schema(True, 1) and not is_schema(1.0, 1) and not is_schema(2, 1)
    with pytest.raises(ValueError, match="got '" + "a" * 38 + "…$"):  # the value cut to 40 characters
        record_count("a" * 50, "n")


def test_reading_model_makes_every_slip_one_input_error_with_the_file_and_the_hint():
    from edgenas.latency.fewshot_records import reading_model

    for exc in (KeyError("mu"), TypeError("t"), ValueError("v"), AttributeError("a"), OverflowError("o")):
        with pytest.raises(InputError) as got:
            with reading_model("f.json"):
                raise exc
        assert got.value.message == f"f.json: malformed few-shot latency model ({exc})"
        assert got.value.hint == "refit it: edgenas device add DEVICE --fewshot 20"
    with pytest.raises(InputError) as got:
        with reading_model("f.json"):
            raise InputError("bad schema", hint="read the docs")
    assert (got.value.message, got.value.hint) == ("f.json: bad schema", "read the docs")
    with pytest.raises(InputError) as got:  # without a file: as raised
        with reading_model():
            raise InputError("bad schema", hint="read the docs")
    assert (got.value.message, got.value.hint) == ("bad schema", "read the docs")
    with pytest.raises(InputError) as got:
        with reading_model():
            raise ValueError("v")
    assert got.value.message == "malformed few-shot latency model (v)"
    with reading_model("f.json"):
        pass


def _lut_record(**edits):
    """A record on two reference LUTs and two descriptors (width 4), fitted on 20 points, edited."""
    from edgenas.latency.fewshot_meta import MetaFewShot

    rng = np.random.default_rng(0)
    X = rng.uniform(1.0, 2.0, (20, 4))
    reg = MetaFewShot(2).fit(X, X[:, 0] + X[:, 1])
    good = FewShotModel(device="new", space="mbv3-tiny", fingerprint_hash="ef" * 32, runtime="onnxruntime",
                        references=(("a", "aa" * 32), ("b", "bb" * 32)), descriptor_names=("d0", "d1"),
                        ensemble=reg.to_dict(), n_points=20, created_at=5.0).to_dict()
    return json.loads(json.dumps({**good, **edits}))


def test_a_record_on_reference_luts_is_read_field_by_field():
    m = FewShotModel.from_dict(_lut_record())
    assert (m.device, m.space, m.fingerprint_hash, m.runtime) == ("new", "mbv3-tiny", "ef" * 32, "onnxruntime")
    assert m.references == (("a", "aa" * 32), ("b", "bb" * 32)) and m.descriptor_names == ("d0", "d1")
    assert (m.n_points, m.created_at, m.table, m.reference_calibrations) == (20, 5.0, None, None)
    cal = {"model": "loglinear", "params": {"a": 0.1, "b": 1.0}, "n_points": 5}
    both = FewShotModel.from_dict(_lut_record(reference_calibrations=[None, cal]))
    assert both.reference_calibrations[0] is None and both.reference_calibrations[1]["params"] == cal["params"]
    assert FewShotModel.from_dict({k: v for k, v in _lut_record().items() if k != "created_at"}).created_at == 0.0
    seeded = _lut_record()
    seeded["ensemble"]["inner"] = {"pool_seed": 3}
    assert FewShotModel.from_dict(seeded).ensemble["inner"] == {"pool_seed": 3}
    pairs = "references must be a list of \\[device, LUT fingerprint hash\\] pairs"
    width = "does not take the features of 2 reference LUTs or table columns and 3 descriptors"
    for edits, message in (
            ({"schema": True}, "not a few-shot latency model of schema 1"),
            ({"kind": "fewshot-ensemble"}, "not a few-shot latency model of schema 1"),
            ({"runtime": 5}, "device, space, fingerprint_hash and runtime must be strings"),
            ({"references": "ab"}, pairs), ({"references": [["a", "aa"], ["b"]]}, pairs),
            ({"references": [["a", "aa"], ["b", "bb", "cc"]]}, pairs), ({"references": [["a", "aa"], ["b", 5]]}, pairs),
            ({"references": [["a", "aa"], ["../b", "bb"]]}, "bad device or space name '../b'"),
            ({"device": "../x"}, "bad device or space name '../x'"),
            ({"space": "a b"}, "bad device or space name 'a b'"),
            ({"ensemble": [1]}, "ensemble and table must be JSON objects"),
            ({"table": [1]}, "ensemble and table must be JSON objects"),
            ({"table": {"kind": "table-references"}}, "table references come instead of reference LUTs"),
            ({"references": [], "table": {"kind": "table-references"}},
             "a table-corrected regressor goes with table references, and only with them"),
            ({"references": [], "table": {"kind": "other"}}, "table references come instead of reference LUTs"),
            ({"n_points": 0}, "n_points must be a whole number from 1"),
            ({"created_at": -1}, "created_at must be >= 0"),
            ({"created_at": 1e300}, "created_at must be <= 253402300799, got 1e"),
            ({"descriptor_names": ["d0", "d1", "d2"]}, width),
            ({"references": [["a", "aa"]]}, "does not take the features of 1 reference LUTs"),
            ({"reference_calibrations": [None]}, "reference_calibrations must be a list of 2 calibrations"),
            ({"reference_calibrations": {"a": None}}, "reference_calibrations must be a list of 2 calibrations"),
            ({"reference_calibrations": [None, {"model": "loglinear"}]},
             r"reference_calibrations\[1\] is not a calibration"),
    ):
        with pytest.raises(InputError, match=message) as exc:
            FewShotModel.from_dict(_lut_record(**edits), where="f.json")
        assert exc.value.message.startswith("f.json: ")
    seeded["ensemble"]["inner"] = {"pool_seed": -1}
    with pytest.raises(InputError, match="inner pool_seed must be a whole number"):
        FewShotModel.from_dict(seeded)


def test_an_older_ensemble_record_takes_as_many_features_as_its_references_and_descriptors():
    from edgenas.latency.fewshot_ensemble import FewShotEnsemble

    rng = np.random.default_rng(0)
    X = rng.uniform(1.0, 2.0, (20, 4))
    ens = FewShotEnsemble([True] * 2 + [False] * 2).fit(X, X[:, 0] + X[:, 1]).to_dict()
    m = FewShotModel.from_dict(_lut_record(ensemble=ens))
    assert m.ensemble["kind"] == "fewshot-ensemble"
    with pytest.raises(InputError, match="does not take the features of 2 reference LUTs"):
        FewShotModel.from_dict(_lut_record(ensemble=ens, descriptor_names=["d0"]))


def test_a_bad_reference_calibration_is_named_with_its_lut_message_cut_to_120_characters():
    from edgenas.latency.lut import Calibration

    bad = {"model": "loglinear", "params": {"p" * 100: "x" * 100}, "n_points": 5}
    with pytest.raises(InputError) as lut:
        Calibration.from_dict(bad)
    assert len(lut.value.message) > 120
    with pytest.raises(InputError) as exc:
        FewShotModel.from_dict(_lut_record(reference_calibrations=[bad, None]), where="f.json")
    assert exc.value.message == ("f.json: malformed few-shot latency model (reference_calibrations[0] is not a "
                                 f"calibration ({lut.value.message[:120]}))")


def test_a_bad_device_name_in_a_record_is_named_cut_to_40_characters():
    with pytest.raises(InputError, match=f"bad device or space name '-{'x' * 39}'"):
        FewShotModel.from_dict(_lut_record(device="-" + "x" * 60))


def test_a_malformed_model_is_refused_before_save_model_writes_anything(tmp_path):
    good = FewShotModel.from_dict(_lut_record())
    bad = FewShotModel(**{**good.__dict__, "n_points": 0})
    with pytest.raises(InputError, match="n_points must be a whole number from 1"):
        save_model(tmp_path / "luts", bad)
    assert list(tmp_path.iterdir()) == []
    assert save_model(tmp_path / "luts", good) == tmp_path / "luts" / "new" / "fewshot" / "mbv3-tiny.json"
    assert load_model(tmp_path / "luts", "new", "mbv3-tiny") == good


def test_the_plain_model_averaged_in_is_fitted_with_the_configuration_chosen_for_it(record, tmp_path):
    """``_fit`` on table references averages in a plain model whose configuration ``table_config(plain=True)``
    chose for the plain model, not the table-corrected one's; the record keeps what chose it (``inner.plain``)."""
    from edgenas.fleet.fewshot import table_config

    path, _, _ = make_table(tmp_path / "hw.csv", n=400)  # the fixture's table, byte for byte
    config, inner = table_config(SPACE, TableReferences.build(path, SPACE), 6, plain=True)
    ensemble = record[0]["ensemble"]
    assert ensemble["plain"]["config"] == config.to_dict() and ensemble["inner"]["plain"] == json.loads(
        json.dumps(inner))
