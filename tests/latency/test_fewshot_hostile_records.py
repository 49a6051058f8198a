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
