"""The device and run pages of the real report project, checked against the files they come from: the table
rows, the sections' notes, the figures' numbers, and every text from a file escaped."""

from __future__ import annotations

import json
import re
import time
from html import escape

import pytest

from edgenas.project import Project
from edgenas.report import pages
from edgenas.report.source import FolderSource


def _sections(page):
    """(title, note) of each section of a page, in order."""
    return re.findall(r"<section><h2>(.*?)</h2>(?:<p class='note'>(.*?)</p>)?", page)


def _plots(page):
    """The traces and layout of each plot of a page, in order."""
    dec, out = json.JSONDecoder(), []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"plot-\d+",\s*', page):
        data, end = dec.raw_decode(page, m.end())
        layout, _ = dec.raw_decode(page, page.index("{", end))
        out.append((data, layout))
    return out


def _table(page, first_header):
    """The cells of each body row of the table whose first column is ``first_header``."""
    t = re.search(rf"<table><thead><tr><th>{first_header}</th>.*?</table>", page).group(0)
    return [re.findall(r"<td(?: class='num')?>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", t)[1:]]


def _lut_files(root):
    return {json.loads(p.read_text())["space"]: p for p in (root / "luts" / "local").glob("*-*.json")}


def test_the_page_of_a_profiled_device_matches_its_files(rproj):
    """The tables row per LUT file (a table of a runtime or precision edgenas does not know, markup say, is not
    read), the entries list capped at 40 (an nb201 table of 45 entries), the calibration's points and fit, and the
    drift check's numbers."""
    from edgenas.latency.lut import Lut
    from edgenas.store import open_store

    files = _lut_files(rproj)
    d = json.loads(files["nb201"].read_text())
    first = next(iter(d["entries"].values()))
    for i in range(45 - len(d["entries"])):
        d["entries"][f"nb201-extra-{i}"] = {**first, "ratio": first["ratio"] * (1.5 + i / 7)}
    files["nb201"].write_text(json.dumps({**d, "runtime": "<b>ort</b>&co", "precision": "fp<32>"}))
    page = pages.device_page(FolderSource(Project(rproj)), "local", plotly_src="p.js")
    assert "ort</b>" not in page and "fp<32>" not in page and "<td>nb201</td>" not in page  # skipped: damaged
    files["nb201"].write_text(json.dumps(d))
    page = pages.device_page(FolderSource(Project(rproj)), "local", plotly_src="p.js")

    raw = {s: json.loads(p.read_text()) for s, p in files.items()}
    order = sorted(raw, key=lambda s: -raw[s]["created_at"])          # newest first

    def row(t):
        cal = t["calibration"]
        return [t["space"], t["fingerprint_hash"][:12], escape(t["runtime"]), escape(t["precision"]),
                str(len(t["entries"])), str(sum(not e["stable"] for e in t["entries"].values())),
                format(t["reference"]["ms"], ".4g"),
                "-" if cal is None else f"{cal['n_points']} pts, residual {cal['residual']:.1%}"]

    assert _table(page, "space") == [row(raw[s]) for s in order]
    tr = re.search(r"<tr><td>nb201</td>.*?</tr>", page).group(0)     # which cells are numbers
    num = " class='num'"
    assert re.findall(r"<td( class='num')?>", tr) == ["", "", "", "", num, num, num, ""]

    tiny = raw["mbv3-tiny"]
    cal = tiny["calibration"]
    with open_store(Project(rproj)) as store:
        measured = [m for m in store.list(device="local", space="mbv3-tiny")
                    if m.fingerprint_hash == tiny["fingerprint_hash"]]
    checks = [json.loads(x) for x in (rproj / "luts/local/verified.jsonl").read_text().splitlines()]
    n_unstable = sum(not e["stable"] for e in tiny["entries"].values())
    per_table = {
        "nb201": [("LUT nb201: entries", "The 40 slowest of 45 entries; hover for the cost.")],
        "mbv3-tiny": [
            ("LUT mbv3-tiny: kernel x expand per stage",
             f"Mean cost (ms) of each stage&#x27;s blocks with that kernel and expand ratio; {n_unstable} of "
             f"{len(tiny['entries'])} entries unstable (red cross, count in the cell); the dropdown picks the input "
             "resolution."),
            ("Calibration of mbv3-tiny", f"{len(measured)} whole-model measurements with this fingerprint; the line "
                                         "is the table&#x27;s fitted correction.")]}
    assert _sections(page) == [("Tables", ""), *per_table[order[0]], *per_table[order[1]], (
        "Drift checks", f"{len(checks)} checks by edgenas fleet refresh (luts/DEVICE/verified.jsonl); diamonds: the "
                        "table was rescaled.")]

    plots = _plots(page)
    entries = next(p for p in plots if p[0][0]["type"] == "bar")
    heat = next(p for p in plots if p[0][0]["type"] == "heatmap")
    calib = next(p for p in plots if p[0][0].get("name") == "measurements")
    drift = plots[-1]
    lut = Lut.load(files["nb201"])
    slowest = sorted(((k, lut.value_ms(e)) for k, e in lut.entries.items()), key=lambda t: -t[1])[:40]
    (bars,) = entries[0]
    assert bars["y"] == [k for k, _ in slowest] and bars["x"] == pytest.approx([ms for _, ms in slowest])
    assert entries[1]["xaxis"]["title"]["text"] == "cost on local (ms); red: unstable"
    assert heat[0][0]["type"] == "heatmap"

    points, fit, _ = calib[0]
    assert sorted(points["y"]) == pytest.approx(sorted(m.stats["nominal_ms"] for m in measured))
    assert fit["name"] == f"fit: e^{cal['params']['a']:.3f} x sum^{cal['params']['b']:.3f}"
    assert calib[1]["xaxis"]["title"]["text"] == "LUT sum on local (ms)"

    shape, threshold, speed = drift[0]
    assert shape["y"] == pytest.approx([100 * c["drift"] for c in checks])
    assert shape["customdata"] == [c["space"] for c in checks]
    assert threshold["y"] == pytest.approx([100 * c["threshold"] for c in checks])
    assert speed["y"] == pytest.approx([None if c.get("speed_change") is None else 100 * c["speed_change"]
                                        for c in checks])
    assert [x[:16] for x in shape["x"]] == [time.strftime("%Y-%m-%dT%H:%M", time.gmtime(c["time"])) for c in checks]


