"""Fleet drift check on the `local` device: false alarms under load, and detection of a stale table.

Profiles `local` for the space once (quiet machine), then re-runs the sentinel check ``--repeats``
times in each condition and counts how often the table is judged drifted:

* ``quiet`` / ``loaded`` (``--load`` busy processes, a neighbour on a shared machine): the table is
  unchanged, so every "drifted" verdict is a false alarm;
* ``stale`` (loaded too): the table's ratios and times are 0.5x what the device does, so every verdict
  that is not "drifted" is a miss.

Two rules judged on the same measurements and the same threshold, max(5%, 3 x CoV) capped at 50%:
``confirmed_ratio`` (what ``fleet refresh`` uses: the sentinels' ratios to the speed reference,
drifted only if a second pass agrees) and the named baseline ``raw_ms`` (what it used before: raw
median times of one pass).

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
    args = ap.parse_args()

    from edgenas.fleet.profiler import profile_device
    from edgenas.fleet.drift import DRIFT_CAP, DRIFT_COV_FACTOR, measure_drift
    from edgenas.devices.session import open_session
    from edgenas.latency.lut import Lut
    from edgenas.project import Project

    proj = Project(Path(tempfile.mkdtemp(prefix="edgenas-drift-")))
    t0 = time.perf_counter()
    lut = Lut.load(profile_device(proj, "local", args.space).lut_path)
    profile_s = time.perf_counter() - t0
    stale = dataclasses.replace(lut, entries={
        k: dataclasses.replace(e, ratio=e.ratio * 0.5, **{f: getattr(e, f) * 0.5 for f in (
            "median_ms", "mean_ms", "std_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")})
        for k, e in lut.entries.items()})

    conditions = {"quiet": (lut, 0), "loaded": (lut, args.load), "stale": (stale, args.load)}
    out: dict[str, dict] = {}
    with open_session(proj, "local") as s:
        for name, (table, load) in conditions.items():
            busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
            try:
                checks = [measure_drift(s, proj, table) for _ in range(args.repeats)]
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
            ratio_alarm = [c.drifted for c in checks]
            raw_alarm = [c.raw_drift > min(max(0.05, DRIFT_COV_FACTOR * c.cov), DRIFT_CAP) for c in checks]
            out[name] = {
                "load_processes": load,
                "drifted_confirmed_ratio": float(np.mean(ratio_alarm)),
                "second_passes": int(sum(c.passes == 2 for c in checks)),
                "drifted_raw_ms": float(np.mean(raw_alarm)),
                "median_drift_ratio": float(np.median([c.drift for c in checks])),
                "median_drift_raw_ms": float(np.median([c.raw_drift for c in checks])),
                "median_threshold": float(np.median([c.threshold for c in checks])),
                "median_speed_change": float(np.median([c.speed_change for c in checks])),
                "basis": sorted({c.basis for c in checks}),
                "drift_ratio": [round(c.drift, 3) for c in checks],
                "drift_raw_ms": [round(c.raw_drift, 3) for c in checks],
            }
    print(json.dumps({
        "bench": "drift_check", "space": args.space, "repeats": args.repeats, "entries": len(lut.entries),
        "profile_s": round(profile_s, 1), "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "baseline": "raw_ms", "conditions": out,
        "false_alarms": {c: {"confirmed_ratio": out[c]["drifted_confirmed_ratio"], "raw_ms": out[c]["drifted_raw_ms"]}
                         for c in ("quiet", "loaded")},
        "detected_stale": {"confirmed_ratio": out["stale"]["drifted_confirmed_ratio"],
                           "raw_ms": out["stale"]["drifted_raw_ms"]},
    }, indent=2))


if __name__ == "__main__":
    main()
