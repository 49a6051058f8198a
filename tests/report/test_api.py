"""The API and pages on a real uvicorn server (a thread, a free port), over HTTP with httpx."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ports import free_port as _free_port

httpx = pytest.importorskip("httpx", reason="needs httpx (the test extra)")
pytest.importorskip("fastapi", reason="needs fastapi (the test extra)")
uvicorn = pytest.importorskip("uvicorn", reason="needs uvicorn (the test extra)")


@contextmanager
def serving(root: Path, token: str | None = None, host: str | None = None):
    from edgenas.api.server import build_app
    from edgenas.project import Project

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(Project(root), token, host), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(timeout=10)


@pytest.fixture
def api(rproj):
    with serving(rproj) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def test_every_json_endpoint(api, rproj):
    runs = api.get("/api/runs").json()
    ids = {r["id"] for r in runs}
    assert {"evo", "rnd"} <= ids and all(r["status"] == "complete" for r in runs)
    evo = api.get("/api/runs/evo").json()
    assert evo["config"] == json.loads((rproj / "runs/evo/config.json").read_text())
    assert evo["best"] == json.loads((rproj / "runs/evo/best.json").read_text()) and evo["evaluations"] == 32
    lines = [json.loads(x) for x in (rproj / "runs/evo/evaluations.jsonl").read_text().splitlines()]
    ev = api.get("/api/runs/evo/evaluations").json()
    assert ev["evaluations"] == lines and ev["next"] == 32
    tail = api.get("/api/runs/evo/evaluations", params={"since": 30}).json()
    assert tail["evaluations"] == lines[30:] and tail["next"] == 32
    assert api.get("/api/runs/evo/evaluations", params={"since": -1}).status_code == 400  # the API's shape
    fronts = api.get("/api/runs/evo/fronts").json()
    saved = json.loads((rproj / "runs/evo/pareto.json").read_text())
    assert sorted(p["number"] for p in fronts["devices"]["local"]["front"]) == \
        sorted(p["number"] for p in saved["devices"]["local"])
    assert fronts["devices"]["local"]["chosen"]["number"] == evo["best"]["number"]
    devs = api.get("/api/devices").json()
    assert [d["device"] for d in devs] == ["local"] and {t["space"] for t in devs[0]["luts"]} == {"mbv3-tiny", "nb201"}
    luts = api.get("/api/devices/local/luts").json()
    assert luts == devs[0]["luts"]
    lut_file = next((rproj / "luts/local").glob("mbv3-tiny-*.json"))
    assert api.get("/api/devices/local/luts/mbv3-tiny").json()["entries"] == json.loads(lut_file.read_text())["entries"]
    ver = api.get("/api/devices/local/verified").json()
    assert ver == [json.loads(x) for x in (rproj / "luts/local/verified.jsonl").read_text().splitlines()]
    ms = api.get("/api/measurements", params={"device": "local"}).json()
    assert len(ms) == 3 and all(m["device"] == "local" for m in ms)
    assert api.get("/api/measurements", params={"device": "elsewhere"}).json() == []
    spec = api.get("/openapi.json").json()
    for path in ("/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/evaluations", "/api/runs/{run_id}/fronts",
                 "/api/devices", "/api/devices/{device}/luts", "/api/devices/{device}/luts/{space}",
                 "/api/devices/{device}/verified", "/api/measurements"):
        assert path in spec["paths"], path
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text.lower()  # works offline: Swagger UI's files come from this server
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/static/swagger/{name}" in docs.text
        r = api.get(f"/static/swagger/{name}")
        assert r.status_code == 200 and len(r.content) > 10_000
    assert api.get("/static/swagger/..%2Fswagger-ui-bundle.js.map").status_code == 404


def test_pages(api):
    idx = api.get("/")
    assert idx.status_code == 200 and "/runs/evo/live" in idx.text and "/devices/local" in idx.text
    for url in ("/runs/evo", "/runs/evo/live", "/compare?run=evo&run=rnd", "/devices/local", "/fleet"):
        r = api.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), url
        assert "/static/plotly.min.js" in r.text and "cdn" not in r.text.lower(), url
    js = api.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and "javascript" in js.headers["content-type"]


def test_missing_and_refused_names(api, rproj, tmp_path):
    r = api.get("/api/runs/no-such-run")
    assert r.status_code == 404 and "no run 'no-such-run'" in r.json()["error"]
    assert api.get("/api/devices/nope/luts").status_code == 404
    assert api.get("/api/devices/local/luts/ofa-mbv3").status_code == 404
    assert api.get("/runs/no-such-run").status_code == 404
    assert api.get("/compare", params={"run": ["evo", "nope"]}).status_code == 404
    # a path the server does not have: it was {"error": "Not Found"}, with no hint where the paths are
    for url in ("/api/nope", "/runs/evo/nope", "/api/runs/evo/evaluations/x"):
        r = api.get(url)
        assert r.status_code == 404 and r.json() == {
            "error": f"no such path: {url}", "hint": "the API's paths are listed at /docs; the pages start at /"}, url
    r = api.get("/nope/" + "z" * 5_000)
    assert r.status_code == 404 and len(r.json()["error"]) < 300 and "more characters" in r.json()["error"]
    # a run folder outside the project, linked into runs/: neither listed nor served
    outside = tmp_path / "outside-run"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"space": "mbv3-tiny", "secret": "TOPSECRET"}))
    (outside / "evaluations.jsonl").write_text("")
    (rproj / "runs" / "linked").symlink_to(outside)
    (rproj / "luts" / "linkdev").symlink_to(outside)
    assert "linked" not in {r["id"] for r in api.get("/api/runs").json()}
    for url in ("/api/runs/linked", "/api/devices/linkdev/luts", "/api/runs/..", "/api/runs/...",
                "/api/runs/..%2F..%2Fetc%2Fpasswd", "/api/runs/%2e%2e%2f%2e%2e", "/api/devices/..%2Fruns/luts",
                "/api/runs/evo%2F..%2F..%2F..%2Fetc/evaluations", "/runs/..%2F..%2Fetc%2Fpasswd",
                "/api/runs/.hidden", "/api/devices/%2e%2e/luts"):
        r = api.get(url)
        assert r.status_code in (400, 404), (url, r.status_code)
        assert "TOPSECRET" not in r.text and "root:" not in r.text
        assert r.headers["content-type"].startswith("application/json"), url
    # a long or multi-line name is echoed on one line of bounded length
    for url in ("/api/devices/local/luts/" + "x" * 20_000, "/api/runs/a%0Ab%0D%0Ac" + "y" * 5_000):
        r = api.get(url)
        err = r.json()["error"]
        assert r.status_code in (400, 404) and len(err) < 1_100 and "\n" not in err and "\r" not in err, (url, err)
        assert "more characters" in err


def test_every_answer_says_no_sniffing_no_framing_no_referrer(rproj):
    """A JSON answer had no X-Content-Type-Options, no page said it may not be framed, /docs had no policy, and
    a link followed from a page opened with ?token= would send the token on in its Referer header."""
    with serving(rproj, token="s3cret-token") as base, httpx.Client(base_url=base, timeout=30) as c:
        answers = [c.get(url, params={"token": "s3cret-token"}) for url in (
            "/api/runs", "/api/runs/nope", "/", "/runs/evo", "/docs", "/static/plotly.min.js", "/no-such-path")]
        answers.append(c.get("/api/runs"))  # the token check's own 401
        assert [r.status_code for r in answers] == [200, 404, 200, 200, 200, 200, 404, 401]
        for r in answers:
            assert (r.headers["x-content-type-options"], r.headers["x-frame-options"],
                    r.headers["referrer-policy"]) == ("nosniff", "DENY", "no-referrer"), r.url
        for r in answers[2:5]:  # the pages, the docs among them
            assert r.headers["content-security-policy"].endswith("; frame-ancestors 'none'"), r.url


def _directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


def test_page_scripts_run_by_the_response_s_nonce_only(api):
    """The policy allowed 'unsafe-inline' and 'unsafe-eval' for scripts: any <script> that got into a page ran.
    Now every page's inline scripts carry a nonce, a new one per response, the only one its header names."""
    seen = set()
    for url in ("/", "/runs/evo", "/runs/evo/live", "/compare?run=evo&run=rnd", "/devices/local", "/fleet", "/docs",
                "/runs/evo"):
        r = api.get(url)
        d = _directives(r.headers["content-security-policy"])
        nonces = [s[len("'nonce-"):-1] for s in d["script-src"] if s.startswith("'nonce-")]
        assert d["script-src"] == ["'self'", f"'nonce-{nonces[0]}'"] and len(nonces[0]) >= 22, url
        assert d["default-src"] == ["'self'"] and d["object-src"] == ["'none'"] and d["base-uri"] == ["'none'"], url
        assert d["frame-ancestors"] == ["'none'"] and "'unsafe-eval'" not in r.headers["content-security-policy"]
        # plotly.js styles its mode bar with <style> elements of its own: the plot pages allow inline styles
        assert d["style-src"] == (["'self'"] if url in ("/", "/docs") else ["'self'", "'unsafe-inline'"]), url
        assert nonces[0] not in seen, url                    # the same page asked twice: another nonce
        seen.add(nonces[0])
        tags = re.findall(r"<script[^>]*>", r.text)
        inline = [t for t in tags if "src=" not in t]
        assert inline == [f"<script nonce='{nonces[0]}'>"] * len(inline), (url, tags)
        assert len(inline) >= (0 if url == "/" else 1) and "<meta http-equiv" not in r.text, url
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", r.text), url       # no inline event handler


