"""How reading a run and a warm start scale with the evaluations a run holds and the runs a database holds;
this checkout against another (a baseline), alternated; prints JSON.

    python bench/run_scale.py --baseline /tmp/edgenas-before [--sizes 1000,10000,100000] [--runs 200] [--repeats 3]

The fixtures are built once, with this checkout's code: a real search (``nb201`` on ``nb201_hw.csv``, ``random``,
``raspi4_ms`` at most 20 ms, ``--budget`` the smallest size) whose ``evaluations.jsonl`` is then extended to each
size by logging its records again under the next numbers (the format a search that repeats architectures
writes; its ``best.json``, ``pareto.json`` and checkpoint stay the real ones); and ``--runs`` copies of the
smallest run in ``runs/``, indexed with ``edgenas runs import`` (the database a warm start reads); and the runs
of every size indexed in a database of their own (``runs compare`` of them all). Each
operation is then a fresh process of the CLI, or of the API (``FolderSource`` behind a ``TestClient``: the
request alone is timed, in the process; ``again_median_s``: the same request again, as a server is asked
again, or of a poll the next one, as the live page polls: ``since`` the number it got to), the checkouts
taking turns, so load on a shared machine hits both alike: ``runs list`` and ``runs show`` over the database,
``GET /api/runs`` over the run folders, ``report``, ``GET /api/runs/ID``, the live page ``GET /runs/ID/live``
and a poll of its last 10 evaluations (``GET /api/runs/ID/evaluations?since=N``) of each size, ``runs
compare`` of the runs of every size, and a warm-started search (``--warm-start auto``, ``--budget 10``, on a
fresh copy of the database each time) whose wall time is mostly
its start-up. ``peak_rss_mb`` is the process's
peak resident memory (``wait4``). ``ratio`` is the baseline's median over this checkout's (above 1: this one is
faster); ``same_output`` compares the two checkouts' JSON output (and a warm start's ``warm_start.json``; a
report's page, byte for byte but its time stamp).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"

_API = r"""
import json, re, resource, sys, time
from edgenas.api.app import create_app
from edgenas.project import Project
from edgenas.report.source import FolderSource
from starlette.testclient import TestClient
client = TestClient(create_app(FolderSource(Project.default())))
t = time.perf_counter()
r = client.get(sys.argv[1])
elapsed = time.perf_counter() - t
assert r.status_code == 200, r.text[:300]
html = r.headers["content-type"].startswith("text/html")
stamp = re.compile(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")  # a page's time stamp: not compared
body = stamp.sub("", r.text) if html else r.json()
then = sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]
t = time.perf_counter()
again = client.get(then)
again_s = time.perf_counter() - t
assert again.status_code == 200, again.text[:300]
assert then != sys.argv[1] or (stamp.sub("", again.text) if html else again.json()) == body
print(json.dumps({"request_s": elapsed, "again_s": again_s, "body": body}))
"""


def _cli(checkout: Path, project: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-c", "from edgenas.cli import main; main()", *args]


def run_once(checkout: Path, project: Path, argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident memory in MB, stdout) of one fresh process."""
    env = dict(os.environ, PYTHONPATH=str(checkout), EDGENAS_PROJECT=str(project), EDGENAS_NO_PROGRESS="1")
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=project, env=env, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS (RUSAGE_CHILDREN keeps the max of all)
        elapsed = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0), se.seek(0)
        stdout, stderr = so.read().decode(), se.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: {' '.join(argv[3:])} exited {proc.returncode}: {stderr.strip()[-400:]}")
    return elapsed, usage.ru_maxrss / 1024, stdout


