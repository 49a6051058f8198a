"""``edgenas deploy`` (and ``edgenas measure``) as text on the profiled ``local`` table: every line of the
result, in its numbers' forms, and "measurement" in the singular and the plural as the calibration grows."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

NUM = r"[-+]?\d[\d.e+-]*"


def test_deploy_as_text_says_each_part_of_its_result(proj, cli, tmp_path, monkeypatch):
    from edgenas.spaces import get_space

    monkeypatch.setenv("COLUMNS", "300")
    space = get_space("mbv3-tiny")
    arch = tmp_path / "best.json"  # as a multi-fidelity run writes it: the accuracy it measured is said too
    arch.write_text(json.dumps({"arch": space.to_dict(space.sample(np.random.default_rng(3))),
                                "objectives": {"val_acc": 91.25, "latency": 1.0}, "accuracy_name": "val_acc",
                                "metric": "validation accuracy (%)"}))
    said = []
    for _ in range(2):
        res = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"))
        assert res.code == 0, res.err
        said.append(res.out.splitlines())
    for lines, cal, refit in ((said[0], r"raw LUT sum", "1 measurement"),
                              (said[1], r"calibrated on 1 measurement", "2 measurements")):
        assert len(lines) == 6, lines
        assert re.fullmatch(rf"local \(onnxruntime\): measured {NUM} ms \(median of window medians; CoV "
                            rf"\d\.\d{{3}}, (stable|UNSTABLE)\)", lines[0]), lines[0]
        assert re.fullmatch(rf"at the device's nominal speed: {NUM} ms \(ratio \d\.\d{{3}} to the reference, CoV "
                            rf"\d\.\d{{3}}\)", lines[1]), lines[1]
        assert re.fullmatch(rf"predicted {NUM} ms \({cal}\); error [-+]\d+\.\d% against the measurement at "
                            rf"nominal speed", lines[2]), lines[2]
        m = re.fullmatch(rf"LUT calibration refitted on {refit}: within ±10% (\d+)% raw, (\d+)% calibrated", lines[3])
        assert m and {m[1], m[2]} <= ({"0", "100"} if refit[0] == "1" else {"0", "50", "100"}), lines[3]
        err = re.search(rf"^predicted ({NUM}) ms .*; error ([-+]\d+\.\d)% against", lines[2])
        nominal_ms = float(re.search(r": (\S+) ms", lines[1])[1])
        assert float(err[2]) == pytest.approx(100 * (float(err[1]) / nominal_ms - 1), abs=0.15), lines[2]
        assert re.fullmatch(r"cold start: session \d+\.\d ms, first run \d+\.\d\d ms", lines[4]), lines[4]
        predicted, nominal = re.search(r"^predicted (\S+) ms", lines[2])[1], re.search(r": (\S+) ms", lines[1])[1]
        assert lines[5] == (f"chosen network: validation accuracy 91.2%; latency predicted {predicted} ms, measured "
                            f"{nominal} ms at nominal speed"), lines[5]

    # edgenas measure: any ONNX file, here the export deploy made
    res = cli("measure", "local", str(tmp_path / "exp" / "model.onnx"))
    assert res.code == 0, res.err
    assert re.fullmatch(rf"local: median {NUM} ms, p90 {NUM} ms, CoV \d\.\d{{3}} \((stable|UNSTABLE)\), n=\d+\n",
                        res.out), res.out
    m = cli("measure", "local", str(tmp_path / "exp" / "model.onnx"), "--json").json()
    assert m["device"] == "local" and 0 < m["stats"]["median_ms"] <= m["stats"]["p90_ms"] and m["stats"]["n"] > 0


def test_deploy_without_a_table_says_why_there_is_no_prediction(fresh, cli, tmp_path, monkeypatch):
    from edgenas.spaces import get_space

    monkeypatch.setenv("COLUMNS", "300")
    space = get_space("mbv3-tiny")
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(3)))))
    res = cli("deploy", "local", str(arch), "--out", str(tmp_path / "exp"))
    assert res.code == 0, res.err
    lines = res.out.splitlines()  # no reference timing, no prediction, no refit: the note says why
    assert len(lines) == 3 and lines[0].startswith("local (onnxruntime): measured "), lines
    assert lines[1].startswith("no prediction: no LUT for device 'local', space 'mbv3-tiny'"), lines[1]
    assert lines[1].endswith("run: edgenas profile local --space mbv3-tiny)"), lines[1]
    assert lines[2].startswith("cold start: session "), lines[2]
