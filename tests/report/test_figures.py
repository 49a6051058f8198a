"""The plotly figures on hand-made plot data: names from files as text, axis titles, ranges, budget lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgenas.report import figures as F
from edgenas.report.compare_data import BudgetLine, CompareData
from edgenas.report.device_data import CalibrationData, DriftData
from edgenas.report.run_data import BlockShare, Breakdown, BreakdownData, ParetoData, Point


def test_plot_text_escapes_markup_but_not_quotes():
    assert F.plot_text('<b>"a" & \'b\'</b>') == '&lt;b&gt;"a" &amp; \'b\'&lt;/b&gt;'
    assert F.plot_text(12) == "12"


def test_axis_titles():
    assert F.acc_title("<i>acc</i>", "%") == "&lt;i&gt;acc&lt;/i&gt; (%)"
    assert F.acc_title("acc", "<%>", False) == "acc (&lt;%&gt;)"
    assert F.acc_title("score", "") == "score (score, higher is better)"
    assert F.acc_title("train_loss", "", False) == "train_loss (lower is better)"
    assert F.latency_title("<pi>", False) == "predicted latency on &lt;pi&gt; (ms)"
    assert F.latency_title("<pi>", True) == "latency in the table's column &lt;pi&gt; (ms)"


@pytest.mark.parametrize("values, lo, hi", [
    ([2.0, 4.0], 1.84, 4.16),          # 8% of the range either side
    ([5.0, 5.0], 4.6, 5.4),            # one value: 8% of it
    ([0.0, 0.0], 0.0, 8e-5),           # zero: 8% of a microsecond, never below 0
    ([0.1, 10.0], 0.0, 10.792),
])
def test_identity_range(values, lo, hi):
    assert F.identity_range(values) == pytest.approx((lo, hi))


def test_breakdown_colours_each_stage_once_and_shows_names_as_text():
    blocks = [BlockShare(0, "<s1>", "k<0>", 1.0, 0.25), BlockShare(1, "s2", "k1", 2.0, 0.5),
              BlockShare(2, "<s1>", "k2", 1.0, 0.25)]
    d = BreakdownData(None, [Breakdown("<pi>", 4.0, 4.4, blocks, "f"), Breakdown("q", 4.0, 4.0, blocks[1:], "g")])
    fig = F.breakdown_figure(d)
    assert [t.name for t in fig.data] == ["&lt;s1&gt;", "s2", "&lt;s1&gt;", "s2", "&lt;s1&gt;"]
    assert [t.showlegend for t in fig.data] == [True, True, False, False, False]
    assert [t.marker.color for t in fig.data] == [F.PALETTE[0], F.PALETTE[1], F.PALETTE[0], F.PALETTE[1], F.PALETTE[0]]
    assert fig.data[0].y == ("&lt;pi&gt;",) and fig.data[0].x == (25.0,)
    assert fig.data[0].customdata[0][1] == "k&lt;0&gt;"
    assert fig.layout.height == 200 + 60 * 2 and fig.layout.barmode == "stack"     # segments of one bar per device
    assert fig.layout.xaxis.range == (0, 100) and fig.layout.yaxis.title.text == "device"


def _compare(budgets, runs=("a", "b")):
    p = Point(7, 3.0, 0.9, True, "<x>")
    front = ParetoData("pi", "acc", "", [p], [p], None, None)
    return CompareData(list(runs), "acc", "", ["pi"], {}, {"pi": {r: front for r in runs}}, [], {},
                       {"pi": budgets})


@pytest.mark.parametrize("budgets, texts", [
    ([BudgetLine(20.0, ["a", "b"])], ["budget 20 ms"]),                      # every run's: no names
    ([BudgetLine(20.0, ["a"])], ["budget 20 ms: a"]),                        # one run's of two
    ([BudgetLine(20.0, ["<a>"]), BudgetLine(12.5, ["b"])], ["budget 20 ms: &lt;a&gt;", "budget 12.5 ms: b"]),
    ([], []),
])
def test_compare_fronts_budget_lines(budgets, texts):
    fig = F.compare_fronts_figure(_compare(budgets), "pi")
    assert [a.text for a in fig.layout.annotations] == texts
    assert [s.x0 for s in fig.layout.shapes] == [b.ms for b in budgets]
    assert [(t.name, t.x, t.y, t.customdata) for t in fig.data] == [(r, (3.0,), (0.9,), ([7, "&lt;x&gt;"],))
                                                                   for r in ("a", "b")]
    assert fig.layout.xaxis.title.text == "predicted latency on pi (ms)"
    assert fig.layout.yaxis.title.text == "acc (score, higher is better)"


def test_drift_checks_close_together_are_shown_in_an_hour_around_them():
    def fig(times):
        d = DriftData("pi", times, [0.01] * len(times), [0.05] * len(times), [None] * len(times),
                      [False] * len(times), ["<s>"] * len(times))
        return F.drift_figure(d)

    near = fig([1_000_000.0, 1_000_599.0])
    lo, hi = near.layout.xaxis.range
    assert (str(lo)[:19], str(hi)[:19]) == ("1970-01-12 13:16:40", "1970-01-12 14:26:39")
    assert near.data[0].customdata == ("&lt;s&gt;", "&lt;s&gt;")
    assert fig([1_000_000.0, 1_000_600.0]).layout.xaxis.range is None
    assert fig([]).layout.xaxis.range is None


def test_calibration_fit_is_drawn_only_where_there_is_one():
    d = CalibrationData("<pi>", "s", [1.0, 3.0], [2.0, 4.0], [1.0, 3.0], [2.1, 3.9], {"a": 0.5, "b": 0.9}, 0.01)
    fig = F.calibration_figure(d)
    assert [t.name for t in fig.data] == ["measurements", "fit: e^0.500 x sum^0.900", "measured = LUT sum"]
    assert fig.layout.xaxis.title.text == "LUT sum on &lt;pi&gt; (ms)"
    assert fig.layout.xaxis.range == pytest.approx((0.76, 4.24))
    none = F.calibration_figure(CalibrationData("pi", "s", [1.0], [2.0], [], [], {}, None))
    assert [t.name for t in none.data] == ["measurements", "measured = LUT sum"]



def values(a):
    """A trace's data as a tuple of plain values, whether the figure holds a tuple or an array (large series)."""
    return tuple(np.asarray(a, dtype=object).tolist())


