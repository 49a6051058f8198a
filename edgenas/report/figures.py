"""Plotly figures from the plot-data records (rendering only: no computation of what is shown).

Plotly renders a subset of HTML (``<b>``, ``<a href>``, ...) in trace names, titles, tick labels, annotations
and hover text, and fills ``%{...}`` in a hover template: every name that comes from a file (run folders,
table columns, devices, LUT keys, architectures) goes in through ``plot_text`` and into hover text as data
(``customdata``, ``%{fullData.name}``), never into the template itself.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
FONT = dict(family="system-ui, sans-serif", size=13)


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _data(values: Sequence[Any]) -> Any:
    """A trace's values (numbers, None for a gap, ``customdata`` rows of a number and a label) as an array of
    objects: plotly checks a list value by value and copies it (2.5 s for a run of 100,000 evaluations), an array
    it takes as it is; it writes both out as the same JSON list (an array of numbers would be a typed array, in
    base64, larger for a table's short numbers)."""
    import numpy as np

    if values and isinstance(values[0], list):
        out = np.empty((len(values), len(values[0])), dtype=object)
        for j in range(out.shape[1]):
            out[:, j] = [r[j] for r in values]
        return out
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _layout(fig: Any, height: int = 420, legend_below: bool = False, **kw: Any) -> Any:
    """Common look; ``legend_below`` for figures with subplot titles (a legend on top would cover them)."""
    kw.setdefault("margin", dict(l=70, r=30, t=50, b=110 if legend_below else 60))
    legend = (dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0) if legend_below
              else dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0))
    fig.update_layout(template="plotly_white", height=height, font=FONT, legend=legend, **kw)
    return fig


def plot_text(value: Any) -> str:
    """``value`` as text plotly shows as it is: ``<``, ``>``, ``&`` escaped (plotly decodes those entities
    between its tags, but not ``&quot;``, so quotes stay)."""
    return html.escape(str(value), quote=False)


def acc_title(objective: str, unit: str, higher_is_better: bool = True) -> str:
    """Axis title of the accuracy objective (its name comes from run files: plotly's pseudo-HTML escaped)."""
    objective = plot_text(objective)
    if unit:
        return f"{objective} ({plot_text(unit)})"
    return f"{objective} (score, higher is better)" if higher_is_better else f"{objective} (lower is better)"


def pareto_figure(d: Any) -> Any:
    go = _go()
    fig = go.Figure()
    groups = ((True, "feasible", "#8fa6c7"), (False, "over budget", "#e8a9a4"))
    for feas, name, colour in groups:
        pts = [p for p in d.points if p.feasible == feas]
        if pts:
            fig.add_trace(go.Scatter(
                x=_data([p.latency_ms for p in pts]), y=_data([p.accuracy for p in pts]), mode="markers",
                name=name, marker=dict(color=colour, size=7, opacity=0.8),
                customdata=_data([[p.number, plot_text(p.label)] for p in pts]),
                hovertemplate="#%{customdata[0]}<br>%{x:.4g} ms<br>%{y:.4g}<br>%{customdata[1]}<extra></extra>"))
    if d.front:
        fig.add_trace(go.Scatter(
            x=[p.latency_ms for p in d.front], y=[p.accuracy for p in d.front], mode="lines+markers",
            name="Pareto front", line=dict(color="#1d4f91", width=2, shape="hv"), marker=dict(size=8),
            customdata=[[p.number, plot_text(p.label)] for p in d.front],
            hovertemplate="front #%{customdata[0]}<br>%{x:.4g} ms<br>%{y:.4g}<br>%{customdata[1]}<extra></extra>"))
    if d.chosen is not None:
        c = d.chosen
        fig.add_trace(go.Scatter(
            x=[c.latency_ms], y=[c.accuracy], mode="markers", name=f"chosen (#{c.number})",
            marker=dict(symbol="star", size=18, color="#f2b701", line=dict(color="#5a4500", width=1)),
            customdata=[[c.number, plot_text(c.label)]],
            hovertemplate="chosen #%{customdata[0]}<br>%{x:.4g} ms<br>%{y:.4g}<br>%{customdata[1]}<extra></extra>"))
    if d.budget_ms is not None:
        fig.add_vline(x=d.budget_ms, line=dict(color="#b3261e", dash="dash", width=2),
                      annotation_text=f"budget {d.budget_ms:.4g} ms", annotation_position="bottom left",
                      annotation_font=dict(color="#b3261e"))
    fig.update_xaxes(title=latency_title(d.device, d.measured))
    fig.update_yaxes(title=acc_title(d.objective, d.unit, d.higher_is_better))
    return _layout(fig)