def test_token_required(rproj):
    with serving(rproj, token="s3cret-token") as base, httpx.Client(base_url=base, timeout=30) as c:
        for url in ("/api/runs", "/api/runs/evo", "/", "/docs", "/openapi.json", "/runs/evo"):
            r = c.get(url)
            assert r.status_code == 401 and "token" in r.json()["error"], url
        assert c.get("/api/runs", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.get("/api/runs", params={"token": "s3cret-token!"}).status_code == 401
        ok = c.get("/api/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and {"evo", "rnd"} <= {r["id"] for r in ok.json()}
        assert c.get("/api/runs/evo", params={"token": "s3cret-token"}).status_code == 200
        assert c.get("/static/plotly.min.js").status_code == 200   # public library code only
        assert c.get("/static/swagger/swagger-ui.css").status_code == 200
        assert "/openapi.json?token=s3cret-token" in c.get("/docs", params={"token": "s3cret-token"}).text
        # a trailing slash was Starlette's 307 to the request's own Host header, token and all: a forged Host
        # sent the client elsewhere. It is a 404 whose hint names the path
        for path in ("/api/runs/", "/api/runs/evo/", "/runs/evo/"):
            r = c.get(path, params={"token": "s3cret-token"}, headers={"Host": "evil.example:80"})
            assert r.status_code == 404 and "location" not in r.headers, path
            assert r.json()["hint"] == f"without the trailing slash: {path[:-1]}", path
    # a token with characters that mean something in a URL: the index's links carry it encoded (they broke)
    with serving(rproj, token="se+cret&x=1#") as base, httpx.Client(base_url=base, timeout=30) as c:
        index = c.get("/", params={"token": "se+cret&x=1#"})
        assert index.status_code == 200 and "/runs/evo?token=se%2Bcret%26x%3D1%23" in index.text
        assert "/docs?token=se%2Bcret%26x%3D1%23" in index.text  # the docs link carries it too (it was a 401)
        assert c.get("/runs/evo?token=se%2Bcret%26x%3D1%23").status_code == 200


def test_cli_serve_binds_loopback_and_answers(rproj, tmp_path):
    """``edgenas serve`` as a real process: it answers on 127.0.0.1 with the token it was given."""
    import os
    import subprocess
    import sys

    port = _free_port()
    env = dict(os.environ, EDGENAS_PROJECT=str(rproj), EDGENAS_TOKEN="env-token-123",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.2)
        assert r.status_code == 401
        r = httpx.get(f"http://127.0.0.1:{port}/api/runs", headers={"Authorization": "Bearer env-token-123"})
        assert r.status_code == 200 and "evo" in {x["id"] for x in r.json()}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # SIGTERM (docker stop, systemd) stops it as Ctrl-C does: it printed an error saying to run it again
    out = proc.stdout.read().decode()
    assert proc.returncode == 0 and "error" not in out, out


def test_serve_out_of_file_descriptors_answers_503_without_tracebacks(rproj):
    """``edgenas serve`` under ``ulimit -n 40`` and 60 requests at once: 400 "cannot read run record ...: Too many
    open files", 500 "internal error: OSError", and thousands of asyncio tracebacks (one per failed accept)."""
    import http.client
    import resource
    import subprocess
    import sys

    port = _free_port()
    env = dict(os.environ, EDGENAS_PROJECT=str(rproj), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("EDGENAS_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", "serve",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40)))
    answers: list[tuple[int, str]] = []
    start = threading.Barrier(60)

    def get() -> None:
        start.wait(30)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", "/runs/evo")
            r = conn.getresponse()
            answers.append((r.status, r.read().decode()))
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        threads = [threading.Thread(target=get) for _ in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert httpx.get(f"http://127.0.0.1:{port}/runs/evo", timeout=30).status_code == 200  # afterwards: served
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert len(answers) == 60 and {code for code, _ in answers} <= {200, 503}, \
        ([a for a in answers if a[0] == 500][:2], err[-3000:])
    busy = [json.loads(body) for code, body in answers if code == 503]
    assert busy and all(b["error"] == "too many open files" and "ulimit -n" in b["hint"] for b in busy)
    assert "Traceback" not in err and len(err.splitlines()) <= 4, err[:3000]  # rate-limited lines
    assert all(line.startswith("edgenas serve: ") for line in err.splitlines()), err


@pytest.mark.slow
def test_live_page_follows_a_running_search(rproj, browser, tmp_path):
    """A run whose evaluations arrive while the page is open: the page's plots grow with them. Running while a
    search holds its run lock: once none does (killed), the page says the run stopped (it polled for ever)."""
    from edgenas.locks import run_lock

    src = rproj / "runs" / "evo"
    live = rproj / "runs" / "live"
    live.mkdir()
    for f in ("config.json", "request.json"):
        (live / f).write_text((src / f).read_text())
    lines = (src / "evaluations.jsonl").read_text().splitlines(keepends=True)
    (live / "evaluations.jsonl").write_text("".join(lines[:10]))
    with serving(rproj) as base:
        with run_lock(live):  # a search is writing it
            page = browser.open(f"{base}/runs/live/live?interval_ms=300",
                                wait_js="document.body.dataset.evaluations === '10'")
            assert page.errors == [] and page.csp == [] and len(page.plots) == 2
            with open(live / "evaluations.jsonl", "a") as fh:
                fh.write("".join(lines[10:25]))
                fh.write(lines[25][:20])              # a torn line being written: not shown yet
            page = browser.open_wait("document.body.dataset.evaluations === '25'")
            assert page, "the page did not pick up the new evaluations"
            n = browser.evaluate("document.getElementById('live-front').data.map(t => t.x.length)")
            feas = sum(json.loads(x)["feasible"] for x in lines[:25])
            assert n == [feas, 25 - feas]
            status = browser.evaluate("document.getElementById('live-status').textContent")
            assert status.startswith("25 evaluations") and "running" in status
            assert browser.csp_reports() == []
            shot = browser.screenshot(tmp_path / "live.png")
            if os.environ.get("EDGENAS_SCREENSHOT_DIR"):
                Path(os.environ["EDGENAS_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(os.environ["EDGENAS_SCREENSHOT_DIR"]) / shot.name)
        # the search was killed: no process holds its lock
        assert browser.open_wait("document.getElementById('live-status').textContent.includes('run stopped')")


@pytest.mark.slow
def test_live_page_of_a_search_killed_before_its_first_evaluation_stops(rproj, browser):
    """A search with nothing logged yet: running while it holds its run lock, and once none does (killed while
    starting up) the page says the run stopped. It read ``empty``, and the page polled it for ever."""
    from edgenas.locks import run_lock

    src, live = rproj / "runs" / "evo", rproj / "runs" / "starting"
    live.mkdir()
    for f in ("config.json", "request.json"):
        (live / f).write_text((src / f).read_text())
    (live / "evaluations.jsonl").write_text("")
    status = "document.getElementById('live-status').textContent"
    with serving(rproj) as base:
        with run_lock(live):  # a search is starting up in it
            page = browser.open(f"{base}/runs/starting/live?interval_ms=300",
                                wait_js=f"{status}.startsWith('0 evaluations')")
            assert page.errors == [] and "running" in browser.evaluate(status)
        assert browser.open_wait(f"{status}.includes('run stopped')"), browser.evaluate(status)


@pytest.mark.parametrize("header, local", [
    ("localhost", True), ("LOCALHOST:8765", True), ("127.0.0.1:8765", True), ("127.8.9.1", True),
    ("[::1]:8765", True),
    ("", False), (":8765", False), ("[]:8765", False), ("evil.example:8765", False), ("localhost.evil.example", False),
    ("localhost:1:2", False), ("[::2]:8765", False), ("::1", False), ("[::1", False), ("0.0.0.0:8765", False),
])
def test_which_host_headers_name_this_machine(header, local):
    from edgenas.api.hosts import host_is_loopback

    assert host_is_loopback(header) is local


def test_served_on_loopback_without_a_token_it_answers_local_names_only(rproj):
    # DNS rebinding: a web page whose name resolves to 127.0.0.1 reaches the port with its own Host header
    with serving(rproj, host="127.0.0.1") as base, httpx.Client(base_url=base, timeout=30) as client:
        port = base.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
            assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
        for host in (f"evil.example:{port}", "127.0.0.1.evil.example", f"[::2]:{port}"):
            r = client.get("/api/runs", headers={"Host": host})
            assert r.status_code == 421 and "this machine only" in r.json()["error"], host
    with serving(rproj, token="s3cret-token", host="127.0.0.1") as base, httpx.Client(base_url=base) as client:
        r = client.get("/api/runs", headers={"Host": "evil.example", "Authorization": "Bearer s3cret-token"})
        assert r.status_code == 200  # with a token the token is the guard (and a proxy may name the host)


def test_a_damaged_run_is_listed_as_damaged_not_a_failed_listing(api, rproj):
    (rproj / "runs/rnd/evaluations.jsonl").unlink()
    (rproj / "runs/rnd/evaluations.jsonl").symlink_to("/dev/zero")  # read whole, it would never end
    runs = {r["id"]: r for r in api.get("/api/runs").json()}
    assert runs["evo"]["status"] == "complete"
    assert runs["rnd"]["status"] == "damaged" and "symbolic link" in runs["rnd"]["error"]
    assert api.get("/api/runs/rnd/evaluations").status_code == 400
    index = api.get("/")  # it read the damaged entry's space and strategy: a 500 for the whole page
    assert index.status_code == 200 and "damaged" in index.text and "/runs/evo" in index.text


def test_the_api_speaks_http_and_its_own_error_shape(api, rproj):
    """A bad query parameter was FastAPI's 422 (its value echoed back whole); a 405 had no Allow header; a name
    that is no name was accepted as a measurement filter; /fleet left the database's WAL files in the project
    (an open read connection)."""
    for url in ("/api/runs/evo/evaluations?since=-1", "/api/runs/evo/evaluations?since=abc",
                "/runs/evo/live?interval_ms=5", "/api/runs/evo/evaluations?since=" + "9" * 5000 + "x",
                "/api/runs/evo/evaluations?since=" + "9" * 4000):  # a number past any line: echoed back whole
        r = api.get(url)
        assert r.status_code == 400 and set(r.json()) == {"error", "hint"} and len(r.text) < 600, (url, r.text)
    r = api.post("/api/runs")
    assert r.status_code == 405 and "GET" in r.headers.get("allow", "") and r.json()["error"]
    assert api.get("/api/measurements", params={"device": "../x"}).status_code == 404
    assert api.get("/api/measurements", params={"device": "nope"}).json() == []
    assert (rproj / ".edgenas" / "edgenas.db").exists() and api.get("/fleet").status_code == 200
    assert not (rproj / ".edgenas" / "edgenas.db-wal").exists()


def test_serve_on_a_busy_port_or_a_bad_address_is_one_line_and_says_nothing_of_serving(rproj, cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = cli("serve", "--port", str(port))
    assert res.code == 2 and res.out == "" and "Traceback" not in res.err
    assert res.err.count("\n") == 1 and f"port {port} is in use" in res.err
    res = cli("serve", "--host", "no such host!", "--token", "abcdefghijkl")
    assert res.code == 2 and res.out == "" and res.err.count("\n") == 1 and "not an address" in res.err
    res = cli("serve", "--token", "with spaces in it")
    assert res.code == 2 and "printable ASCII" in res.err


def test_a_darts_run_is_listed_and_served(dproj):
    """DARTS writes no evaluations.jsonl: its epochs are its evaluations, and best.json says it is complete."""
    best = json.loads((dproj / "runs/dm/best.json").read_text())
    with serving(dproj) as base, httpx.Client(base_url=base, timeout=30) as api:
        runs = {r["id"]: r for r in api.get("/api/runs").json()}
        assert runs["dm"]["status"] == "complete" and runs["dm"]["strategy"] == "darts"
        assert runs["dm"]["evaluations"] == best["evaluations"] == 2
        assert runs["sh"]["strategy"] == "sh"
        r = api.get("/api/runs/dm")
        assert r.status_code == 200 and r.json()["best"] == best
        ev = api.get("/api/runs/dm/evaluations", params={"since": 1}).json()
        assert ev["next"] == 2 and [e["number"] for e in ev["evaluations"]] == [1]
        fronts = api.get("/api/runs/dm/fronts").json()["devices"]["local"]
        assert fronts["chosen"]["latency_ms"] == best["latency_ms"]["local"]
        for url in ("/runs/dm", "/runs/dm/live", "/"):
            r = api.get(url)
            assert r.status_code == 200 and "darts" in r.text, url


@pytest.mark.slow
def test_live_page_of_a_finished_darts_run(dproj, browser):
    with serving(dproj) as base:
        page = browser.open(f"{base}/runs/dm/live?interval_ms=300", wait_js="document.body.dataset.evaluations === '2'")
        assert page.errors == [] and len(page.plots) == 2
        assert browser.open_wait("document.getElementById('live-status').textContent.includes('run complete')")
        n = browser.evaluate("document.getElementById('live-front').data.map(t => t.x.length)")
        assert sum(n) == 2
        ytitle = browser.evaluate("document.getElementById('live-conv').layout.yaxis.title.text")
        assert ytitle == "best feasible train_loss (lower is better)"
        history = json.loads((dproj / "runs/dm/history.json").read_text())["history"]
        losses = [h["train_loss"] for h in history]   # both networks within budget, the loss falling
        assert browser.evaluate("document.getElementById('live-conv').data[0].y") == losses


def test_the_page_of_a_device_without_a_lut_shows_its_measurements(api, rproj):
    """A device added from a few measurements has a folder under luts/ (its few-shot model) and no table: the
    index linked to a page that answered 400 "has no LUT", whose hint named no space."""
    from edgenas.project import Project
    from edgenas.store import Measurement, open_store

    (rproj / "luts" / "fs" / "fewshot").mkdir(parents=True)
    (rproj / "luts" / "fs" / "fewshot" / "mbv3-tiny.json").write_text("{}")
    stats = {"n": 40, "k": 4, "warmup_n": 12, "median_ms": 5.0, "mean_ms": 5.0, "std_ms": 0.01, "cov": 0.002,
             "p90_ms": 5.5, "p99_ms": 5.7, "min_ms": 4.5, "max_ms": 6.0, "stable": True, "total_s": 0.41}
    open_store(Project(rproj)).add(Measurement(
        device="fs", space="mbv3-tiny", arch={"space": "mbv3-tiny", "schema": 1, "x": 1}, artifact_sha256="a" * 64,
        runtime="onnxruntime", precision="fp32", fingerprint_hash="f" * 64, stats=stats, predicted_ms=4.0))
    assert "/devices/fs" in api.get("/").text
    r = api.get("/devices/fs")
    assert r.status_code == 200, r.text
    assert "No LUT yet" in r.text and "edgenas profile fs --space mbv3-tiny" in r.text
    assert "few-shot model of mbv3-tiny" in r.text
    assert ">5<" in r.text and ">4<" in r.text and "-20.0%" in r.text  # measured, predicted, error
    assert api.get("/devices/nope").status_code == 404
    # a time no date shows (a record edited in the database) is a damaged row named with what to do, not a '?'
    # sorted among the dates (and not an OverflowError, a 500)
    import sqlite3
    from contextlib import closing

    edit = "UPDATE measurements SET record = json_set(record, '$.created_at', {}) WHERE device = 'fs'"
    with closing(sqlite3.connect(rproj / ".edgenas" / "edgenas.db")) as con, con:
        kept = con.execute("SELECT json_extract(record, '$.created_at') FROM measurements "
                           "WHERE device = 'fs'").fetchone()
        con.execute(edit.format("1e300"))
    r = api.get("/devices/fs")
    assert r.status_code == 400 and r.json()["error"].startswith("damaged row"), r.text[-500:]
    assert "'created_at' must be a time from 0 to 253402300799" in r.json()["error"]
    assert "delete that measurement row" in r.json()["hint"]
    with closing(sqlite3.connect(rproj / ".edgenas" / "edgenas.db")) as con, con:
        con.execute(edit.format(repr(kept[0])))  # the other tests' project as it was
    assert api.get("/devices/fs").status_code == 200
    # a damaged table is named, with the command that rebuilds it; no few-shot model is claimed
    (rproj / "luts" / "dm").mkdir()
    for space in ("mbv3-tiny", "mbv3-small"):
        (rproj / "luts" / "dm" / (space + "-" + "a" * 12 + ".json")).write_text('{"broken": 1}')
    r = api.get("/devices/dm")
    assert r.status_code == 200
    assert "cannot be read (mbv3-small-aaaaaaaaaaaa.json, mbv3-tiny-aaaaaaaaaaaa.json)" in r.text
    assert ("edgenas profile dm --space mbv3-small --force or edgenas profile dm --space mbv3-tiny --force"
            in r.text) and "few-shot" not in r.text  # each command as it works: with --force


def test_head_is_answered_as_get_without_a_body(api):
    """A HEAD (``curl -I``, link checkers, uptime probes) was a 405: FastAPI routes take GET only."""
    for url in ("/api/runs", "/api/runs/evo", "/", "/runs/evo", "/static/plotly.min.js"):
        got, head = api.get(url), api.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b"" and int(head.headers["content-length"]) == len(got.content), url
        assert head.headers["content-type"] == got.headers["content-type"], url
    missing = api.head("/api/runs/nope")
    assert missing.status_code == 404 and missing.content == b""
    r = api.post("/api/runs")
    assert r.status_code == 405 and {"GET", "HEAD"} <= {m.strip() for m in r.headers["allow"].split(",")}


def test_openapi_lists_the_errors_the_api_really_gives(api, rproj):
    """The schema listed FastAPI's 422 (the API answers 400) and no 404, 401 or error shape at all."""
    spec = api.get("/openapi.json").json()
    text = json.dumps(spec)
    assert '"422"' not in text and "HTTPValidationError" not in text
    ops = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}
    ref = {"$ref": "#/components/schemas/Error"}
    for (path, _), op in ops.items():
        codes = set(op["responses"])
        assert "401" not in codes and "200" in codes, path            # no token: no 401
        assert ("404" in codes) == ("{" in path or path in ("/api/measurements", "/compare")), path
        for code in codes - {"200"}:
            assert op["responses"][code]["content"]["application/json"]["schema"] == ref, (path, code)
    assert "400" in ops[("/api/runs/{run_id}/evaluations", "get")]["responses"]
    assert "400" not in ops[("/api/runs", "get")]["responses"]
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    # every error the API gives has that shape
    for url in ("/api/runs/nope", "/api/runs/evo/evaluations?since=-1", "/api/measurements?device=../x"):
        assert set(api.get(url).json()) <= {"error", "hint"}, url
    assert "security" not in spec
    with serving(rproj, token="t0k") as base, httpx.Client(base_url=base, timeout=30) as c:
        spec = c.get("/openapi.json", params={"token": "t0k"}).json()
    assert spec["security"] == [{"bearer": []}, {"token": []}]
    assert spec["components"]["securitySchemes"]["token"] == {"type": "apiKey", "in": "query", "name": "token"}
    assert all("401" in op["responses"] for item in spec["paths"].values() for op in item.values())


@pytest.mark.slow
def test_swagger_try_it_out_sends_the_token(rproj, browser):
    """With a token, /docs loaded but every "Try it out" request went without it (a 401 in the page)."""
    token = "t0k</script><b>&'\""          # what a page must not break on, sent URL-encoded
    with serving(rproj, token=token) as base:
        from urllib.parse import quote

        page = browser.open(f"{base}/docs?token={quote(token, safe='')}",
                            wait_js="document.querySelectorAll('.opblock').length > 5")
        assert page.errors == [] and page.csp == [], page.errors + page.csp
        # open GET /api/runs, press "Try it out", then "Execute": Swagger UI makes the request itself
        browser.evaluate("document.querySelector('.opblock-summary-path[data-path=\"/api/runs\"]')"
                         ".closest('.opblock-summary-control').click()")
        assert browser.open_wait("document.querySelector('.opblock.is-open .try-out__btn') !== null")
        browser.evaluate("document.querySelector('.opblock.is-open .try-out__btn').click()")
        assert browser.open_wait("document.querySelector('.opblock.is-open .execute') !== null")
        browser.evaluate("document.querySelector('.opblock.is-open .execute').click()")
        assert browser.open_wait("document.querySelector('.opblock.is-open .live-responses-table tbody "
                                 ".response-col_status') !== null")
        status = browser.evaluate("document.querySelector('.opblock.is-open .live-responses-table tbody "
                                  ".response-col_status').textContent.trim()")
        body = browser.evaluate("document.querySelector('.opblock.is-open .live-responses-table tbody "
                                ".response-col_description').textContent")
        assert browser.csp_reports() == []   # its response shown, highlighted, under /docs' policy
    assert status == "200", (status, body)
    assert '"evo"' in body


@pytest.mark.slow
def test_every_page_draws_under_its_policy_without_a_violation(rproj, browser):
    """Every page the server serves, in Chromium under its Content-Security-Policy (scripts by nonce, no eval):
    its plots drawn (or Swagger UI's operations listed), and no policy violation, no message about the policy."""
    runs = ["evo", "rnd"] + (["nb201"] if (rproj / "runs" / "nb201").exists() else [])   # nb201: a table's run
    pages = [("/runs/evo", 4), *((f"/runs/{r}", 2) for r in runs[1:]), ("/compare?run=evo&run=rnd", 3),
             ("/devices/local", 4), ("/fleet", 1), ("/", 0)]
    with serving(rproj) as base, httpx.Client(base_url=base, timeout=30) as c:
        for url, n_plots in pages:
            page = browser.open(base + url)
            assert page.errors == [] and page.csp == [], (url, page.errors, page.csp)
            # every plot of the page drawn
            divs = re.findall(r"class=.plotly-graph-div", c.get(url).text)
            assert len(page.plots) == len(divs) >= n_plots, (url, page.plots)
            for p in page.plots:
                assert p["svg"] and p["marks"] > 0 and p["w"] > 300 and p["h"] > 150, (url, p)
        # hover a point, open the mode bar, download a plot as PNG: plotly.js's own styles and images
        browser.open(f"{base}/runs/evo")
        assert browser.evaluate("""(async () => {
          const d = document.getElementById('plot-1');
          Plotly.Fx.hover(d, [{curveNumber: 0, pointNumber: 0}]);
          d.dispatchEvent(new MouseEvent('mousemove', {bubbles: true}));
          const png = await Plotly.toImage(d, {format: 'png', width: 400, height: 300});
          return d.querySelectorAll('.modebar-btn').length > 3 && png.startsWith('data:image/png;base64,')
                 && document.querySelectorAll('.hoverlayer .hovertext').length > 0;
        })()"""), "hover, mode bar or PNG export failed"
        browser._drain(0.5)
        assert browser.csp_reports() == []
        page = browser.open(f"{base}/runs/evo/live?interval_ms=300",
                            wait_js="document.getElementById('live-status').textContent.includes('run complete')")
        assert page.errors == [] and page.csp == [] and len(page.plots) == 2
        assert browser.evaluate("document.getElementById('live-front').data.map(t => t.x.length)") != [0, 0]
        page = browser.open(f"{base}/docs", wait_js="document.querySelectorAll('.opblock').length > 5")
        assert page.errors == [] and page.csp == [], page.errors + page.csp
        paths = browser.evaluate("Array.from(document.querySelectorAll('.opblock-summary-path'))"
                                 ".map(e => e.dataset.path)")
        assert "/api/runs" in paths and "/api/runs/{run_id}/evaluations" in paths


#: what markup that got into a page around its escaping would do: a <script> element and an event handler
#: attribute added to the page, each setting a flag if it runs; then a script with the page's own nonce (it runs:
#: the check is no blanket ban) tries eval once DevTools' evaluation has returned (code run within it may eval
#: whatever the policy)
INJECT = """(() => {
  const s = document.createElement('script');
  s.textContent = 'window.injected = 1';
  document.body.appendChild(s);
  const b = document.createElement('button');
  b.setAttribute('onclick', 'window.handler = 1');
  document.body.appendChild(b);
  b.click();
  const ok = document.createElement('script');
  ok.nonce = (document.querySelector('script[nonce]') || {}).nonce || '';
  ok.textContent = "window.withNonce = 1; setTimeout(() => { try { eval('window.evaluated = 1'); } " +
                   "catch (e) { window.evalError = e.name; } }, 0);";
  document.body.appendChild(ok);
})()"""
RAN = "[window.injected, window.handler, window.evaluated, window.evalError, window.withNonce]"


@pytest.mark.slow
def test_a_script_without_the_page_s_nonce_does_not_run(rproj, browser):
    """Under the old policy ('unsafe-inline' 'unsafe-eval') all three ran; now none does, and each is a violation
    the browser reports; a script carrying the page's nonce still runs."""
    with serving(rproj) as base:
        for url in ("/runs/evo", "/docs"):
            page = browser.open(base + url, wait_js="document.readyState === 'complete'")
            assert page.csp == [], page.csp
            browser.evaluate(INJECT)
            assert browser.open_wait("window.evalError || window.evaluated", timeout_s=5), url
            assert browser.evaluate(RAN) == [None, None, None, "EvalError", 1], url
            browser._drain(0.3)
            reports = browser.csp_reports()
            for directive in ("script-src-elem", "script-src-attr", "script-src"):
                assert any(r.startswith(f"violation: {directive} inline") or
                           (directive == "script-src" and r.startswith("violation: script-src eval"))
                           for r in reports), (url, directive, reports)


# ----------------------------------------------------------------------------- in process (no server)
@pytest.fixture
def client(rproj):
    """``create_app`` over the project, called in process (Starlette's TestClient): no server, no port."""
    from fastapi.testclient import TestClient

    from edgenas.api.app import create_app
    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    with TestClient(create_app(FolderSource(Project(rproj)))) as c:
        yield c


def test_create_app_answers_any_host_and_serves_one_schema(client):
    """Refusing other Host names is ``local_only``'s, asked for by ``edgenas serve`` on a loopback address; the
    schema is built once and is the same on every read (the second read was ``null``)."""
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 200
    first = client.get("/openapi.json").json()
    assert "/api/runs" in first["paths"] and client.get("/openapi.json").json() == first
    assert not [p for p in first["paths"] if p.startswith("/static") or p == "/docs"]   # library files, not the API
    assert all("421" not in op["responses"] for item in first["paths"].values() for op in item.values())
    # a 400 where a query parameter can be wrong, not where there is only a name in the path
    assert "400" in first["paths"]["/api/runs/{run_id}/evaluations"]["get"]["responses"]
    assert "400" not in first["paths"]["/api/runs/{run_id}"]["get"]["responses"]
    hint = first["components"]["schemas"]["Error"]["properties"]["hint"]
    assert hint["nullable"] is True
    r = client.get("/api/devices/local/luts/ofa-mbv3")   # an error without a hint: its hint is null
    assert r.status_code == 404 and r.json()["hint"] is None


def test_local_only_schema_lists_421(rproj):
    from fastapi.testclient import TestClient

    from edgenas.api.app import create_app
    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    app = create_app(FolderSource(Project(rproj)), local_only=True)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/api/runs", headers={"Host": "evil.example"}).status_code == 421
    assert all("421" in op["responses"] for item in spec["paths"].values() for op in item.values())


def test_head_sends_the_server_no_body(rproj):
    """The app leaves out a HEAD's body itself (uvicorn drops one; an ASGI server that does not passed the GET's
    body on): the messages it sends, as a server sees them."""
    import asyncio

    from edgenas.api.app import create_app
    from edgenas.project import Project
    from edgenas.report.source import FolderSource

    app = create_app(FolderSource(Project(rproj)))

    def call(method: str) -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": "/api/runs", "raw_path": b"/api/runs", "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80)}
        asyncio.run(app(scope, receive, send))
        return sent

    get, head = call("GET"), call("HEAD")
    assert head[0] == get[0] and head[0]["status"] == 200    # the GET's headers, Content-Length included
    length = int(dict(head[0]["headers"])[b"content-length"])
    assert len(b"".join(m.get("body", b"") for m in get)) == length > 0
    assert {m["type"] for m in head[1:]} == {"http.response.body"} and all(m["body"] == b"" for m in head[1:])


def test_docs_page_settings(client):
    page = client.get("/docs").text
    assert '{"url": "/openapi.json", "dom_id": "#swagger-ui", "layout": "BaseLayout", "deepLinking": true}' in page
    assert "const token = null;" in page
    page = client.get("/docs", params={"token": "t</script>&"}).text
    assert 'const token = "t\\u003c/script\\u003e\\u0026";' in page and "t</script>" not in page


def test_out_of_file_descriptors_is_a_503_from_the_handler_and_the_middleware(client, monkeypatch):
    """The in-process half of the ``ulimit -n`` test above: a reader's error caused by EMFILE (an ``InputError``
    raised from it) and an EMFILE let out of a route are both the 503 that says so, not a 400 or a 500."""
    import errno

    from edgenas.errors import InputError
    from edgenas.report.source import FolderSource

    def cannot_read(self, run_id, evaluations=True):  # FolderSource.run's signature
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as exc:
            raise InputError("cannot read run record") from exc

    def cannot_list(self):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(FolderSource, "run", cannot_read)
    monkeypatch.setattr(FolderSource, "run_ids", cannot_list)
    for url in ("/api/runs/evo", "/api/runs"):
        r = client.get(url)
        assert r.status_code == 503 and r.json()["error"] == "too many open files", (url, r.text)
        assert r.headers["retry-after"] == "1", url


def test_query_parameters_at_their_bounds(client):
    """Each bound of a query parameter, both sides, and the parameter the 400 names."""
    evs = client.get("/api/runs/evo/evaluations", params={"since": 0}).json()
    assert evs["since"] == 0 and evs["next"] == 32 == len(evs["evaluations"])
    r = client.get("/api/runs/evo/evaluations", params={"since": -1})
    assert r.status_code == 400 and r.json()["error"].startswith("since: ")
    assert "Polls every 1000 ms." in client.get("/runs/evo/live").text
    for ms, code in ((199, 400), (200, 200), (60000, 200), (60001, 400)):
        r = client.get("/runs/evo/live", params={"interval_ms": ms})
        assert r.status_code == code, (ms, r.text[:200])
        if code == 200:
            assert f"Polls every {ms} ms." in r.text
        else:
            assert r.json()["error"].startswith("interval_ms: "), r.text
    assert client.get("/compare", params={"run": ["evo", "rnd"] * 10}).status_code == 200   # 20: the most
    r = client.get("/compare", params={"run": ["evo"] * 21})
    assert r.status_code == 400 and r.json()["error"] == "too many runs to compare (21); at most 20"


def test_an_edgenas_error_not_about_the_input_is_a_500_in_the_error_shape(client, monkeypatch):
    from edgenas.errors import EdgenasError
    from edgenas.report.source import FolderSource

    def broken(self):
        raise EdgenasError("the store is\nbroken", hint="run edgenas db upgrade")

    monkeypatch.setattr(FolderSource, "run_ids", broken)
    r = client.get("/api/runs")
    assert r.status_code == 500 and r.json() == {"error": "the store is broken", "hint": "run edgenas db upgrade"}


def test_a_bug_with_a_long_message_is_one_bounded_line(client, monkeypatch, capsys):
    from edgenas.report.source import FolderSource

    def bug(self, run_id, evaluations=True):  # FolderSource.run's signature
        raise ZeroDivisionError("x" * 1000)

    monkeypatch.setattr(FolderSource, "run", bug)
    r = client.get("/api/runs/" + "a" * 250)
    line = "ZeroDivisionError: " + "x" * 300 + "… (700 more characters)"
    assert r.status_code == 500 and r.json()["error"] == "internal error: " + line
    path = ("/api/runs/" + "a" * 250)[:200] + "… (60 more characters)"
    assert capsys.readouterr().err == f"edgenas serve: internal error on GET {path}: {line}\n"


def test_allow_and_not_found_headers(client):
    """A 405 adds HEAD to the methods it allows once; a 404 has no Allow header; Swagger UI's folder serves its
    two files only."""
    for url in ("/openapi.json", "/api/runs"):   # the first is Starlette's own route: its Allow names HEAD already
        r = client.post(url)
        assert r.status_code == 405 and sorted(m.strip() for m in r.headers["allow"].split(",")) == ["GET", "HEAD"]
    r = client.get("/no-such-page")
    assert r.status_code == 404 and "allow" not in r.headers and r.json()["error"] == "no such path: /no-such-page"
    for name in ("index.html", "nope.js"):
        r = client.get(f"/static/swagger/{name}")
        assert r.status_code == 404 and r.json() == {"error": f"no such file: {name}"}, name


def test_without_swagger_ui_the_docs_files_are_404s(client, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)   # not installed: importing it fails
    r = client.get("/static/swagger/swagger-ui.css")
    assert r.status_code == 404 and r.json() == {"error": "Swagger UI is not installed: pip install 'edgenas[serve]'"}
