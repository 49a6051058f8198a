"""The report pages: a run, a comparison of runs, a device, the fleet (data functions -> figures -> HTML)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from edgenas.errors import InputError, OutputError
from edgenas.io import atomic_write_text
from edgenas.report import figures as F
from edgenas.report.html import Section, esc, render_page, table_html
from edgenas.report.run_data import (best_so_far, breakdown_data, convergence_data, deployment_data,
                                      pareto_data)
from edgenas.report.source import DataSource, RunData


def _fmt(v: Any, spec: str = ".4g") -> str:
    return "-" if v is None else format(v, spec)


def _evaluations(run: RunData) -> str:
    """How many evaluations, and of what: a budget of evaluations, a multi-fidelity run's first bracket, a
    DARTS run's epochs."""
    n, config = run.n_evaluations, run.config
    if config.get("budget_evals") is not None:
        return f"{n} of {config['budget_evals']}"
    if config.get("candidates") is not None:
        return f"{n} over the ladder's rungs ({config['candidates']} candidates in the first bracket)"
    if run.darts:
        pt = " and DARTS-PT's pick" if (run.best or {}).get("selection") == "pt" else ""
        return f"{n} (the network derived at each epoch's end{pt}; --epochs {config.get('epochs')})"
    return str(n)


def _chosen(run: RunData) -> str:
    best = run.best or {}
    latency = ", ".join(f"{d} {_fmt(v)} ms" for d, v in (best.get("latency_ms") or {}).items())
    if run.darts and best:
        fits = "" if all(b is None for b in run.budgets.values()) else \
            (" (within budget)" if best.get("within_budget") else " (over budget)")
        return f"derived after epoch {best.get('epoch')} ({best.get('derivation', '-')}): {latency}{fits}"
    if best.get("number") is None:
        so_far = best_so_far(run)
        if so_far is None:
            return "none feasible yet"
        latency = ", ".join(f"{d} {_fmt(v)} ms" for d, v in so_far["latency_ms"].items())
        why = "the run stopped before it chose one" if run.status == "stopped" else "the search is running"
        return (f"#{so_far['number']}: {run.objective} = {_fmt(so_far['objectives'].get(run.objective))}, {latency} "
                f"(the best feasible so far: {why})")
    return f"#{best['number']}: {run.objective} = {_fmt((best.get('objectives') or {}).get(run.objective))}, {latency}"


def run_sections(run: RunData, source: DataSource) -> list[Section]:
    sections = []
    rows = [("space", run.space), ("strategy", run.strategy), ("seed", run.config.get("seed")),
            ("status", run.status), ("evaluations", _evaluations(run)), ("objective", run.objective),
            ("budgets", ", ".join(f"{d}: {_fmt(b)} ms" for d, b in run.budgets.items()) or "none"),
            ("chosen", _chosen(run))]
    sections.append(Section("Summary", html=table_html(("", ""), rows)))
    darts = (" (DARTS measures no accuracy: each is the network derived after an epoch, at that epoch's "
             "training loss of the supernet)" if run.darts else "")
    better = "more accurate" if run.higher_is_better else "of lower loss"
    for device in run.budgets:
        d = pareto_data(run, device)
        sections.append(Section(
            f"Pareto front on {device}",
            f"{len(d.points)} evaluations{darts}; {len(d.front)} on the front (feasible, no other feasible one is "
            f"both {better} and faster); the star is the chosen architecture; hover for details.",
            [F.pareto_figure(d)]))
    sections.append(Section("Convergence", "The best feasible accuracy found so far." if run.higher_is_better
                            else "The lowest training loss of a feasible derived network so far.",
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
            table_html(("device", "measurement", "chosen", "predicted then (ms)", "measured at nominal speed (ms)",
                        "error"), rows,
                       (False, False, False, True, True, True))))
    else:
        table = bool(run.budgets) and set(run.budgets) <= run.table_columns  # latencies from a table's columns
        sections.append(Section("Deployments: predicted vs measured",
                                f"No measurement yet (edgenas deploy DEVICE {run.path}/best.json"
                                + (" measures the chosen network on a device of yours; this run's latencies are "
                                   "a benchmark table's measured column)." if table else ").")))
    return sections


def run_page(run: RunData, source: DataSource, *, plotly_src: str | None = None, nonce: str | None = None) -> str:
    """The run report; ``nonce``: the server's for this response (its scripts carry it; ``html.render_page``)."""
    return render_page(f"edgenas run {run.id}", f"{run.path}", run_sections(run, source), plotly_src=plotly_src,
                       nonce=nonce)