def latency_title(device: str, measured: bool) -> str:
    """A latency axis: a prediction for a device, or a benchmark table's measured column."""
    return (f"latency in the table's column {plot_text(device)} (ms)" if measured
            else f"predicted latency on {plot_text(device)} (ms)")


def convergence_figure(d: Any) -> Any:
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("best feasible vs evaluations", "best feasible vs wall time"))
    best = _data(d.best)
    fig.add_trace(go.Scatter(x=_data(d.numbers), y=best, mode="lines", line=dict(shape="hv", color=PALETTE[0]),
                             name="best feasible", hovertemplate="after %{x} evaluations: %{y:.4g}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=_data(d.wall_s), y=best, mode="lines", line=dict(shape="hv", color=PALETTE[0]),
                             showlegend=False, hovertemplate="at %{x:.1f} s: %{y:.4g}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title="evaluations (count)", row=1, col=1)
    fig.update_xaxes(title="wall time (s)", row=1, col=2)
    fig.update_yaxes(title=acc_title(d.objective, d.unit, d.higher_is_better), row=1, col=1)
    fig.update_yaxes(title=acc_title(d.objective, d.unit, d.higher_is_better), row=1, col=2)
    return _layout(fig, height=380, showlegend=False)


def breakdown_figure(d: Any) -> Any:
    """One horizontal bar per device; each block is a segment (its share of the raw prediction)."""
    go = _go()
    fig = go.Figure()
    stages: list[str] = []
    for b in d.devices:
        for blk in b.blocks:
            if blk.stage not in stages:
                stages.append(blk.stage)
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(stages)}
    shown: set[str] = set()
    for b in d.devices:
        for blk in b.blocks:
            fig.add_trace(go.Bar(
                y=[plot_text(b.device)], x=[100 * blk.share], orientation="h", name=plot_text(blk.stage),
                legendgroup=blk.stage, showlegend=blk.stage not in shown,
                marker=dict(color=colour[blk.stage], line=dict(color="white", width=1)),
                customdata=[[blk.index, plot_text(blk.key), blk.ms]],
                hovertemplate=("%{fullData.name}, block %{customdata[0]}<br>%{customdata[1]}<br>"
                               "%{customdata[2]:.4g} ms = %{x:.1f}% of the prediction<extra></extra>")))
            shown.add(blk.stage)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="share of the predicted latency (%), blocks in network order", range=[0, 100])
    fig.update_yaxes(title="device", automargin=True)
    return _layout(fig, height=200 + 60 * len(d.devices))


def identity_range(values: Sequence[float]) -> tuple[float, float]:
    """The axes' span of a predicted-vs-measured plot; a NaN (a LUT sum that could not be computed) is left out
    (``min`` and ``max`` kept a first NaN)."""
    values = [v for v in values if v == v]
    lo, hi = min(values), max(values)
    pad = 0.08 * (hi - lo if hi > lo else max(hi, 1e-3))
    return max(lo - pad, 0.0), hi + pad


