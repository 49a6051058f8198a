"""Self-contained HTML pages: plotly figures with plotly.js inlined once (opens offline, no CDN).

Every inline script is written by ``render_page`` itself, so a Content-Security-Policy can name each one: served,
by the response's nonce (``edgenas serve``: the policy is its header); as a file, by the SHA-256 of its text, in a
``<meta>`` policy. Neither allows ``'unsafe-inline'`` nor ``'unsafe-eval'`` for scripts: markup that got into a
page around the escaping runs no script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
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

    return _as_parsed(get_plotlyjs())


def _as_parsed(js: str) -> str:
    """``js`` as the HTML parser hands it to the browser (CR LF and CR read as LF), so its hash is the one the
    browser computes."""
    return js.replace("\r\n", "\n").replace("\r", "\n")


def script_safe(json_text: str) -> str:
    """JSON text safe inside a <script> element (no ``</script>``, no ``<!--``): ``<`` and ``>`` escaped (plotly.py
    escapes them too; this does not count on it)."""
    return json_text.replace("<", "\\u003c").replace(">", "\\u003e")


def script_json(value: Any) -> str:
    """``value`` as a JavaScript literal safe inside a <script> element (``script_safe``, and ``&`` escaped too:
    the server's own scripts, the live page's and Swagger UI's settings)."""
    return script_safe(json.dumps(value)).replace("&", "\\u0026")


def script_hash(js: str) -> str:
    """The CSP source naming an inline script by its text: ``'sha256-...'`` (8 ms for plotly.js's 4.8 MB)."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii") + "'"


#: a self-contained report's policy, besides its scripts' hashes: nothing is fetched but images plotly draws
#: itself (data: and blob: URLs: heat maps, "download plot as png"). Styles stay 'unsafe-inline': plotly.js adds
#: <style> elements of its own (its style sheet, and one per plot for its mode bar, filled by insertRule) and sets
#: style attributes, which neither a nonce nor a hash can name (in Chromium without it: a violation for each, and
#: plotly.js's "Cannot addRelatedStyleRule, probably due to strict CSP" warnings, its style rules lost)
FILE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data: blob:; base-uri 'none'; form-action 'none'"


def file_policy(scripts: Sequence[str], *, self_scripts: bool = False) -> str:
    """The ``<meta>`` policy of a page opened as a file: its inline scripts by hash (and the page's own
    origin's files with ``self_scripts``, for a page that links plotly.js), no other script."""
    sources = (["'self'"] if self_scripts else []) + list(dict.fromkeys(script_hash(js) for js in scripts))
    return f"{FILE_POLICY}; script-src " + (" ".join(sources) or "'none'")


def _plot_script(fig: Any, div_id: str) -> str:
    """The script that draws ``fig`` into ``div_id``, its data and layout as plotly.py's ``to_html`` writes them;
    that wrote its own <script> element, which could neither carry the page's nonce nor be named by its hash."""
    from plotly.io.json import to_json_plotly

    fig_dict = fig.to_dict()
    data, layout = (script_safe(to_json_plotly(fig_dict.get(k, d))) for k, d in (("data", []), ("layout", {})))
    return f"Plotly.newPlot({script_safe(json.dumps(div_id))}, {data}, {layout}, {json.dumps(PLOT_CONFIG)});"


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
                script: str = "", nonce: str | None = None) -> str:
    """One HTML document. ``plotly_src`` None inlines plotly.js; a URL links it (the live server). ``script``:
    JavaScript run at the end of the body. With ``nonce`` (a server, whose Content-Security-Policy header names
    it) every inline script carries it; without, the page carries its own policy naming them by hash."""
    scripts: list[str] = []

    def inline(js: str) -> str:
        scripts.append(_as_parsed(js))
        return f"<script nonce='{esc(nonce)}'>{scripts[-1]}</script>" if nonce else f"<script>{scripts[-1]}</script>"

    js = f"<script src='{esc(plotly_src)}'></script>" if plotly_src else inline(plotly_js())
    parts, n = [], 0
    for s in sections:
        body = [f"<h2>{esc(s.title)}</h2>"]
        if s.note:
            body.append(f"<p class='note'>{esc(s.note)}</p>")
        for fig in s.figures:
            n += 1
            body.append(f"<div id='plot-{n}' class='plotly-graph-div'></div>{inline(_plot_script(fig, f'plot-{n}'))}")
        body.append(s.html)
        parts.append("<section>" + "".join(body) + "</section>")
    end = inline(script) if script else ""
    policy = ("" if nonce else "<meta http-equiv='Content-Security-Policy' "
              f"content=\"{esc(file_policy(scripts, self_scripts=bool(plotly_src)))}\">")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR_META}{policy}"
            f"<title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><link rel='icon' href='data:,'>"
            f"<style>{_CSS}</style>{js}</head><body><header><h1>{esc(title)}</h1>"
            f"<p>{esc(subtitle)} · generated {stamp} by edgenas</p></header><main>{''.join(parts)}</main>"
            f"{end}</body></html>")
