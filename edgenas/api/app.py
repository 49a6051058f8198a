"""The read-only HTTP API and the report/live pages (FastAPI), over a ``DataSource``.

JSON under ``/api/``: runs, a run, its evaluations (``?since=N`` for the new ones), its fronts,
devices, their LUTs (summaries and one table), drift checks and measurements. HTML: ``/`` (index),
``/runs/{id}`` (the run report), ``/runs/{id}/live`` (updates as evaluations arrive), ``/compare?run=A&run=B``,
``/devices/{name}``, ``/fleet``. OpenAPI docs at ``/docs``.

Nothing here writes. Names in paths are checked by the source (strict pattern, resolved inside the
project); a missing or refused name is a 404 with ``{"error": ...}``. With a token, every request but
the plotly.js bundle must carry it (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``).
"""

# no ``from __future__ import annotations``: FastAPI reads the route annotations at run time
import dataclasses
import hmac
import secrets
import sys
from pathlib import Path
from typing import Any, Callable

from edgenas.api import fdlimit
from edgenas.api.hosts import host_is_loopback
from edgenas.errors import EdgenasError, InputError
from edgenas.limits import MAX_INT
from edgenas.report.html import script_json
from edgenas.report.source import DataSource, NotFoundError

PLOTLY_PATH = "/static/plotly.min.js"
#: the most runs one /compare page shows (each is read and plotted)
MAX_COMPARE = 20
SWAGGER_PATH = "/static/swagger"  # Swagger UI's own files, served from the swagger-ui-bundle package (no CDN)
#: what every answer says besides: no guessing a JSON answer's type, no page inside another site's frame, and no
#: ``Referer`` header that would carry a ``?token=`` of the page's address to where a link leads
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
#: the pages' policy (``page_policy``): scripts are this server's files (plotly.js, Swagger UI) and the inline
#: ones it wrote into this response, which carry its nonce; no 'unsafe-inline', no 'unsafe-eval' (neither plotly.js
#: nor Swagger UI needs eval), so markup that got into a page around the escaping runs no script. Styles of the
#: pages with plots stay 'unsafe-inline' (as ``html.FILE_POLICY`` says: plotly.js's own <style> elements and style
#: attributes, which no nonce or hash can name); the index and /docs (Swagger UI styles through the DOM only, no
#: violation in Chromium) allow this server's style sheets only
PAGE_POLICY = ("default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src {styles}; img-src 'self' data: blob:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def page_policy(nonce: str, *, inline_styles: bool) -> str:
    """The Content-Security-Policy of a page whose inline scripts carry ``nonce``."""
    return PAGE_POLICY.format(nonce=nonce, styles="'self' 'unsafe-inline'" if inline_styles else "'self'")


def _lut_summary(t: Any) -> dict[str, Any]:
    return {"device": t.device, "space": t.space, "fingerprint_hash": t.fingerprint_hash, "runtime": t.runtime,
            "precision": t.precision, "threads": t.threads, "created_at": t.created_at, "entries": len(t.entries),
            "unstable": len(t.unstable_keys), "reference": t.reference,
            "calibration": t.calibration.to_dict() if t.calibration else None}


def swagger_page(spec_url: str, token: str | None, nonce: str) -> str:
    """Swagger UI over ``spec_url``, its files from this server; a token goes with every request it makes. Its
    script carries ``nonce``, the one the response's policy names."""
    settings = {"url": spec_url, "dom_id": "#swagger-ui", "layout": "BaseLayout", "deepLinking": True}
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgenas API</title>"
            f"<link rel='icon' href='data:,'><link rel='stylesheet' href='{SWAGGER_PATH}/swagger-ui.css'></head>"
            f"<body><div id='swagger-ui'></div><script src='{SWAGGER_PATH}/swagger-ui-bundle.js'></script>"
            f"<script nonce='{nonce}'>"
            f"const token = {script_json(token)};\n"
            f"window.ui = SwaggerUIBundle(Object.assign({script_json(settings)}, {{\n"
            "  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],\n"
            "  requestInterceptor: (req) => {\n"
            "    if (token && !req.headers.Authorization) req.headers.Authorization = 'Bearer ' + token;\n"
            "    return req;\n"
            "  }}));\n</script></body></html>")