def deployment_figure(deps: Sequence[Any]) -> Any:
    go = _go()
    fig = go.Figure()
    devices = list(dict.fromkeys(x.device for x in deps))
    for i, dev in enumerate(devices):
        pts = [x for x in deps if x.device == dev]
        fig.add_trace(go.Scatter(
            x=[x.predicted_ms for x in pts], y=[x.measured_ms for x in pts], mode="markers", name=plot_text(dev),
            marker=dict(color=PALETTE[i % len(PALETTE)], size=[15 if x.chosen else 9 for x in pts],
                        symbol=["star" if x.chosen else "circle" for x in pts]),
            customdata=[[plot_text(x.measurement_id[:8]), 100 * x.error, "chosen" if x.chosen else ""] for x in pts],
            hovertemplate="predicted %{x:.4g} ms<br>measured %{y:.4g} ms<br>error %{customdata[1]:+.1f}%"
                          "<br>%{customdata[2]} %{customdata[0]}<extra></extra>"))
    vals = [v for x in deps for v in (x.predicted_ms, x.measured_ms)]
    lo, hi = identity_range(vals)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                             line=dict(color="#888", dash="dot"), hoverinfo="skip"))
    fig.update_xaxes(title="predicted latency when measured (ms)", range=[lo, hi])
    fig.update_yaxes(title="measured latency at nominal speed (ms)", range=[lo, hi])
    return _layout(fig, height=420)


def compare_convergence_figure(c: Any) -> Any:
    go = _go()
    fig = go.Figure()
    for i, (run, d) in enumerate(c.convergence.items()):
        fig.add_trace(go.Scatter(x=_data(d.numbers), y=_data(d.best), mode="lines", name=plot_text(run),
                                 line=dict(shape="hv", color=PALETTE[i % len(PALETTE)], width=2),
                                 hovertemplate="%{fullData.name}<br>after %{x} evaluations: %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title="evaluations (count)")
    fig.update_yaxes(title="best feasible " + acc_title(c.objective, c.unit, c.higher_is_better))
    return _layout(fig, height=400)


def compare_fronts_figure(c: Any, device: str) -> Any:
    go = _go()
    fig = go.Figure()
    for i, (run, d) in enumerate(c.fronts[device].items()):
        col = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=[p.latency_ms for p in d.front], y=[p.accuracy for p in d.front],
                                 mode="lines+markers", name=plot_text(run), line=dict(shape="hv", color=col, width=2),
                                 customdata=[[p.number, plot_text(p.label)] for p in d.front],
                                 hovertemplate="%{fullData.name} #%{customdata[0]}<br>%{x:.4g} ms<br>%{y:.4g}"
                                               "<br>%{customdata[1]}<extra></extra>"))
    lines = c.budgets.get(device, [])
    for line in lines:  # one per distinct budget, named with its runs unless it is every run's
        who = "" if len(lines) == 1 and len(line.runs) == len(c.runs) else ": " + ", ".join(line.runs)
        fig.add_vline(x=line.ms, line=dict(color="#b3261e", dash="dash", width=2),
                      annotation_text=plot_text(f"budget {line.ms:.4g} ms{who}"), annotation_position="top left",
                      annotation_font=dict(color="#b3261e"))
    fig.update_xaxes(title=latency_title(device, all(d.measured for d in c.fronts[device].values())))
    fig.update_yaxes(title=acc_title(c.objective, c.unit, c.higher_is_better))
    return _layout(fig, height=420)


