"""The plot-data functions, checked on values against independent computations from the run files."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from edgenas.locks import run_lock
from edgenas.project import Project
from edgenas.report.source import FolderSource


def _evals(run_dir):
    return [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]


def test_pareto_front_matches_the_run_and_is_non_dominated(rproj):
    from edgenas.report.run_data import pareto_data

    src = FolderSource(Project(rproj))
    run = src.run("evo")
    d = pareto_data(run, "local")
    evs = _evals(rproj / "runs" / "evo")
    assert len(d.points) == len(evs) == 32
    assert d.budget_ms == pytest.approx(json.loads((rproj / "runs/evo/config.json").read_text())["devices"][0][1])
    saved = json.loads((rproj / "runs/evo/pareto.json").read_text())["devices"]["local"]
    assert sorted(p.number for p in d.front) == sorted(p["number"] for p in saved)
    feas = [(e["objectives"]["params"], e["latency_ms"]["local"]) for e in evs if e["feasible"]]
    for p in d.front:  # brute force: nothing feasible is at least as good in both and better in one
        assert p.feasible and p.latency_ms <= d.budget_ms + 1e-12
        assert not any(a >= p.accuracy and lat <= p.latency_ms and (a > p.accuracy or lat < p.latency_ms)
                       for a, lat in feas)
    assert [p.latency_ms for p in d.front] == sorted(p.latency_ms for p in d.front)
    best = json.loads((rproj / "runs/evo/best.json").read_text())
    assert d.chosen is not None and d.chosen.number == best["number"]
    assert d.chosen.accuracy == best["objectives"]["params"]


def test_convergence_is_the_running_best_feasible(rproj):
    from edgenas.report.run_data import convergence_data

    run = FolderSource(Project(rproj)).run("rnd")
    c = convergence_data(run)
    evs = _evals(rproj / "runs" / "rnd")
    expect, best = [], None
    for e in evs:
        if e["feasible"]:
            best = e["objectives"]["params"] if best is None else max(best, e["objectives"]["params"])
        expect.append(best)
    assert c.best == expect and c.numbers == list(range(1, len(evs) + 1))
    assert c.wall_s == [e["wall_s"] for e in evs] and c.wall_s == sorted(c.wall_s)
    assert c.best[-1] == json.loads((rproj / "runs/rnd/best.json").read_text())["objectives"]["params"]


def test_breakdown_shares_sum_to_the_prediction(rproj):
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.report.run_data import breakdown_data
    from edgenas.spaces import get_space

    src = FolderSource(Project(rproj))
    bd = breakdown_data(src.run("evo"), src)
    assert [b.device for b in bd.devices] == ["local"] and not bd.missing
    b = bd.devices[0]
    space = get_space("mbv3-tiny")
    arch = space.from_dict(bd.arch)
    pred = LatencyPredictor(next(t for t in src.luts("local") if t.space == "mbv3-tiny"), space)
    assert b.total_ms == pytest.approx(pred.predict_raw(arch))
    assert b.predicted_ms == pytest.approx(pred.predict(arch))
    assert sum(x.share for x in b.blocks) == pytest.approx(1.0)
    assert sum(x.ms for x in b.blocks) == pytest.approx(b.total_ms)
    assert [x.key for x in b.blocks[1:]] == space.block_keys(arch)
    stages = [x.stage for x in b.blocks]
    for s, depth in enumerate(arch.d):
        assert stages.count(f"stage {s + 1}") == depth
    assert stages[:3] == ["overhead", "stem", "first block"] and stages[-1] == "head"


def test_tabular_run_has_percent_units_and_no_lut_breakdown(rproj):
    from edgenas.report.run_data import breakdown_data, pareto_data

    src = FolderSource(Project(rproj))
    if "nb201" not in src.run_ids():
        pytest.skip("needs ../shared/data/nb201/nb201_hw.csv")
    run = src.run("nb201")
    assert run.objective == "cifar10_test" and run.objective_unit == "%"
    d = pareto_data(run, "raspi4_ms")
    assert d.budget_ms == 20.0 and all(p.latency_ms <= 20.0 for p in d.front)
    assert all(0 < p.accuracy <= 100 for p in d.points)
    bd = breakdown_data(run, src)
    assert bd.devices == [] and "raspi4_ms" in bd.missing
    # the latency is the table's measured column, and the figures and pages say so (they said "predicted")
    from edgenas.api.live import live_page
    from edgenas.report.figures import pareto_figure
    from edgenas.report.pages import run_sections

    assert d.measured and not pareto_data(src.run("evo"), "local").measured
    assert pareto_figure(d).layout.xaxis.title.text == "latency in the table's column raspi4_ms (ms)"
    assert "latency in the table's column raspi4_ms (ms)" in live_page(run, "plotly.js", None)
    deployments = next(x for x in run_sections(run, src) if x.title.startswith("Deployments"))
    assert "a benchmark table's measured column" in deployments.note


def test_deployments_mark_the_chosen_architecture(rproj):
    from edgenas.report.run_data import deployment_data
    from edgenas.store import open_store

    src = FolderSource(Project(rproj))
    deps = deployment_data(src.run("evo"), src)
    stored = open_store(Project(rproj)).list(device="local", space="mbv3-tiny")
    assert {x.measurement_id for x in deps} == {m.id for m in stored} and len(deps) == 3  # 1 deploy + 2 calibrate
    chosen = [x for x in deps if x.chosen]
    best = json.loads((rproj / "runs/evo/best.json").read_text())["arch"]
    assert [m.id for m in stored if m.arch == best] == [x.measurement_id for x in chosen]
    for x in deps:
        assert x.error == pytest.approx(x.predicted_ms / x.measured_ms - 1)
    # the table's "measured" column is the measurement at the table's nominal speed (its header says so)
    nominal = {m.id: m.stats["nominal_ms"] for m in stored}
    assert all(x.measured_ms == pytest.approx(nominal[x.measurement_id]) for x in deps)
    from edgenas.report.pages import run_sections

    html = "".join(s.html or "" for s in run_sections(src.run("evo"), src))
    assert "measured at nominal speed (ms)" in html


def test_hypervolume_grows_with_more_evaluations(rproj):
    from edgenas.report.compare_data import compare_data
    from edgenas.report.source import load_run_dir
    from edgenas.search.pareto import hypervolume

    short = rproj / "runs" / "evo-short"
    shutil.copytree(rproj / "runs" / "evo", short)
    lines = (short / "evaluations.jsonl").read_text().splitlines()[:8]
    (short / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    for f in ("best.json", "pareto.json", "checkpoint.json"):
        (short / f).unlink()
    runs = [load_run_dir(rproj / "runs" / "evo"), load_run_dir(short), load_run_dir(rproj / "runs" / "rnd")]
    with run_lock(short):  # a search is writing it (its lock nobody holds: killed, stopped)
        assert runs[1].status == "running"
    assert runs[1].status == "stopped"
    c = compare_data(runs)
    hv = {r.run: r.hypervolume for r in c.hypervolume}
    assert set(hv) == {"evo", "evo-short", "rnd"}
    assert 0 <= hv["evo-short"] <= hv["evo"] <= 1 and hv["evo"] > 0
    # independently: the same reference box from all runs' feasible points
    pts = np.array([[e["objectives"]["params"], e["latency_ms"]["local"]]
                    for r in runs for e in r.evaluations if e["feasible"]])
    acc_ref, lat_ref = c.reference["local"]
    assert acc_ref == pts[:, 0].min() and lat_ref >= pts[:, 1].max()
    own = np.array([[-e["objectives"]["params"], e["latency_ms"]["local"]] for e in runs[2].evaluations if e["feasible"]])
    box = (pts[:, 0].max() - acc_ref) * (lat_ref - pts[:, 1].min())
    assert hv["rnd"] == pytest.approx(hypervolume(own, np.array([-acc_ref, lat_ref])) / box)


def test_heatmap_cells_are_means_of_the_lut_entries(rproj):
    from edgenas.report.device_data import lut_heatmap
    from edgenas.spaces import get_space

    luts = {t.space: t for t in FolderSource(Project(rproj)).luts("local")}
    assert set(luts) == {"mbv3-tiny", "nb201"}
    assert lut_heatmap(luts["nb201"]) is None   # no kernel x expand layout: the page lists its entries
    lut = luts["mbv3-tiny"]
    h = lut_heatmap(lut)
    cfg = get_space("mbv3-tiny").config
    assert len(h.panels) == len(cfg.resolutions) * cfg.n_stages
    assert h.n_entries == len(lut.entries) and h.n_unstable == len(lut.unstable_keys)
    seen = set()
    for p in h.panels:
        assert p.kernels == list(cfg.ks_choices) and p.expands == list(cfg.e_choices)
        for ki in range(len(p.kernels)):
            for ei in range(len(p.expands)):
                keys = p.keys[ki][ei]
                assert len(keys) == cfg.max_depth
                assert p.ms[ki][ei] == pytest.approx(np.mean([lut.value_ms(lut.entries[k]) for k in keys]))
                assert p.unstable[ki][ei] == sum(not lut.entries[k].stable for k in keys)
                seen.update(keys)
    fixed = [k for k in lut.entries if k not in seen]
    assert all(not k.startswith("expanded_conv") or "input:16x16x8-output:16x16x8" in k for k in fixed)


def test_lut_entries_slowest_first(rproj):
    from edgenas.report.device_data import lut_entries

    lut = next(t for t in FolderSource(Project(rproj)).luts("local") if t.space == "nb201")
    rows = lut_entries(lut)
    assert [k for k, _, _ in rows] and sorted(k for k, _, _ in rows) == sorted(lut.entries)
    assert [ms for _, ms, _ in rows] == sorted((lut.value_ms(e) for e in lut.entries.values()), reverse=True)
    assert {k for k, _, stable in rows if not stable} == set(lut.unstable_keys)


def test_calibration_drift_and_fleet_rows(rproj):
    from edgenas.latency.calibration import apply_calibration
    from edgenas.report.device_data import calibration_data, drift_data, fleet_rows

    src = FolderSource(Project(rproj))
    lut = next(t for t in src.luts("local") if t.space == "mbv3-tiny")
    cal = calibration_data(lut, src)
    assert lut.calibration is not None and lut.calibration.n_points == 3
    assert len(cal.raw_ms) == len(cal.measured_ms) == 3
    assert cal.fit_y == pytest.approx(list(apply_calibration(lut.calibration, cal.fit_x)))
    assert min(cal.fit_x) <= min(cal.raw_ms) and max(cal.fit_x) >= max(cal.raw_ms)
    lines = [json.loads(x) for x in (rproj / "luts/local/verified.jsonl").read_text().splitlines()]
    d = drift_data("local", src)
    assert d.drift == [x["drift"] for x in lines] and d.threshold == [x["threshold"] for x in lines]
    assert len(d.times) >= 1
    rows = fleet_rows(src)
    assert [r.device for r in rows] == ["local"]
    r = rows[0]
    assert r.reachable == "yes" and r.fingerprint == lut.fingerprint_hash[:12]
    assert r.last_drift == lines[-1]["drift"] and r.calibration_error == lut.calibration.residual
    assert r.spaces == ["mbv3-tiny", "nb201"]
    assert 0 <= r.lut_age_h < 1
    # the searches above were recorded in the experiment database: the row counts its stale runs
    from edgenas.search.stale import find_stale
    from edgenas.store import open_db

    assert r.stale_runs == str(len(find_stale(open_db(None, Project(rproj)), Project(rproj), device="local")[0]))


def test_running_run_uses_the_best_so_far(rproj):
    from edgenas.report.run_data import breakdown_data, pareto_data

    short = rproj / "runs" / "evo-running"
    shutil.copytree(rproj / "runs" / "evo", short)
    full = (short / "evaluations.jsonl").read_text().splitlines()
    lines = full[:12]
    (short / "evaluations.jsonl").write_text("\n".join(lines) + "\n" + full[12][:15])  # torn last line
    for f in ("best.json", "pareto.json", "checkpoint.json"):
        (short / f).unlink()
    src = FolderSource(Project(rproj))
    run = src.run("evo-running")
    with run_lock(short):  # a search is writing it
        assert run.status == "running" and len(run.evaluations) == 12
    evs = [json.loads(x) for x in lines]
    best = max((e for e in evs if e["feasible"]), key=lambda e: (e["objectives"]["params"], -e["number"]))
    assert pareto_data(run, "local").chosen.number == best["number"]
    assert breakdown_data(run, src).arch == best["arch"]
    assert (short / "evaluations.jsonl").read_text().endswith(full[12][:15])   # readers never write


def test_fleet_probe_reports_unreachable_devices(rproj, cli, monkeypatch):
    import socket

    from edgenas.fleet.inventory import load_inventory
    from edgenas.fleet.status import fleet_status
    from edgenas.report.device_data import fleet_rows

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed once the block ends: nothing listens there
    (rproj / "profiles").mkdir(exist_ok=True)
    (rproj / "profiles" / "fleet.toml").write_text('[fleet]\ndevices = ["local", "gone"]\n')
    (rproj / "profiles" / "gone.toml").write_text(
        f'[device]\nname = "gone"\nhost = "127.0.0.1"\nport = {port}\nuser = "nobody"\n'
        'runtime = "onnxruntime"\nconnect_timeout_s = 3\ncall_timeout_s = 10\n')
    project = Project(rproj)
    profiles = load_inventory(project).select(None)
    status = {s.device: s for s in fleet_status(project, profiles, [])}
    rows = {r.device: r for r in fleet_rows(FolderSource(project), [p.name for p in profiles], probe=status)}
    assert rows["local"].reachable == "yes" and rows["local"].fingerprint != "-"
    assert rows["gone"].reachable == "no" and rows["gone"].note and rows["gone"].fingerprint == "-"
    monkeypatch.chdir(rproj)
    res = cli("report", "--fleet", "--probe", "--out", "fleet.html", "--json")
    assert res.code == 0, res.err
    html = (rproj / "fleet.html").read_text()
    assert "<td>gone</td><td>no</td>" in html and "<td>local</td><td>yes</td>" in html


def test_a_damaged_last_refresh_record_leaves_its_good_rows(tmp_path):
    """A row whose device was a list crashed ``report --fleet`` (unhashable type); such rows are left out."""
    from edgenas.fleet.refresh import last_refresh_path
    from edgenas.report.device_data import fleet_rows

    project = Project(tmp_path)
    path = last_refresh_path(project)
    path.parent.mkdir(parents=True)
    good = {"device": "dev-a", "space": "nb201", "status": "failed", "reason": "unreachable"}
    path.write_text(json.dumps([1, None, {"device": ["a"], "space": "nb201", "status": "failed"}, good]))
    (row,) = fleet_rows(FolderSource(project), ["dev-a"])
    assert row.reachable == "no" and "unreachable" in row.note


def _running_two_device_run(tmp_path, minimise):
    """Six evaluations of a running search on devices a (10 ms budget) and b (1 ms): #1, #2, #3 and #5 tie at
    the best feasible accuracy (#4 is more accurate but infeasible). As shares of the budgets #2 and #3 are
    the fastest (0.5 + 0.2); #1 is faster on a, #5 faster still on a but with no b latency (infinite)."""
    from edgenas.report.source import load_run_dir

    run = tmp_path / "running"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"space": "nb201", "strategy": "random", "seed": 0,
                                                 "devices": [["a", 10.0], ["b", 1.0]]}))
    (run / "request.json").write_text(json.dumps({"space": "nb201", "table": "t.csv", "objective": "acc",
                                                  "minimise": minimise}))
    arch = {"arch": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"}
    rows = [(90.0, {"a": 2.0, "b": 0.9}, 1.0, True), (91.0, {"a": 1.0, "b": 0.95}, 1.0, True),
            (91.0, {"a": 5.0, "b": 0.2}, 1.0, True), (91.0, {"a": 5.0, "b": 0.2}, 0.5, True),
            (95.0, {"a": 0.1, "b": 0.1}, 0.1, False), (91.0, {"a": 0.5}, 0.1, True)]
    (run / "evaluations.jsonl").write_text("".join(
        json.dumps({"number": n, "arch": arch, "objectives": {"acc": acc, "params": params}, "latency_ms": lat,
                    "feasible": ok}) + "\n" for n, (acc, lat, params, ok) in enumerate(rows)))
    return load_run_dir(run)


@pytest.mark.parametrize("minimise, chosen", [(["params"], 3), ([], 2)])
def test_a_running_searchs_best_so_far_is_chosen_as_the_search_chooses_it(tmp_path, minimise, chosen):
    """The plots of a running search marked, per device, the most accurate evaluation fastest on that device
    (#5 on a, #2 on b), not the one the search chooses when it ends (``results.best_key``): the latencies on
    every device as shares of their budgets (#2 and #3), then the extra objectives (params: #3), then the first."""
    from edgenas.report.run_data import pareto_data

    run = _running_two_device_run(tmp_path, minimise)
    with run_lock(tmp_path / "running"):  # a search is writing it
        assert run.status == "running" and run.objective == "acc"
    assert [pareto_data(run, d).chosen.number for d in ("a", "b")] == [chosen, chosen]


# ------------------------------------------------------------------ on hand-made runs (no project)
def _made_run(evaluations, config=None, request=None, best=None):
    from pathlib import Path

    from edgenas.report.source import RunData

    return RunData(id="r", path=Path("r"), config={"space": "nb201", "devices": [["pi", 10.0]], **(config or {})},
                   request=request, evaluations=evaluations, pareto=None, best=best, checkpoint=None)


def _ev(number, score, ms, feasible=True, key="acc", **extra):
    return {"number": number, "objectives": {key: score}, "latency_ms": {"pi": ms}, "feasible": feasible,
            "arch": {"arch": f"a{number}"}, **extra}


def test_pareto_of_a_running_search_by_hand():
    from edgenas.report.run_data import pareto_data

    evs = [_ev(0, 50.0, 5.0), _ev(1, 60.0, 8.0), _ev(2, 55.0, 9.0), _ev(3, 70.0, 12.0, feasible=False),
           _ev(4, 60.0, 8.0), _ev(5, float("nan"), 1.0), {"number": 6, "objectives": {"acc": 40.0}, "feasible": True}]
    d = pareto_data(_made_run(evs, request={"evaluator": "acc"}), "pi")
    assert [p.number for p in d.points] == [0, 1, 2, 3, 4]
    assert [p.number for p in d.front] == [0, 1, 4]          # 2 is dominated by 1; 4 ties 1 (both kept)
    assert d.chosen.number == 1 and d.chosen.label == "a1"   # the best so far; of equals, the first
    assert (d.budget_ms, d.objective, d.unit, d.higher_is_better, d.measured) == (10.0, "acc", "", True, False)
    assert not pareto_data(_made_run([_ev(0, 50.0, 12.0, feasible=False)]), "pi").chosen   # nothing feasible yet


@pytest.mark.parametrize("best_ms, budget, feasible", [(11.0, 10.0, False), (10.0, 10.0, True), (40.0, None, True)])
def test_pareto_of_a_darts_run_by_hand(best_ms, budget, feasible):
    """A loss: lower is better; the chosen point is best.json's network at its latency."""
    from edgenas.report.run_data import pareto_data

    evs = [_ev(0, 1.0, 5.0, key="train_loss"), _ev(1, 0.5, 8.0, key="train_loss"), _ev(2, 0.7, 9.0, key="train_loss")]
    run = _made_run(evs, config={"kind": "darts", "devices": [["pi", budget]]},
                    best={"number": 1, "latency_ms": {"pi": best_ms}, "arch": {"arch": "best"}})
    d = pareto_data(run, "pi")
    assert [p.number for p in d.front] == [0, 1] and not d.higher_is_better
    assert (d.chosen.number, d.chosen.latency_ms, d.chosen.feasible, d.chosen.label) == (1, best_ms, feasible, "best")
    assert d.chosen.accuracy == 0.5


def test_convergence_by_hand():
    from edgenas.report.run_data import convergence_data

    evs = [_ev(0, 50.0, 12.0, feasible=False, wall_s=1.5), _ev(1, 40.0, 5.0), _ev(2, 60.0, 5.0, feasible=False),
           _ev(3, 45.0, 5.0, wall_s=4.0), _ev(4, 42.0, 5.0)]
    c = convergence_data(_made_run(evs, request={"evaluator": "acc"}))
    assert c.best == [None, 40.0, 40.0, 45.0, 45.0] and c.numbers == [1, 2, 3, 4, 5]
    assert c.wall_s == [1.5, 0.0, 0.0, 4.0, 0.0]
    losses = [_ev(i, x, 5.0, key="train_loss") for i, x in enumerate((1.0, 0.5, 0.7))]
    c = convergence_data(_made_run(losses, config={"kind": "darts"}))
    assert c.best == [1.0, 0.5, 0.5] and not c.higher_is_better


def test_compare_data_by_hand():
    """Hypervolumes as fractions of the shared box, worked out by hand on two runs of two devices."""
    from dataclasses import replace

    from edgenas.report.compare_data import compare_data

    def ev(number, score, ms, feasible=True):   # "x": twice the latency on "pi"; nothing on "z"
        e = _ev(number, score, ms, feasible)
        return {**e, "latency_ms": {"pi": ms, "x": 2 * ms}}

    a = _made_run([ev(0, 50.0, 4.0), ev(1, 60.0, 8.0), ev(2, 70.0, 12.0, feasible=False)],
                  config={"devices": [["z", 3.0], ["pi", 10.0], ["w", 1.0], ["x", None]]}, request={"evaluator": "acc"})
    b = replace(_made_run([ev(0, 40.0, 2.0), ev(1, 55.0, 6.0)], request={"evaluator": "acc"},
                          config={"devices": [["pi", 10.0], ["x", None], ["z", 3.0], ["q", 5.0]]}), id="b")
    c = compare_data([a, b])
    assert c.runs == ["r", "b"] and c.devices == ["z", "pi", "x"] and (c.objective, c.higher_is_better) == ("acc", True)
    # pi: accuracy 40..60, latency 2 up to the shared budget 10: a box of 20 x 8 = 160; r's front dominates
    # 10 x 6 + 20 x 2 - 10 x 2 = 80 of it, b's 15 x 4 = 60.  x: no budget, so latency 4..16, a box of 20 x 12;
    # r's front dominates 10 x 8, b's 15 x 4.  z: no latency, no row; w, q: not a device of both runs.
    assert c.reference == {"pi": (40.0, 10.0), "x": (40.0, 16.0)}
    assert [(h.run, h.device, h.n_front) for h in c.hypervolume] == [("r", "pi", 2), ("b", "pi", 2), ("r", "x", 2),
                                                                     ("b", "x", 2)]
    assert [h.hypervolume for h in c.hypervolume] == pytest.approx([0.5, 0.375, 1 / 3, 0.25])
    # budgets that differ: the box ends at the largest latency seen, 8 (20 x 6; r: 10 x 4, b: 15 x 2)
    c = compare_data([a, replace(b, config={"devices": [["pi", 20.0]]})])
    assert c.reference == {"pi": (40.0, 8.0)} and [h.hypervolume for h in c.hypervolume] == pytest.approx([1 / 3, 0.25])
    # numbers at the ends of the float range: the box (2e308 x 1e308) was inf, its shares nan, with numpy's
    # overflow warnings on the terminal
    huge = _made_run([ev(0, -1e308, 1e-3), ev(1, 1e308, 5e307), ev(2, 0.0, 0.5)], request={"evaluator": "acc"},
                     config={"devices": [["pi", 1e308]]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hv = [h.hypervolume for h in compare_data([huge, replace(huge, id="b", evaluations=huge.evaluations[:1])])
              .hypervolume]
    # the box: accuracy -1e308..1e308, latency 1e-3..1e308. Of r's points, (0, 0.5 ms) dominates the lower half of
    # the accuracies at every latency, (1e308, 5e307 ms) the upper half from 5e307 ms on, half the latencies: 3/4
    assert hv == pytest.approx([0.75, 0.0])
    # one feasible point in both runs: an empty box, no hypervolume
    one = _made_run([ev(0, 50.0, 4.0)], request={"evaluator": "acc"})
    assert [h.hypervolume for h in compare_data([one, replace(one, id="b")]).hypervolume] == [0.0, 0.0]
    # losses: lower is better; the worst loss 1.0 and the budget 10 are the reference corner of a 0.5 x 8 box
    losses = [_ev(0, 1.0, 4.0, key="train_loss"), _ev(1, 0.5, 8.0, key="train_loss")]
    c = compare_data([_made_run(losses, config={"kind": "darts"}),
                      replace(_made_run([_ev(0, 0.8, 2.0, key="train_loss")], config={"kind": "darts"}), id="b")])
    assert (c.objective, c.higher_is_better, c.reference) == ("train_loss", False, {"pi": (1.0, 10.0)})
    assert [h.hypervolume for h in c.hypervolume] == pytest.approx([0.25, 0.4])
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_data([])


@pytest.mark.parametrize("arch, label", [
    (None, ""), ("x", ""), ({"arch": "|nor_conv_3x3~0|"}, "|nor_conv_3x3~0|"), ({}, ""),
    ({"r": 160, "d": [2], "ks": [3], "e": [4], "space": "mbv3"}, "r=160 d=[2] ks=[3] e=[4]"), ({"ks": [5]}, "ks=[5]"),
])
def test_arch_label(arch, label):
    from edgenas.report.run_data import arch_label

    assert arch_label(arch) == label


def test_block_stages_by_hand():
    from types import SimpleNamespace

    from edgenas.report.run_data import block_stages

    cell = SimpleNamespace(block_keys=lambda a: ["stem", "x-op-s8-conv", "x-op-sep-conv", "x-reduce-1"])
    assert block_stages(cell, object()) == ["block", "cell 8x8", "cell", "reduce"]
    assert block_stages(cell, SimpleNamespace(d=[1])) == ["block", "cell 8x8", "cell", "reduce"]   # no config
    mbv3 = SimpleNamespace(config={}, block_keys=lambda a: ["k"] * 7)
    assert block_stages(mbv3, SimpleNamespace(d=[1, 2])) == ["stem", "first block", "stage 1", "stage 2", "stage 2",
                                                             "head", "head"]
    short = SimpleNamespace(config={}, block_keys=lambda a: ["k"] * 3)
    assert block_stages(short, SimpleNamespace(d=[1, 2])) == ["stem", "first block", "stage 1"]


def test_deployments_skip_what_cannot_be_compared():
    from types import SimpleNamespace

    from edgenas.report.run_data import deployment_data

    def m(mid, predicted, **stats):
        return SimpleNamespace(id=mid, predicted_ms=predicted, stats=stats, arch={})

    ms = [m("a", 4.0, nominal_ms=5.0, median_ms=9.0), m("b", 4.0, median_ms=8.0), m("c", None, median_ms=5.0),
          m("d", 4.0, median_ms=0.0), m("e", 4.0, median_ms=-1.0), m("f", 4.0, median_ms=float("inf")), m("g", 4.0)]
    src = SimpleNamespace(measurements=lambda device, space: ms if (device, space) == ("pi", "nb201") else [])
    deps = deployment_data(_made_run([]), src)
    assert [(x.device, x.measurement_id, x.predicted_ms, x.measured_ms, x.chosen) for x in deps] == [
        ("pi", "a", 4.0, 5.0, False), ("pi", "b", 4.0, 8.0, False)]
    assert [x.error for x in deps] == pytest.approx([-0.2, -0.5])


def test_no_breakdown_before_a_feasible_architecture():
    from edgenas.report.run_data import BreakdownData, breakdown_data

    run = _made_run([_ev(0, 50.0, 12.0, feasible=False)], config={"devices": [["pi", 10.0], ["gpu", 2.0]]})
    assert breakdown_data(run, None) == BreakdownData(None, [], {"pi": "no feasible architecture yet",
                                                                 "gpu": "no feasible architecture yet"})


# ---------------------------------------------------------------- device and fleet pages on hand-made data
def _stats(ms, stable=True):
    from edgenas.latency.lut import EntryStats

    return EntryStats(n=10, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms, min_ms=ms, max_ms=ms,
                      stable=stable)


def _made_lut(space, entries, device="pi", fp="ab" * 32, calibration=None, created_at=1.0):
    from edgenas.latency.lut import Lut

    return Lut(device=device, space=space, fingerprint={"m": 1}, fingerprint_hash=fp, runtime="onnxruntime",
               precision="fp32", threads=1, protocol={}, overhead=_stats(0.1), entries=entries,
               calibration=calibration, created_at=created_at)


def test_heatmap_by_hand_on_a_space_of_three_resolutions_and_five_stages():
    from edgenas.report.device_data import lut_heatmap
    from edgenas.spaces import get_space

    fixed, slots = get_space("mbv3-small")._keys_at(28)
    stage2 = slots[4:8]   # 4 block slots a stage; the last three have the same shape, so the same key
    a, b = stage2[0][1][2], stage2[1][1][2]   # kernel 5, expand 6
    c = stage2[0][0][0]   # kernel 3, expand 3: its other slots' key is not in the table
    assert [s[1][2] for s in stage2] == [a, b, b, b] and len({a, b, c, fixed[0]}) == 4
    lut = _made_lut("mbv3-small", {a: _stats(1.0), b: _stats(4.0, stable=False), c: _stats(2.0),
                                   fixed[0]: _stats(9.0, stable=False)})
    h = lut_heatmap(lut)
    assert (h.device, h.space, h.fingerprint) == ("pi", "mbv3-small", "ab" * 32)
    assert (h.resolutions, h.stages) == ([24, 28, 32], 5)
    assert (h.n_unstable, h.n_entries) == (2, 4)
    assert [(p.resolution, p.stage) for p in h.panels] == [(r, s) for r in (24, 28, 32) for s in (1, 2, 3, 4, 5)]
    for p in h.panels:
        assert p.kernels == [3, 5, 7] and p.expands == [3, 4, 6]
        filled = {(1, 2): (3.25, 3), (0, 0): (2.0, 0)} if (p.resolution, p.stage) == (28, 2) else {}
        for ki in range(3):
            for ei in range(3):
                ms, bad = filled.get((ki, ei), (None, 0))
                assert p.ms[ki][ei] == ms if ms is not None else np.isnan(p.ms[ki][ei])   # (1 + 3 x 4) / 4 slots
                assert p.unstable[ki][ei] == bad   # b's three slots
                assert len(p.keys[ki][ei]) == 4
    (p,) = [p for p in h.panels if (p.resolution, p.stage) == (28, 2)]
    assert p.keys[1][2] == [a, b, b, b]


def test_no_heatmap_without_both_a_config_and_a_block_layout(monkeypatch):
    from types import SimpleNamespace

    from edgenas.report.device_data import lut_heatmap

    lut = _made_lut("mbv3-tiny", {})
    for space in (SimpleNamespace(config=SimpleNamespace()), SimpleNamespace(_keys_at=lambda r: 1 / 0)):
        monkeypatch.setattr("edgenas.spaces.get_space", lambda name: space)
        assert lut_heatmap(lut) is None


def test_the_page_data_are_frozen():
    import dataclasses

    from edgenas.report import compare_data as cd
    from edgenas.report import device_data as dd

    for cls in (dd.HeatPanel, dd.LutHeatmap, dd.CalibrationData, dd.DriftData, dd.FleetRow, cd.HypervolumeRow,
                cd.BudgetLine, cd.CompareData):
        obj = cls(*[None] * len([f for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]))
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.device = "other"


def test_lut_entries_by_hand():
    from edgenas.report.device_data import lut_entries

    lut = _made_lut("nb201", {"a": _stats(1.0), "b": _stats(3.0, stable=False), "c": _stats(2.0)})
    assert lut_entries(lut) == [("b", 3.0, False), ("c", 2.0, True), ("a", 1.0, True)]


def test_calibration_data_by_hand():
    """Measurements of another table are left out; an architecture the table cannot predict falls back to the
    stored raw prediction; the measured time is the nominal one where recorded; the fit line runs from 5% below
    the lowest raw sum to 5% above the highest in 50 points."""
    import math
    from types import SimpleNamespace

    from edgenas.latency.lut import Calibration
    from edgenas.report.device_data import calibration_data

    def m(fp, raw, **stats):
        return SimpleNamespace(fingerprint_hash=fp, arch={}, predicted_raw_ms=raw, stats=stats)

    ms = [m("ab" * 32, 2.0, nominal_ms=3.0, median_ms=9.0), m("cd" * 32, 1.0, median_ms=1.0),
          m("ab" * 32, 4.0, median_ms=5.0), m("ab" * 32, None, nominal_ms=None, median_ms=7.0)]
    src = SimpleNamespace(measurements=lambda device, space: ms if (device, space) == ("pi", "mbv3-tiny") else [])
    cal = Calibration(model="loglinear", params={"a": math.log(2.0), "b": 1.0}, n_points=3, residual=0.125)
    d = calibration_data(_made_lut("mbv3-tiny", {}, calibration=cal), src)
    assert (d.device, d.space, d.raw_ms[:2], d.measured_ms) == ("pi", "mbv3-tiny", [2.0, 4.0], [3.0, 5.0, 7.0])
    assert len(d.raw_ms) == 3 and math.isnan(d.raw_ms[2])
    assert len(d.fit_x) == 50 and d.fit_x[0] == pytest.approx(1.9) and d.fit_x[-1] == pytest.approx(4.2)
    assert d.fit_x[1] - d.fit_x[0] == pytest.approx(2.3 / 49)
    assert d.fit_y == pytest.approx([2 * x for x in d.fit_x])   # e^a x^b
    assert (d.params, d.residual) == ({"a": math.log(2.0), "b": 1.0}, 0.125)
    bare = calibration_data(_made_lut("mbv3-tiny", {}), src)   # no calibration: the points and no line
    assert (bare.raw_ms[:2], bare.fit_x, bare.fit_y, bare.params, bare.residual) == ([2.0, 4.0], [], [], {}, None)
    none = calibration_data(_made_lut("mbv3-tiny", {}, device="other", calibration=cal), src)   # nothing measured
    assert (none.raw_ms, none.measured_ms, none.fit_x, none.fit_y) == ([], [], [], [])


def test_drift_data_by_hand():
    """A drift check's line is file data: a line without a finite drift and a time from 1970 to 9999-01-01 UTC
    is left out, a threshold or speed change that is not a finite number reads as none (a threshold of "x",
    a time of NaN or 1e300 were internal errors of ``report --device``)."""
    from types import SimpleNamespace

    from edgenas.report.device_data import drift_data

    rows = [{"time": 10, "drift": 0.5, "threshold": 0.25, "speed_change": -0.5, "rescaled": True, "space": "nb201"},
            {"time": "10", "drift": 0.5}, {"time": 11.0, "drift": None}, {"drift": 0.5}, {"time": 11, "drift": True},
            {"time": float("nan"), "drift": 0.5}, {"time": 11, "drift": float("inf")}, {"time": -1, "drift": 0.5},
            {"time": 1e300, "drift": 0.5}, {"time": 253370764800 + 1, "drift": 0.5},
            {"time": 12.5, "drift": 1, "threshold": "x", "speed_change": "fast"},
            {"time": 0, "drift": 0.0, "threshold": [1], "speed_change": 1},
            {"time": 253370764800, "drift": 0.5, "threshold": float("nan"), "speed_change": float("-inf")}]
    d = drift_data("pi", SimpleNamespace(verified=lambda device: rows if device == "pi" else []))
    assert d.device == "pi" and d.times == [10.0, 12.5, 0.0, 253370764800.0] and d.drift == [0.5, 1.0, 0.0, 0.5]
    assert d.threshold == [0.25, 0.0, 0.0, 0.0] and d.speed_change == [-0.5, None, 1.0, None]
    assert d.rescaled == [True, False, False, False] and d.spaces == ["nb201", "", "", ""]


def test_report_device_and_fleet_read_damaged_drift_checks(tmp_path, cli, monkeypatch):
    from edgenas.latency.store import LutStore

    project = Project(tmp_path / "proj")
    LutStore(project.luts_dir).save(_made_lut("mbv3-tiny", {"k": _stats(1.0)}))
    (project.luts_dir / "pi" / "verified.jsonl").write_text(
        '{"time": NaN, "drift": 0.1}\n{"time": 1e300, "drift": 0.1}\n{"time": 5, "drift": 0.1, "threshold": "x"}\n')
    monkeypatch.setenv("EDGENAS_PROJECT", str(project.root))
    monkeypatch.chdir(tmp_path)
    for args in (["--device", "pi"], ["--fleet"]):
        res = cli("report", *args, "--out", "r.html", "--force")
        assert res.code == 0 and "internal error" not in res.err, res.err
        assert "drift" in (tmp_path / "r.html").read_text()


def test_fleet_rows_by_hand():
    import time
    from types import SimpleNamespace

    from edgenas.latency.lut import Calibration
    from edgenas.report.device_data import fleet_rows

    def cal(residual):
        return Calibration(model="loglinear", params={"a": 0.0, "b": 1.0}, n_points=3, residual=residual)

    luts = {"a": [_made_lut("nb201", {}, device="a", fp="12" * 32, calibration=cal(0.1), created_at=1000.0),
                  _made_lut("mbv3-tiny", {}, device="a", fp="34" * 32, calibration=cal(0.3), created_at=500.0),
                  _made_lut("mbv3-small", {}, device="a", created_at=100.0)],
            "b": [_made_lut("nb201", {}, device="b", created_at=time.time() - 1800)], "c": [], "d": []}
    verified = {"a": [{"time": 1, "drift": 0.2, "threshold": 0.4}, {"time": 2, "drift": 0.3, "threshold": 0.5}]}
    src = SimpleNamespace(
        devices=lambda: ["a", "b", "c", "d"], luts=lambda d: luts[d], verified=lambda d: verified.get(d, []),
        last_refresh=lambda: [{"device": "a", "status": "verified"}, {"device": "b", "status": "failed"},
                              {"device": "d", "status": "failed", "reason": "timed out"}],
        stale_runs=lambda d: {"a": 3, "b": 0}.get(d))
    rows = {r.device: r for r in fleet_rows(src, now=1000.0 + 3 * 3600)}
    assert list(rows) == ["a", "b", "c", "d"]
    a = rows["a"]
    assert (a.reachable, a.note, a.fingerprint, a.lut_age_h) == ("yes", "", "12" * 6, 3.0)
    assert (a.last_drift, a.last_threshold, a.calibration_error) == (0.3, 0.5, 0.3)
    assert (a.spaces, a.stale_runs) == (["mbv3-small", "mbv3-tiny", "nb201"], "3")
    assert (rows["b"].reachable, rows["b"].note, rows["b"].stale_runs) == ("no", "", "0")
    assert (rows["b"].last_drift, rows["b"].last_threshold, rows["b"].calibration_error) == (None, None, None)
    assert (rows["c"].reachable, rows["c"].fingerprint, rows["c"].lut_age_h, rows["c"].spaces) == (
        "unknown", "-", None, [])
    assert rows["c"].stale_runs == "n/a (no experiment database)" and "fleet refresh" in rows["c"].note
    assert (rows["d"].reachable, rows["d"].note) == ("no", "timed out")
    assert fleet_rows(src)[1].lut_age_h == pytest.approx(0.5, abs=0.01)   # now: the clock
    probe = {"a": SimpleNamespace(reachable=False, error="refused"), "c": SimpleNamespace(reachable=True, error=None)}
    rows = {r.device: r for r in fleet_rows(src, ["c", "a", "ghost", "b"], now=0.0, probe=probe)}
    assert list(rows) == ["c", "a", "ghost", "b"]
    assert [(r.reachable, r.note) for r in rows.values()] == [("yes", ""), ("no", "refused"),
                                                              ("unknown", rows["ghost"].note), ("no", "")]
    assert (rows["ghost"].fingerprint, rows["ghost"].spaces, rows["ghost"].last_drift) == ("-", [], None)


def _plots(run):
    """What the run page plots of ``run`` (every device's Pareto data, the convergence, the running best's arch)."""
    from edgenas.report.run_data import _running_best, convergence_data, pareto_data

    return ({d: pareto_data(run, d) for d in run.budgets}, convergence_data(run), _running_best(run),
            run.objective, run.n_evaluations)


def test_the_report_reads_a_log_into_columns_and_plots_the_same_as_from_its_records(tmp_path):
    """``report`` reads the log into columns (100,000 records as dicts held 200 MB): the same points, front,
    chosen point, curve and running best as the records give, on a log with an objective and a device some
    records lack, values that are null, NaN or infinite, an extra objective first, repeated architectures."""
    from edgenas.report.source import load_run_dir

    inf, nan = float("inf"), float("nan")
    recs = [{"objectives": {"params": 3.0}, "latency_ms": {"pi": 4.0}, "feasible": True},
            {"objectives": {"params": 2.0, "acc": 50.0}, "latency_ms": {"pi": 5.0}, "feasible": True, "wall_s": 1.5},
            {"objectives": {"acc": None}, "latency_ms": {"pi": 3.0, "nano": 1.0}, "feasible": True},
            {"objectives": {"acc": 60.0}, "latency_ms": {"pi": inf, "nano": 2.0}, "feasible": False},
            {"objectives": {"acc": 61.0}, "latency_ms": {"pi": 12.0, "nano": 2.0}, "feasible": False},
            {"objectives": {"acc": nan}, "latency_ms": {"pi": 1.0}, "feasible": True},
            {"objectives": {"acc": 55.0, "params": 1.0}, "latency_ms": {"pi": 7.0, "nano": None}, "feasible": True},
            {"objectives": {"acc": 60.0}, "latency_ms": {"pi": 8.0, "nano": 3.0}, "feasible": True, "wall_s": 9.0}]
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"space": "nb201", "devices": [["pi", 10.0], ["nano", None]]}))
    (run_dir / "request.json").write_text(json.dumps({"space": "nb201", "minimise": ["params"]}))
    with open(run_dir / "evaluations.jsonl", "w") as log:
        for i, r in enumerate(recs * 3):   # each architecture three times
            log.write(json.dumps({"number": i, "arch": {"space": "nb201", "arch": f"|a{i % len(recs)}~0|"},
                                  "constraints": {}, **r}) + "\n")
    records, columns = load_run_dir(run_dir), load_run_dir(run_dir, columns=True)
    assert columns.evaluations == [] and len(records.evaluations) == 24 and columns.columns is not None
    assert repr(_plots(columns)) == repr(_plots(records))           # repr: NaN compares unequal to itself
    pareto, conv, running, objective, n = _plots(columns)
    assert (objective, n, running) == ("acc", 24, 7)    # 60 as #3, feasible (#3, infinitely slow on pi, is not)
    assert [p.number for p in pareto["pi"].front] == [1, 9, 17, 6, 14, 22, 7, 15, 23]
    assert [p.number for p in pareto["pi"].points][:4] == [1, 4, 6, 7] and len(pareto["nano"].points) == 9
    assert conv.wall_s[:2] == [0.0, 1.5] and conv.best[:4] == [None, 50.0, 50.0, 50.0] and conv.best[-1] == 60.0
    cols = columns.columns
    assert cols.archs[0] is cols.archs[8] is cols.archs[16] and cols.archs[0] == {"space": "nb201", "arch": "|a0~0|"}
    assert cols.labels[1] is cols.labels[9] and cols.labels[1] == "|a1~0|"