def written(fig):
    """Each trace's x, y and customdata as the page's JSON holds them, typed arrays (``bdata``) decoded."""
    import base64

    def plain(v):
        if isinstance(v, dict) and "bdata" in v:
            return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
        return v

    return [{k: plain(t[k]) for k in ("x", "y", "customdata") if k in t} for t in json.loads(fig.to_json())["data"]]

def test_pareto_figure_draws_groups_front_star_and_the_runs_budget():
    pts = [Point(0, 2.0, 0.5, True, "<a0>"), Point(1, 4.0, 0.7, True, "a1"), Point(2, 9.0, 0.9, False, "a2")]
    d = ParetoData("<pi>", "<acc>", "%", pts, pts[:2], 5.0, pts[1])
    fig = F.pareto_figure(d)
    assert [t.name for t in fig.data] == ["feasible", "over budget", "Pareto front", "chosen (#1)"]
    assert [values(t.x) for t in fig.data] == [(2.0, 4.0), (9.0,), (2.0, 4.0), (4.0,)]
    assert [values(t.y) for t in fig.data] == [(0.5, 0.7), (0.9,), (0.5, 0.7), (0.7,)]
    assert [t.marker.color for t in fig.data[:2]] == ["#8fa6c7", "#e8a9a4"] and fig.data[2].mode == "lines+markers"
    assert values(fig.data[0].customdata) == ([0, "&lt;a0&gt;"], [1, "a1"])
    assert values(fig.data[3].customdata) == ([1, "a1"],)
    assert fig.data[2].customdata[0] == [0, "&lt;a0&gt;"] and fig.data[3].marker.symbol == "star"
    assert written(fig)[:2] == [  # what the page holds
        {"x": [2.0, 4.0], "y": [0.5, 0.7], "customdata": [[0, "&lt;a0&gt;"], [1, "a1"]]},
        {"x": [9.0], "y": [0.9], "customdata": [[2, "a2"]]}]
    assert all("a0" not in t.hovertemplate for t in fig.data)          # labels are data, not template
    assert [s.x0 for s in fig.layout.shapes] == [5.0] and [a.text for a in fig.layout.annotations] == ["budget 5 ms"]
    assert fig.layout.xaxis.title.text == "predicted latency on &lt;pi&gt; (ms)"
    assert fig.layout.yaxis.title.text == "&lt;acc&gt; (%)"
    assert fig.layout.height == 420 and fig.layout.margin.b == 60 and fig.layout.legend.y == 1.02
    # no budget, nothing chosen, nothing feasible: no line, no star, no front
    bare = F.pareto_figure(ParetoData("pi", "loss", "", pts[2:], [], None, None, False, True))
    assert [t.name for t in bare.data] == ["over budget"] and bare.layout.shapes == ()
    assert bare.layout.xaxis.title.text == "latency in the table's column pi (ms)"
    assert bare.layout.yaxis.title.text == "loss (lower is better)"
    assert F.pareto_figure(ParetoData("pi", "acc", "", [], [], 3.0, None)).data == ()