def hypervolume_figure(c: Any) -> Any:
    go = _go()
    fig = go.Figure()
    for i, device in enumerate(c.devices):
        rows = [r for r in c.hypervolume if r.device == device]
        fig.add_trace(go.Bar(x=[plot_text(r.run) for r in rows], y=[r.hypervolume for r in rows],
                             name=plot_text(device),
                             marker=dict(color=PALETTE[i % len(PALETTE)]),
                             text=[f"{r.hypervolume:.3f}" for r in rows], textposition="outside",
                             customdata=[[r.n_front] for r in rows],
                             hovertemplate="%{x}<br>hypervolume %{y:.4f}<br>%{customdata[0]} points on the front"
                                           "<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="run")
    fig.update_yaxes(title="hypervolume (fraction of the shared box)", range=[0, 1.1])
    return _layout(fig, height=380)


def heatmap_figure(h: Any) -> Any:
    """Kernel x expand per stage; one set of panels per resolution, switched by a dropdown."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=h.stages, horizontal_spacing=0.04,
                        subplot_titles=[f"stage {s + 1}" for s in range(h.stages)])
    finite = [v for p in h.panels for row in p.ms for v in row if v == v]
    zmin, zmax = (min(finite), max(finite)) if finite else (0, 1)
    groups: list[list[int]] = []
    for ri, r in enumerate(h.resolutions):
        idx = []
        for p in (p for p in h.panels if p.resolution == r):
            text = [[f"{v:.3g}" + (f"<br>{b} unstable" if b else "") for v, b in zip(row, brow)]
                    for row, brow in zip(p.ms, p.unstable)]
            fig.add_trace(go.Heatmap(
                z=p.ms, x=list(range(len(p.expands))), y=list(range(len(p.kernels))), text=text,
                texttemplate="%{text}", zmin=zmin, zmax=zmax, colorscale="Viridis", visible=ri == 0,
                showscale=p.stage == h.stages, colorbar=dict(title=dict(text="ms")),
                customdata=[[f"{b} unstable" if b else "stable" for b in brow] for brow in p.unstable],
                hovertemplate=(f"r={r}, stage {p.stage}<br>kernel/expand cell (%{{y}}, %{{x}})<br>"
                               "mean cost %{z:.4g} ms<br>%{customdata}<extra></extra>")),
                row=1, col=p.stage)
            idx.append(len(fig.data) - 1)
            # a red cross in the top-right corner of each cell holding an unstable entry
            bad = [(ei + 0.32, ki + 0.3) for ki in range(len(p.kernels)) for ei in range(len(p.expands))
                   if p.unstable[ki][ei]]
            fig.add_trace(go.Scatter(
                x=[b[0] for b in bad] or [None], y=[b[1] for b in bad] or [None], mode="markers",
                marker=dict(symbol="x", size=14, color="#ff3b30", line=dict(width=1, color="white")),
                name="unstable entry", showlegend=False, visible=ri == 0, hoverinfo="skip", cliponaxis=False),
                row=1, col=p.stage)
            idx.append(len(fig.data) - 1)
        groups.append(idx)
    n = len(fig.data)
    buttons = [dict(label=f"resolution {r}", method="update",
                    args=[{"visible": [i in set(g) for i in range(n)]}]) for r, g in zip(h.resolutions, groups)]
    if len(buttons) > 1:
        fig.update_layout(updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.45, yanchor="top")])
    first = h.panels[0]
    fig.update_xaxes(title="expand ratio", tickvals=list(range(len(first.expands))),
                     ticktext=[str(e) for e in first.expands], showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=list(range(len(first.kernels))), ticktext=[str(k) for k in first.kernels],
                     showgrid=False, zeroline=False)
    fig.update_yaxes(title="kernel size", col=1)
    return _layout(fig, height=380, margin=dict(l=70, r=30, t=100, b=60), showlegend=False)


def entries_figure(entries: Sequence[tuple[str, float, bool]], device: str) -> Any:
    go = _go()
    fig = go.Figure(go.Bar(x=[e[1] for e in entries], y=[plot_text(e[0]) for e in entries], orientation="h",
                           marker=dict(color=["#1f77b4" if e[2] else "#d62728" for e in entries]),
                           hovertemplate="%{y}<br>%{x:.4g} ms<extra></extra>"))
    fig.update_xaxes(title=f"cost on {plot_text(device)} (ms); red: unstable")
    fig.update_yaxes(title="block key", automargin=True, autorange="reversed", tickfont=dict(size=11))
    return _layout(fig, height=max(300, 120 + 20 * len(entries)))


def calibration_figure(c: Any) -> Any:
    go = _go()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=c.raw_ms, y=c.measured_ms, mode="markers", name="measurements",
                             marker=dict(size=9, color=PALETTE[0]),
                             hovertemplate="LUT sum %{x:.4g} ms<br>measured %{y:.4g} ms<extra></extra>"))
    if c.fit_x:
        a, b = c.params.get("a", 0.0), c.params.get("b", 1.0)
        fig.add_trace(go.Scatter(x=c.fit_x, y=c.fit_y, mode="lines", name=f"fit: e^{a:.3f} x sum^{b:.3f}",
                                 line=dict(color=PALETTE[1], width=2), hoverinfo="skip"))
    lo, hi = identity_range(list(c.raw_ms) + list(c.measured_ms))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="measured = LUT sum",
                             line=dict(color="#888", dash="dot"), hoverinfo="skip"))
    fig.update_xaxes(title=f"LUT sum on {plot_text(c.device)} (ms)", range=[lo, hi])
    fig.update_yaxes(title="measured at nominal speed (ms)", range=[lo, hi])
    return _layout(fig, height=420)


def drift_figure(d: Any) -> Any:
    go = _go()
    from datetime import datetime, timezone

    from plotly.subplots import make_subplots

    t = [datetime.fromtimestamp(x, tz=timezone.utc) for x in d.times]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("shape drift of the sentinels", "speed vs the table's nominal"))
    fig.add_trace(go.Scatter(x=t, y=[100 * v for v in d.drift], mode="lines+markers", name="drift",
                             line=dict(color=PALETTE[0]), customdata=[plot_text(s) for s in d.spaces],
                             hovertemplate="%{x}<br>%{customdata}: drift %{y:.2f}%<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=[100 * v for v in d.threshold], mode="lines+markers", name="rebuild threshold",
                             line=dict(color="#b3261e", dash="dash"), marker=dict(symbol="line-ew-open", size=14),
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=[None if v is None else 100 * v for v in d.speed_change], mode="lines+markers",
                             name="speed change", line=dict(color=PALETTE[2]),
                             marker=dict(symbol=["diamond" if r else "circle" for r in d.rescaled],
                                         size=[12 if r else 7 for r in d.rescaled]),
                             hovertemplate="%{x}<br>speed change %{y:+.1f}%<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title="time of the check (UTC)")
    if t and (max(d.times) - min(d.times)) < 600:   # a few checks close together: show an hour around them
        from datetime import timedelta

        fig.update_xaxes(range=[min(t) - timedelta(minutes=30), max(t) + timedelta(minutes=30)])
    fig.update_yaxes(title="median change of sentinel ratios (%)", row=1, col=1)
    fig.update_yaxes(title="reference time / nominal - 1 (%)", row=1, col=2)
    return _layout(fig, height=430, legend_below=True)


def fleet_figure(rows: Sequence[Any]) -> Any:
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("age of the newest LUT", "last drift check"))
    names = [plot_text(r.device) for r in rows]
    fig.add_trace(go.Bar(x=names, y=[r.lut_age_h for r in rows], name="LUT age",
                         marker=dict(color=PALETTE[0]), hovertemplate="%{x}: %{y:.1f} h<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=[None if r.last_drift is None else 100 * r.last_drift for r in rows],
                         name="drift", marker=dict(color=PALETTE[2]),
                         hovertemplate="%{x}: drift %{y:.2f}%<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(x=names, y=[None if r.last_threshold is None else 100 * r.last_threshold for r in rows],
                             mode="markers", name="threshold", marker=dict(symbol="line-ew-open", size=30,
                                                                            color="#b3261e", line=dict(width=3)),
                             hovertemplate="%{x}: threshold %{y:.1f}%<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title="device")
    fig.update_yaxes(title="hours since profiled", row=1, col=1)
    fig.update_yaxes(title="median sentinel change (%)", row=1, col=2)
    return _layout(fig, height=430, legend_below=True)
