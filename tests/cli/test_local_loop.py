"""The whole loop on the ``local`` device through the CLI: profile -> search -> export -> deploy -> calibrate."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.protocols import FAST


def test_profile_reuses_then_force_keeps_history(proj, cli):
    res = cli("profile", "local", "--space", "mbv3-tiny", "--json")
    assert res.code == 0, res.err
    first = res.json()
    assert first["reused_lut"] is True and first["entries"] == 22
    lut_path = proj / first["lut_path"] if not first["lut_path"].startswith("/") else first["lut_path"]
    old = open(lut_path).read()
    from edgenas.fleet.profiler import profile_device
    from edgenas.project import Project

    res2 = profile_device(Project(proj), "local", "mbv3-tiny", force=True,
                          protocol={"warmup_min_n": 3, "min_n": 5, "min_s": 0.02, "max_s": 0.3})
    assert res2.reused_lut is False and res2.measured == 22
    # no measurements: the table is not calibrated, and no database is created to look for them
    assert res2.calibrated is False and res2.recalibrated is None
    assert not (proj / ".edgenas" / "edgenas.db").exists()
    hist = list((proj / "luts" / "local" / "history").glob("mbv3-tiny-*.json"))
    assert len(hist) == 1 and hist[0].read_text() == old


def test_search_export_deploy_calibrate(proj, cli, tmp_path):
    run = tmp_path / "run"
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-quantile", "0.6",
              "--strategy", "evolution", "--budget", "16", "--population", "8", "--seed", "1",
              "--evaluator", "params", "--out", str(run), "--json")
    assert res.code == 0, res.err
    s = res.json()
    assert s["evaluations"] == 16 and s["best"]["space"] == "mbv3-tiny"
    assert s["latency_ms"]["local"] <= s["budgets_ms"]["local"] + 1e-9
    for name in ("best.json", "pareto.json", "evaluations.jsonl", "checkpoint.json", "config.json", "request.json"):
        assert (run / name).exists(), name
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 16

    res = cli("export", str(run / "best.json"), "--out", str(tmp_path / "exp"), "--json")
    assert res.code == 0, res.err
    e = res.json()
    man = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert man["arch"] == s["best"] and e["parity"]["passed"] and e["parity"]["max_abs"] < 1e-4
    # the parity report names the file it describes, not the temporary name it was checked under
    assert man["parity"]["onnx_path"] == e["parity"]["onnx_path"] == str(tmp_path / "exp" / "model.onnx")
    again = cli("export", str(run / "best.json"), "--out", str(tmp_path / "exp"), "--json").json()
    assert again["reused"] is True and again["sha256"] == e["sha256"]

    lut_file = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    before = lut_file.read_bytes()
    res = cli("deploy", "local", str(run / "best.json"), "--out", str(tmp_path / "exp"), "--no-calibrate", "--json")
    assert res.code == 0, res.err
    d = res.json()
    assert d["measured_ms"] > 0 and d["predicted_ms"] > 0
    # --no-calibrate stores the measurement and leaves the table as it was
    assert d["recalibrated"] is None and lut_file.read_bytes() == before
    assert not (proj / "luts" / "local" / "history").exists()
    # the LUT was timed against the speed reference, so the comparison is at the nominal speed
    lut = json.loads(lut_file.read_text())
    assert lut["reference"]["ms"] > 0
    assert d["measured_nominal_ms"] == pytest.approx(d["stats"]["ratio"] * lut["reference"]["ms"])
    cmp = d["measured_nominal_ms"]
    assert abs(d["rel_error"] - (d["predicted_ms"] - cmp) / cmp) < 1e-9
    assert d["stats"]["n"] >= 1 and "session_ms" in d["cold_start"]

    from edgenas.project import Project
    from edgenas.store import open_store

    ms = open_store(Project(proj)).list(device="local", space="mbv3-tiny")
    assert [m.id for m in ms] == [d["measurement_id"]]
    assert ms[0].lut_fingerprint == lut["fingerprint_hash"]  # which LUT made the prediction

    res = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--json")
    assert res.code == 0, res.err
    c = res.json()
    assert c["n_points"] == 1
    shown = cli("lut", "show", c["lut_path"], "--json").json()
    assert shown["calibration"]["n_points"] == 1
    # the median entry in the units predictions use (ratio x reference.ms), as overhead_ms is
    table = json.loads(open(c["lut_path"], encoding="utf-8").read())
    costs = [e["ratio"] * table["reference"]["ms"] for e in table["entries"].values()]
    assert shown["median_entry_ms"] == pytest.approx(float(np.median(costs)), rel=1e-12)
    # the predictor now applies it: the same arch is predicted (almost) exactly as measured
    d2 = cli("deploy", "local", str(run / "best.json"), "--out", str(tmp_path / "exp"), "--json").json()
    assert d2["calibration_points"] == 1
    assert abs(d2["predicted_ms"] - cmp) / cmp < 1e-6
    # and deploy refits the calibration with each new measurement (the closed loop), as lut calibrate would
    assert d2["recalibrated"]["n_points"] == 2 and d2["recalibrated"]["lut_path"] == c["lut_path"]
    shown = cli("lut", "show", c["lut_path"], "--json").json()
    assert shown["calibration"]["n_points"] == 2
    again = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--json").json()
    assert again["n_points"] == 2 and again["params"] == pytest.approx(d2["recalibrated"]["params"])
    said = cli("lut", "calibrate", "local", "--space", "mbv3-tiny").out  # as text: the same fit, in two lines
    assert " ".join(said.split()) == (f"local / mbv3-tiny: calibrated on 2 measurements (0 new); within ±10%: raw "
                                      f"{100 * again['within10_raw']:.0f}% -> calibrated "
                                      f"{100 * again['within10_calibrated']:.0f}% LUT: {c['lut_path']}")
    # a measurement lut calibrate --measure takes is recorded with the prediction of the table as calibrated
    # then, as deploy records its own (the report compares them): it stored the raw sum as both before
    from edgenas.latency.calibration import apply_calibration
    from edgenas.latency.lut import Calibration

    cal_then = Calibration.from_dict(cli("lut", "show", c["lut_path"], "--json").json()["calibration"])
    known = {m.id for m in open_store(Project(proj)).list(device="local", space="mbv3-tiny")}
    assert cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--measure", "1", "--json").code == 0
    new = [m for m in open_store(Project(proj)).list(device="local", space="mbv3-tiny") if m.id not in known]
    assert len(new) == 1 and new[0].predicted_raw_ms > 0
    assert new[0].predicted_ms == pytest.approx(float(apply_calibration(cal_then, [new[0].predicted_raw_ms])[0]))
    assert abs(new[0].predicted_ms / new[0].predicted_raw_ms - 1) > 1e-6  # the calibration moved it
    said = cli("deploy", "local", str(run / "best.json"), "--out", str(tmp_path / "exp"))
    assert said.code == 0 and "LUT calibration refitted on 4 measurements" in " ".join(said.out.split())
    # the error is against the measurement at nominal speed, and the line says so; figures with 4 digits
    # (0.037 next to a search's 0.03658 read as a 1.2% difference that was not there)
    m = re.search(r"predicted (\S+) ms \(calibrated on \d+ measurements\); error ([-+]\d+\.\d)% against the "
                  r"measurement at nominal speed", " ".join(said.out.split()))
    nominal = re.search(r"at the device's nominal speed: (\S+) ms", said.out)
    assert m and nominal, said.out
    assert float(m[2]) == pytest.approx(100 * (float(m[1]) / float(nominal[1]) - 1), abs=0.15)
    # a refit changes only the calibration: no copy of the table in history/ per deploy
    assert not (proj / "luts" / "local" / "history").exists()
    assert json.loads(lut_file.read_text())["entries"] == json.loads(before)["entries"]


def _deploy_keeps_table_and_one_measurement(proj, cli, tmp_path, seed, during, *says):
    """Deploy a sampled network while ``during`` holds: exit 0, no refit, a note saying ``says`` (the
    measurement is kept for `lut calibrate`), the LUT file untouched, the measurement stored once."""
    from edgenas.project import Project
    from edgenas.spaces import get_space
    from edgenas.store import open_store

    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(seed)))))
    lut_file = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    before = lut_file.read_bytes()
    with during:
        res = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"), "--json")
    assert res.code == 0, res.err
    d = res.json()
    assert d["recalibrated"] is None and all(x in d["note"] for x in says), d["note"]
    assert lut_file.read_bytes() == before
    assert [m.id for m in open_store(Project(proj)).list(device="local", space="mbv3-tiny")] == [d["measurement_id"]]


def test_deploy_while_the_table_is_being_rebuilt(proj, cli, tmp_path):
    """A deploy while a profile of the device holds the table keeps its measurement and leaves the table to
    the profile: one yellow note, exit 0, the LUT file untouched."""
    from edgenas.fleet.table_lock import profile_lock
    from edgenas.project import Project

    _deploy_keeps_table_and_one_measurement(proj, cli, tmp_path, 0, profile_lock(Project(proj), "local", "mbv3-tiny"),
                                            "calibration was not refitted", "lut calibrate")


def test_deploy_whose_table_cannot_be_written_keeps_one_measurement_and_says_so(proj, cli, tmp_path, monkeypatch):
    """A full disk (or a read-only table) when the refitted calibration was written: the measurement was stored,
    then the command failed with "run it again", and running it again stored a second copy of it."""
    import contextlib
    import errno

    from edgenas.latency import lut as lut_mod

    real = lut_mod.atomic_write_text

    def full_disk(path, text):
        if Path(path).parent == proj / "luts" / "local":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(lut_mod, "atomic_write_text", full_disk)
    _deploy_keeps_table_and_one_measurement(proj, cli, tmp_path, 1, contextlib.nullcontext(),
                                            "the disk is full", "lut calibrate local")


def test_resume_cli(proj, cli, tmp_path):
    run = tmp_path / "run"
    args = ["search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-quantile", "0.6",
            "--budget", "12", "--seed", "2", "--evaluator", "params", "--out", str(run)]
    assert cli(*args, "--json").code == 0
    full = (run / "evaluations.jsonl").read_text().splitlines()
    lines = full[:5]
    (run / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    (run / "checkpoint.json").unlink()
    again = cli("search", "--resume", str(run), "--json")
    assert again.code == 0, again.err
    assert (run / "evaluations.jsonl").read_text().splitlines() == full or \
        [json.loads(x)["arch"] for x in (run / "evaluations.jsonl").read_text().splitlines()] == \
        [json.loads(x)["arch"] for x in full]
    assert "changed since this run started" not in again.err  # the same table as at the start


def test_resume_after_the_table_changed(proj, cli, tmp_path):
    """The run folder records each device's table as the run started; a resume after one changed (here a
    calibration, as a deploy's refit makes) says so once per device and goes on (a budget in ms does not
    depend on the table; a quantile budget keeps its value from the start: tests/cli/test_search_tables.py)."""
    from edgenas.latency.lut import Calibration, Lut
    from edgenas.latency.store import LutStore

    run = tmp_path / "run"
    args = ["search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-ms", "50",
            "--budget", "12", "--seed", "2", "--evaluator", "params", "--out", str(run)]
    assert cli(*args, "--json").code == 0
    assert set(json.loads((run / "tables.json").read_text())["tables"]) == {"local"}
    lines = (run / "evaluations.jsonl").read_text().splitlines()[:5]
    lut_file = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    LutStore(proj / "luts").save(Lut.load(lut_file).with_calibration(Calibration("loglinear", {"a": 0.1, "b": 1.0}, 3)))
    (run / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    (run / "checkpoint.json").unlink()
    changed = cli("search", "--resume", str(run), "--json")
    assert changed.code == 0, changed.err
    said = " ".join(changed.err.split())
    assert said.count("the latency table of 'local' changed since this run started") == 1
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 12


def test_latency_and_params_as_objectives(proj, cli, tmp_path):
    """No budget: latency is an objective; --minimise adds the parameter count; NSGA-II returns a front."""
    run = tmp_path / "mo"
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--strategy", "nsga2", "--budget", "12",
              "--population", "6", "--evaluator", "synflow", "--minimise", "params", "--out", str(run), "--json")
    assert res.code == 0, res.err
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto["objectives"] == ["synflow", "latency_ms:local", "params"]
    front = pareto["front"]
    assert 1 <= len(front) <= 12
    for p in front:  # no point of the front dominates another
        for q in front:
            better_eq = (q["accuracy"] >= p["accuracy"] and q["latency_ms"]["local"] <= p["latency_ms"]["local"]
                         and q["objectives"]["params"] <= p["objectives"]["params"])
            strictly = (q["accuracy"] > p["accuracy"] or q["latency_ms"]["local"] < p["latency_ms"]["local"]
                        or q["objectives"]["params"] < p["objectives"]["params"])
            assert not (better_eq and strictly)
    bad = cli("search", "--space", "mbv3-tiny", "--device", "local", "--minimise", "energy",
              "--out", str(tmp_path / "x"))
    assert bad.code == 2 and "energy" in bad.err


def test_lut_list_and_pull_from_the_device(proj, cli):
    """The agent keeps the LUTs it measured; pulling restores a lost host copy, byte for byte valid."""
    import shutil

    listed = cli("lut", "list", "local", "--json")
    assert listed.code == 0, listed.err
    names = [e["name"] for e in listed.json()["on_device"]]
    assert any(n.startswith("mbv3-tiny-") for n in names)
    original = {p.name: p.read_bytes() for p in (proj / "luts" / "local").glob("*.json")}
    shutil.rmtree(proj / "luts")
    pulled = cli("lut", "pull", "local", "--json")
    assert pulled.code == 0, pulled.err
    restored = {p.name: p.read_bytes() for p in (proj / "luts" / "local").glob("*.json")}
    assert set(original) <= set(restored)
    from edgenas.latency.lut import Lut

    for name in original:
        assert Lut.load(proj / "luts" / "local" / name).entries == Lut.load(proj / "luts" / "local" / name).entries
        assert json.loads(restored[name])["entries"] == json.loads(original[name])["entries"]
    missing = cli("lut", "pull", "local", "--name", "nope.json")
    assert missing.code == 2 and "holds no LUT named" in missing.err


def test_pull_keeps_the_hosts_calibration_of_the_same_table(proj, cli):
    """The device's copy of a table lacks the calibration the host fitted (deploy, lut calibrate): pulling it
    keeps the host's fit when the timings are the same, and drops it when the device holds other timings."""
    import dataclasses

    from edgenas.latency.lut import Calibration, Lut
    from edgenas.latency.store import LutStore

    store = LutStore(proj / "luts")
    path = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    lut = Lut.load(path)
    assert lut.calibration is None
    cal = Calibration("loglinear", {"a": 0.1, "b": 0.95}, 4)
    store.save(lut.with_calibration(cal))
    pulled = {p["name"]: p for p in cli("lut", "pull", "local", "--json").json()}
    assert pulled[path.name]["kept_calibration"] is True and pulled[path.name]["lut_path"] == str(path)
    assert Lut.load(path).calibration == cal and Lut.load(path).entries == lut.entries
    # the hash given is the stored file's (it was the device's copy, without the host's calibration)
    assert pulled[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pulled[path.name]["device_sha256"] != pulled[path.name]["sha256"]

    key = next(iter(lut.entries))  # the host's table now holds other timings than the device's copy
    other = dataclasses.replace(lut, entries=dict(lut.entries, **{key: dataclasses.replace(
        lut.entries[key], median_ms=lut.entries[key].median_ms * 2)}))
    store.save(other.with_calibration(cal))
    said = cli("lut", "pull", "local", "--name", path.name)
    assert said.code == 0 and "kept the host's calibration" not in said.out
    assert Lut.load(path).calibration is None and Lut.load(path).entries == lut.entries
    path.write_text("{ damaged")  # and a damaged host copy is simply restored
    assert cli("lut", "pull", "local", "--name", path.name).code == 0 and Lut.load(path).entries == lut.entries


def test_a_calibration_dated_in_the_future_is_read_used_and_refitted(proj, cli, tmp_path):
    """A table profiled and calibrated while the host clock ran days ahead is an ordinary table: it is read,
    shown (dates as UTC dates, one yellow warning each), used by a search, and `lut calibrate` and deploy
    refit it. Its calibration was refused as malformed, the table with it, by the very commands that refit it."""
    import time

    from edgenas.latency.lut import Lut
    from edgenas.spaces import get_space

    def utc(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))

    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(2)))))
    assert cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"), "--no-calibrate").code == 0
    lut_file = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))

    def date_ahead() -> float:
        ahead = time.time() + 3 * 86400
        assert cli("lut", "calibrate", "local", "--space", "mbv3-tiny").code == 0
        table = json.loads(lut_file.read_text())
        table["created_at"], table["calibration"]["fitted_at"] = ahead, ahead
        lut_file.write_text(json.dumps(table))
        return ahead

    ahead = date_ahead()
    shown = cli("lut", "show", str(lut_file))
    err = " ".join(shown.err.split())
    assert shown.code == 0, shown.err
    assert f"fitted_at': '{utc(ahead)}'" in shown.out and f"{ahead}" not in shown.out
    assert err.count("warning:") == 2 and f"is dated {utc(ahead)}, in the future: the host clock was ahead" in err
    assert "edgenas lut calibrate local --space mbv3-tiny refits it" in err
    assert cli("lut", "show", str(lut_file), "--json").json()["calibration"]["fitted_at"] == ahead

    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--budget", "2", "--evaluator", "params",
              "--out", str(tmp_path / "r1"), "--json")
    err = " ".join(res.err.split())
    assert res.code == 0, res.err
    assert f"(fingerprint {Lut.load(lut_file).fingerprint_hash[:12]}, dated {utc(ahead)}, in the future)" in err
    assert err.count("in the future: the host clock was ahead") == 2

    before = time.time()
    refit = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--json")
    assert refit.code == 0, refit.err
    assert refit.json()["n_points"] == 1
    assert before <= Lut.load(lut_file).calibration.fitted_at <= time.time()

    date_ahead()  # and deploy predicts with such a table and refits it
    d = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"), "--json")
    assert d.code == 0, d.err
    assert d.json()["predicted_ms"] > 0 and d.json()["recalibrated"]["n_points"] == 2
    assert Lut.load(lut_file).calibration.fitted_at <= time.time()


