"""The Measurement record: JSON round trip and strict parsing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgenas.errors import InputError
from edgenas.store import Measurement


def test_round_trip_through_json(make):
    m = make()
    back = Measurement.from_dict(json.loads(m.to_json()))
    assert back == m and back.measured_ms == 5.0 and back.entry_stats.k == 4


def test_records_do_not_share_mutable_state(make):
    m = make()
    d = m.to_dict()
    d["arch"]["r"] = 999
    assert m.arch["r"] != 999


@pytest.mark.parametrize("change,match", [
    (lambda d: d.update(extra=1), "unknown fields extra"),
    (lambda d: d.pop("stats"), "missing fields stats"),
    (lambda d: d.update(schema=2), "unsupported schema 2"),
    (lambda d: d.update(schema=True), "unsupported schema True"),  # True == 1 in Python
    (lambda d: d["stats"].pop("median_ms"), "missing median_ms"),
    (lambda d: d.update(predicted_ms=float("nan")), "predicted_ms"),
    (lambda d: d.update(device=""), "'device' must be a non-empty string"),
    (lambda d: d.update(arch={"space": "nb201", "schema": 1}), "arch record is for space 'nb201'"),
    (lambda d: d.update(state=[1]), "'state' must be an object"),
    (lambda d: d.update(lut_fingerprint=5), "'lut_fingerprint' must be a string or null, got 5"),
    (lambda d: d.update(created_at="x"), "'created_at' must be a number, got 'x'"),
    (lambda d: d.update(created_at=True), "'created_at' must be a number, got True"),
    (lambda d: d.update(created_at=1e300), r"'created_at' must be a time from 0 to 253402300799 \(9999-12-31 UTC\)"),
    (lambda d: d.update(created_at=-1.0), "'created_at' must be a time from 0 .* got -1.0"),
    (lambda d: d.update(created_at=float("nan")), "'created_at' must be a time from 0 .* got nan"),
    (lambda d: d.pop("schema"), r"unsupported schema None \(expected 1\)"),
])
def test_strict_parsing(change, match, make):
    d = make().to_dict()
    change(d)
    with pytest.raises(InputError, match=match):
        Measurement.from_dict(d, where="m.json")


def test_not_an_object():
    with pytest.raises(InputError, match="expected a JSON object"):
        Measurement.from_dict([1, 2])


def test_a_record_deeper_than_the_experiment_database_reads_back_is_refused(make, tmp_path):
    """The experiment database reads a record at most 64 levels deep (``store.rows``): a deeper one was
    stored, then a damaged row at every later read."""
    from edgenas.store import ExperimentDB

    d = make().to_dict()
    x: list = []
    for _ in range(61):
        x = [x]
    d["arch"]["x"] = x  # the record is level 1, arch 2, the 62 lists 3 to 64
    m = Measurement.from_dict(d)
    with ExperimentDB(f"sqlite:///{tmp_path / 'e.db'}") as db:
        db.measurements.add(m)
        assert db.measurements.list() == [m]
    d["arch"]["x"] = [x]
    with pytest.raises(InputError, match="m.json: measurement: nested more than 64 levels deep"):
        Measurement.from_dict(d, where="m.json")


def test_a_record_made_in_code_is_checked_as_one_read_from_a_file(make):
    m = make()
    with pytest.raises(InputError, match=r"unsupported schema 2 \(expected 1\)"):
        dataclasses.replace(m, schema=2)
    with pytest.raises(InputError, match=r"unsupported schema 1.0 \(expected 1\)"):
        dataclasses.replace(m, schema=1.0)
    with pytest.raises(InputError, match="measurement is not JSON-serialisable"):
        dataclasses.replace(m, state={"temps": {1, 2}})
    for bad, text in ((10 ** 400, "a number too large to read"), ("\ud800", "text that is not Unicode")):
        with pytest.raises(InputError, match=f"measurement: {text}"):
            dataclasses.replace(m, state={"x": [bad]})
    assert dataclasses.replace(m, predicted_raw_ms=0, predicted_ms=0.5).predicted_raw_ms == 0
    with pytest.raises(InputError, match="'predicted_ms' must be a finite number >= 0 or null, got -0.001"):
        dataclasses.replace(m, predicted_ms=-0.001)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.device = "other"


def test_the_json_line_has_sorted_keys_and_no_spaces(make):
    text = make().to_json()
    keys = list(json.loads(text))
    assert keys == sorted(keys) and keys[0] == "arch" and ", " not in text and '": ' not in text