def test_a_damaged_log_is_the_same_error_read_into_columns(tmp_path):
    from edgenas.errors import InputError
    from edgenas.report.source import load_run_dir

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"space": "nb201", "devices": [["pi", 10.0]]}))
    good = {"arch": {"arch": "x"}, "objectives": {"acc": 1.0}, "latency_ms": {"pi": 1.0}, "feasible": True}
    for bad in ("{not json", json.dumps({**good, "number": 5}), json.dumps({**good, "number": 1, "feasible": 1})):
        (run_dir / "evaluations.jsonl").write_text(json.dumps({**good, "number": 0}) + "\n\n" + bad + "\n")
        errors = []
        for columns in (False, True):
            with pytest.raises(InputError) as exc:
                load_run_dir(run_dir, columns=columns)
            errors.append(str(exc.value))
        assert errors[0] == errors[1] and "evaluations.jsonl" in errors[0]


def test_the_projects_runs_plot_the_same_from_columns(rproj):
    from edgenas.report.source import load_run_dir

    runs = [p for p in (rproj / "runs").iterdir() if (p / "evaluations.jsonl").exists()]
    assert len(runs) >= 3
    for r in runs:
        assert repr(_plots(load_run_dir(r, columns=True))) == repr(_plots(load_run_dir(r))), r.name