def test_a_pulled_calibration_dated_in_the_future_is_not_taken_for_newer(proj):
    """Which of two fits of the same timings is newer is read from their dates: one dated in the future (a
    host clock ahead) says nothing, so the host's own fit stays."""
    import time

    from edgenas.fleet.lutsync import keep_host_calibration
    from edgenas.latency.lut import Calibration, Lut

    lut = Lut.load(next((proj / "luts" / "local").glob("mbv3-tiny-*.json")))
    mine = Calibration("loglinear", {"a": 0.1, "b": 0.95}, 4, fitted_at=time.time() - 60)
    theirs = Calibration("loglinear", {"a": 0.2, "b": 1.0}, 3, fitted_at=time.time() + 3 * 86400)
    kept, was_kept = keep_host_calibration(lut.with_calibration(theirs), lut.with_calibration(mine))
    assert was_kept is True and kept.calibration == mine
    newer = Calibration("loglinear", {"a": 0.2, "b": 1.0}, 3, fitted_at=time.time())
    kept, was_kept = keep_host_calibration(lut.with_calibration(newer), lut.with_calibration(mine))
    assert was_kept is False and kept.calibration == newer


def test_calibration_counts_measurements_at_the_tables_nominal_speed_now(proj, cli, tmp_path):
    """After the table's nominal speed is rescaled (``fleet refresh`` after a persistent change), a stored
    measurement counts as its ratio to the reference x the table's reference time now, like the table's own
    entries: the fit on one measurement does not move."""
    import dataclasses

    from edgenas.latency.lut import Lut
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(1)))))
    d = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"), "--no-calibrate", "--json").json()
    assert d["stats"]["ratio"] > 0 and d["measured_nominal_ms"] > 0
    first = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--json").json()
    lut = Lut.load(first["lut_path"])
    LutStore(proj / "luts").save(dataclasses.replace(lut, reference=dict(lut.reference, ms=lut.reference["ms"] * 1.5)))
    again = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--json").json()
    # one point: b = 1 and exp(a) = measured / LUT sum, both 1.5x the nominal time of before
    assert again["params"]["b"] == first["params"]["b"] == 1.0
    assert again["params"]["a"] == pytest.approx(first["params"]["a"], abs=1e-9)