def test_a_table_without_a_fit_and_a_device_without_a_drift_check(rproj):
    files = _lut_files(rproj)
    d = json.loads(files["mbv3-tiny"].read_text())
    d["calibration"] = None
    files["mbv3-tiny"].write_text(json.dumps(d))
    (rproj / "luts/local/verified.jsonl").unlink()
    page = pages.device_page(FolderSource(Project(rproj)), "local", plotly_src="p.js")
    notes = dict(_sections(page))
    assert notes["Calibration of mbv3-tiny"] == ("3 whole-model measurements with this fingerprint; the line is the "
                                                 "table&#x27;s fitted correction (none fitted yet: edgenas lut "
                                                 "calibrate).")
    assert notes["Drift checks"] == "No drift check recorded yet (edgenas fleet refresh)."
    assert [r[-1] for r in _table(page, "space")] == ["-", "-"]
    plots = _plots(page)
    assert len(plots) == 3 and [len(p[0]) for p in plots if p[0][0].get("name") == "measurements"] == [2]  # no fit


def test_the_run_page_of_a_deployed_run_matches_the_store(rproj):
    """The breakdown table (with a note, escaped, for a budget device without a table) and one deployments row
    per stored measurement, the chosen one marked."""
    from edgenas.latency.lut import Lut
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.spaces import get_space
    from edgenas.store import open_store

    cfg_path = rproj / "runs/evo/config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["devices"] = [*cfg["devices"], ["<gone>", None]]
    cfg_path.write_text(json.dumps(cfg))
    src = FolderSource(Project(rproj))
    page = pages.run_page(src.run("evo"), src, plotly_src="p.js")
    assert "<gone>" not in page

    space = get_space("mbv3-tiny")
    best = json.loads((rproj / "runs/evo/best.json").read_text())["arch"]
    lut = Lut.load(_lut_files(rproj)["mbv3-tiny"])
    pred = LatencyPredictor(lut, space)
    arch = space.from_dict(best)
    assert (f"<tr><td>local</td><td class='num'>{pred.predict_raw(arch):.4g}</td><td class='num'>"
            f"{pred.predict(arch):.4g}</td><td>{lut.fingerprint_hash[:12]}</td></tr></tbody></table>"
            "<p class='note'>&lt;gone&gt;: no LUT (a benchmark-table column or an unprofiled device)</p>") in page

    with open_store(Project(rproj)) as store:
        stored = store.list(device="local", space="mbv3-tiny")
    assert len(stored) == 3
    want = sorted(["local", m.id[:12], "yes" if m.arch == best else "", f"{m.predicted_ms:.4g}",
                   f"{m.stats['nominal_ms']:.4g}", f"{100 * (m.predicted_ms / m.stats['nominal_ms'] - 1):+.1f}%"]
                  for m in stored)
    deps = re.search(r"<h2>Deployments: predicted vs measured</h2>.*?</section>", page).group(0)
    rows = re.findall(r"<tr>(<td>.*?)</tr>", deps)
    assert sorted(re.findall(r"<td(?: class='num')?>(.*?)</td>", r) for r in rows) == want
    assert [r.count("class='num'") for r in rows] == [3, 3, 3] and sum(r[2] == "yes" for r in want) == 1
    (points,) = [t for t in _plots(deps)[0][0] if t["name"] == "local"]
    assert sorted(points["y"]) == pytest.approx(sorted(m.stats["nominal_ms"] for m in stored))