class HeadAsGet:
    """ASGI middleware: HEAD is answered as GET without the body (FastAPI routes take GET only, so a HEAD,
    as link checkers and ``curl -I`` send, was a 405); the headers, Content-Length included, are the GET's."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


ERROR_SCHEMA = {"type": "object", "required": ["error"], "title": "Error",
                "properties": {"error": {"type": "string", "description": "what is wrong"},
                               "hint": {"type": "string", "nullable": True, "description": "what to do"}}}
#: paths whose query parameters name runs, devices or spaces: an unknown name or one that is no name is a 404
NAMES_IN_QUERY = {"/api/measurements", "/compare"}


def _openapi(app: Any, *, token: bool, local_only: bool) -> dict[str, Any]:
    """FastAPI's schema with the error responses this API really gives: 400 for a bad query parameter
    (FastAPI listed a 422 it never sends), 404 for a name, 401 without the token, 421 for another host;
    with a token, the two ways to send it as security schemes (Swagger UI's Authorize button)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                       description=app.description, routes=app.routes)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA

    def error(text: str) -> dict[str, Any]:
        schema = {"$ref": "#/components/schemas/Error"}
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    for path, ops in spec.get("paths", {}).items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            params = op.get("parameters", [])
            if any(p.get("in") == "query" for p in params):
                responses["400"] = error("A query parameter is out of range or of the wrong type")
            if any(p.get("in") == "path" for p in params) or path in NAMES_IN_QUERY:
                responses["404"] = error("No such run, device, space or LUT, or a name that is no name")
            if token:
                responses["401"] = error("The token is missing or wrong")
            if local_only:
                responses["421"] = error("The Host header names another machine (served for this machine only)")
    if token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                         "token": {"type": "apiKey", "in": "query", "name": "token"}}
        spec["security"] = [{"bearer": []}, {"token": []}]
    app.openapi_schema = spec
    return spec


