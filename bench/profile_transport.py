"""Profiling cost: SSH vs the ``local`` subprocess, adaptive vs fixed-500 protocol, agent install.

* ``transport``: ``profile_device`` for the space over a REAL local sshd vs the ``local`` device
  (baseline), same protocol, blocks already exported, agents already installed: the difference is the
  transport's overhead.
* ``protocol``: LUT build time on ``local`` with the adaptive ``LUT_PROTOCOL`` vs Once-for-All's fixed
  500 repetitions (the baseline: 500 single runs after a warm-up of 10 runs and 50 ms,
  ``LUT_PROTOCOL_FIXED_500``, as when issue 17 measured it at 21.4 s; ``bench/lut_protocol.py``'s
  ``fixed_500``), and the largest and median relative difference between the two tables' medians.
* ``agent``: time of the first connect to a fresh work dir (zipapp uploaded) vs a second connect
  (already installed, baseline), and the zipapp's size.

Usage: ``python bench/profile_transport.py [--space mbv3-small|mbv3-tiny]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _sshd import ssh_bench_dir, sshd_helpers  # noqa: E402  (bench/ is on sys.path when run as a script)

FAST = {"warmup_min_n": 3, "warmup_min_s": 0.01, "min_n": 5, "min_s": 0.02, "max_s": 0.3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mbv3-small")
    args = ap.parse_args()

    from edgenas.devices.agent_bundle import ensure_agent_bundle
    from edgenas.fleet.measure import LUT_PROTOCOL, LUT_PROTOCOL_FIXED_500, export_blocks, overhead_model
    from edgenas.fleet.profiler import profile_device
    from edgenas.devices.session import open_session
    from edgenas.latency.lut import Lut
    from edgenas.project import Project
    from edgenas.spaces import get_space

    helpers = sshd_helpers()
    base, key = ssh_bench_dir("edgenas-bench-profile-")
    project = Project(base / "proj")
    (base / "sshd").mkdir()
    server = helpers.SshdServer(base / "sshd", helpers._free_port(), key).start()
    server.trust(project)
    out: dict = {}
    try:
        space = get_space(args.space)
        zipapp, _ = ensure_agent_bundle(project)
        t0 = time.perf_counter()
        export_blocks(project, space, space.key_vocab())
        overhead_model(project)
        out["export_blocks_s"] = round(time.perf_counter() - t0, 3)

        # -- agent install: first connect to a fresh work dir vs an installed one
        ssh_dev = server.profile("ssh-dev")

        def connect_once() -> float:
            t = time.perf_counter()
            with open_session(project, ssh_dev) as s:
                s.call("ping", timeout_s=60)
            return time.perf_counter() - t

        first = connect_once()
        again = [connect_once() for _ in range(3)]
        out["agent"] = {"first_connect_with_install_s": round(first, 3),
                        "connect_installed_s (baseline, median of 3)": round(float(np.median(again)), 3),
                        "install_overhead_s": round(first - float(np.median(again)), 3),
                        "zipapp_bytes": Path(zipapp).stat().st_size}
        with open_session(project, "local") as s:  # installs the local agent too
            s.call("ping", timeout_s=60)

        def fresh(name: str, workdir: Path) -> None:
            shutil.rmtree(project.luts_dir / name, ignore_errors=True)
            for sub in ("partial", "luts"):
                shutil.rmtree(workdir / sub, ignore_errors=True)

        # -- transport: the same profile over SSH and locally
        timings = {}
        for label, dev, wd in (("local_s (baseline)", "local", project.local_workdir),
                               ("ssh_s", ssh_dev, Path(ssh_dev.workdir))):
            fresh("local" if dev == "local" else dev.name, wd)
            res = profile_device(project, dev, args.space, protocol=FAST)
            assert res.measured == len(space.key_vocab()), res
            timings[label] = round(res.wall_s, 3)
        out["transport"] = dict(timings, protocol=FAST,
                                ssh_overhead_s=round(timings["ssh_s"] - timings["local_s (baseline)"], 3),
                                ssh_over_local=round(timings["ssh_s"] / timings["local_s (baseline)"], 3))

        # -- adaptive protocol vs fixed 500 repetitions, both on the local device
        luts = {}
        for label, proto in (("fixed_500", LUT_PROTOCOL_FIXED_500), ("adaptive", None)):
            fresh("local", project.local_workdir)
            res = profile_device(project, "local", args.space, protocol=proto)
            luts[label] = (res.wall_s, Lut.load(res.lut_path))
        a, f = luts["adaptive"][1], luts["fixed_500"][1]
        rel = np.array([abs(a.entries[k].median_ms - f.entries[k].median_ms) / f.entries[k].median_ms
                        for k in f.entries])
        out["protocol"] = {
            "adaptive_protocol": LUT_PROTOCOL, "fixed_500_protocol": LUT_PROTOCOL_FIXED_500,
            "adaptive_build_s": round(luts["adaptive"][0], 3),
            "fixed_500_build_s (baseline)": round(luts["fixed_500"][0], 3),
            "adaptive_over_fixed_time": round(luts["adaptive"][0] / luts["fixed_500"][0], 3),
            "n_entries": len(rel),
            "max_rel_diff": round(float(rel.max()), 4),
            "median_rel_diff": round(float(np.median(rel)), 4),
            "adaptive_unstable": len(a.unstable_keys), "fixed_unstable": len(f.unstable_keys),
        }
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"bench": "profile_transport", "space": args.space,
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, **out},
                     indent=2))


if __name__ == "__main__":
    main()
