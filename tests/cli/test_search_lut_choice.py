"""Issue 10: ``search`` prints which LUT it uses (fingerprint, age), chosen by the one lookup policy of
``edgenas/latency/store.py`` (never by file time), and warns when the device last reported another
fingerprint (a table deploy would then not use)."""

from __future__ import annotations

import dataclasses
import json
import os

from edgenas.latency.lut import Lut
from edgenas.latency.store import LutStore


def test_search_prints_the_table_it_uses_and_warns_on_another_fingerprint(cli, proj):
    (real,) = (proj / "luts" / "local").glob("mbv3-tiny-*.json")
    lut = Lut.load(real)
    other = dataclasses.replace(lut, fingerprint_hash="d" * 64, created_at=lut.created_at - 3600)
    other_path = LutStore(proj / "luts").save(other)
    os.utime(other_path, (9e9, 9e9))  # newest file: what main's search took
    args = ("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "2", "--evaluator", "params", "--json")
    res = cli(*args, "--out", str(proj / "r1"))
    assert res.code == 0, res.err
    assert f"LUT for local: {real.name} (fingerprint {lut.fingerprint_hash[:12]}, made " in res.err
    assert "warning" not in res.err

    fp_record = proj / ".edgenas" / "fingerprints" / "local.json"
    fp_record.write_text(json.dumps({"fingerprint_hash": "e" * 64}))  # the device changed since
    res = cli(*args, "--out", str(proj / "r2"))
    assert res.code == 0, res.err
    assert f"LUT for local: {real.name}" in res.err  # still the newest table by content, not by file time
    assert "warning:" in res.err and "eeeeeeeeeeee" in res.err and "deploy will not predict" in res.err
