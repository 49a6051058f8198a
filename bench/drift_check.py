"""Fleet drift check on the `local` device: false alarms under load, and detection of a stale table.

Profiles `local` for the space once (quiet machine), then times the sentinel check ``--repeats``
times in each condition (two passes each, as a confirmed check) and counts how often each rule judges
the table drifted:

* ``quiet`` / ``loaded`` (``--load`` busy processes, a neighbour on a shared machine): the table is
  unchanged, so every "drifted" verdict is a false alarm;
* ``stale`` (loaded too): the table's ratios and times are ``--stale`` times what the device does
  (0.5 and 0.75 by default), so every verdict that is not "drifted" is a miss.

Three rules judged on the same measurements:

* ``confirmed_ratio`` (what ``fleet refresh`` uses): the sentinels' ratios to the speed reference,
  drifted only if both passes exceed max(5%, 3 x robust CoV) capped at 50%, the robust CoV being
  (p90 - median) / (1.28 median) of the sentinels' samples when the table was built;
* ``confirmed_ratio_sample_cov`` (what it used before 5 December): the same with the samples' plain
  CoV (std / mean), which a few stalls lift to the cap;
* the named baseline ``raw_ms`` (the first rule of all): raw median times of one pass, plain CoV.

    python bench/drift_check.py --space mbv3-tiny --repeats 10 --load 2

Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUSY = "import time\nt = time.time() + 3600\nwhile time.time() < t: pass\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbv3-tiny")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy processes while loaded")
    ap.add_argument("--stale", type=float, action="append", help="factor of a stale table (repeatable; "
                    "default 0.5 and 0.75)")
    args = ap.parse_args()

    from edgenas.fleet.profiler import profile_device
    from edgenas.fleet.drift import (
        DRIFT_CAP, DRIFT_COV_FACTOR, DRIFT_FLOOR, drift_threshold, measure_drift, sentinel_keys)
    from edgenas.devices.session import open_session
    from edgenas.latency.lut import Lut
    from edgenas.project import Project

    proj = Project(Path(tempfile.mkdtemp(prefix="edgenas-drift-")))
    t0 = time.perf_counter()
    lut = Lut.load(profile_device(proj, "local", args.space).lut_path)
    profile_s = time.perf_counter() - t0

    def scaled(f: float):
        return dataclasses.replace(lut, entries={
            k: dataclasses.replace(e, ratio=e.ratio * f, **{a: getattr(e, a) * f for a in (
                "median_ms", "mean_ms", "std_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")})
            for k, e in lut.entries.items()})

    keys = sentinel_keys(lut)
    robust_cov, robust_thr = drift_threshold(lut, keys)
    sample_cov = float(np.median([lut.entries[k].cov for k in keys]))
    sample_thr = min(max(DRIFT_FLOOR, DRIFT_COV_FACTOR * sample_cov), DRIFT_CAP)
    conditions = {"quiet": (lut, 0), "loaded": (lut, args.load)}
    conditions.update({f"stale_{f:g}": (scaled(f), args.load) for f in (args.stale or [0.5, 0.75])})
    out: dict[str, dict] = {}
    with open_session(proj, "local") as s:
        for name, (table, load) in conditions.items():
            busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
            try:  # two passes a check, as a confirmed check times them
                checks = [(measure_drift(s, proj, table, confirm=False), measure_drift(s, proj, table, confirm=False))
                          for _ in range(args.repeats)]
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
            both = [min(a.drift, b.drift) for a, b in checks]
            out[name] = {
                "load_processes": load,
                "drifted": {"confirmed_ratio": float(np.mean([d > robust_thr for d in both])),
                            "confirmed_ratio_sample_cov": float(np.mean([d > sample_thr for d in both])),
                            "raw_ms": float(np.mean([a.raw_drift > sample_thr for a, _ in checks]))},
                "median_drift_ratio": float(np.median([a.drift for a, _ in checks])),
                "median_drift_raw_ms": float(np.median([a.raw_drift for a, _ in checks])),
                "median_speed_change": float(np.median([a.speed_change for a, _ in checks])),
                "basis": sorted({a.basis for a, _ in checks}),
                "drift_ratio": [[round(a.drift, 3), round(b.drift, 3)] for a, b in checks],
                "drift_raw_ms": [round(a.raw_drift, 3) for a, _ in checks],
            }
    print(json.dumps({
        "bench": "drift_check", "space": args.space, "repeats": args.repeats, "entries": len(lut.entries),
        "profile_s": round(profile_s, 1), "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "baseline": "raw_ms", "sentinels": keys,
        "threshold": {"robust_cov": robust_cov, "confirmed_ratio": robust_thr, "sample_cov": sample_cov,
                      "confirmed_ratio_sample_cov": sample_thr, "raw_ms": sample_thr},
        "conditions": out,
        "false_alarms": {c: out[c]["drifted"] for c in ("quiet", "loaded")},
        "detected_stale": {c: out[c]["drifted"] for c in out if c.startswith("stale")},
    }, indent=2))

if __name__ == "__main__":
    main()
