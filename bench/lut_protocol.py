"""LUT protocol cost and agreement: adaptive vs Once-for-All's fixed 500 repetitions vs a long run (JSON).

    python bench/lut_protocol.py --space mbv3-small
    python bench/lut_protocol.py --space ofa-mbv3 --resolution 128 [--n-blocks 60] [--long-n 5000]

Every block key of the space (at one input resolution for the OFA space; optionally a seeded subset)
is exported once, then timed on the ``local`` device through the real agent (``bench_many``, ONNX
Runtime, the profile's settings and speed reference) with each protocol, in chunks of 10 keys with
the protocols interleaved per chunk, so that the machine's drift falls on all of them alike:

* ``fixed_500``: Once-for-All's protocol, 500 single runs after the profiler's previous warm-up
  (10 runs and 50 ms) - the named baseline, as ``bench/profile_transport.py`` measured it;
* ``fixed_500_short_warmup``: the same 500 runs after today's short warm-up (10 runs, 2 ms);
* ``adaptive_before``: the profiler's adaptive protocol as it was (``LUT_PROTOCOL_BEFORE``);
* ``adaptive``: today's ``LUT_PROTOCOL``;
* ``long``: the reference measurement, ``--long-n`` single runs (default 5,000, 10x OFA's) after
  the previous, longer warm-up.

A throw-away call first takes the agent's one-time runtime start-up; the order of the protocols
rotates from chunk to chunk.

Per protocol: the agent's total timing seconds (``bench_many``'s ``total_s``: runtime sessions,
warm-up, sampling; transfers are identical and excluded), seconds over fixed-500, and the relative
difference of each entry's median from the long run's (median, 90th percentile, largest). This
machine is shared and noisy: compare the ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def keys_for(space, resolution: int | None, n_blocks: int | None, seed: int) -> list[str]:
    if resolution is None:
        keys = list(space.key_vocab())
    else:
        fixed, slots = space._keys_at(resolution)
        keys = list(dict.fromkeys(fixed + [k for slot in slots for row in slot for k in row]))
    if n_blocks and n_blocks < len(keys):
        pick = np.sort(np.random.default_rng(seed).choice(len(keys), n_blocks, replace=False))
        keys = [keys[i] for i in pick]
    return keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mbv3-small")
    ap.add_argument("--resolution", type=int, default=None, help="only the keys of this input size")
    ap.add_argument("--n-blocks", type=int, default=None, help="a seeded subset of the keys")
    ap.add_argument("--long-n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-before", action="store_true", help="do not time adaptive_before")
    ap.add_argument("--candidate", action="append", default=[],
                    help="NAME=JSON: another protocol (fields over LUT_PROTOCOL) to time alongside")
    a = ap.parse_args()

    from edgenas.fleet.measure import LUT_PROTOCOL, LUT_PROTOCOL_BEFORE, export_blocks, reference_model
    from edgenas.devices.session import open_session
    from edgenas.project import Project
    from edgenas.spaces import get_space

    space = get_space(a.space)
    keys = keys_for(space, a.resolution, a.n_blocks, a.seed)
    protos = {"fixed_500": dict(LUT_PROTOCOL_BEFORE, fixed_n=500),
              "fixed_500_short_warmup": dict(LUT_PROTOCOL, fixed_n=500), "adaptive": dict(LUT_PROTOCOL),
              "long": dict(LUT_PROTOCOL_BEFORE, fixed_n=a.long_n)}
    if not a.skip_before:
        protos["adaptive_before"] = dict(LUT_PROTOCOL_BEFORE)
    for spec in a.candidate:
        name, _, body = spec.partition("=")
        protos[name] = dict(LUT_PROTOCOL, **json.loads(body))
    base = Path(tempfile.mkdtemp(prefix="edgenas-bench-lutproto-"))
    project = Project(base / "proj")
    total = {p: 0.0 for p in protos}
    medians: dict[str, dict[str, float]] = {p: {} for p in protos}
    unstable = {p: 0 for p in protos}
    t_start = time.perf_counter()
    try:
        paths, _ = export_blocks(project, space, keys)
        with open_session(project, "local") as s:
            ref = s.push(reference_model(project))
            remote = {k: s.push(paths[k]) for k in keys}
            # one-time runtime start-up (first session of the agent process) on nobody's account
            s.call("bench_many", dict(s.runtime_params(), items=[{"key": keys[0], "model": remote[keys[0]]}],
                                      protocol=dict(LUT_PROTOCOL, fixed_n=50), partial="partial/warm.jsonl",
                                      reference=ref))
            labels = list(protos)
            for c in range(0, len(keys), 10):
                chunk = keys[c:c + 10]
                items = [{"key": k, "model": remote[k]} for k in chunk]
                turn = (c // 10) % len(labels)  # rotate who goes first, chunk by chunk
                for label in labels[turn:] + labels[:turn]:
                    proto = protos[label]
                    out = s.call("bench_many", dict(s.runtime_params(), items=items, protocol=proto,
                                                    partial=f"partial/{label}-{c}.jsonl", reference=ref),
                                 timeout_s=3600)
                    total[label] += float(out["total_s"])
                    for k, st in out["results"].items():
                        medians[label][k] = float(st["median_ms"])
                        unstable[label] += 0 if st.get("stable", True) else 1
                print(f"{min(c + 10, len(keys))}/{len(keys)}", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    longm = np.array([medians["long"][k] for k in keys])
    res = {}
    for label in protos:
        if label == "long":
            continue
        m = np.array([medians[label][k] for k in keys])
        rel = np.abs(m / longm - 1.0)
        res[label] = {"timing_s": round(total[label], 2),
                      "over_fixed_500": round(total[label] / total["fixed_500"], 3),
                      "speedup_vs_fixed_500": round(total["fixed_500"] / total[label], 2),
                      "median_rel_diff_vs_long": round(float(np.median(rel)), 4),
                      "p90_rel_diff_vs_long": round(float(np.quantile(rel, 0.9)), 4),
                      "max_rel_diff_vs_long": round(float(rel.max()), 4), "unstable": unstable[label]}
    print(json.dumps({"bench": "lut_protocol", "space": a.space, "resolution": a.resolution, "n_keys": len(keys),
                      "long": f"fixed_n={a.long_n} single runs after the LUT warm-up",
                      "long_timing_s": round(total["long"], 2),
                      "protocols": {k: v for k, v in protos.items()}, "results": res,
                      "block_ms_range_long": [round(float(longm.min()), 4), round(float(longm.max()), 4)],
                      "wall_s": round(time.perf_counter() - t_start, 1),
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                  "load_avg_1m": round(os.getloadavg()[0], 2)}}, indent=2))


if __name__ == "__main__":
    main()
