"""Self-contained HTML pages: plotly figures with plotly.js inlined once (opens offline, no CDN)."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c5cbd6;font-size:13px}
nav a{color:#9cc3ff;margin-right:14px;font-size:13px}
main{padding:10px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;margin:16px 0;padding:12px 18px}
h2{font-size:17px;margin:4px 0 8px} p.note{color:#5b6475;font-size:13px;margin:4px 0 8px}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #e8eaef;padding:4px 10px;text-align:left}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e;font-weight:600} .good{color:#1b7a3a} code{font-size:12px}
"""


#: marks a page as edgenas's own, so ``report --out`` replaces a report but no other file (``pages.write_html``)
GENERATOR_META = "<meta name='generator' content='edgenas'>"


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@dataclass
class Section:
    title: str
    note: str = ""
    figures: list[Any] = field(default_factory=list)
    html: str = ""           # trusted markup built with ``esc`` (tables)


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td class='num'>{esc(c)}</td>" if n else f"<td>{esc(c)}</td>"
                                    for c, n in zip(r, numeric)) + "</tr>" for r in rows)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def render_page(title: str, subtitle: str, sections: Sequence[Section], *, plotly_src: str | None = None,
                extra_head: str = "", extra_body: str = "") -> str:
    """One HTML document. ``plotly_src`` None inlines plotly.js; a URL links it (the live server)."""
    parts, n = [], 0
    for s in sections:
        body = [f"<h2>{esc(s.title)}</h2>"]
        if s.note:
            body.append(f"<p class='note'>{esc(s.note)}</p>")
        for fig in s.figures:
            n += 1
            body.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{n}",
                                    config=PLOT_CONFIG))
        body.append(s.html)
        parts.append("<section>" + "".join(body) + "</section>")
    js = (f"<script src='{esc(plotly_src)}'></script>" if plotly_src
          else f"<script type='text/javascript'>{plotly_js()}</script>")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR_META}<title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
            f"<style>{_CSS}</style>{js}{extra_head}</head><body><header><h1>{esc(title)}</h1>"
            f"<p>{esc(subtitle)} · generated {stamp} by edgenas</p></header><main>{''.join(parts)}</main>"
            f"{extra_body}</body></html>")