def build(fix: Path, sizes: list[int], n_runs: int, table: Path) -> dict[str, str]:
    """The fixtures (with this checkout): ``big/rN`` for each size, ``many/runs/cK`` indexed in its database."""
    big, many = fix / "big", fix / "many"
    big.mkdir(parents=True)
    (many / "runs").mkdir(parents=True)
    first = min(sizes)
    t = time.perf_counter()
    run_once(ROOT, big, _cli(ROOT, big, [
        "search", "--space", "nb201", "--table", str(table), "--latency-column", "raspi4_ms", "--max-latency-ms",
        "20", "--strategy", "random", "--budget", str(first), "--seed", "0", "--out", f"r{first}", "--json"]))
    src = big / f"r{first}"
    lines = (src / "evaluations.jsonl").read_bytes().splitlines()
    if len(lines) != first:
        raise SystemExit(f"the search logged {len(lines)} evaluations, not {first}: choose another first size")
    records = [json.loads(x) for x in lines]
    for n in sizes:
        if n == first:
            continue
        dst = big / f"r{n}"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".edgenas.lock"))
        with open(dst / "evaluations.jsonl", "a", encoding="utf-8") as log:
            for k in range(first, n):
                log.write(json.dumps({**records[k % first], "number": k}) + "\n")
        for name, key in (("best.json", "evaluations"), ("checkpoint.json", "n_evaluations")):
            rec = json.loads((dst / name).read_text())
            rec[key] = n
            if name == "checkpoint.json":
                rec["log_bytes"] = (dst / "evaluations.jsonl").stat().st_size
            (dst / name).write_text(json.dumps(rec))
    built_s = time.perf_counter() - t
    folders = []
    for k in range(n_runs):
        dst = many / "runs" / f"c{k:03d}"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".edgenas.lock"))
        folders.append(str(dst))
    t = time.perf_counter()
    _, _, out = run_once(ROOT, many, _cli(ROOT, many, ["runs", "import", *folders, "--json"]))
    import_s = time.perf_counter() - t
    return {"first_run": json.loads(out)[0]["id"], "build_s": f"{built_s:.1f}", "import_s": f"{import_s:.1f}",
            **build_compared(fix, sizes)}


def build_compared(fix: Path, sizes: list[int]) -> dict[str, list[str]]:
    """``compared/``: a project whose database indexes the runs ``big/rN`` of every size (``runs compare``)."""
    proj = fix / "compared"
    proj.mkdir()
    folders = [str(fix / "big" / f"r{n}") for n in sizes]
    _, _, out = run_once(ROOT, proj, _cli(ROOT, proj, ["runs", "import", *folders, "--json"]))
    return {"compared_runs": [r["id"] for r in json.loads(out)]}


def operations(sizes: list[int], n_runs: int, table: Path, first_id: str,
               compared: list[str]) -> dict[str, tuple[str, list[str]]]:
    """name -> (fixture project, argv after the interpreter; 'API' first for an API request)."""
    ops: dict[str, tuple[str, list[str]]] = {
        f"runs list ({n_runs} runs)": ("many", ["runs", "list", "--json"]),
        f"runs show ({n_runs} runs)": ("many", ["runs", "show", first_id, "--json"]),
        f"GET /api/runs ({n_runs} runs)": ("many", ["API", "/api/runs"]),
        f"warm-started search ({n_runs} runs)": ("many", [
            "search", "--space", "nb201", "--table", str(table), "--latency-column", "raspi4_ms",
            "--max-latency-ms", "20", "--strategy", "evolution", "--population", "10", "--budget", "10",
            "--seed", "1", "--warm-start", "auto", "--db", "{db}", "--out", "{out}", "--json"]),
    }
    for n in sizes:
        ops[f"GET /api/runs/ID ({n} evaluations)"] = ("big", ["API", f"/api/runs/r{n}"])
        ops[f"report ({n} evaluations)"] = ("big", ["report", f"r{n}", "--out", "{out}.html", "--json"])
        ops[f"GET /runs/ID/live ({n} evaluations)"] = ("big", ["API", f"/runs/r{n}/live"])
        ops[f"GET /api/runs/ID/evaluations?since={n - 10} ({n} evaluations)"] = (
            "big", ["API", f"/api/runs/r{n}/evaluations?since={n - 10}", f"/api/runs/r{n}/evaluations?since={n}"])
    ops[f"GET /api/runs ({len(sizes)} runs of {'/'.join(map(str, sizes))})"] = ("big", ["API", "/api/runs"])
    ops[f"runs compare ({len(sizes)} runs of {'/'.join(map(str, sizes))})"] = (
        "compared", ["runs", "compare", *compared, "--json"])
    return ops