def write_html(text: str, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Write a page to ``out``, replacing an earlier edgenas report there but no other file unless ``force``
    (``--out best.json`` once turned a run's record into 5 MB of HTML)."""
    out = check_html_out(out, force=force)
    try:
        return atomic_write_text(out, text)
    except OSError as exc:  # any reason the file system gives (e.g. ENOENT in /proc): one line, nothing left
        from edgenas.outdirs import disk_error

        raise disk_error(exc, f"the report {out}", hint="choose a --out path in a folder you can write to") from None


def check_html_out(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse an ``out`` that ``write_html`` would refuse (a folder, another file without ``force``, a path it
    cannot write): ``report`` checks it before it reads the runs and builds the page, which takes seconds."""
    from edgenas.outdirs import check_out_file, disk_error

    out = Path(out)
    try:  # a lookup that fails (a name too long) is this output's, not an input's
        if out.exists() and out.is_dir():
            raise OutputError(f"{out} is a folder", hint="give a file name, e.g. --out report.html")
        if (out.exists() or out.is_symlink()) and not force and not _is_report(out):
            raise OutputError(f"{out} exists and is not an edgenas report",
                              hint="choose another --out, or add --force")
    except OSError as exc:
        raise disk_error(exc, f"the report {out}", hint="choose a --out path in a folder you can write to") from None

    check_out_file(out)
    return out


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts as an edgenas page does."""
    from edgenas.report.html import GENERATOR_META

    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return head.startswith(b"<!DOCTYPE html>") and GENERATOR_META.encode() in head


def compare_page(runs: Sequence[RunData], *, plotly_src: str | None = None, nonce: str | None = None) -> str:
    from edgenas.report.compare_data import compare_data

    if len(runs) < 2:
        raise InputError("--compare needs at least two runs", hint="edgenas report --compare RUN RUN ...")
    spaces = {r.space for r in runs}
    objectives = {r.objective for r in runs}
    if len(objectives) > 1:
        raise InputError(f"the runs optimise different objectives ({', '.join(sorted(objectives))})",
                         hint="compare runs of the same objective")
    c = compare_data(runs)
    rows = [(r.id, r.space, r.strategy, r.config.get("seed"), _evaluations(r), r.status) for r in runs]
    sections = [Section("Runs", "" if len(spaces) == 1 else "Note: the runs search different spaces.",
                        html=table_html(("run", "space", "strategy", "seed", "evaluations", "status"), rows))]
    what = "accuracy" if c.higher_is_better else "training loss"   # DARTS runs: a loss, lower is better
    sections.append(Section("Convergence",
                            "Best feasible accuracy after each evaluation, per run." if c.higher_is_better
                            else "Lowest training loss of a feasible derived network after each epoch, per run.",
                            [F.compare_convergence_figure(c)]))
    for d in c.devices:
        sections.append(Section(f"Fronts on {d}", "Each run's feasible Pareto front.", [F.compare_fronts_figure(c, d)]))
    if c.hypervolume:
        ref = "; ".join(f"{d}: {what} {a:.4g}, latency {lat:.4g} ms" for d, (a, lat) in c.reference.items())
        hv_rows = [(r.run, r.device, f"{r.hypervolume:.4f}", r.n_front) for r in c.hypervolume]
        sections.append(Section(
            "Hypervolume per run",
            "Fraction of the box between the worst point seen in any run (reference: " + ref + ") and the best "
            f"{what} / lowest latency seen, dominated by each run's front. Higher is better.",
            [F.hypervolume_figure(c)],
            table_html(("run", "device", "hypervolume", "front size"), hv_rows, (False, False, True, True))))
    return render_page("edgenas: comparing " + ", ".join(c.runs), f"{len(runs)} runs", sections,
                       plotly_src=plotly_src, nonce=nonce)


def device_page(source: DataSource, device: str, *, plotly_src: str | None = None, nonce: str | None = None) -> str:
    from edgenas.report.device_data import calibration_data, drift_data, lut_entries, lut_heatmap

    luts = source.luts(device)
    if not luts:  # a device added from a few measurements (edgenas device add --fewshot): what it has
        return _device_without_lut_page(source, device, plotly_src=plotly_src, nonce=nonce)
    sections = []
    rows = [(t.space, t.fingerprint_hash[:12], t.runtime, t.precision, len(t.entries), len(t.unstable_keys),
             "-" if t.reference is None else f"{t.reference['ms']:.4g}",
             "-" if t.calibration is None else f"{t.calibration.n_points} pts, residual {t.calibration.residual:.1%}")
            for t in luts]
    sections.append(Section("Tables", html=table_html(
        ("space", "fingerprint", "runtime", "precision", "entries", "unstable", "reference (ms)", "calibration"),
        rows, (False, False, False, False, True, True, True, False))))
    for t in luts:
        h = lut_heatmap(t)
        if h is not None:
            sections.append(Section(
                f"LUT {t.space}: kernel x expand per stage",
                f"Mean cost (ms) of each stage's blocks with that kernel and expand ratio; {h.n_unstable} of "
                f"{h.n_entries} entries unstable (red cross, count in the cell); the dropdown picks the input resolution.",
                [F.heatmap_figure(h)]))
        else:
            rows = lut_entries(t)
            sections.append(Section(f"LUT {t.space}: entries",
                                    f"The {min(len(rows), 40)} slowest of {len(rows)} entries; hover for the cost.",
                                    [F.entries_figure(rows[:40], device)]))
        cal = calibration_data(t, source)
        if cal.raw_ms:
            sections.append(Section(
                f"Calibration of {t.space}",
                f"{len(cal.raw_ms)} whole-model measurements with this fingerprint; the line is the table's "
                "fitted correction" + ("" if cal.fit_x else " (none fitted yet: edgenas lut calibrate)") + ".",
                [F.calibration_figure(cal)]))
    dd = drift_data(device, source)
    if dd.times:
        sections.append(Section("Drift checks", f"{len(dd.times)} checks by edgenas fleet refresh "
                                "(luts/DEVICE/verified.jsonl); diamonds: the table was rescaled.", [F.drift_figure(dd)]))
    else:
        sections.append(Section("Drift checks", "No drift check recorded yet (edgenas fleet refresh)."))
    return render_page(f"edgenas device {device}", f"{len(luts)} table(s)", sections, plotly_src=plotly_src,
                       nonce=nonce)


def _device_without_lut_page(source: DataSource, device: str, *, plotly_src: str | None, nonce: str | None) -> str:
    """The page of a device with no readable LUT: its damaged table files (if any), its few-shot models (if
    any), its whole-model measurements, and how to build a table. It was a 400 "has no LUT" whose hint named
    no space."""
    ms, damaged, fewshot = source.measurements(device=device), source.damaged_luts(device), \
        source.fewshot_spaces(device)
    spaces = sorted({m.space for m in ms} | set(fewshot) | {n.rsplit("-", 1)[0] for n in damaged})
    force = " --force" if damaged else ""  # a damaged table is rebuilt only with --force
    how = " or ".join(f"edgenas profile {device} --space {sp}{force}" for sp in spaces or ["SPACE"])
    if damaged:
        text = f"{len(damaged)} table file(s) cannot be read ({', '.join(damaged[:10])}): rebuild them with {how}."
    elif fewshot:
        text = (f"No LUT yet: search predicts this device's latency from its few-shot model of "
                f"{', '.join(fewshot)} (edgenas device add {device} --fewshot K) until a profile builds a table "
                f"({how}).")
    else:
        text = f"No LUT yet: {how} builds one."
    sections = [Section("Tables", text)]
    rows = [(m.space, _utc(m.created_at), m.runtime, m.precision,
             f"{m.measured_ms:.4g}", "-" if m.predicted_ms is None else f"{m.predicted_ms:.4g}",
             "-" if m.predicted_ms is None or not m.measured_ms > 0 else
             f"{(m.predicted_ms - m.measured_ms) / m.measured_ms:+.1%}")
            for m in sorted(ms, key=lambda m: -m.created_at)[:200]]
    note = (f"The {len(rows)} newest of {len(ms)} measurements (UTC); the prediction is the one made before each was "
            "taken." if ms else "No whole-model measurement of this device yet.")
    sections.append(Section("Whole-model measurements", note, html=table_html(
        ("space", "measured at", "runtime", "precision", "measured (ms)", "predicted (ms)", "error"), rows,
        (False, False, False, False, True, True, True)) if rows else ""))
    return render_page(f"edgenas device {device}", "no LUT yet" if not damaged else "damaged tables", sections,
                       plotly_src=plotly_src, nonce=nonce)


def _utc(t: float) -> str:
    """A record's time as UTC, or ``?`` where it is no time (an edited record: 1e300 overflowed gmtime)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return "?"


def fleet_page(source: DataSource, devices: list[str] | None = None, probe: dict[str, Any] | None = None, *,
               plotly_src: str | None = None, nonce: str | None = None) -> str:
    from edgenas.report.device_data import fleet_rows

    rows = fleet_rows(source, devices, probe=probe)
    if not rows:
        raise InputError("no device to report on", hint="profile a device first (edgenas profile local)")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    table = table_html(
        ("device", "reachable", "fingerprint", "LUT age (h)", "last drift", "threshold", "calibration error",
         "spaces", "stale runs", "note"),
        [(r.device, r.reachable, r.fingerprint, "-" if r.lut_age_h is None else f"{r.lut_age_h:.1f}",
          pct(r.last_drift), pct(r.last_threshold), pct(r.calibration_error), ", ".join(r.spaces) or "-",
          r.stale_runs, r.note) for r in rows],
        (False, False, False, True, True, True, True, False, False, False))
    return render_page("edgenas fleet", f"{len(rows)} device(s)",
                       [Section("Devices", "One row per device.", [F.fleet_figure(rows)], table)],
                       plotly_src=plotly_src, nonce=nonce)
