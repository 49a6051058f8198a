"""The live page's settings (the JSON its script polls with), built from run records in memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgenas.api.live import live_page
from edgenas.report.html import script_json as _js_json
from edgenas.report.source import RunData


def _run(config: dict, request: dict | None = None, pareto: dict | None = None, run_id: str = "r1") -> RunData:
    return RunData(id=run_id, path=Path("/nonexistent") / run_id, config=config, request=request, evaluations=[],
                   pareto=pareto, best=None, checkpoint=None)


def _cfg(page: str) -> dict:
    m = re.search(r"const cfg = (.*?);\n", page)
    assert m, page[-3000:]
    return json.loads(m.group(1))


def test_a_predicted_run_polls_its_evaluations_with_its_budget_and_the_token():
    run = _run({"space": "mbv3-tiny", "strategy": "evolution", "devices": [["pi4", 12.5], ["jetson", None]]},
               {"evaluator": "params"})
    page = live_page(run, "/static/plotly.js", "s3cret-token", interval_ms=250)
    assert _cfg(page) == {"api": "/api/runs/r1/evaluations", "run": "/api/runs/r1", "token": "s3cret-token",
                          "objective": "params", "device": "pi4", "budget": 12.5, "interval": 250,
                          "xlabel": "predicted latency on pi4 (ms)", "ylabel": "params (score, higher is better)",
                          "sign": 1}
    assert "mbv3-tiny, evolution, device pi4" in page and "Polls every 250 ms.</p>" in page
    assert "<script src='/static/plotly.js'></script>" in page and "multi-fidelity" not in page


def test_a_table_run_plots_the_measured_column():
    run = _run({"space": "nb201", "strategy": "random", "devices": [["raspi4_ms", 20.0]]},
               {"table": "nb201.csv", "latency_column": "raspi4_ms", "objective": "cifar10_test"})
    cfg = _cfg(live_page(run, "p.js", None))
    assert cfg["xlabel"] == "latency in the table's column raspi4_ms (ms)" and cfg["token"] is None
    assert cfg["ylabel"] == "cifar10_test (%)" and cfg["budget"] == 20.0


def test_a_darts_run_minimises_its_loss():
    run = _run({"kind": "darts", "space": "mbv3-tiny", "devices": [["local", 3.0]]})
    cfg = _cfg(live_page(run, "p.js", None))
    assert cfg["sign"] == -1 and cfg["objective"] == "train_loss" and cfg["ylabel"] == "train_loss (lower is better)"


def test_a_device_without_a_budget_draws_no_budget_line():
    cfg = _cfg(live_page(_run({"space": "s", "strategy": "random", "devices": [["pi4", None]]}), "p.js", None))
    assert cfg["device"] == "pi4" and cfg["budget"] is None


def test_a_multi_fidelity_run_says_which_rung_it_plots():
    run = _run({"space": "mbv3-tiny", "mode": "sh", "devices": [["local", 3.0]],
                "ladder": [{"evaluator": "compression"}, {"evaluator": "train"}]}, {"evaluator": "train"})
    page = live_page(run, "p.js", None)
    assert ("Polls every 1000 ms. A multi-fidelity run: the plots show the evaluations of its last rung (train); "
            "those of earlier rungs are counted in the status line, not plotted.") in page
    assert "mbv3-tiny, sh, device local" in page and _cfg(page)["interval"] == 1000


def test_names_from_run_files_cannot_end_the_script():
    evil = "</script><script>alert(1)</script>&amp;"
    run = _run({"space": "s", "strategy": "random", "devices": [["pi4", 1.0]]}, pareto={"objectives": [evil]})
    page = live_page(run, "p.js", None)
    script = page[page.index("<script>(function"):]
    assert script.count("</script>") == 1 and "<script>alert" not in page
    assert _cfg(page)["objective"] == evil
    assert _js_json("<&>") == '"\\u003c\\u0026\\u003e"' and json.loads(_js_json("<&>")) == "<&>"


def test_a_run_without_devices_has_no_device_and_no_budget():
    page = live_page(_run({"space": "s", "strategy": "random"}), "p.js", None)
    cfg = _cfg(page)
    assert cfg["device"] is None and cfg["budget"] is None and "s, random, device -" in page
    assert cfg["xlabel"] == "latency (ms; no device)"  # it was "predicted latency on None (ms)"