def test_a_lut_of_zero_costs_gives_no_breakdown_and_a_bad_measurement_row_no_deployment():
    """A table whose every cost is 0 ms (edited: a device's timings are > 0) was a ZeroDivisionError, and one
    measurement row whose architecture is not of the space made every run page of the space one error
    naming no row (the device page lists such a row)."""
    import dataclasses
    from types import SimpleNamespace

    from edgenas.report.run_data import breakdown_data, deployment_data
    from edgenas.spaces import get_space

    space = get_space("nb201")
    arch = space.to_dict(space.sample(np.random.default_rng(0)))
    zero = dataclasses.replace(_made_lut("nb201", {k: _stats(0.0) for k in space.key_vocab()}), overhead=_stats(0.0))
    run = _made_run([], best={"arch": arch})
    bd = breakdown_data(run, SimpleNamespace(luts=lambda device: [zero]))
    assert bd.devices == [] and bd.missing == {"pi": "its LUT gives this network 0 ms (no block has a cost): "
                                                     "rebuild the table"}
    ms = [SimpleNamespace(id="bad", predicted_ms=4.0, stats={"median_ms": 5.0}, arch={"arch": "|conv~9|"}),
          SimpleNamespace(id="good", predicted_ms=4.0, stats={"median_ms": 5.0}, arch=arch)]
    deps = deployment_data(run, SimpleNamespace(measurements=lambda device, space: ms))
    assert [(x.measurement_id, x.chosen) for x in deps] == [("good", True)]
