"""The generated reports in a real headless Chromium: no console error, every plot drawn, a screenshot."""

from __future__ import annotations

import html
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


def _check_policy(text: str) -> None:
    """The file's own policy, before its first script, names each of its inline scripts by hash; no other."""
    from edgenas.report.html import script_hash

    m = re.search(r"<meta http-equiv='Content-Security-Policy' content=\"([^\"]+)\">", text)
    assert m and m.start() < text.index("<script"), "no policy before the scripts"
    policy = html.unescape(m.group(1))
    script_src = next(d.split()[1:] for d in policy.split(";") if d.split()[0] == "script-src")
    scripts = re.findall(r"<script>(.*?)</script>", text, re.DOTALL)
    assert len(scripts) >= 2 and script_src == [script_hash(js) for js in scripts]
    assert "'unsafe-eval'" not in policy and "default-src 'none'" in policy


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
    _check_policy(out.read_text())
    page = browser.open(out.as_uri())
    assert page.errors == [] and page.csp == [], page.csp
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
    assert page.errors == [] and page.csp == [], page.csp
    titles = [t for p in page.plots for t in p["xtitle"] + p["ytitle"]]
    assert any(t.endswith("(ms)") for t in titles)
    if "nb201" in str(path):
        assert "cifar10_test (%)" in titles


def test_a_script_the_report_does_not_name_does_not_run(rproj, cli, browser, tmp_path, monkeypatch):
    """A report opened from disk ran any script in it; now its policy names its own scripts by hash: a <script>
    written into the file (as markup that got around the escaping would be) is refused and reported, the plots
    still drawn."""
    monkeypatch.chdir(rproj)
    out = tmp_path / "run.html"
    assert cli("report", "runs/evo", "--out", str(out)).code == 0
    text = out.read_text()
    bad = text.replace("<main>", "<main><script>window.injected = 1</script>"
                       "<img src='data:,' onerror='window.handler = 1'>", 1)
    assert bad != text
    (tmp_path / "bad.html").write_text(bad)
    page = browser.open((tmp_path / "bad.html").as_uri())
    assert browser.evaluate("[window.injected, window.handler]") == [None, None]
    assert len(page.plots) == 4 and all(p["svg"] and p["marks"] > 0 for p in page.plots)
    assert any(r.startswith("violation: script-src-elem inline") for r in page.csp), page.csp
    assert any(r.startswith("violation: script-src-attr inline") for r in page.csp), page.csp
