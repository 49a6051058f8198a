"""The live page of a running search: polls ``/api/runs/{id}/evaluations?since=N`` and extends its plots.

Two plots: accuracy vs predicted latency on the run's first device (every evaluation, feasible ones in
blue, over-budget ones in red, the budget as a dashed line; of a multi-fidelity run, those of its last
rung) and the best feasible accuracy vs the evaluation count. A status line says how many evaluations
arrived and when; the page keeps polling until the run is complete or stopped (``RunData.status``: a
search killed, before its first evaluation too, is stopped).
"""

from __future__ import annotations

from typing import Any

from edgenas.report.figures import acc_title, latency_title
from edgenas.report.html import Section, render_page, script_json


_SCRIPT = """(function () {
  const cfg = %(cfg)s;
  let next = 0, best = null, done = false;
  const status = document.getElementById('live-status');
  const L = (x, y) => ({title: {text: x}, automargin: true});
  Plotly.newPlot('live-front', [
    {x: [], y: [], mode: 'markers', name: 'feasible', marker: {color: '#1f77b4', size: 8}, text: [],
     hovertemplate: '#%%{text}<br>%%{x:.4g} ms<br>%%{y:.4g}<extra></extra>'},
    {x: [], y: [], mode: 'markers', name: 'over budget', marker: {color: '#d62728', size: 8}, text: [],
     hovertemplate: '#%%{text}<br>%%{x:.4g} ms<br>%%{y:.4g}<extra></extra>'}],
    {height: 420, xaxis: L(cfg.xlabel), yaxis: L(cfg.ylabel),
     showlegend: true, legend: {orientation: 'h', y: 1.1}, margin: {t: 40},
     annotations: cfg.budget === null ? [] : [{x: cfg.budget, xref: 'x', y: 1, yref: 'paper', yanchor: 'bottom',
              text: 'budget ' + cfg.budget.toPrecision(4) + ' ms', showarrow: false, font: {color: '#b3261e'}}],
     shapes: cfg.budget === null ? [] : [{type: 'line', xref: 'x', yref: 'paper', x0: cfg.budget, x1: cfg.budget,
              y0: 0, y1: 1, line: {color: '#b3261e', dash: 'dash', width: 2}}]},
    {displaylogo: false, responsive: true});
  Plotly.newPlot('live-conv', [{x: [], y: [], mode: 'lines', line: {shape: 'hv'}, name: 'best feasible'}],
    {height: 360, margin: {t: 20}, xaxis: L('evaluations (count)'), yaxis: L('best feasible ' + cfg.ylabel)},
    {displaylogo: false, responsive: true});
  async function poll() {
    if (done) return;
    try {
      const r = await fetch(cfg.api + '?since=' + next, {headers: cfg.token ? {'Authorization': 'Bearer ' + cfg.token} : {}});
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const data = await r.json();
      const f = [[], [], []], o = [[], [], []], cx = [], cy = [];
      for (const e of data.evaluations) {
        const a = (e.objectives || {})[cfg.objective], lat = (e.latency_ms || {})[cfg.device];
        if (typeof a === 'number' && typeof lat === 'number') {
          const t = e.feasible ? f : o; t[0].push(lat); t[1].push(a); t[2].push(e.number);
        }
        if (e.feasible && typeof a === 'number' && (best === null || cfg.sign * a > cfg.sign * best)) best = a;
        next += 1; cx.push(next); cy.push(best);
      }
      if (data.evaluations.length) {
        Plotly.extendTraces('live-front', {x: [f[0], o[0]], y: [f[1], o[1]], text: [f[2], o[2]]}, [0, 1]);
        Plotly.extendTraces('live-conv', {x: [cx], y: [cy]}, [0]);
      }
      const run = await fetch(cfg.run, {headers: cfg.token ? {'Authorization': 'Bearer ' + cfg.token} : {}});
      const info = run.ok ? await run.json() : {};
      done = info.status === 'complete' || info.status === 'stopped';
      status.textContent = next + ' evaluations' + (best === null ? '' : ', best feasible ' + best.toPrecision(5)) +
        ' · ' + (done ? 'run ' + info.status : 'running, updated ' + new Date().toLocaleTimeString());
      document.body.dataset.evaluations = String(next);
    } catch (err) {
      status.textContent = 'waiting for the server (' + err.message + ')';
    }
    setTimeout(poll, cfg.interval);
  }
  poll();
})();
"""


def live_page(run: Any, plotly_src: str, token: str | None, interval_ms: int = 1000, nonce: str | None = None) -> str:
    """The page; ``nonce``: the server's for this response, which its script carries (``html.render_page``)."""
    device = next(iter(run.budgets), None)
    cfg = {"api": f"/api/runs/{run.id}/evaluations", "run": f"/api/runs/{run.id}", "token": token,
           "objective": run.objective, "device": device, "budget": run.budgets.get(device) if device else None,
           "interval": interval_ms,
           "xlabel": latency_title(device, device in run.table_columns) if device else "latency (ms; no device)",
           "ylabel": acc_title(run.objective, run.objective_unit, run.higher_is_better),
           "sign": 1 if run.higher_is_better else -1}
    body = ("<p id='live-status' class='note'>connecting…</p>"
            "<div id='live-front' class='plotly-graph-div live-plot'></div>"
            "<div id='live-conv' class='plotly-graph-div live-plot'></div>")
    return render_page(f"edgenas live: {run.id}", f"{run.space}, {run.strategy}, device {device or '-'}",
                       [Section("Evaluations as they arrive", f"Polls every {interval_ms} ms." + _rungs_note(run),
                                html=body)],
                       plotly_src=plotly_src, script=_SCRIPT % {"cfg": script_json(cfg)}, nonce=nonce)


def _rungs_note(run: Any) -> str:
    """A multi-fidelity run's earlier rungs score with other evaluators (a proxy, fewer epochs), on other
    scales: the plots show the last rung's objective only, and the page says so (it plotted 2 of 12 points
    of an sh run without a word)."""
    if run.last_rung is None:
        return ""
    return (f" A multi-fidelity run: the plots show the evaluations of its last rung ({run.objective}); those of "
            "earlier rungs are counted in the status line, not plotted.")