def test_lut_calibrate_without_measurements_of_the_current_fingerprint_is_one_error(proj, cli, snapshot):
    from edgenas.project import Project
    from edgenas.store import open_store

    open_store(Project(proj))  # a database, but no measurement in it
    before = snapshot(proj)
    res = cli("lut", "calibrate", "local", "--space", "mbv3-tiny")
    assert res.code == 2 and "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert "no measurements of 'mbv3-tiny' on 'local' with the current fingerprint" in res.err
    assert "lut calibrate local --space mbv3-tiny --measure 10" in res.err
    assert snapshot(proj) == before


def test_a_rebuilt_table_is_fitted_on_the_stored_measurements(proj, cli, tmp_path):
    """A profile that builds a table fits its calibration on the device's stored whole-model measurements
    at once, as `lut calibrate` would, so it is not used raw until the next deploy; the replaced table goes
    to history/ as before."""
    from edgenas.fleet.profiler import profile_device
    from edgenas.latency.lut import Lut
    from edgenas.project import Project
    from edgenas.spaces import get_space

    space = get_space("mbv3-tiny")
    for seed in (3, 4):
        arch = tmp_path / f"arch{seed}.json"
        arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(seed)))))
        assert cli("deploy", "local", str(arch), "--out", str(tmp_path / f"exp{seed}"), "--no-calibrate").code == 0
    lut_file = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    assert Lut.load(lut_file).calibration is None
    res = profile_device(Project(proj), "local", "mbv3-tiny", force=True, protocol=FAST)
    assert res.reused_lut is False and res.calibrated is True and res.calibration_note is None
    assert res.recalibrated.n_points == 2 and res.recalibrated.lut_path == str(lut_file)
    rebuilt = Lut.load(lut_file)
    assert rebuilt.calibration is not None and rebuilt.calibration.n_points == 2
    # the same fit as `lut calibrate` makes on the new table from the same measurements
    fitted = cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--json").json()
    assert fitted["params"] == pytest.approx(rebuilt.calibration.params, rel=1e-12)
    assert fitted["within10_raw"] == res.recalibrated.within10_raw
    hist = list((proj / "luts" / "local" / "history").glob("mbv3-tiny-*.json"))
    assert len(hist) == 1 and Lut.load(hist[0]).calibration is None  # the table it replaced, as it was

    said = cli("profile", "local", "--space", "mbv3-tiny", "--force")
    assert said.code == 0, said.err
    assert "LUT calibration fitted on the device's 2 stored measurements" in " ".join(said.out.split())
    shares = re.search(r"within ±10% (\d+)% raw, (\d+)% calibrated", " ".join(said.out.split()))
    assert shares and all(0 <= int(v) <= 100 for v in shares.groups()), said.out  # percentages of the 2
    assert all(int(v) in (0, 50, 100) for v in shares.groups()), said.out
    as_json = cli("profile", "local", "--space", "mbv3-tiny", "--force", "--json")
    assert as_json.code == 0, as_json.err
    got = as_json.json()  # the same record as deploy's `recalibrated`
    assert got["calibrated"] is True and got["recalibrated"]["n_points"] == 2
    assert got["recalibrated"]["lut_path"] == got["lut_path"] and set(got["recalibrated"]["params"]) == {"a", "b"}