def test_convergence_figure_titles_both_panels():
    from edgenas.report.run_data import ConvergenceData

    fig = F.convergence_figure(ConvergenceData("<acc>", "%", [1, 2, 3], [0.5, 1.0, 2.0], [None, 0.4, 0.6]))
    assert [(values(t.x), values(t.y)) for t in fig.data] == [((1, 2, 3), (None, 0.4, 0.6)),
                                                              ((0.5, 1.0, 2.0), (None, 0.4, 0.6))]
    assert written(fig) == [{"x": [1, 2, 3], "y": [None, 0.4, 0.6]}, {"x": [0.5, 1.0, 2.0], "y": [None, 0.4, 0.6]}]
    assert fig.layout.xaxis.title.text == "evaluations (count)" and fig.layout.xaxis2.title.text == "wall time (s)"
    assert fig.layout.yaxis.title.text == fig.layout.yaxis2.title.text == "&lt;acc&gt; (%)"
    assert fig.layout.height == 380 and fig.layout.showlegend is False
    loss = F.convergence_figure(ConvergenceData("train_loss", "", [1], [0.1], [2.0], False))
    assert loss.layout.yaxis2.title.text == "train_loss (lower is better)"


def test_deployment_figure_stars_the_chosen_and_spans_an_identity_line():
    from edgenas.report.run_data import Deployment

    deps = [Deployment("<pi>", 4.0, 5.0, True, "<m>abcdefgh", -0.2), Deployment("q", 2.0, 2.0, False, "n1", 0.0),
            Deployment("<pi>", 6.0, 5.0, False, "m2", 0.2)]
    fig = F.deployment_figure(deps)
    assert [t.name for t in fig.data] == ["&lt;pi&gt;", "q", "predicted = measured"]
    pi = fig.data[0]
    assert pi.x == (4.0, 6.0) and pi.y == (5.0, 5.0) and pi.marker.color == F.PALETTE[0]
    assert pi.marker.size == (15, 9) and pi.marker.symbol == ("star", "circle")
    assert pi.customdata == (["&lt;m&gt;abcde", -20.0, "chosen"], ["m2", 20.0, ""])
    assert fig.data[1].marker.color == F.PALETTE[1]
    assert fig.data[2].x == fig.data[2].y == pytest.approx(F.identity_range([4.0, 5.0, 2.0, 2.0, 6.0, 5.0]))
    assert fig.layout.xaxis.range == fig.layout.yaxis.range == pytest.approx((1.68, 6.32))
    assert fig.layout.xaxis.title.text == "predicted latency when measured (ms)"


def test_compare_convergence_names_each_run_as_text():
    from edgenas.report.run_data import ConvergenceData

    runs = [f"r{i}" for i in range(10)] + ["<b>"]
    conv = {r: ConvergenceData("acc", "%", [1], [0.0], [float(i)]) for i, r in enumerate(runs)}
    c = CompareData(runs, "acc", "%", [], conv, {}, [], {}, {})
    fig = F.compare_convergence_figure(c)
    assert [t.name for t in fig.data] == runs[:10] + ["&lt;b&gt;"]
    assert [t.line.color for t in fig.data] == F.PALETTE + F.PALETTE[:1]       # colours cycle
    assert fig.layout.yaxis.title.text == "best feasible acc (%)" and fig.layout.height == 400


def test_hypervolume_bars_per_device_and_run():
    from edgenas.report.compare_data import HypervolumeRow

    rows = [HypervolumeRow("<a>", "pi", 0.5, 3), HypervolumeRow("b", "pi", 0.25, 1), HypervolumeRow("<a>", "q", 1.0, 2)]
    c = CompareData(["<a>", "b"], "acc", "", ["pi", "q"], {}, {}, rows, {}, {})
    fig = F.hypervolume_figure(c)
    assert [(t.name, t.x, t.y, t.text) for t in fig.data] == [
        ("pi", ("&lt;a&gt;", "b"), (0.5, 0.25), ("0.500", "0.250")), ("q", ("&lt;a&gt;",), (1.0,), ("1.000",))]
    assert fig.data[0].customdata == ([3], [1]) and fig.data[1].marker.color == F.PALETTE[1]
    assert fig.layout.barmode == "group" and fig.layout.yaxis.range == (0, 1.1)


