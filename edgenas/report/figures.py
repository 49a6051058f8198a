"""Plotly figures from the plot-data records (rendering only: no computation of what is shown)."""

from __future__ import annotations

from typing import Any, Sequence

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
FONT = dict(family="system-ui, sans-serif", size=13)


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _layout(fig: Any, height: int = 420, **kw: Any) -> Any:
    fig.update_layout(template="plotly_white", height=height, font=FONT, margin=dict(l=70, r=30, t=50, b=60),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0), **kw)
    return fig


def acc_title(objective: str, unit: str) -> str:
    return f"{objective} ({unit})" if unit else f"{objective} (score, higher is better)"


def pareto_figure(d: Any) -> Any:
    go = _go()
    fig = go.Figure()
    groups = ((True, "feasible", "#8fa6c7"), (False, "over budget", "#e8a9a4"))
    for feas, name, colour in groups:
        pts = [p for p in d.points if p.feasible == feas]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p.latency_ms for p in pts], y=[p.accuracy for p in pts], mode="markers", name=name,
                marker=dict(color=colour, size=7, opacity=0.8),
                customdata=[[p.number, p.label] for p in pts],
                hovertemplate="#%{customdata[0]}<br>%{x:.4g} ms<br>%{y:.4g}<br>%{customdata[1]}<extra></extra>"))
    if d.front:
        fig.add_trace(go.Scatter(
            x=[p.latency_ms for p in d.front], y=[p.accuracy for p in d.front], mode="lines+markers",
            name="Pareto front", line=dict(color="#1d4f91", width=2, shape="hv"), marker=dict(size=8),
            customdata=[[p.number, p.label] for p in d.front],
            hovertemplate="front #%{customdata[0]}<br>%{x:.4g} ms<br>%{y:.4g}<br>%{customdata[1]}<extra></extra>"))
    if d.chosen is not None:
        c = d.chosen
        fig.add_trace(go.Scatter(
            x=[c.latency_ms], y=[c.accuracy], mode="markers", name=f"chosen (#{c.number})",
            marker=dict(symbol="star", size=18, color="#f2b701", line=dict(color="#5a4500", width=1)),
            hovertemplate=f"chosen #{c.number}<br>%{{x:.4g}} ms<br>%{{y:.4g}}<br>{c.label}<extra></extra>"))
    if d.budget_ms is not None:
        fig.add_vline(x=d.budget_ms, line=dict(color="#b3261e", dash="dash", width=2),
                      annotation_text=f"budget {d.budget_ms:.4g} ms", annotation_position="top left",
                      annotation_font=dict(color="#b3261e"))
    fig.update_xaxes(title=f"predicted latency on {d.device} (ms)")
    fig.update_yaxes(title=acc_title(d.objective, d.unit))
    return _layout(fig)


def convergence_figure(d: Any) -> Any:
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("best feasible vs evaluations", "best feasible vs wall time"))
    fig.add_trace(go.Scatter(x=d.numbers, y=d.best, mode="lines", line=dict(shape="hv", color=PALETTE[0]),
                             name="best feasible", hovertemplate="after %{x} evaluations: %{y:.4g}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=d.wall_s, y=d.best, mode="lines", line=dict(shape="hv", color=PALETTE[0]),
                             showlegend=False, hovertemplate="at %{x:.1f} s: %{y:.4g}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title="evaluations (count)", row=1, col=1)
    fig.update_xaxes(title="wall time (s)", row=1, col=2)
    fig.update_yaxes(title=acc_title(d.objective, d.unit), row=1, col=1)
    fig.update_yaxes(title=acc_title(d.objective, d.unit), row=1, col=2)
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
                y=[b.device], x=[100 * blk.share], orientation="h", name=blk.stage, legendgroup=blk.stage,
                showlegend=blk.stage not in shown, marker=dict(color=colour[blk.stage], line=dict(color="white", width=1)),
                customdata=[[blk.index, blk.key, blk.ms]],
                hovertemplate=(f"{blk.stage}, block %{{customdata[0]}}<br>%{{customdata[1]}}<br>"
                               "%{customdata[2]:.4g} ms = %{x:.1f}% of the prediction<extra></extra>")))
            shown.add(blk.stage)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="share of the predicted latency (%), blocks in network order", range=[0, 100])
    fig.update_yaxes(title="device", automargin=True)
    return _layout(fig, height=200 + 60 * len(d.devices))


def identity_range(values: Sequence[float]) -> tuple[float, float]:
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
            x=[x.predicted_ms for x in pts], y=[x.measured_ms for x in pts], mode="markers", name=dev,
            marker=dict(color=PALETTE[i % len(PALETTE)], size=[15 if x.chosen else 9 for x in pts],
                        symbol=["star" if x.chosen else "circle" for x in pts]),
            customdata=[[x.measurement_id[:8], 100 * x.error, "chosen" if x.chosen else ""] for x in pts],
            hovertemplate="predicted %{x:.4g} ms<br>measured %{y:.4g} ms<br>error %{customdata[1]:+.1f}%"
                          "<br>%{customdata[2]} %{customdata[0]}<extra></extra>"))
    vals = [v for x in deps for v in (x.predicted_ms, x.measured_ms)]
    lo, hi = identity_range(vals)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                             line=dict(color="#888", dash="dot"), hoverinfo="skip"))
    fig.update_xaxes(title="predicted latency (ms)", range=[lo, hi])
    fig.update_yaxes(title="measured latency at nominal speed (ms)", range=[lo, hi])
    return _layout(fig, height=420)