def create_app(source: DataSource, token: str | None = None, *, local_only: bool = False) -> Any:
    """The API. ``local_only`` (served on a loopback address without a token): a request whose ``Host``
    header names another machine is refused, so a web page cannot reach the API through DNS rebinding."""
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from fastapi.exceptions import RequestValidationError

    from edgenas.api.live import live_page
    from edgenas.report import pages
    from edgenas.report.html import esc, plotly_js
    from edgenas.report.run_data import best_so_far, pareto_data
    from edgenas.textsafe import one_line

    # redirect_slashes off: Starlette's 307 for "/api/runs/" was built from the request's Host header, so a
    # forged Host sent the client (and its ?token=) elsewhere; a trailing slash is a 404 whose hint names the path
    app = FastAPI(docs_url=None, redirect_slashes=False, title="edgenas", version="1",
                  description="Read-only API over runs, devices, LUTs and measurements of an edgenas project, with "
                              "report pages and a live view of running searches.")

    app.openapi_version = "3.0.3"  # Swagger UI 4 (the bundled one) reads 3.0; the schema uses nothing of 3.1

    @app.middleware("http")
    async def require_token(request: Request, call_next):  # type: ignore[no-untyped-def]
        if local_only and not host_is_loopback(request.headers.get("host", "")):
            return JSONResponse({"error": "this server answers requests to this machine only",
                                 "hint": "open it as http://127.0.0.1:PORT/ or http://localhost:PORT/"},
                                status_code=421)
        if token and request.url.path != PLOTLY_PATH and not request.url.path.startswith(SWAGGER_PATH + "/"):
            given = request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "missing or wrong token",
                                     "hint": "send Authorization: Bearer TOKEN or ?token=TOKEN"}, status_code=401)
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - a bug: one line in the log and a JSON 500, not a traceback
            if (busy := fdlimit.response_for(exc)) is not None:
                return busy
            line = f"{type(exc).__name__}: {one_line(exc, 300)}"
            print(f"edgenas serve: internal error on {request.method} {one_line(request.url.path, 200)}: {line}",
                  file=sys.stderr, flush=True)
            return JSONResponse({"error": f"internal error: {line}",
                                 "hint": "please report it with the request that caused it"}, status_code=500)

    @app.middleware("http")  # around require_token: its own answers (421, 401, 500) get the headers too
    async def safe_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.update(SAFE_HEADERS)
        return response

    @app.exception_handler(EdgenasError)
    async def edgenas_error(request: Request, exc: EdgenasError):  # type: ignore[no-untyped-def]
        if (busy := fdlimit.response_for(exc)) is not None:  # "cannot read ...: Too many open files" was a 400
            return busy
        code = 404 if isinstance(exc, NotFoundError) else (400 if isinstance(exc, InputError) else 500)
        return JSONResponse({"error": one_line(exc.message), "hint": one_line(exc.hint) if exc.hint else exc.hint},
                            status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # type: ignore[no-untyped-def]
        # its headers kept: a 405 says which methods are allowed (Allow), as HTTP requires; HEAD is one of them
        headers = dict(getattr(exc, "headers", None) or {})
        allow = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if "GET" in allow and "HEAD" not in allow:
            headers["Allow"] = ", ".join([*allow, "HEAD"])
        body = {"error": one_line(exc.detail)}
        if exc.status_code == 404 and exc.detail == "Not Found":  # no route: Starlette's own detail
            body["error"] = f"no such path: {one_line(request.url.path, 200)}"
            body["hint"] = "the API's paths are listed at /docs; the pages start at /"
            path = request.url.path
            if len(path) > 1 and path.endswith("/"):
                body["hint"] = f"without the trailing slash: {one_line(path.rstrip('/') or '/', 200)}"
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, exc: RequestValidationError):  # type: ignore[no-untyped-def]
        """A bad query parameter is a 400 in the API's error shape (FastAPI's default was a 422 listing the
        parameter's whole value back)."""
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": one_line(f"{where}: {first.get('msg', 'invalid')}", 300),
                             "hint": "see /docs for the parameters this path takes"}, status_code=400)

    app.openapi = lambda: _openapi(app, token=bool(token), local_only=local_only)  # type: ignore[method-assign]
    # outermost (added last): a HEAD is answered as its GET without the body, the token check's 401 included
    app.add_middleware(HeadAsGet)

    def html(render: Callable[[str], str], *, inline_styles: bool = True) -> HTMLResponse:
        """The page ``render(nonce)`` writes, under a policy that runs the inline scripts carrying that nonce only
        (a new one for every response)."""
        nonce = secrets.token_urlsafe(18)
        return HTMLResponse(render(nonce),
                            headers={"Content-Security-Policy": page_policy(nonce, inline_styles=inline_styles)})

    # ------------------------------------------------------------------ JSON
    @app.get("/api/runs", tags=["runs"], summary="All runs with their status")
    def runs() -> list[dict[str, Any]]:
        out = []
        for r in source.run_ids():  # one damaged folder is listed as such, not a failed listing
            try:
                out.append(source.run(r, evaluations=False).summary())
            except InputError as exc:
                out.append({"id": r, "status": "damaged", "error": one_line(exc.message)})
        return out

    @app.get("/api/runs/{run_id}", tags=["runs"], summary="One run: config, request, best, status")
    def run(run_id: str) -> dict[str, Any]:
        """``best``: the run's best.json; ``best_so_far``: of a stopped run that wrote none (killed or interrupted
        before it ended), the feasible evaluation it would have chosen of those it logged, else null (the log is
        read for it only then: the live page asks this of a running search every second)."""
        r = source.run(run_id, evaluations=False)
        status = r.status
        so_far = best_so_far(source.run(run_id, columns=True)) if status == "stopped" and r.best is None else None
        return {**r.summary(), "status": status, "config": r.config, "request": r.request, "best": r.best,
                "best_so_far": so_far, "checkpoint": r.checkpoint}

    @app.get("/api/runs/{run_id}/evaluations", tags=["runs"], summary="Evaluations, from line `since` on")
    def evaluations(run_id: str, since: int = Query(0, ge=0, le=MAX_INT)) -> dict[str, Any]:
        evs = source.evaluations(run_id, since)
        return {"run": run_id, "since": since, "next": since + len(evs), "evaluations": evs}

    @app.get("/api/runs/{run_id}/fronts", tags=["runs"], summary="Per device: the feasible Pareto front")
    def fronts(run_id: str) -> dict[str, Any]:
        r = source.run(run_id, columns=True)
        out = {}
        for d in r.budgets:
            p = pareto_data(r, d)
            out[d] = {"budget_ms": p.budget_ms, "objective": p.objective,
                      "front": [dataclasses.asdict(x) for x in p.front],
                      "chosen": dataclasses.asdict(p.chosen) if p.chosen else None}
        return {"run": run_id, "devices": out, "pareto": r.pareto}

    @app.get("/api/devices", tags=["devices"], summary="Devices with LUTs")
    def devices() -> list[dict[str, Any]]:
        return [{"device": d, "luts": [_lut_summary(t) for t in source.luts(d)]} for d in source.devices()]

    @app.get("/api/devices/{device}/luts", tags=["devices"], summary="The device's current LUTs (summaries)")
    def luts(device: str) -> list[dict[str, Any]]:
        return [_lut_summary(t) for t in source.luts(device)]

    @app.get("/api/devices/{device}/luts/{space}", tags=["devices"], summary="The device's newest LUT of a space")
    def lut(device: str, space: str) -> dict[str, Any]:
        t = next((t for t in source.luts(device) if t.space == space), None)
        if t is None:
            raise NotFoundError(f"device '{device}' has no LUT for space '{space}'")
        return t.to_dict()

    @app.get("/api/devices/{device}/verified", tags=["devices"], summary="Drift checks (fleet refresh)")
    def verified(device: str) -> list[dict[str, Any]]:
        return source.verified(device)

    @app.get("/api/measurements", tags=["measurements"], summary="Whole-model measurements")
    def measurements(device: str | None = None, space: str | None = None) -> list[dict[str, Any]]:
        """A filter: a device or space without measurements gives []; a name that is no name is a 404."""
        from edgenas.report.source import check_name

        for value, what in ((device, "device"), (space, "space")):
            if value is not None:
                check_name(value, what)
        return [m.to_dict() for m in source.measurements(device=device, space=space)]

    # ------------------------------------------------------------------ pages
    @app.get(PLOTLY_PATH, include_in_schema=False)
    def plotly_bundle() -> Response:
        return Response(plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get(SWAGGER_PATH + "/{name}", include_in_schema=False)
    def swagger_file(name: str) -> Response:
        """Swagger UI's JavaScript and CSS (public library code), so /docs works offline."""
        files = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css"}
        if name not in files:
            raise StarletteHTTPException(404, f"no such file: {name}")
        try:
            from swagger_ui_bundle import swagger_ui_path
        except ImportError:
            raise StarletteHTTPException(404, "Swagger UI is not installed: pip install 'edgenas[serve]'") from None
        return Response((Path(str(swagger_ui_path)) / name).read_bytes(), media_type=files[name],
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        """OpenAPI docs (Swagger UI) from local files. With a token, the spec is fetched with it and every
        "Try it out" request sends it (``Authorization: Bearer``): Swagger UI sent none, so each was a 401."""
        from urllib.parse import quote

        t = request.query_params.get("token")
        return html(lambda n: swagger_page("/openapi.json" + (f"?token={quote(t, safe='')}" if t else ""), t, n),
                    inline_styles=False)

    def q(request: Request) -> str:
        from urllib.parse import quote

        t = request.query_params.get("token")  # URL-encoded: a token with + & # % ; broke every link
        return f"?token={esc(quote(t, safe=''))}" if t else ""

    @app.get("/", response_class=HTMLResponse, tags=["pages"], summary="Index of runs and devices")
    def index(request: Request) -> HTMLResponse:
        tq = q(request)
        rows = "".join(  # a damaged run (no space, strategy, count) is its own row: it was a 500 for the page
            f"<tr><td><a href='/runs/{esc(s['id'])}{tq}'>{esc(s['id'])}</a></td><td>{esc(s.get('space', '-'))}</td>"
            f"<td>{esc(s.get('strategy') or '-')}</td><td>{esc(s.get('status', '-'))}</td>"
            f"<td>{esc(s.get('evaluations', '-'))}</td>"
            f"<td><a href='/runs/{esc(s['id'])}/live{tq}'>live</a></td></tr>" for s in runs())
        devs = "".join(f"<li><a href='/devices/{esc(d)}{tq}'>{esc(d)}</a></li>" for d in source.devices())
        return html(lambda _: "<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgenas</title>"
                    "<link rel='icon' href='data:,'></head><body>"
                    "<h1>edgenas</h1><h2>Runs</h2><table><tr><th>run</th><th>space</th><th>strategy</th>"
                    f"<th>status</th><th>evaluations</th><th></th></tr>{rows}</table><h2>Devices</h2><ul>{devs}</ul>"
                    f"<p><a href='/fleet{tq}'>fleet</a> · <a href='/docs{tq}'>API docs</a></p></body></html>",
                    inline_styles=False)

    @app.get("/runs/{run_id}", response_class=HTMLResponse, tags=["pages"], summary="Run report")
    def run_report(run_id: str) -> HTMLResponse:
        run = source.run(run_id, columns=True)
        return html(lambda n: pages.run_page(run, source, plotly_src=PLOTLY_PATH, nonce=n))

    @app.get("/runs/{run_id}/live", response_class=HTMLResponse, tags=["pages"], summary="Live view of a run")
    def run_live(run_id: str, request: Request, interval_ms: int = Query(1000, ge=200, le=60000)) -> HTMLResponse:
        # the page needs the run's settings, not its records (its script polls for them): the log is counted
        run = source.run(run_id, evaluations=False)
        return html(lambda n: live_page(run, PLOTLY_PATH, request.query_params.get("token"), interval_ms, nonce=n))

    @app.get("/compare", response_class=HTMLResponse, tags=["pages"], summary="Compare runs (?run=A&run=B)")
    def compare(run: list[str] = Query(...)) -> HTMLResponse:
        if len(run) > MAX_COMPARE:
            raise InputError(f"too many runs to compare ({len(run)}); at most {MAX_COMPARE}",
                             hint="pick fewer run= parameters")
        loaded = [source.run(r, columns=True) for r in run]
        return html(lambda n: pages.compare_page(loaded, plotly_src=PLOTLY_PATH, nonce=n))

    @app.get("/devices/{device}", response_class=HTMLResponse, tags=["pages"], summary="Device report")
    def device_report(device: str) -> HTMLResponse:
        return html(lambda n: pages.device_page(source, device, plotly_src=PLOTLY_PATH, nonce=n))

    @app.get("/fleet", response_class=HTMLResponse, tags=["pages"], summary="Fleet report")
    def fleet() -> HTMLResponse:
        return html(lambda n: pages.fleet_page(source, plotly_src=PLOTLY_PATH, nonce=n))

    return app