def _heatmap(resolutions=(128, 160)):
    from edgenas.report.device_data import HeatPanel, LutHeatmap

    panels = [HeatPanel(s, r, [3, 5], [4, 6], [[1.0 * s, 2.0], [float("nan"), r / 10]], [[0, 2], [0, 0]],
                        [[["k"], ["k"]], [["k"], ["k"]]]) for r in resolutions for s in (1, 2)]
    return LutHeatmap("pi", "mbv3", "f", list(resolutions), 2, panels, 2, 16)


def test_heatmap_shows_the_first_resolution_and_switches_with_a_dropdown():
    fig = F.heatmap_figure(_heatmap())
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(fig.data) == 8 and [t.visible for t in fig.data] == [True] * 4 + [False] * 4
    assert [t.showscale for t in heat] == [False, True, False, True]
    assert {(t.zmin, t.zmax) for t in heat} == {(1.0, 16.0)}                      # NaN cells left out of the scale
    assert [list(r) for r in heat[0].text] == [["1", "2<br>2 unstable"], ["nan", "12.8"]]
    assert [list(r) for r in heat[0].customdata] == [["stable", "2 unstable"], ["stable", "stable"]]
    assert fig.data[1].x == (1.32,) and fig.data[1].y == (0.3,)                  # the red cross: kernel 0, expand 1
    assert heat[0].hovertemplate.startswith("r=128, stage 1<br>")
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["resolution 128", "resolution 160"]
    assert [b.args[0]["visible"] for b in buttons] == [[True] * 4 + [False] * 4, [False] * 4 + [True] * 4]
    assert fig.layout.xaxis.ticktext == ("4", "6") and fig.layout.yaxis.ticktext == ("3", "5")
    assert fig.layout.yaxis.title.text == "kernel size" and fig.layout.yaxis2.title.text is None
    one = F.heatmap_figure(_heatmap((224,)))
    assert one.layout.updatemenus == () and all(t.visible for t in one.data)


def test_entries_are_names_as_text_and_red_when_unstable():
    fig = F.entries_figure([("<k1>", 2.0, True), ("k2", 1.0, False)], "<pi>")
    bar = fig.data[0]
    assert bar.y == ("&lt;k1&gt;", "k2") and bar.x == (2.0, 1.0) and bar.marker.color == ("#1f77b4", "#d62728")
    assert fig.layout.xaxis.title.text == "cost on &lt;pi&gt; (ms); red: unstable"
    assert fig.layout.height == 300 and F.entries_figure([("k", 1.0, True)] * 20, "pi").layout.height == 520


def test_fleet_figure_in_percent_with_gaps_for_unknowns():
    from edgenas.report.device_data import FleetRow

    rows = [FleetRow("<pi>", "yes", "f", 2.5, 0.01, 0.05, None, [], "0"),
            FleetRow("q", "no", "-", None, None, None, None, [], "0")]
    fig = F.fleet_figure(rows)
    assert [t.x for t in fig.data] == [("&lt;pi&gt;", "q")] * 3
    assert [t.y for t in fig.data] == [(2.5, None), (1.0, None), (5.0, None)]
    assert fig.layout.margin.b == 110 and fig.layout.legend.y == -0.25     # legend below the subplot titles
    assert fig.layout.yaxis.title.text == "hours since profiled"


def test_drift_figure_in_percent_with_rescaled_checks_as_diamonds():
    d = DriftData("pi", [0.0, 7200.0], [0.01, 0.02], [0.05, 0.05], [None, -0.1], [False, True], ["s", "s"])
    fig = F.drift_figure(d)
    assert [t.y for t in fig.data] == [(1.0, 2.0), (5.0, 5.0), (None, -10.0)]
    assert fig.data[2].marker.symbol == ("circle", "diamond") and fig.data[2].marker.size == (7, 12)
    assert fig.layout.xaxis.title.text == "time of the check (UTC)" and fig.layout.xaxis.range is None