def test_a_profile_with_an_unreadable_database_keeps_its_table_uncalibrated(proj, cli):
    """The measurements cannot be read (a damaged database): the profile still writes its new table,
    uncalibrated, says why, and leaves the database file alone."""
    from edgenas.fleet.profiler import profile_device
    from edgenas.latency.lut import Lut
    from edgenas.project import Project

    db = proj / ".edgenas" / "edgenas.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"not a database" * 100)
    res = profile_device(Project(proj), "local", "mbv3-tiny", force=True, protocol=FAST)
    assert res.reused_lut is False and res.calibrated is False and res.recalibrated is None
    assert res.calibration_note and "database" in res.calibration_note
    assert Lut.load(res.lut_path).calibration is None
    assert db.read_bytes() == b"not a database" * 100
    said = cli("profile", "local", "--space", "mbv3-tiny", "--force")
    assert said.code == 0, said.err
    assert "not fitted on the stored measurements" in " ".join(said.out.split()) and "Traceback" not in said.err
    assert db.read_bytes() == b"not a database" * 100


def test_a_few_shot_refit_that_cannot_be_written_keeps_one_measurement_and_says_so(proj, cli, tmp_path, monkeypatch):
    """As for a table (above): a full disk when a deploy refitted the device's few-shot model ended the command
    after its measurement was stored, and running it again stored a second copy."""
    import errno

    from edgenas.fleet import fewshot
    from edgenas.project import Project
    from edgenas.spaces import get_space
    from edgenas.store import open_store

    space = get_space("nb201")  # no table of it on `local`: a deploy predicts with, and refits, the record
    fp = json.loads(next((proj / "luts" / "local").glob("mbv3-tiny-*.json")).read_text())["fingerprint_hash"]
    archs = fewshot._pool(space, [], 0, n=3)[0]
    path, _, _ = fewshot._save(Project(proj), "local", space, fp, "onnxruntime", archs[:2], np.array([2.0, 3.0]), [],
                               None, 0)
    before = path.read_bytes()

    def full_disk(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fewshot, "_save", full_disk)
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(archs[2])))
    res = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"), "--json")
    assert res.code == 0, res.err
    d = res.json()
    assert "the few-shot model was not refitted: " in d["note"] and "the disk is full" in d["note"], d["note"]
    assert path.read_bytes() == before
    assert [m.id for m in open_store(Project(proj)).list(device="local", space="nb201")] == [d["measurement_id"]]
