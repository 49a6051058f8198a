"""The report pages: a run, a comparison of runs, a device, the fleet (data functions -> figures -> HTML)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from edgenas.errors import InputError
from edgenas.io import atomic_write_text
from edgenas.report import figures as F
from edgenas.report.html import Section, esc, render_page, table_html
from edgenas.report.run_data import (breakdown_data, convergence_data, deployment_data, pareto_data)
from edgenas.report.source import DataSource, RunData


def _fmt(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def run_sections(run: RunData, source: DataSource) -> list[Section]:
    sections = []
    best = run.best or {}
    rows = [("space", run.space), ("strategy", run.config.get("strategy")), ("seed", run.config.get("seed")),
            ("status", run.status), ("evaluations", f"{len(run.evaluations)} of {run.config.get('budget_evals')}"),
            ("objective", run.objective),
            ("budgets", ", ".join(f"{d}: {_fmt(b)} ms" for d, b in run.budgets.items()) or "none"),
            ("chosen", f"#{best.get('number')}: {run.objective} = {_fmt((best.get('objectives') or {}).get(run.objective))}, "
                       + ", ".join(f"{d} {_fmt(v)} ms" for d, v in (best.get('latency_ms') or {}).items())
             if best.get("number") is not None else "none feasible yet")]
    sections.append(Section("Summary", html=table_html(("", ""), rows)))
    for device in run.budgets:
        d = pareto_data(run, device)
        sections.append(Section(
            f"Pareto front on {device}",
            f"{len(d.points)} evaluations; {len(d.front)} on the front (feasible, no other feasible one is both "
            "more accurate and faster); the star is the chosen architecture; hover for details.",
            [F.pareto_figure(d)]))
    sections.append(Section("Convergence", "The best feasible accuracy found so far.",
                            [F.convergence_figure(convergence_data(run))]))
    bd = breakdown_data(run, source)
    if bd.devices:
        rows = [(b.device, f"{b.total_ms:.4g}", f"{b.predicted_ms:.4g}", b.lut[:12]) for b in bd.devices]
        sections.append(Section(
            "Where the chosen network spends its time",
            "Each block's share of the raw LUT prediction (overhead + block costs), in network order, coloured "
            "by stage; hover a segment for its block key and time.",
            [F.breakdown_figure(bd)],
            table_html(("device", "raw LUT sum (ms)", "calibrated (ms)", "LUT"), rows, (False, True, True, False))
            + "".join(f"<p class='note'>{esc(d)}: {esc(why)}</p>" for d, why in bd.missing.items())))
    elif bd.missing:
        sections.append(Section("Where the chosen network spends its time",
                                "; ".join(f"{d}: {w}" for d, w in bd.missing.items())))
    deps = deployment_data(run, source)
    if deps:
        rows = [(x.device, x.measurement_id[:12], "yes" if x.chosen else "", f"{x.predicted_ms:.4g}",
                 f"{x.measured_ms:.4g}", f"{100 * x.error:+.1f}%") for x in deps]
        sections.append(Section(
            "Deployments: predicted vs measured",
            f"Whole-model measurements of {run.space} architectures on this run's devices (stars: the chosen one).",
            [F.deployment_figure(deps)],
            table_html(("device", "measurement", "chosen", "predicted (ms)", "measured (ms)", "error"), rows,
                       (False, False, False, True, True, True))))
    else:
        sections.append(Section("Deployments: predicted vs measured",
                                f"No measurement yet (edgenas deploy DEVICE {run.path}/best.json)."))
    return sections


def run_page(run: RunData, source: DataSource, *, plotly_src: str | None = None) -> str:
    return render_page(f"edgenas run {run.id}", f"{run.path}", run_sections(run, source), plotly_src=plotly_src)


def write_html(text: str, out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.exists() and out.is_dir():
        raise InputError(f"{out} is a folder", hint="give a file name, e.g. --out report.html")
    return atomic_write_text(out, text)
