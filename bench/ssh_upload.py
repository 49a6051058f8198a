"""Uploading a table's blocks to a device over a REAL sshd: one file at a time vs in batches.

A profile pushes every block of the space to the device before timing it (``Session.push_many``, batches of the
profiler's ``batch_size``, 24). Each upload is checked by SHA-256 computed on the device; the baseline,
``Session.push`` per block, starts one Python on the device per block to hash it (as every upload did before
``put_files``), the batch one per batch. Each repetition pushes to a fresh folder (so nothing is skipped as
already there), the two ways alternating; medians of ``--repeats``. Timings include the agent's ``file.stat``
of each block (one round trip on the running agent, both ways).

Usage: ``python bench/ssh_upload.py [--space mbv3-small] [--repeats 3]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _sshd import ssh_bench_dir, sshd_helpers  # noqa: E402  (bench/ is on sys.path when run as a script)

BATCH = 24  # the profiler's batch_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mbv3-small")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from edgenas.devices.session import open_session
    from edgenas.fleet.measure import export_blocks
    from edgenas.project import Project
    from edgenas.spaces import get_space

    base, key = ssh_bench_dir("edgenas-bench-upload-")
    project = Project(base / "proj")
    helpers = sshd_helpers()
    (base / "sshd").mkdir()
    server = helpers.SshdServer(base / "sshd", helpers._free_port(), key).start()
    try:
        server.trust(project)
        profile = server.profile("dev")
        space = get_space(args.space)
        paths, _ = export_blocks(project, space, space.key_vocab())
        files = [paths[k] for k in sorted(paths)]
        size = sum(f.stat().st_size for f in files)
        times: dict[str, list[float]] = {"one_at_a_time_s": [], "batched_s": []}
        with open_session(project, profile) as s:
            for rep in range(args.repeats):
                for label in times:
                    sub = f"bench-{rep}-{label}"
                    t0 = time.perf_counter()
                    if label == "batched_s":
                        for i in range(0, len(files), BATCH):
                            s.push_many(files[i:i + BATCH], sub)
                    else:
                        for f in files:
                            s.push(f, sub)
                    times[label].append(time.perf_counter() - t0)
                    s._pushed.clear()  # the next repetition pushes again, to its own folder
                    shutil.rmtree(Path(profile.workdir) / sub, ignore_errors=True)
        med = {k: round(statistics.median(v), 3) for k, v in times.items()}
        print(json.dumps({"bench": "ssh_upload", "space": args.space, "blocks": len(files), "bytes": size,
                          "batch": BATCH, "repeats": args.repeats,
                          "baseline": "Session.push one block at a time (one hashing command on the device each)",
                          "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                          "runs": {k: [round(x, 3) for x in v] for k, v in times.items()}, **med,
                          "speedup": round(med["one_at_a_time_s"] / med["batched_s"], 2)}, indent=2))
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
