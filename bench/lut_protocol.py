"""LUT protocol cost and agreement: adaptive vs Once-for-All's fixed 500 repetitions vs a long run (JSON).

    python bench/lut_protocol.py --space mbv3-small --space ofa-mbv3@128 [--long-n 2000]
    python bench/lut_protocol.py --space ofa-mbv3@128:60      # a seeded subset of 60 keys
    python bench/lut_protocol.py --space mbv3-small --space ofa-mbv3@128 --whole-models 40 --seed 1
    python bench/lut_protocol.py --space mbv3-small --space ofa-mbv3@128 --repeat 5   # pooled summary

``--space NAME[@RES][:N]`` (repeatable; all spaces are timed in one run, one agent): every block key
of the space (only those of input size RES for the OFA space; a seeded subset of N keys), exported
once, then timed on the ``local`` device through the real agent (``bench_many``, ONNX Runtime, the
profile's settings and speed reference) with each protocol, in chunks of ``--chunk`` keys (default
24, the profiler's batch) with the protocols interleaved per chunk and their order rotating from
chunk to chunk, so that the machine's drift falls on all of them alike:

* ``fixed_500``: Once-for-All's protocol, 500 single runs after the profiler's previous warm-up
  (10 runs and 50 ms), one block after the other - the named baseline, as
  ``bench/profile_transport.py`` measured it in the issue;
* ``fixed_500_short_warmup``: the same 500 runs after today's short warm-up (10 runs, 1 ms);
* ``adaptive_sequential``: issue 17's first adaptive protocol (one block after the other);
* ``adaptive_interleaved``: issue 17's second (blocks timed round-robin in groups of 24 open
  sessions, see ``device_agents/edgenas_agent/interleave.py``);
* ``adaptive``: today's ``LUT_PROTOCOL`` (every block in at least 3 fresh sessions, one sweep over
  the chunk per session, see ``device_agents/edgenas_agent/sweeps.py``);
* ``adaptive_before`` (``--with-before``): the adaptive protocol from before issue 17 (slow);
* ``long``: the reference measurement, ``--long-n`` single runs (default 2,000, 4x OFA's) after
  the previous, longer warm-up.
* ``spread`` (``--spread N``, a probe): every block in N fresh sessions of 30 single runs (fixed
  count, today's short warm-up) in N different chunk turns (its call at chunk c's turn times chunk c's
  first session, chunk c-1's second, ...), its value the median of its N session medians: a block's
  sessions lie a whole chunk turn apart instead of within one call, so a spell over one call hits one
  of them (not drift-corrected, since its sessions lie in different calls).

A throw-away call first takes the agent's one-time runtime start-up.

Per space and protocol: the agent's total timing seconds (``bench_many``'s ``total_s``: runtime
sessions, warm-up, sampling, partial-file writes; transfers are identical and excluded), the part of it
spent warming up and sampling (sum of the entries' own ``total_s``), speed-up over fixed-500, and the
relative difference of each entry's median from the long run's (median, 90th percentile, largest).
The same agreement is also given drift-corrected: every call is bracketed by a speed probe (the
speed reference model, 200 fixed runs) and its medians are scaled by the space's median probe over the
mean of the two probes around the call - one correction for every protocol and every long pass.
``long_pass_to_pass_median_rel_diff`` (each pass against the median of the others) is the noise floor
of the reference itself. ``lut_value_rel_diff_vs_long`` scores what the product's LUT stores instead of
the entry median: for a protocol timed against the speed reference, the entry's reference ratio x the
reference's median time over the space (``nominal_reference``, ``Lut.value_ms``); fixed counts never
read the reference, so theirs is the median.

``--whole-models N`` adds what a LUT is for: N seeded architectures of each space, exported and timed
whole twice with the winner protocol (raw milliseconds, the median of the two), against each
protocol's LUT-sum prediction (one overhead for all, ``LatencyPredictor``'s sum): median relative
error, the same after one fitted scale, share within +-10% after it, and Spearman.

``--repeat N`` measures everything N times, back to back in one run, and adds a ``summary`` per space
and protocol: in how many repeats its median and its largest difference from the long reference were
below fixed-500's, its speed-up range, and the differences of all blocks of all repeats pooled (median,
90th percentile, mean, shares within 2% and 5%). On a machine with slow spells (the speed probe
doubling for a second or two), one repeat's median is decided by which calls a spell hit.

The machine's 1-minute load average is read before and after each space and between chunks. This
machine is shared and noisy: compare within one run, not absolute figures across runs.
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


def parse_space(spec: str) -> tuple[str, int | None, int | None]:
    """``NAME[@RES][:N]`` -> (name, resolution or None, n_blocks or None)."""
    rest, _, n = spec.partition(":")
    name, _, res = rest.partition("@")
    return name, int(res) if res else None, int(n) if n else None


def protocols(long_n: int, with_before: bool, skip: list[str], candidates: list[str]) -> dict[str, dict]:
    from edgenas.fleet.measure import (LUT_PROTOCOL, LUT_PROTOCOL_BEFORE, LUT_PROTOCOL_FIXED_500,
                                       LUT_PROTOCOL_INTERLEAVED, LUT_PROTOCOL_SEQUENTIAL)

    protos = {"fixed_500": dict(LUT_PROTOCOL_FIXED_500),
              "fixed_500_short_warmup": dict(LUT_PROTOCOL, fixed_n=500),
              "adaptive_sequential": dict(LUT_PROTOCOL_SEQUENTIAL),
              "adaptive_interleaved": dict(LUT_PROTOCOL_INTERLEAVED), "adaptive": dict(LUT_PROTOCOL),
              "long": dict(LUT_PROTOCOL_BEFORE, fixed_n=long_n)}
    if with_before:
        protos["adaptive_before"] = dict(LUT_PROTOCOL_BEFORE)
    for spec in candidates:
        name, _, body = spec.partition("=")
        protos[name] = dict(LUT_PROTOCOL, **json.loads(body))
    for name in skip:
        if name in ("fixed_500", "long", "adaptive"):
            raise SystemExit(f"--skip {name}: the baseline, the reference and the product's protocol are always timed")
        protos.pop(name, None)
    return protos


def rel_diffs(protos: dict, keys: list[str], medians: dict) -> dict[str, dict[str, float]]:
    """Per protocol: median / p90 / largest of |entry median / long reference - 1| over the keys."""
    longm = np.array([medians["long"][k] for k in keys])
    out = {}
    for label in protos:
        if label != "long":
            rel = np.abs(np.array([medians[label][k] for k in keys]) / longm - 1.0)
            out[label] = {"median": round(float(np.median(rel)), 4), "p90": round(float(np.quantile(rel, 0.9)), 4),
                          "max": round(float(rel.max()), 4)}
    return out


def lut_values(protos: dict, keys: list[str], medians: dict, ratios: dict) -> dict[str, dict[str, float]]:
    """What the product's LUT would store per protocol: with a reference ratio for every entry, the
    ratio x the reference's median time over the space (``nominal_reference``, ``Lut.value_ms``);
    without (fixed counts never read the reference), the entry's median."""
    out = {}
    for label in protos:
        got = ratios.get(label, {})
        if label != "long" and all(k in got for k in keys):
            nominal = float(np.median([got[k][1] for k in keys]))
            out[label] = {k: got[k][0] * nominal for k in keys}
        else:
            out[label] = dict(medians[label])
    return out


