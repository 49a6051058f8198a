"""Reports of the other drivers' runs (multi-fidelity ``sh`` / ``hyperband``, DARTS), of runs with different
budgets, and of names from files that plotly would take for markup: real runs (``drivers_template``), the
pages in a real Chromium."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from edgenas.locks import run_lock
from edgenas.project import Project
from edgenas.report import figures as F
from edgenas.report import pages
from edgenas.report.source import FolderSource

#: a folder name and a table column that would be markup if plotly were given them as they are
HOSTILE = '<b>bold<a href="https:evil.example">link<img src=x onerror=window.pwned=1>'


def _rows(html: str) -> dict[str, str]:
    """The two-column rows of a page's summary table: label -> text."""
    return dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", html))


def _hostile_copy(src, dst) -> None:
    """The run in ``src`` copied to ``dst`` with its latency column renamed ``HOSTILE`` in every file."""
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        if f.suffix in (".json", ".jsonl"):
            f.write_text(f.read_text().replace(json.dumps("raspi4_ms"), json.dumps(HOSTILE)))


def _need(root, *runs):
    if not all((root / "runs" / r).exists() for r in runs):
        pytest.skip("needs ../shared/data/nb201/nb201_hw.csv and nb201_valid.csv")


@pytest.mark.parametrize("run_id, strategy, evaluated", [
    ("sh", "sh", "(4 candidates in the first bracket)"),
    ("hb", "hyperband", "(27 candidates in the first bracket)"),
    ("dm", "darts", "(the network derived at each epoch&#x27;s end; --epochs 2)"),
])
def test_multi_fidelity_and_darts_runs_name_their_strategy(dproj, run_id, strategy, evaluated):
    _need(dproj, run_id)
    src = FolderSource(Project(dproj))
    run = src.run(run_id)
    rows = _rows(pages.run_page(run, src, plotly_src="plotly.js"))
    assert rows["strategy"] == strategy
    assert rows["evaluations"] == f"{len(run.evaluations)} {'over the ladder&#x27;s rungs ' * (strategy != 'darts')}" \
                                  f"{evaluated}"
    assert "None" not in "".join(rows.values())
    from edgenas.api.live import live_page

    live = live_page(run, "plotly.js", None)
    assert f"{run.space}, {strategy}, device " in live
    # a ladder's earlier rungs score on other scales: the page says it plots the last rung's only
    assert ("earlier rungs are counted in the status line, not plotted" in live) is (strategy != "darts")
    twin = dproj / "runs" / f"{run_id}-twin"
    shutil.copytree(dproj / "runs" / run_id, twin)
    compared = pages.compare_page([run, src.run(twin.name)], plotly_src="plotly.js")
    for rid in (run_id, twin.name):
        assert f"<tr><td>{rid}</td><td>{run.space}</td><td>{strategy}</td><td>0</td><td>{len(run.evaluations)} " \
            in compared


