"""The measurement protocol: what makes one latency number trustworthy.

``measure(fn, protocol)`` times any callable (or a ``timer(k) -> seconds`` that runs ``k`` back-to-back
inferences and times them itself, e.g. with CUDA events):

1. warm-up until both ``warmup_min_n`` runs and ``warmup_min_s`` seconds are done (at most half the
   time cap, so a slow model still gets sampled);
2. calibrate ``k`` so one sample (``k`` back-to-back runs) lasts at least ``sample_target_ms``, and is at
   least ``runs_per_sample`` runs (the reference's samples too);
3. sample until ``min_n`` samples and ``min_s`` seconds are reached *and* the spread is small
   (CoV <= ``max_cov`` or the 95% CI of the median, relative, <= ``max_ci_rel``); the hard cap
   ``max_s`` (whole call, warm-up included) ends sampling with ``stable: false``;
4. ``fixed_n``: exactly that many samples of ``runs_per_sample`` runs (default 1) after the warm-up
   (Once-for-All's protocol; ``max_s`` does not cut it short, the host's call timeout does);
5. ``windows > 1`` (winner protocol): the sampling budget is split into windows; the reported median
   is the median of the window medians, the other statistics pool all samples.

All times come from ``time.perf_counter`` (or the runner's CUDA events); times are reported per single
inference.

``runs_per_sample`` (default 1) is for runtimes whose calls overlap on the device (torch on CUDA,
TensorRT): a call only launches work, and the timer waits for it, so one call timed alone includes that
wait while a block inside a network does not pay it (the next block's launches overlap it). In every
mode a sample is then that many back-to-back runs, divided by their number, and the wait is paid once
per sample; warm-up runs stay single.

**Reference-normalised timing** (``ref_timer``): a fixed reference workload is timed right after every
sample, and each sample also gives the ratio model time / reference time. A machine whose speed drifts
(turbo, thermal throttling, a noisy neighbour on a shared VM) changes both alike, so the ratio stays
put where raw milliseconds wander by tens of percent. With a reference, the stopping rule judges the
spread of the ratios, and the result adds ``ratio`` (median; median of window medians in window mode),
``ratio_cov``, ``ratio_ci_rel`` and ``ref_ms`` (the reference's median per-run time).
``ref_every`` (default 1) times the reference after every ``ref_every``-th sample only; each ratio
uses the latest reference sample. A caller timing many models against the same reference (the
agent's ``bench_many``) warms and calibrates the reference once and passes ``ref_k``.

``interleave`` >= 2 (``bench_many`` only; ``bench`` times one model and ignores it): groups of that
many models are timed round-robin in turns of ``burst_warmup_n`` re-warming runs and ``burst``
single-run samples, each with its own stopping rule and time cap, see ``interleave.py``.
``sessions`` >= 2 (``bench_many`` only): every model is timed in that many fresh runtime sessions (or
more, until stable, within the ``extra_share`` budget), one sweep over the models per session, see
``sweeps.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import stats

LUT_PROTOCOL: Dict[str, Any] = {
    "warmup_min_n": 10, "warmup_min_s": 0.1, "sample_target_ms": 1.0, "min_n": 20, "min_s": 0.2,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 3.0, "fixed_n": None, "windows": 1, "ref_every": 1,
    "interleave": 1, "burst": 10, "burst_warmup_n": 1, "sessions": 1, "session_min_n": 1, "session_min_s": 0.0,
    "extra_share": 1.0, "runs_per_sample": 1,
}
WINNER_PROTOCOL: Dict[str, Any] = {
    "warmup_min_n": 20, "warmup_min_s": 0.5, "sample_target_ms": 1.0, "min_n": 50, "min_s": 1.0,
    "max_cov": 0.05, "max_ci_rel": 0.01, "max_s": 20.0, "fixed_n": None, "windows": 5, "ref_every": 1,
    "interleave": 1, "burst": 10, "burst_warmup_n": 1, "sessions": 1, "session_min_n": 1, "session_min_s": 0.0,
    "extra_share": 1.0, "runs_per_sample": 1,
}
_INT_FIELDS = ("warmup_min_n", "min_n", "windows", "ref_every", "interleave", "burst", "sessions", "session_min_n",
               "runs_per_sample")
_COUNT_FIELDS = ("burst_warmup_n",)  # integers that may be 0
K_MAX = 100000  # back-to-back runs per sample, upper bound (ops of ~10 ns)

Timer = Callable[[int], float]


class ProtocolError(ValueError):
    """A malformed protocol (unknown field, wrong type, impossible value)."""


def resolve_protocol(params: Optional[Mapping[str, Any]] = None, winner: bool = False) -> Dict[str, Any]:
    """Defaults (LUT or winner) overridden by ``params``; every field checked."""
    proto = dict(WINNER_PROTOCOL if winner else LUT_PROTOCOL)
    if params is None:
        return proto
    if not isinstance(params, Mapping):
        raise ProtocolError("protocol must be an object")
    unknown = sorted(set(params) - set(proto))
    if unknown:
        raise ProtocolError("unknown protocol field(s): %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(proto))))
    for key, value in params.items():
        if key == "fixed_n" and value is None:
            proto[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ProtocolError("protocol field %s must be a finite number, got %r" % (key, value))
        if key in _INT_FIELDS or key == "fixed_n":
            if int(value) != value or value < 1:
                raise ProtocolError("protocol field %s must be an integer >= 1, got %r" % (key, value))
            value = int(value)
        elif key in _COUNT_FIELDS:
            if int(value) != value or value < 0:
                raise ProtocolError("protocol field %s must be an integer >= 0, got %r" % (key, value))
            value = int(value)
        elif value < 0:
            raise ProtocolError("protocol field %s must be >= 0, got %r" % (key, value))
        proto[key] = value
    if proto["max_s"] <= 0:
        raise ProtocolError("protocol field max_s must be > 0")
    if proto["runs_per_sample"] > K_MAX:
        raise ProtocolError("protocol field runs_per_sample must be <= %d, got %r"
                            % (K_MAX, proto["runs_per_sample"]))
    if proto["interleave"] > 1 and proto["sessions"] > 1:
        raise ProtocolError("protocol fields interleave and sessions are two modes; set at most one above 1")
    return proto


def loop_timer(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> Timer:
    """A timer that runs ``fn`` ``k`` times back to back between two clock readings."""

    def timer(k: int) -> float:
        t0 = clock()
        for _ in range(k):
            fn()
        return clock() - t0

    return timer


def _spread_ok(samples: List[float], proto: Mapping[str, Any]) -> bool:
    if len(samples) < 2:
        return False
    cov, rel = stats.spread(samples)
    return cov <= proto["max_cov"] or (rel is not None and rel <= proto["max_ci_rel"])


def _warm_up(timer: Timer, proto: Mapping[str, Any], start: float, clock: Callable[[], float]) -> List[float]:
    times: List[float] = []
    while True:
        times.append(timer(1))
        elapsed = clock() - start
        if len(times) >= proto["warmup_min_n"] and elapsed >= proto["warmup_min_s"]:
            return times
        if elapsed >= 0.5 * proto["max_s"]:
            return times


def _calibrate_k(timer: Timer, proto: Mapping[str, Any], warm: List[float]) -> Tuple[int, int]:
    """(k, runs spent calibrating): smallest k whose sample lasts >= sample_target_ms."""
    target = proto["sample_target_ms"] / 1000.0
    recent = sorted(warm[-10:])
    single = recent[len(recent) // 2]
    least = int(proto.get("runs_per_sample", 1))
    if single * least >= target:
        return least, 0
    k = min(K_MAX, max(least, int(math.ceil(target / max(single, 1e-9)))))
    spent = 0
    for _ in range(4):
        dt = timer(k)
        spent += k
        if dt >= target or k >= K_MAX:
            break
        k = min(K_MAX, max(k + 1, int(math.ceil(k * target * 1.1 / max(dt, 1e-9)))))
    return k, spent


def _sample_window(timer: Timer, k: int, proto: Mapping[str, Any], deadline: float,
                   clock: Callable[[], float], ref: Optional[Tuple[Timer, int]] = None
                   ) -> Tuple[List[float], bool, List[float], List[float]]:
    """(samples, spread ok, reference samples, ratios); without ``ref`` the last two are empty."""
    samples: List[float] = []
    refs: List[float] = []
    ratios: List[float] = []
    t0 = clock()
    next_check = proto["min_n"]
    every = int(proto.get("ref_every", 1))
    while True:
        samples.append(timer(k) / k)
        if ref is not None:
            if (len(samples) - 1) % every == 0:
                refs.append(ref[0](ref[1]) / ref[1])
            ratios.append(samples[-1] / max(refs[-1], 1e-12))
        n = len(samples)
        now = clock()
        if n >= next_check and now - t0 >= proto["min_s"]:
            if _spread_ok(ratios if ref is not None else samples, proto):
                return samples, True, refs, ratios
            next_check = n + max(1, n // 10)
        if now >= deadline:
            return samples, False, refs, ratios


def reference_k(ref_timer: Timer, proto: Mapping[str, Any]) -> int:
    """Warm the reference workload up and calibrate its back-to-back count (once per reference)."""
    ref_warm = [ref_timer(1) for _ in range(max(3, int(proto["warmup_min_n"]) // 2))]
    return _calibrate_k(ref_timer, proto, ref_warm)[0]


def measure(fn: Optional[Callable[[], Any]] = None, protocol: Optional[Mapping[str, Any]] = None, *,
            timer: Optional[Timer] = None, winner: bool = False,
            clock: Callable[[], float] = time.perf_counter, ref_timer: Optional[Timer] = None,
            ref_k: Optional[int] = None) -> Dict[str, Any]:
    """Time ``fn`` (or ``timer``) under ``protocol`` (merged onto the LUT or winner defaults); STATS.

    With ``ref_timer`` every sample is followed by a sample of the reference workload (see above)."""
    if (fn is None) == (timer is None):
        raise ValueError("pass exactly one of fn or timer")
    proto = resolve_protocol(protocol, winner)
    run_k = timer if timer is not None else loop_timer(fn, clock)  # type: ignore[arg-type]
    start = clock()
    warm = _warm_up(run_k, proto, start, clock)
    warmup_n = len(warm)

    if proto["fixed_n"] is not None:
        runs = proto["runs_per_sample"]
        samples = [run_k(runs) / runs for _ in range(proto["fixed_n"])]
        return stats.summarize(samples, k=runs, warmup_n=warmup_n, stable=_spread_ok(samples, proto),
                               total_s=clock() - start)

    k, spent = _calibrate_k(run_k, proto, warm)
    warmup_n += spent
    ref = None
    if ref_timer is not None:
        ref = (ref_timer, ref_k if ref_k is not None else reference_k(ref_timer, proto))
    windows = proto["windows"]
    all_samples: List[float] = []
    all_refs: List[float] = []
    all_ratios: List[float] = []
    medians: List[float] = []
    ratio_medians: List[float] = []
    stable = True
    for w in range(windows):
        remaining = start + proto["max_s"] - clock()
        deadline = clock() + max(remaining, 0.0) / (windows - w)
        samples, ok, refs, ratios = _sample_window(run_k, k, proto, deadline, clock, ref)
        stable = stable and ok
        all_samples.extend(samples)
        medians.append(stats.median(samples))
        if ref is not None:
            all_refs.extend(refs)
            all_ratios.extend(ratios)
            ratio_medians.append(stats.median(ratios))
    result = stats.summarize(all_samples, k=k, warmup_n=warmup_n, stable=stable, total_s=clock() - start,
                             median_s=stats.median(medians) if windows > 1 else None)
    if windows > 1:
        result["window_medians_ms"] = [m * 1000.0 for m in medians]
    if ref is not None:
        cov, rel = stats.spread(all_ratios)
        result.update(ratio=stats.median(ratio_medians) if windows > 1 else stats.median(all_ratios),
                      ratio_cov=cov, ratio_ci_rel=rel, ref_ms=stats.median(all_refs) * 1000.0, ref_k=ref[1])
    return result