def agreement(protos: dict, keys: list[str], medians: dict, corrected: dict, total: dict, own: dict,
              unstable: dict, lut: dict) -> dict:
    raw, cor, lutd = rel_diffs(protos, keys, medians), rel_diffs(protos, keys, corrected), rel_diffs(protos, keys, lut)
    return {label: {"timing_s": round(total[label], 2), "warmup_and_sampling_s": round(own[label], 2),
                    "speedup_vs_fixed_500": round(total["fixed_500"] / total[label], 2),
                    "median_rel_diff_vs_long": raw[label]["median"], "p90_rel_diff_vs_long": raw[label]["p90"],
                    "max_rel_diff_vs_long": raw[label]["max"], "unstable": unstable[label],
                    "drift_corrected_rel_diff_vs_long": cor[label],
                    "lut_value_rel_diff_vs_long": lutd[label]} for label in raw}


#: the speed probe around every call (drift correction of the agreement only; no protocol is changed)
SPEED_PROBE = {"warmup_min_n": 10, "warmup_min_s": 0.005, "fixed_n": 200}


def drift_corrected(calls: list, keys: list[str], n_passes: int) -> dict[str, dict[str, float]]:
    """Every call's medians scaled by (the space's median speed probe) / (the mean of the probes
    right before and after the call): the same correction for every protocol and for the long passes."""
    nominal = float(np.median([c[3] for c in calls] + [calls[-1][4]]))
    out: dict[str, dict[str, float]] = {}
    passes: list[dict[str, float]] = [{} for _ in range(n_passes)]
    for label, j, got, before, after in calls:
        scaled = {k: v * nominal / ((before + after) / 2.0) for k, v in got.items()}
        (passes[j] if label == "long" else out.setdefault(label, {})).update(scaled)
    out["long"] = {k: float(np.median([p[k] for p in passes])) for k in keys}
    return out


