"""The generated reports in a real headless Chromium: no console error, every plot drawn, a screenshot."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _check_offline(text: str) -> None:
    assert not re.search(r"<script[^>]+src=", text), "a script is loaded from elsewhere: the report must be self-contained"
    assert not re.search(r"<link[^>]+href=['\"]?https?:", text)
    assert "Plotly.newPlot" in text


@pytest.mark.parametrize("kind, args, n_plots", [
    ("run", ["runs/evo"], 4),                         # front, convergence, breakdown, deployments
    ("compare", ["--compare", "runs/evo", "runs/rnd"], 3),
    ("device", ["--device", "local"], 4),             # mbv3-tiny heat map and calibration, nb201 entries, drift
    ("fleet", ["--fleet"], 1),
])
def test_report_renders_in_chromium(rproj, cli, browser, tmp_path, monkeypatch, kind, args, n_plots):
    monkeypatch.chdir(rproj)
    out = tmp_path / f"{kind}.html"
    res = cli("report", *args, "--out", str(out), "--json")
    assert res.code == 0, res.err
    assert res.json()["report_path"] == str(out) and res.json()["kind"] == kind
    _check_offline(out.read_text())
    page = browser.open(out.as_uri())
    assert page.errors == []
    assert len(page.plots) == n_plots, page.plots
    for p in page.plots:
        assert p["svg"] and p["marks"] > 0 and p["w"] > 300 and p["h"] > 150, p
        assert all(t.strip() for t in p["xtitle"] + p["ytitle"]), p   # axes are named
    shot = browser.screenshot(tmp_path / f"{kind}.png")
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("EDGENAS_SCREENSHOT_DIR")   # to look at them after the run
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def test_run_report_default_path_and_units(rproj, cli, browser, tmp_path, monkeypatch):
    monkeypatch.chdir(rproj)
    res = cli("report", "runs/nb201" if (rproj / "runs/nb201").exists() else "runs/evo")
    assert res.code == 0, res.err
    path = rproj / ("runs/nb201" if (rproj / "runs/nb201").exists() else "runs/evo") / "report.html"
    assert path.exists() and str(path.relative_to(rproj)) in res.out
    page = browser.open(path.as_uri())
    assert page.errors == []
    titles = [t for p in page.plots for t in p["xtitle"] + p["ytitle"]]
    assert any(t.endswith("(ms)") for t in titles)
    if "nb201" in str(path):
        assert "cifar10_test (%)" in titles