def test_every_figure_titles_its_axes_and_keeps_its_size():
    from edgenas.report.compare_data import HypervolumeRow
    from edgenas.report.device_data import FleetRow
    from edgenas.report.run_data import ConvergenceData, Deployment

    conv = F.convergence_figure(ConvergenceData("acc", "%", [1, 2], [0.5, 1.0], [0.1, 0.2]))
    assert [(t.xaxis, t.yaxis) for t in conv.data] == [("x", "y"), ("x2", "y2")]      # one panel each
    assert "xaxis3" not in conv.layout and "yaxis3" not in conv.layout and conv.layout.font.size == 13
    assert conv.layout.xaxis.domain[1] < conv.layout.xaxis2.domain[0] and conv.layout.yaxis.domain == (0.0, 1.0)
    c = CompareData(["a"], "acc", "", ["pi"], {"a": ConvergenceData("acc", "", [1], [0.0], [1.0])}, {},
                    [HypervolumeRow("a", "pi", 0.5, 1)], {}, {})
    assert F.compare_convergence_figure(c).layout.xaxis.title.text == "evaluations (count)"
    assert F.hypervolume_figure(c).layout.xaxis.title.text == "run"
    entries = F.entries_figure([("k", 1.0, True)], "pi").layout
    assert entries.yaxis.title.text == "block key" and entries.yaxis.autorange == "reversed"
    assert entries.yaxis.automargin is True and entries.yaxis.tickfont.size == 11
    cal = F.calibration_figure(CalibrationData("pi", "s", [1.0, 3.0], [2.0, 4.0], [], [], {}, None)).layout
    assert cal.yaxis.title.text == "measured at nominal speed (ms)" and cal.yaxis.range == pytest.approx((0.76, 4.24))
    assert cal.height == 420
    drift = F.drift_figure(DriftData("pi", [0.0], [0.01], [0.05], [None], [False], ["s"])).layout
    assert drift.yaxis.title.text == "median change of sentinel ratios (%)"
    assert drift.yaxis2.title.text == "reference time / nominal - 1 (%)"
    fleet = F.fleet_figure([FleetRow("pi", "yes", "f", 2.5, 0.01, 0.05, None, [], "0")]).layout
    assert fleet.xaxis.title.text == fleet.xaxis2.title.text == "device"
    assert fleet.yaxis2.title.text == "median sentinel change (%)" and fleet.height == 430
    dep = F.deployment_figure([Deployment("pi", 4.0, 5.0, True, "m", -0.2)]).layout
    assert dep.height == 420 and dep.yaxis.title.text == "measured latency at nominal speed (ms)"
    assert F.breakdown_figure(BreakdownData(None, [Breakdown("pi", 1.0, 1.0, [], "f")])).layout.yaxis.automargin


def test_two_panel_figures_put_each_trace_in_its_panel():
    from edgenas.report.device_data import FleetRow, HeatPanel, LutHeatmap

    drift = F.drift_figure(DriftData("pi", [0.0], [0.01], [0.05], [None], [False], ["s"]))
    assert [t.xaxis for t in drift.data] == ["x", "x", "x2"] and "xaxis3" not in drift.layout
    assert drift.layout.yaxis.domain == (0.0, 1.0)
    fleet = F.fleet_figure([FleetRow("pi", "yes", "f", 2.5, 0.01, 0.05, None, [], "0")])
    assert [t.xaxis for t in fleet.data] == ["x", "x2", "x2"] and "xaxis3" not in fleet.layout
    nan = float("nan")   # a table of no finite cost: a scale of 0..1, not an error
    h = LutHeatmap("pi", "s", "f", [128], 1, [HeatPanel(1, 128, [3], [4], [[nan]], [[0]], [[[]]])], 0, 1)
    heat = F.heatmap_figure(h)
    assert (heat.data[0].zmin, heat.data[0].zmax) == (0, 1) and "xaxis2" not in heat.layout


def test_heatmap_panels_are_titled_by_stage_and_keep_room_for_the_dropdown():
    fig = F.heatmap_figure(_heatmap())
    assert [a.text for a in fig.layout.annotations] == ["stage 1", "stage 2"]
    crosses = [t for t in fig.data if t.type == "scatter"]
    # the red crosses sit in the cells' top-right corners: a cross in the last column is not cut at the edge
    assert len(crosses) == 4 and all(t.cliponaxis is False and t.showlegend is False for t in crosses)
    assert {(t.marker.symbol, t.marker.size, t.marker.color, t.marker.line.width, t.marker.line.color)
            for t in crosses} == {("x", 14, "#ff3b30", 1, "white")}
    assert fig.layout.showlegend is False
    m = fig.layout.margin
    assert (m.l, m.r, m.t, m.b) == (70, 30, 100, 60)           # a top margin for the dropdown above the titles
    menu = fig.layout.updatemenus[0]
    assert (menu.x, menu.xanchor, menu.y, menu.yanchor) == (1.0, "right", 1.45, "top")


