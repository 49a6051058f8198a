"""The Measurement record: JSON round trip and strict parsing."""

from __future__ import annotations

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
    (lambda d: d["stats"].pop("median_ms"), "missing median_ms"),
    (lambda d: d.update(predicted_ms=float("nan")), "predicted_ms"),
    (lambda d: d.update(device=""), "'device' must be a non-empty string"),
    (lambda d: d.update(arch={"space": "nb201", "schema": 1}), "arch record is for space 'nb201'"),
    (lambda d: d.update(state=[1]), "'state' must be an object"),
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