def test_a_finished_darts_run_reads_as_the_database_indexed_it(dproj):
    from edgenas.report.compare_data import compare_data
    from edgenas.report.run_data import convergence_data, pareto_data
    from edgenas.store import open_db
    from edgenas.store.runs import list_runs, run_evaluations

    src = FolderSource(Project(dproj))
    assert "dm" in src.run_ids()            # DARTS writes no evaluations.jsonl
    run = src.run("dm")
    best = json.loads((dproj / "runs/dm/best.json").read_text())
    history = json.loads((dproj / "runs/dm/history.json").read_text())["history"]
    assert run.status == "complete" and run.summary()["status"] == "complete"
    # its evaluations: the network derived after each epoch, at that epoch's training loss
    assert [e["latency_ms"] for e in run.evaluations] == [h["derived_ms"] for h in history]
    assert [e["objectives"] for e in run.evaluations] == [{"train_loss": h["train_loss"]} for h in history]
    assert src.evaluations("dm", since=1) == run.evaluations[1:]
    # ... as the experiment database indexed the run
    db = open_db(None, Project(dproj), readonly=True)
    rec = next(r for r in list_runs(db) if r.out_dir.endswith("/runs/dm"))
    stored = run_evaluations(db, rec.id)
    assert [(e.number, dict(e.latency_ms), e.feasible) for e in stored] == \
        [(e["number"], e["latency_ms"], e["feasible"]) for e in run.evaluations]
    assert rec.status == run.status
    # DARTS's objective is a loss: lower is better
    d = pareto_data(run, "local")
    assert not d.higher_is_better and F.pareto_figure(d).layout.yaxis.title.text == "train_loss (lower is better)"
    losses = [h["train_loss"] for h in history]
    assert all(e["feasible"] for e in run.evaluations) and losses[1] < losses[0]
    assert convergence_data(run).best == losses and 1 in [p.number for p in d.front]   # the lowest loss
    assert d.chosen.number == run.best_number == rec.best_number == best["epoch"] - 1
    shutil.copytree(dproj / "runs/dm", dproj / "runs/dm-twin")
    c = compare_data([run, src.run("dm-twin")])   # the reference corner: the worst loss, the shared budget
    assert c.reference["local"] == (max(losses), run.budgets["local"])
    assert c.hypervolume[0].hypervolume == c.hypervolume[1].hypervolume > 0
    rows = _rows(pages.run_page(run, src, plotly_src="plotly.js"))
    assert rows["status"] == "complete"
    assert rows["chosen"] == (f"derived after epoch {best['epoch']} ({best['derivation']}): "
                              f"local {best['latency_ms']['local']:.4g} ms (within budget)")


def test_a_darts_run_chose_the_network_best_json_names(dproj):
    """Repaired to meet a tight budget, the chosen network is not the last epoch's argmax: it is best.json's,
    recorded as the run's last evaluation (after the epochs')."""
    from edgenas.report.run_data import arch_label, pareto_data

    if not (dproj / "runs/dm-tight").exists():
        pytest.skip("DARTS's argmax is the fastest network on this machine's LUT: no budget makes it repair")
    run = FolderSource(Project(dproj)).run("dm-tight")
    best = json.loads((dproj / "runs/dm-tight/best.json").read_text())
    assert best["derivation"] != "argmax" and best["latency_ms"] != run.evaluations[-2]["latency_ms"]
    assert best["latency_ms"] == run.evaluations[-1]["latency_ms"] and best["arch"] == run.evaluations[-1]["arch"]
    d = pareto_data(run, "local")
    assert d.chosen.number == run.best_number == best["number"] == best["epoch"] == len(run.evaluations) - 1
    assert d.chosen.latency_ms == best["latency_ms"]["local"] and d.chosen.feasible == best["within_budget"] is True
    assert d.chosen.label == arch_label(best["arch"])


def test_a_ladder_of_percent_evaluators_has_a_percent_axis(dproj):
    from edgenas.report.run_data import pareto_data

    src = FolderSource(Project(dproj))
    run = src.run("sh")
    assert json.loads((dproj / "runs/sh/best.json").read_text())["metric"].endswith("(%)")
    assert run.objective == "train" and run.objective_unit == "%"
    assert F.pareto_figure(pareto_data(run, "local")).layout.yaxis.title.text == "train (%)"
    running = dproj / "runs" / "sh-running"  # before best.json: the last rung's evaluator says it
    shutil.copytree(dproj / "runs" / "sh", running)
    for f in ("best.json", "pareto.json", "checkpoint.json"):
        (running / f).unlink()
    with run_lock(running):  # a search is writing it (no one holds the lock of a killed one: stopped)
        assert src.run("sh-running").status == "running" and src.run("sh-running").objective_unit == "%"
    assert src.run("evo").objective_unit == ""   # a proxy's score stays a score
    if (dproj / "runs/hb").exists():
        assert src.run("hb").objective_unit == "%"


