"""A failed Ray batch, again and again: how often the driver survives and every other task is cancelled.

One local Ray head (2 CPUs) serves every run; each run is a driver process of its own that maps 4 tasks
through ``RayExecutor`` (one raises after 1 s, the others sleep 300 s: two wait for a worker) and checks that
no task process is left 30 s after the error. ``now`` is the executor as shipped (``_cancel_unfinished``);
``before`` (the baseline, same run, alternated) cancels every task of the batch once, as stop 64 did. Prints
JSON: per executor the runs that passed, the drivers Ray's core aborted, the runs that left a task running.

    python bench/ray_cancel.py --runs 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("before", "now")
_TITLE = b"ray::_sleep_then"


def _sleep_then(spec, records):
    if records[0]["n"] == 0:
        time.sleep(1.0)
        raise RuntimeError("boom in a task")
    time.sleep(300.0)
    return [0.0]


def _titled() -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and Path(entry.path, "cmdline").read_bytes().startswith(_TITLE):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _driver(mode: str, address: str) -> None:
    """One run, in this process: prints ``passed`` or ``left`` and exits 0 (Ray's core may abort it first)."""
    import ray

    from edgenas.evaluate import ray_executor
    from edgenas.evaluate.executor import EvalSpec, ExecutorError

    if mode == "before":
        def cancel_all_once(ray, refs, grace_s=10.0):
            for r in refs:
                ray.cancel(r, force=True)
        ray_executor._cancel_unfinished = cancel_all_once
    ex = ray_executor.RayExecutor(address, max_retries=0)
    ex._remote = ray.remote(num_cpus=1, max_retries=0, retry_exceptions=False)(_sleep_then)
    try:
        ex.map(EvalSpec.make("compression", "nb201"), [{"n": i} for i in range(4)])
        print("no error", flush=True)
        os._exit(0)
    except ExecutorError:
        pass
    deadline = time.monotonic() + 30.0
    while _titled() and time.monotonic() < deadline:
        time.sleep(0.2)
    print("left" if _titled() else "passed", flush=True)
    os._exit(0)


def _start_head(tmp: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp / "head.log", "wb")
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address",
           "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
           "--disable-usage-stats", "--temp-dir", str(tmp)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while b"Ray runtime started" not in (tmp / "head.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the Ray head did not start: {(tmp / 'head.log').read_text()[-2000:]}")
        time.sleep(0.5)
    return proc, f"127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="runs per executor")
    ap.add_argument("--driver", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        _driver(args.driver, args.address)
        return
    import signal

    import ray
    from rich.console import Console
    from rich.progress import Progress

    tmp = Path(tempfile.mkdtemp(prefix="ray_cancel_"))
    head, address = _start_head(tmp)
    counts = {m: {"runs": 0, "passed": 0, "driver_aborted": 0, "task_left_running": 0, "other": 0} for m in MODES}
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.monotonic()
    try:
        with Progress(console=Console(stderr=True), transient=True) as bar:  # stdout: the JSON alone
            task = bar.add_task("failed batches", total=2 * args.runs)
            for i in range(args.runs):
                for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                    res = subprocess.run([sys.executable, __file__, "--driver", mode, "--address", address],
                                         capture_output=True, text=True, timeout=300, env=env)
                    c = counts[mode]
                    c["runs"] += 1
                    out = res.stdout.strip().splitlines()
                    if "Check failed" in res.stderr:
                        c["driver_aborted"] += 1
                    elif res.returncode == 0 and out and out[-1] == "passed":
                        c["passed"] += 1
                    elif res.returncode == 0 and out and out[-1] == "left":
                        c["task_left_running"] += 1
                    else:
                        c["other"] += 1
                    bar.advance(task)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the head, then whatever of its group outlived it
            try:
                os.killpg(head.pid, sig)
                head.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(), "ray": ray.__version__,
                      "baseline": "before", "runs_per_executor": args.runs, "wall_s": round(time.monotonic() - t0, 1),
                      "executors": counts}, indent=2))


if __name__ == "__main__":
    main()