def _comparable(name: str, stdout: str, out: Path | None) -> object:
    """What must not differ between the checkouts: the JSON, less paths and times of this invocation."""
    doc = json.loads(stdout)
    if "request_s" in doc:
        doc = doc["body"]
    if name.startswith("warm-started"):
        warm = json.loads((out / "warm_start.json").read_text())
        return {"warm_start": warm, "best": doc.get("best"), "objective_value": doc.get("objective_value")}
    if name.startswith("report"):
        page = re.sub(rb"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", b"",
                      Path(doc.get("report_path") or doc["path"]).read_bytes())  # a baseline before report_path
        return {**{k: v for k, v in doc.items() if k not in ("out", "path", "report_path", "report")},
                "page_sha256": hashlib.sha256(page).hexdigest()}
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout of edgenas, timed in the same run")
    ap.add_argument("--sizes", default="1000,10000,100000", help="evaluations per run folder, comma-separated")
    ap.add_argument("--runs", type=int, default=200, help="runs in the database (copies of the smallest run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", action="append", default=[], help="only the operations whose name holds this")
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--fixtures", type=Path, help="build the fixtures in this new folder and keep them (default: a "
                                                  "temporary one); an existing one made by this script is reused")
    a = ap.parse_args()
    sizes = sorted(int(s) for s in a.sizes.split(","))
    checkouts = {"this": ROOT, **({"baseline": a.baseline.resolve()} if a.baseline else {})}
    with tempfile.TemporaryDirectory(prefix="edgenas-run-scale-") as tmp:
        fix = a.fixtures.resolve() if a.fixtures else Path(tmp) / "fixtures"
        made = fix / "fixtures.json"
        if not made.exists():
            made_now = build(fix, sizes, a.runs, a.table)
            made.write_text(json.dumps({"sizes": sizes, "runs": a.runs, **made_now}))
        built = json.loads(made.read_text())
        if "compared_runs" not in built:  # fixtures of an earlier version of this script
            built.update(build_compared(fix, built["sizes"]))
            made.write_text(json.dumps(built))
        if (built["sizes"], built["runs"]) != (sizes, a.runs):
            raise SystemExit(f"{fix} holds fixtures of other --sizes/--runs: {built}")
        db = fix / "many" / ".edgenas" / "edgenas.db"
        ops = {k: v for k, v in operations(sizes, a.runs, a.table, built["first_run"], built["compared_runs"]).items()
               if not a.only or any(s in k for s in a.only)}
        times = {c: {k: [] for k in ops} for c in checkouts}
        rss = {c: {k: [] for k in ops} for c in checkouts}
        again: dict[str, dict[str, list[float]]] = {c: {k: [] for k in ops} for c in checkouts}
        seen: dict[str, dict[str, object]] = {k: {} for k in ops}
        for i in range(a.repeats):
            for name, (where, args) in ops.items():
                for c, checkout in checkouts.items():  # the checkouts take turns on every operation
                    scratch = Path(tmp) / c / f"{i}-{list(ops).index(name)}"
                    scratch.mkdir(parents=True)
                    fresh_db = scratch / "edgenas.db"
                    if "{db}" in args:
                        shutil.copy(db, fresh_db)
                    argv = [x.format(db=f"sqlite:///{fresh_db}", out=scratch / "out") for x in args]
                    cmd = ([sys.executable, "-c", _API, *argv[1:]] if argv[0] == "API"
                           else _cli(checkout, fix / where, argv))
                    wall, peak, stdout = run_once(checkout, fix / where, cmd)
                    if argv[0] == "API":
                        wall = json.loads(stdout)["request_s"]
                        again[c][name].append(json.loads(stdout)["again_s"])
                    times[c][name].append(wall)
                    rss[c][name].append(peak)
                    seen[name][c] = _comparable(name, stdout, scratch / "out")
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
           "repeats": a.repeats, "sizes": sizes, "runs": a.runs, "fixtures": built,
           "checkouts": {c: str(p) for c, p in checkouts.items()}, "operations": {}}
    for name in ops:
        row: dict[str, object] = {c: {"median_s": round(statistics.median(times[c][name]), 3),
                                      "min_s": round(min(times[c][name]), 3),
                                      "peak_rss_mb": round(max(rss[c][name]), 1),
                                      **({"again_median_s": round(statistics.median(again[c][name]), 3)}
                                         if again[c][name] else {})} for c in checkouts}
        if a.baseline:
            row["ratio"] = round(row["baseline"]["median_s"] / row["this"]["median_s"], 2)
            row["same_output"] = seen[name]["this"] == seen[name]["baseline"]
        out["operations"][name] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
