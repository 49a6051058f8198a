"""The plotly figures on hand-made plot data: names from files as text, axis titles, ranges, budget lines."""

from __future__ import annotations

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