def test_compare_draws_one_budget_line_per_budget(dproj):
    from edgenas.report.compare_data import BudgetLine, compare_data

    _need(dproj, "nb201-b", "tight")
    src = FolderSource(Project(dproj))
    runs = [src.run(r) for r in ("nb201", "nb201-b", "tight")]
    c = compare_data(runs)
    assert c.budgets["raspi4_ms"] == [BudgetLine(20.0, ["nb201", "nb201-b"]), BudgetLine(12.0, ["tight"])]
    fig = F.compare_fronts_figure(c, "raspi4_ms")
    assert sorted(s.x0 for s in fig.layout.shapes) == [12.0, 20.0]
    assert {a.text for a in fig.layout.annotations} == {"budget 20 ms: nb201, nb201-b", "budget 12 ms: tight"}
    same = compare_data(runs[:2])    # one budget for all: one line, no names
    assert [a.text for a in F.compare_fronts_figure(same, "raspi4_ms").layout.annotations] == ["budget 20 ms"]


def test_a_measurement_id_from_a_file_is_text_in_the_deployment_hover():
    """A measurement's id is any non-empty string in the measurement store: plotly would have made the hover of
    one with ``<b>x</b>`` bold."""
    from edgenas.report.run_data import Deployment

    fig = F.deployment_figure([Deployment("pi", 4.0, 5.0, True, "<b>x</b>and more", -0.2),
                               Deployment("pi", 3.0, 3.0, False, "a&b", 0.0)])
    assert fig.data[0].customdata == (["&lt;b&gt;x&lt;/b&gt;", -20.0, "chosen"], ["a&amp;b", 0.0, ""])


#: what markup in a name would have made of the page: bold text, a link, an image that ran its onerror
INJECTED = """(() => ({
  bold: document.querySelectorAll('.plotly-graph-div svg tspan[style*="bold"]').length,
  links: document.querySelectorAll('.plotly-graph-div svg a').length,
  images: document.querySelectorAll('img').length,
  pwned: window.pwned !== undefined,
  shown: Array.from(document.querySelectorAll('.plotly-graph-div svg text')).filter(
           t => t.textContent.includes(%s)).length
}))()"""


@pytest.mark.slow
def test_names_from_files_are_text_in_the_plots(dproj, cli, browser, tmp_path, monkeypatch):
    """A run folder and a table column named with markup: shown as they are, in legends, ticks, titles."""
    _need(dproj, "tight")
    monkeypatch.chdir(dproj)
    _hostile_copy(dproj / "runs" / "nb201", dproj / "runs" / HOSTILE)
    _hostile_copy(dproj / "runs" / "tight", dproj / "runs" / "tight-h")
    # the run page: the column in the front's axis title; the compare page: the run in legends and a tick too
    for args, shown in (([f"runs/{HOSTILE}"], 1), (["--compare", f"runs/{HOSTILE}", "runs/tight-h"], 4)):
        out = tmp_path / "page.html"
        res = cli("report", *args, "--out", str(out), "--force")
        assert res.code == 0, res.err
        page = browser.open(out.as_uri())
        assert page.errors == [] and page.plots
        found = browser.evaluate(INJECTED % json.dumps(HOSTILE))
        assert found["bold"] == found["links"] == found["images"] == 0 and not found["pwned"], (args, found)
        assert found["shown"] >= shown, (args, found)


@pytest.mark.slow
def test_driver_runs_render_in_chromium(dproj, cli, browser, tmp_path, monkeypatch):
    """The DARTS and ladder pages draw every plot with the right axes; the compare page draws each budget."""
    monkeypatch.chdir(dproj)
    for run_id, ytitle in (("dm", "train_loss (lower is better)"), ("sh", "train (%)")):
        out = tmp_path / f"{run_id}.html"
        assert cli("report", f"runs/{run_id}", "--out", str(out)).code == 0
        page = browser.open(out.as_uri())
        assert page.errors == [] and len(page.plots) >= 2
        front = page.plots[0]
        assert front["marks"] > 0 and front["ytitle"] == [ytitle], front
    if (dproj / "runs/tight").exists():
        out = tmp_path / "compare.html"
        assert cli("report", "--compare", "runs/nb201", "runs/nb201-b", "runs/tight", "--out", str(out)).code == 0
        page = browser.open(out.as_uri())
        assert page.errors == []
        notes = browser.evaluate("Array.from(document.querySelectorAll('.annotation-text')).map(t => t.textContent)")
        assert {"budget 20 ms: nb201, nb201-b", "budget 12 ms: tight"} <= set(notes), notes
