"""Wall time of short CLI commands, this checkout against another (a baseline), alternated; prints JSON.

    python bench/cli_startup.py --baseline /tmp/edgenas-before [--repeats 7]

Each command runs as a fresh ``python -c "from edgenas.cli import main; main()" ...`` process (what
``edgenas`` runs) in a fresh project folder per checkout, the two checkouts taking turns, so load on a
shared machine hits both alike. The commands are those whose time is mostly start-up: a search that
looks accuracy up in ``nb201_hw.csv`` (budget 30, ``evolution``, a new run folder each time), the
report of that run, ``runs list``
and ``--help``. ``ratio`` is the baseline's median over this checkout's (above 1: this one is faster).
Without ``--baseline`` only this checkout is timed. A baseline is any checkout with the same CLI, e.g.
``git worktree add /tmp/edgenas-before fa6f4ae``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"


def commands(table: Path) -> dict[str, list[str]]:
    return {
        "search --table (budget 30)": ["search", "--space", "nb201", "--table", str(table), "--strategy", "evolution",
                                       "--budget", "30", "--seed", "0", "--out", "run{i}", "--json"],
        "report": ["report", "run{i}", "--out", "run{i}/report.html", "--json"],
        "runs list": ["runs", "list", "--json"],
        "--help": ["--help"],
    }


def run_once(checkout: Path, project: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), EDGENAS_PROJECT=str(project), EDGENAS_NO_PROGRESS="1")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", *args], cwd=project, env=env,
                         capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{checkout}: edgenas {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-300:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout of edgenas, timed in the same run")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--table", type=Path, default=TABLE)
    a = ap.parse_args()
    checkouts = {"this": ROOT, **({"baseline": a.baseline.resolve()} if a.baseline else {})}
    cmds = commands(a.table)
    times: dict[str, dict[str, list[float]]] = {c: {name: [] for name in cmds} for c in checkouts}
    with tempfile.TemporaryDirectory(prefix="edgenas-cli-startup-") as tmp:
        projects = {c: Path(tmp) / c for c in checkouts}
        for p in projects.values():
            p.mkdir()
        for i in range(a.repeats):
            for name, args in cmds.items():  # the checkouts take turns on every command
                for c, checkout in checkouts.items():
                    times[c][name].append(run_once(checkout, projects[c], [x.format(i=i) for x in args]))
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
           "repeats": a.repeats, "checkouts": {c: str(p) for c, p in checkouts.items()}, "commands": {}}
    for name in cmds:
        row = {c: {"median_s": round(statistics.median(times[c][name]), 3),
                   "min_s": round(min(times[c][name]), 3)} for c in checkouts}
        if a.baseline:
            row["ratio"] = round(row["baseline"]["median_s"] / row["this"]["median_s"], 2)
        out["commands"][name] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
