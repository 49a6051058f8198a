"""Fleet refresh wall time over N = 1, 2, 4, 8 local REAL sshd "devices": parallel vs one after another.

Two workloads, each timed with concurrency N (parallel) and with concurrency 1 (the named baseline):

* ``rebuild``: ``refresh_fleet`` with every device's LUT and partial files removed first, so each device
  is fully re-profiled (``mbv3-tiny``, a fast protocol). The CPU is shared by all "devices" here, so the
  speed-up is bounded by the host's cores, not by the transport.
* ``transport``: per device open a session (SSH + agent start), ``info``, push a fresh 256 KiB file,
  ``lut.list``. This is what parallelism buys on a real fleet, where the work runs on each device.

Plus ``fleet_status`` over 8 devices (parallel) vs ``device_status`` one after another.
Usage: ``python bench/fleet_refresh.py [--sizes 1,2,4,8] [--space mbv3-tiny]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _sshd import ssh_bench_dir, sshd_helpers  # noqa: E402  (bench/ is on sys.path when run as a script)

FAST = {"warmup_min_n": 2, "warmup_min_s": 0.0, "min_n": 5, "min_s": 0.01, "max_s": 0.05}


def start_servers(n: int, base: Path, key: Path, project) -> list:
    helpers = sshd_helpers()
    servers = []
    for i in range(n):
        d = base / f"sshd{i}"
        d.mkdir(parents=True)
        s = helpers.SshdServer(d, helpers._free_port(), key).start()
        s.trust(project)
        servers.append(s)
    return servers


def transport_job(project, profile, payload: Path) -> None:
    from edgenas.devices.session import open_session

    with open_session(project, profile) as s:
        s.call("info", s.runtime_params(), timeout_s=60)
        s.transport.put_file(payload, f"cache/bench-{payload.name}")
        s.call("lut.list", timeout_s=60)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--space", default="mbv3-tiny")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    from edgenas.devices.agent_bundle import ensure_agent_bundle
    from edgenas.fleet.measure import export_blocks, overhead_model
    from edgenas.fleet.refresh import refresh_fleet
    from edgenas.fleet.status import device_status, fleet_status
    from edgenas.project import Project
    from edgenas.spaces import get_space

    base, key = ssh_bench_dir("edgenas-bench-fleet-")
    project = Project(base / "proj")
    servers = start_servers(max(sizes), base, key, project)
    profiles = [s.profile(f"dev{i}") for i, s in enumerate(servers)]
    space = get_space(args.space)
    ensure_agent_bundle(project)
    export_blocks(project, space, space.key_vocab())
    overhead_model(project)
    # warm every device once (agent installed) so install time is not part of the figures
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: transport_job(project, p, key.with_suffix(".pub")), profiles))

    def reset(profs) -> None:
        for p in profs:
            shutil.rmtree(project.luts_dir / p.name, ignore_errors=True)
            shutil.rmtree(Path(p.workdir) / "partial", ignore_errors=True)
            shutil.rmtree(Path(p.workdir) / "luts", ignore_errors=True)

    refresh_fleet(project, profiles, args.space, concurrency=4, protocol=FAST)  # warm-up: models pushed
    results = {"rebuild": [], "transport": []}
    try:
        for n in sizes:
            profs = profiles[:n]
            row = {"n_devices": n}
            for label, conc in (("sequential_s", 1), ("parallel_s", n)):
                reset(profs)
                rows = []
                row[label] = round(timed(lambda: rows.extend(
                    refresh_fleet(project, profs, args.space, concurrency=conc, protocol=FAST))), 3)
                bad = [r.reason for r in rows if r.status != "refreshed"]
                assert not bad, bad
            row["speedup"] = round(row["sequential_s"] / row["parallel_s"], 2)
            results["rebuild"].append(row)

            row = {"n_devices": n}
            for label, conc in (("sequential_s", 1), ("parallel_s", n)):
                payloads = []
                for p in profs:
                    f = base / f"payload-{p.name}-{label}-{n}.bin"
                    f.write_bytes(os.urandom(256 * 1024))
                    payloads.append(f)
                with ThreadPoolExecutor(conc) as pool:
                    row[label] = round(timed(lambda: list(pool.map(
                        lambda pf: transport_job(project, *pf), zip(profs, payloads)))), 3)
            row["speedup"] = round(row["sequential_s"] / row["parallel_s"], 2)
            results["transport"].append(row)

        profs = profiles[:8]
        status_rows = []
        par = timed(lambda: status_rows.extend(fleet_status(project, profs, [args.space])))
        assert all(r.reachable for r in status_rows), [r.error for r in status_rows]
        seq = timed(lambda: [device_status(project, p, [args.space]) for p in profs])
        results["fleet_status"] = {"n_devices": len(profs), "parallel_s": round(par, 3),
                                   "sequential_s": round(seq, 3), "speedup": round(seq / par, 2)}
    finally:
        for s in servers:
            s.kill()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"bench": "fleet_refresh", "space": args.space, "protocol": FAST,
                      "baseline": "same workload with concurrency 1 (one device after another)",
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      **results}, indent=2))


if __name__ == "__main__":
    main()
