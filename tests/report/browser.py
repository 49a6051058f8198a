"""A real headless Chromium driven over the DevTools protocol (websocket-client), for report tests.

``Browser.open(url)`` loads a page, waits until every plotly div has drawn (or a timeout), and returns
what the page logged: console errors, uncaught exceptions, failed loads, and apart from them every
Content-Security-Policy violation (``securitypolicyviolation`` events, and console or log messages of any level
that speak of the policy); ``screenshot(path)`` saves a full-page PNG. Chromium runs with a fresh profile and no
network services of its own.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]

#: every plot div has an SVG with drawn content (traces or a heat map image), and plotly reports no error
PLOTS_JS = """(() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return divs.map(d => {
    const svg = d.querySelector('svg.main-svg');
    const marks = d.querySelectorAll('.trace, .scatterlayer path, .barlayer path, image, .hm').length;
    const r = d.getBoundingClientRect();
    return {id: d.id, svg: !!svg, marks: marks, w: r.width, h: r.height,
            xtitle: Array.from(d.querySelectorAll('.xtitle')).map(t => t.textContent),
            ytitle: Array.from(d.querySelectorAll('.ytitle')).map(t => t.textContent)};
  });
})()"""


#: run in every page before its own scripts (DevTools-injected, so no page policy stops it): keeps the page's
#: Content-Security-Policy violations
CSP_LISTENER = """window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(
  [e.effectiveDirective, e.blockedURI, e.sourceFile + ':' + e.lineNumber, e.sample].join(' ')));"""


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)
    plots: list[dict] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)     # policy violations and messages about the policy


class Browser:
    def __init__(self) -> None:
        import websocket  # websocket-client

        self.profile = tempfile.mkdtemp(prefix="edgenas-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(m)
        self.call("Page.addScriptToEvaluateOnNewDocument", source=CSP_LISTENER)

    def call(self, method: str, **params):
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expr: str):
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def _drain(self, seconds: float) -> None:
        self.ws.settimeout(seconds)
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if "method" in msg:
                    self.events.append(msg)
        except Exception:
            pass
        finally:
            self.ws.settimeout(60)

    def errors(self) -> list[str]:
        out = []
        for ev in self.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def csp_reports(self) -> list[str]:
        """The open page's policy violations (its ``securitypolicyviolation`` events) and every console or log
        message, of any level, that speaks of the policy (plotly.js warns "probably due to strict CSP")."""
        out = [f"violation: {v}" for v in (self.evaluate("window.__cspViolations || []") or [])]
        for ev in self.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            elif m == "Log.entryAdded":
                text = p.get("entry", {}).get("text", "")
            else:
                continue
            if re.search(r"content.security.policy|\bcsp\b", text, re.IGNORECASE):
                out.append(f"message: {text[:300]}")
        return out

    def open(self, url: str, *, wait_js: str | None = None, timeout_s: float = 30.0) -> PageResult:
        # leave the previous page first: a page still polling a stopped server must not log into this one
        self.call("Page.navigate", url="about:blank")
        self._drain(0.3)
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        cond = wait_js or ("document.readyState === 'complete' && Array.from(document.querySelectorAll("
                           "'.plotly-graph-div')).every(d => d.querySelector('svg.main-svg'))")
        while time.monotonic() < deadline:
            try:
                if self.evaluate(cond):
                    break
            except RuntimeError:
                pass
            time.sleep(0.1)
        self._drain(0.5)
        return PageResult(self.errors(), self.evaluate(PLOTS_JS) or [], self.csp_reports())

    def open_wait(self, cond: str, timeout_s: float = 20.0) -> bool:
        """Wait (on the page already open) until the JS expression ``cond`` is true."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(cond):
                return True
            time.sleep(0.1)
        return False

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        h = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or 1000)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=min(h, 16000), deviceScaleFactor=1,
                  mobile=False)
        self._drain(0.5)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        self.call("Emulation.clearDeviceMetricsOverride")
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