def schedule(labels: list[str], passes: int) -> list[tuple[str, int]]:
    """The calls of one chunk: the protocols in ``labels`` order, with the long reference's passes
    spread evenly among them (the first before the first protocol, the last after the last)."""
    if passes == 1:
        return [("long", 0)] + [(label, -1) for label in labels]
    at: dict[int, list[int]] = {}
    for j in range(passes):
        at.setdefault(round(j * len(labels) / (passes - 1)), []).append(j)
    out: list[tuple[str, int]] = []
    for i in range(len(labels) + 1):
        out.extend(("long", j) for j in at.get(i, []))
        if i < len(labels):
            out.append((labels[i], -1))
    return out


def pass_noise(passes: list[dict[str, float]], keys: list[str]) -> float | None:
    """Median over keys and passes of |pass median / median of the other passes - 1|: the long
    reference's own noise from one time to another."""
    if len(passes) < 2:
        return None
    rel = [abs(p[k] / float(np.median([q[k] for q in passes if q is not p])) - 1.0) for p in passes for k in keys]
    return round(float(np.median(rel)), 4)


def whole_model_check(s, project, space, resolution: int | None, keys: list[str], values: dict, lut: dict,
                      n: int, seed: int, workdir: Path) -> dict:
    """The LUT's use: ``n`` seeded architectures of the space (at ``resolution``), exported and timed
    whole, twice (the winner protocol, raw milliseconds), against each protocol's LUT-sum prediction
    ``overhead + sum of max(entry - overhead, 0)`` (as ``LatencyPredictor`` adds them) with one overhead
    for all (the runtime's per-call overhead model, 2,000 runs). Per protocol: the median relative
    error and its sign, the same after one scale fitted on all ``n`` (the calibration's slope), and
    Spearman, from the entry medians and from the values the product's LUT stores."""
    from dataclasses import replace

    from scipy.stats import spearmanr

    from edgenas.export import export_arch
    from edgenas.fleet.measure import LUT_PROTOCOL_BEFORE, measure_model, overhead_model

    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    if resolution is not None:
        archs = [replace(arch, r=resolution) for arch in archs]
    if any(k not in values["long"] for arch in archs for k in space.block_keys(arch)):
        return {"skipped": "the architectures use keys outside the timed subset"}
    got = s.call("bench", dict(s.runtime_params(), model=s.push(overhead_model(project)),
                               protocol=dict(LUT_PROTOCOL_BEFORE, fixed_n=2000)))
    overhead = float(got["stats"]["median_ms"])
    paths = [export_arch(space, arch, workdir / f"wm-{space.name}-{i:03d}").onnx_path for i, arch in enumerate(archs)]
    passes = [[measure_model(s, path).median_ms for path in paths] for _ in range(2)]
    measured = np.median(np.array(passes), axis=0)

    def scores(table: dict[str, float]) -> dict[str, float]:
        pred = np.array([overhead + sum(max(table[k] - overhead, 0.0) for k in space.block_keys(arch))
                         for arch in archs])
        rel = pred / measured - 1.0
        scaled = pred * float(np.median(measured / pred)) / measured - 1.0
        return {"median_abs_rel_err": round(float(np.median(np.abs(rel))), 4),
                "median_rel_err": round(float(np.median(rel)), 4),
                "median_abs_rel_err_one_scale": round(float(np.median(np.abs(scaled))), 4),
                "within10_one_scale": round(float(np.mean(np.abs(scaled) <= 0.10)), 3),
                "spearman": round(float(spearmanr(pred, measured).statistic), 4)}

    out = {"n": n, "seed": seed, "overhead_ms": round(overhead, 5),
           "measured_ms_range": [round(float(measured.min()), 4), round(float(measured.max()), 4)],
           "pass_to_pass_median_abs_rel_diff": round(float(np.median(np.abs(np.divide(*passes) - 1))), 4),
           "protocols": {}}
    for label in values:
        entry = {"entry_medians": scores(values[label])}
        if lut[label] != values[label]:
            entry["lut_values"] = scores(lut[label])
        out["protocols"][label] = entry
    return out