def test_the_marks_keep_their_colours_and_sizes():
    """The look the pages rely on: the chosen star bigger than the front's markers and those bigger than the
    points, budget lines 2 px dashed red, a series one colour in both panels of a figure."""
    from edgenas.report.device_data import FleetRow
    from edgenas.report.run_data import ConvergenceData

    pts = [Point(0, 2.0, 0.5, True, "a0"), Point(1, 4.0, 0.7, True, "a1")]
    pareto = F.pareto_figure(ParetoData("pi", "acc", "", pts, pts, 5.0, pts[1]))
    assert [t.marker.size for t in pareto.data] == [7, 8, 18]
    assert (pareto.data[2].marker.line.width, pareto.data[2].marker.line.color) == (1, "#5a4500")
    assert pareto.data[1].line.width == 2 and pareto.data[1].line.color == "#1d4f91"
    fronts = F.compare_fronts_figure(_compare([BudgetLine(20.0, ["a", "b"])]), "pi")
    for fig in (pareto, fronts):
        assert [(s.line.width, s.line.dash, s.line.color) for s in fig.layout.shapes] == [(2, "dash", "#b3261e")]
    assert [(t.line.width, t.line.color) for t in fronts.data] == [(2, F.PALETTE[0]), (2, F.PALETTE[1])]
    conv = F.convergence_figure(ConvergenceData("acc", "", [1, 2], [0.5, 1.0], [0.1, 0.2]))
    assert [t.line.color for t in conv.data] == [F.PALETTE[0]] * 2
    c = CompareData(["a", "b"], "acc", "", ["pi"], {r: ConvergenceData("acc", "", [1], [0.0], [1.0]) for r in "ab"},
                    {}, [], {}, {})
    assert [(t.line.width, t.line.color) for t in F.compare_convergence_figure(c).data] == [
        (2, F.PALETTE[0]), (2, F.PALETTE[1])]
    cal = F.calibration_figure(CalibrationData("pi", "s", [1.0], [2.0], [1.0], [2.0], {"a": 0.5, "b": 0.9}, 0.01))
    assert cal.data[0].marker.size == 9
    assert cal.data[0].marker.color == F.PALETTE[0] and (cal.data[1].line.color, cal.data[1].line.width) == (
        F.PALETTE[1], 2)
    drift = F.drift_figure(DriftData("pi", [0.0], [0.01], [0.05], [None], [False], ["s"]))
    assert [t.line.color for t in drift.data] == [F.PALETTE[0], "#b3261e", F.PALETTE[2]]
    assert drift.data[1].marker.size == 14 and drift.data[1].marker.symbol == "line-ew-open"
    bars = F.breakdown_figure(BreakdownData(None, [Breakdown("pi", 1.0, 1.0, [BlockShare(0, "s", "k", 1.0, 1.0)],
                                                             "f")]))
    assert (bars.data[0].marker.line.width, bars.data[0].marker.line.color) == (1, "white")  # segments apart
    fleet = F.fleet_figure([FleetRow("pi", "yes", "f", 2.5, 0.01, 0.05, None, [], "0")])
    assert [t.marker.color for t in fleet.data] == [F.PALETTE[0], F.PALETTE[2], "#b3261e"]
    assert fleet.data[2].marker.size == 30 and fleet.data[2].marker.line.width == 3


def test_a_lut_sum_that_could_not_be_computed_is_left_out_of_the_calibration_axes():
    """``calibration_data`` gives NaN for a measurement without a stored raw prediction when the table cannot
    predict: the axes and the identity line were NaN when that measurement came first (``min`` keeps a first
    NaN), so the line vanished; they span the finite values in any order."""
    nan = float("nan")
    for raw in ([nan, 1.0], [1.0, nan]):
        fig = F.calibration_figure(CalibrationData("pi", "s", raw, [2.0, 2.0], [], [], {}, None))
        assert fig.layout.xaxis.range == fig.layout.yaxis.range == pytest.approx((0.92, 2.08))
        assert fig.data[1].x == pytest.approx((0.92, 2.08))
    assert F.identity_range([nan, 2.0, 4.0]) == pytest.approx((1.84, 4.16))
