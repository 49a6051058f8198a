"""Issue 10: ``search`` prints which LUT it uses (fingerprint, age), chosen by the one lookup policy of
``edgenas/latency/store.py`` (never by file time), and warns when the device last reported another
fingerprint (a table deploy would then not use)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

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


def test_a_budget_in_ms_on_an_uncalibrated_table_warns_and_says_how_to_calibrate(cli, proj):
    """A LUT's raw block sum read 14-24% below whole mbv3-small networks in four of bench/lut_protocol.py's checks
    (README): a budget in ms checked against it lets a search choose networks that break it on the device. The
    warning says how to calibrate; a calibrated table, or a quantile budget (which ranks alike either way, also
    when its resume reads the recorded budgets in ms), gets none."""
    from edgenas.latency.calibration import Calibration

    (real,) = (proj / "luts" / "local").glob("mbv3-tiny-*.json")
    assert Lut.load(real).calibration is None
    base = ("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "2", "--evaluator", "params", "--json")
    said = "warning: the LUT of 'local' is not calibrated to whole networks yet, so its budget of 5 ms is checked"
    res = cli(*base, "--max-latency-ms", "5", "--out", str(proj / "r1"))
    assert res.code == 0, res.err
    assert said in res.err and "edgenas lut calibrate local --space mbv3-tiny --measure 10" in res.err
    assert json.loads(res.out)["evaluations"] == 2                          # stdout: the JSON document alone
    res = cli(*base, "--max-latency-quantile", "0.5", "--out", str(proj / "r2"))
    assert res.code == 0 and "not calibrated" not in res.err, res.err
    res = cli("search", "--resume", str(proj / "r2"), "--json")
    assert res.code == 0 and "not calibrated" not in res.err, res.err
    res = cli("search", "--resume", str(proj / "r1"), "--json")
    assert res.code == 0 and said in res.err, res.err                      # still raw: said again
    lut = Lut.load(real)
    real.unlink()
    fitted = Calibration("loglinear", {"a": 0.1, "b": 1.0}, 3)
    LutStore(proj / "luts").save(dataclasses.replace(lut, calibration=fitted))
    res = cli(*base, "--max-latency-ms", "5", "--out", str(proj / "r3"))
    assert res.code == 0 and "not calibrated" not in res.err, res.err


@pytest.mark.parametrize("how", [("--strategy", "sh", "--budget", "2", "--ladder", "params", "--ladder", "flops"),
                                 ("--strategy", "darts", "--strategy-opt", "epochs=1")], ids=["sh", "darts"])
def test_the_drivers_say_which_table_they_use_and_warn_on_another_fingerprint(cli, proj, how):
    """``sh``, ``hyperband`` and ``darts`` chose the table by the same policy but said nothing of it: a DARTS run
    on a table of a fingerprint the device no longer reports went on without the warning every other search
    gives."""
    (real,) = (proj / "luts" / "local").glob("mbv3-tiny-*.json")
    (proj / ".edgenas" / "fingerprints" / "local.json").write_text(json.dumps({"fingerprint_hash": "e" * 64}))
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", *how, "--json", "--out", str(proj / "r1"))
    assert res.code == 0, res.err
    assert res.err.count(f"LUT for local: {real.name} (fingerprint ") == 1     # once, not once per rung
    assert "eeeeeeeeeeee" in res.err and "deploy will not predict" in res.err


def test_a_refused_resume_prints_its_one_error_line_and_an_accepted_one_its_notes(cli, proj):
    """A resume's notes (which table, an uncalibrated budget) wait until the run has checked its folder's files:
    a damaged log printed the table's line before its error."""
    args = ("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "3", "--max-latency-ms", "5",
            "--evaluator", "params", "--out", str(proj / "r1"))
    assert cli(*args).code == 0
    log = proj / "r1" / "evaluations.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b"garbage\n")
    res = cli("search", "--resume", str(proj / "r1"))
    assert res.code == 2 and res.err.strip().splitlines() == [
        f"error: malformed line 4 in {log} (the run folder is damaged)"], res.err
    log.write_bytes(good)
    res = cli("search", "--resume", str(proj / "r1"), "--json")
    assert res.code == 0 and "LUT for local: " in res.err and "not calibrated to whole networks" in res.err, res.err