def summary(pooled: dict[str, list[dict[str, np.ndarray]]], spaces: list[dict]) -> dict:
    """Per space and protocol over the repeats: in how many the median and the largest relative
    difference from the long reference were below fixed-500's, the speed-up range, and the relative
    differences of all blocks of all repeats pooled (median, 90th percentile, mean, shares within 2%
    and 5%). On a noisy machine one run's median is decided by which calls a slow spell hit; the
    pooled figures and the counts are what to compare."""
    out: dict[str, dict] = {}
    for tag, reps in pooled.items():
        runs = [sp for sp in spaces if f"{sp['space']}@{sp['resolution']}" == tag]
        out[tag] = {}
        for label in reps[0]:
            errs = np.concatenate([r[label] for r in reps])
            speed = [sp["results"][label]["speedup_vs_fixed_500"] for sp in runs]
            out[tag][label] = {"repeats": len(reps)} if label == "fixed_500" else {
                "repeats": len(reps),
                "median_below_fixed_500": sum(float(np.median(r[label])) < float(np.median(r["fixed_500"]))
                                              for r in reps),
                "max_below_fixed_500": sum(float(r[label].max()) < float(r["fixed_500"].max()) for r in reps),
                "speedup_vs_fixed_500_range": [min(speed), max(speed)]}
            out[tag][label].update({
                "pooled_rel_diff_vs_long": {
                    "median": round(float(np.median(errs)), 4), "p90": round(float(np.quantile(errs, 0.9)), 4),
                    "mean": round(float(errs.mean()), 4), "within_2pct": round(float(np.mean(errs <= 0.02)), 3),
                    "within_5pct": round(float(np.mean(errs <= 0.05)), 3)}})
    return out


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", action="append", default=[], help="NAME[@RES][:N] (repeatable)")
    ap.add_argument("--long-n", type=int, default=2000, help="single runs per block of the long reference, in all")
    ap.add_argument("--long-passes", type=int, default=4,
                    help="the long reference is taken in this many passes of long-n/passes runs, spread among "
                         "the protocols of each chunk; its value is the median of the pass medians (1: one run)")
    ap.add_argument("--chunk", type=int, default=24, help="keys per bench_many call (the profiler's batch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--with-before", action="store_true", help="also time adaptive_before (slow)")
    ap.add_argument("--skip", action="append", default=[], help="a protocol not to time")
    ap.add_argument("--dump", type=Path, default=None, help="also write every entry's median per protocol (JSON)")
    ap.add_argument("--whole-models", type=int, default=0, metavar="N",
                    help="also export and time N seeded architectures of each space whole and score every "
                         "protocol's LUT-sum prediction of them (what a LUT is for)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure everything this many times in one run (the summary pools them)")
    ap.add_argument("--spread", type=int, default=0, metavar="N",
                    help="also time 'spread': every block in N fresh sessions of 30 runs (fixed_n) in N different "
                         "chunk turns, its value the median of the session medians (a one-off probe)")
    ap.add_argument("--candidate", action="append", default=[],
                    help="NAME=JSON: another protocol (fields over LUT_PROTOCOL) to time alongside")
    a = ap.parse_args()

    from edgenas.fleet.measure import LUT_PROTOCOL, export_blocks, reference_model
    from edgenas.devices.session import open_session
    from edgenas.project import Project
    from edgenas.spaces import get_space

    specs = [parse_space(x) for x in (a.space or ["mbv3-small"])]
    if a.repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    if a.long_passes < 1 or a.long_n % a.long_passes:
        raise SystemExit("--long-passes must be >= 1 and divide --long-n")
    protos = protocols(a.long_n // a.long_passes, a.with_before, a.skip, a.candidate)
    if a.spread:
        protos["spread"] = dict(LUT_PROTOCOL, fixed_n=30)
    base = Path(tempfile.mkdtemp(prefix="edgenas-bench-lutproto-"))
    project = Project(base / "proj")
    out_spaces = []
    dumps: dict[str, dict] = {}
    pooled: dict[str, list[dict[str, np.ndarray]]] = {}  # per space, per repeat: |rel diff| per protocol
    t_start = time.perf_counter()
    try:
        with open_session(project, "local") as s:
            ref = s.push(reference_model(project))
            warmed = False
            for rep, (name, resolution, n_blocks) in [(r, spec) for r in range(a.repeat) for spec in specs]:
                space = get_space(name)
                keys = keys_for(space, resolution, n_blocks, a.seed)
                paths, _ = export_blocks(project, space, keys)
                remote = {k: s.push(paths[k]) for k in keys}
                if not warmed:  # one-time runtime start-up (the agent's first session) on nobody's account
                    s.call("bench_many", dict(s.runtime_params(), items=[{"key": keys[0], "model": remote[keys[0]]}],
                                              protocol=dict(LUT_PROTOCOL, fixed_n=50),
                                              partial="partial/warm.jsonl", reference=ref))
                    warmed = True
                total = {p: 0.0 for p in protos}
                own = {p: 0.0 for p in protos}
                medians: dict[str, dict[str, float]] = {p: {} for p in protos}
                ratios: dict[str, dict[str, tuple[float, float]]] = {p: {} for p in protos}  # (ratio, ref_ms)
                unstable = {p: 0 for p in protos}
                passes: list[dict[str, float]] = [{} for _ in range(a.long_passes)]
                # (label, long pass or -1, medians, speed probe before, speed probe after), one per call
                calls: list[tuple[str, int, dict[str, float], float, float]] = []
                loads = [load()]
                labels = [p for p in protos if p != "long"]
                chunks = [keys[c:c + a.chunk] for c in range(0, len(keys), a.chunk)]
                if a.spread and len(chunks) < a.spread:
                    raise SystemExit(f"--spread {a.spread} needs at least that many chunks")
                rounds: dict[str, list[float]] = {k: [] for k in keys}
                t_space = time.perf_counter()

                def timed(label: str, proto: dict, items: list, tag: str) -> dict:
                    out = s.call("bench_many", dict(s.runtime_params(), items=items, protocol=proto,
                                                    partial=f"partial/{name}-r{rep}-{tag}.jsonl", reference=ref),
                                 timeout_s=3600)
                    total[label] += float(out["total_s"])
                    for k, st in out["results"].items():
                        own[label] += float(st.get("total_s", 0.0))
                        unstable[label] += 0 if st.get("stable", True) else 1
                        if st.get("ratio") and st.get("ref_ms"):
                            ratios[label][k] = (float(st["ratio"]), float(st["ref_ms"]))
                    return {k: float(st["median_ms"]) for k, st in out["results"].items()}

                def speed(tag: str) -> float:
                    """The machine's speed now: the reference model's median over 200 runs (fixed_n)."""
                    out = s.call("bench_many", dict(s.runtime_params(), items=[{"key": "speed", "model": ref}],
                                                    protocol=SPEED_PROBE,
                                                    partial=f"partial/{name}-r{rep}-speed-{tag}.jsonl"))
                    return float(out["results"]["speed"]["median_ms"])

                for ci, chunk in enumerate(chunks):
                    c = ci * a.chunk  # the chunk's first key: names its calls and progress
                    items = [{"key": k, "model": remote[k]} for k in chunk]
                    turn = ci % len(labels)  # rotate who goes first, chunk by chunk
                    before = speed(f"{c}-0")
                    for i, (label, j) in enumerate(schedule(labels[turn:] + labels[:turn], a.long_passes)):
                        if label == "long":
                            got = timed("long", protos["long"], items, f"long{j}-{c}")
                            passes[j].update(got)
                        elif label == "spread":  # chunk ci's round 0, chunk ci-1's round 1, ...
                            mixed = [{"key": k, "model": remote[k]}
                                     for r in range(a.spread) for k in chunks[(ci - r) % len(chunks)]]
                            for k, v in timed(label, protos[label], mixed, f"{label}-{c}").items():
                                rounds[k].append(v)
                            got = {}
                        else:
                            got = timed(label, protos[label], items, f"{label}-{c}")
                            medians[label].update(got)
                        after = speed(f"{c}-{i + 1}")
                        calls.append((label, j, got, before, after))
                        before = after
                    loads.append(load())
                    print(f"{name}: {min(c + a.chunk, len(keys))}/{len(keys)} (load {loads[-1]})", file=sys.stderr)
                medians["long"] = {k: float(np.median([p[k] for p in passes])) for k in keys}
                if a.spread:
                    medians["spread"] = {k: float(np.median(v)) for k, v in rounds.items()}
                corrected = drift_corrected(calls, keys, a.long_passes)
                if a.spread:  # its sessions lie in different calls: not drift-corrected
                    corrected["spread"] = dict(medians["spread"])
                longm = [medians["long"][k] for k in keys]
                lut = lut_values(protos, keys, medians, ratios)
                whole = None
                if a.whole_models:
                    whole = whole_model_check(s, project, space, resolution, keys, medians, lut, a.whole_models,
                                              a.seed, base / f"whole-{rep}")
                tag = f"{name}@{resolution}" + (f"#{rep}" if a.repeat > 1 else "")
                dumps[tag] = dict(medians, passes=passes, corrected=corrected, speed=[c[3] for c in calls],
                                  ratios=ratios)
                pooled.setdefault(f"{name}@{resolution}", []).append(
                    {label: np.abs(np.array([medians[label][k] for k in keys]) / np.array(longm) - 1.0)
                     for label in protos if label != "long"})
                out_spaces.append({
                    "space": name, "resolution": resolution, "repeat": rep, "n_keys": len(keys),
                    "subset": f"{n_blocks} keys, seed {a.seed}" if n_blocks else "all keys",
                    "long_timing_s": round(total["long"], 2),
                    "long_pass_to_pass_median_rel_diff": pass_noise(passes, keys),
                    "results": agreement(protos, keys, medians, corrected, total, own, unstable, lut),
                    "whole_models": whole,
                    "speed_probe_ms_range": [round(min(c[3] for c in calls), 4), round(max(c[3] for c in calls), 4)],
                    "block_ms_range_long": [round(min(longm), 4), round(max(longm), 4)],
                    "load_avg_1m": {"start": loads[0], "end": loads[-1], "max": max(loads),
                                    "mean": round(sum(loads) / len(loads), 2)},
                    "wall_s": round(time.perf_counter() - t_space, 1)})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if a.dump:
        a.dump.write_text(json.dumps(dumps))
    long_desc = (f"{a.long_n} single runs per block in {a.long_passes} pass(es) of {a.long_n // a.long_passes} "
                 "(each after the 10-run/50 ms warm-up), spread among the protocols; median of pass medians")
    print(json.dumps({"bench": "lut_protocol", "long": long_desc,
                      "chunk": a.chunk, "protocols": protos, "repeat": a.repeat,
                      "summary": summary(pooled, out_spaces), "spaces": out_spaces,
                      "wall_s": round(time.perf_counter() - t_start, 1),
                      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                  "load_avg_1m_end": load()}}, indent=2))


if __name__ == "__main__":
    main()
