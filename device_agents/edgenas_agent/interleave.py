"""Interleaved timing of many models: the LUT protocol's round-robin mode (``interleave`` >= 2).

``bench_many`` hands this module groups of up to ``interleave`` models, each open in its own runtime
session, and times them side by side instead of one after the other:

1. **warm-up by time**: each model runs until ``warmup_min_n`` runs and ``warmup_min_s`` seconds of its
   own are done (at most half of ``max_s``);
2. **rounds**: in each round every model still active takes one *turn*: ``burst_warmup_n`` runs that
   re-warm its caches and are not kept (the first run after another model ran takes 1.5-3x as long as
   back-to-back runs), then ``burst`` single runs, each one sample. With a speed reference, the
   reference takes one turn per round before the models (it is sampled once per round, not after every
   sample), and each sample's ratio divides it by the median of that round's reference turn;
3. **stopping rule** (``verdict``, after every round, per model): stop as *stable* once the model has
   ``min_n`` samples and ``min_s`` seconds of its own time and the spread is small (the
   distribution-free 95% CI of the median within ``max_ci_rel`` of it, or CoV <= ``max_cov``), judged on
   the samples and, with a reference, on the ratios too; stop as *unstable* when its own time (warm-up
   and turns, not the other models') reaches ``max_s``, the per-entry cap.

A model's samples are thus spread over the whole group's time rather than one short window, so a
passing load burst or a slow drift of the machine's speed lands on every model of the group alike
instead of on whichever was being timed. Finished models leave the round; their runtime sessions are
closed by the caller as soon as ``on_done`` hands them back. Times come from ``time.perf_counter``
through the runners' ``timer(k)`` and are per single inference.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

from . import stats

Timer = Callable[[int], float]
#: samples per model at most, whatever the clock says (a broken clock must not loop forever)
MAX_SAMPLES = 1000000


def spread_ok(xs: Sequence[float], proto: Mapping[str, Any]) -> bool:
    """The spread rule: CoV <= ``max_cov`` or the median's 95% CI within ``max_ci_rel`` (relative)."""
    if len(xs) < 2:
        return False
    cov, rel = stats.spread(xs)
    return cov <= proto["max_cov"] or (rel is not None and rel <= proto["max_ci_rel"])


def verdict(samples: Sequence[float], ratios: Sequence[float], spent_s: float,
            proto: Mapping[str, Any]) -> Optional[bool]:
    """The stopping rule for one model after a round: None (go on), True (stable), False (capped).

    ``samples`` are its single-run times so far, ``ratios`` their reference ratios (empty without a
    reference), ``spent_s`` its own time so far (warm-up and turns). Pure: no clock, no runtime."""
    n = len(samples)
    if n >= proto["min_n"] and spent_s >= proto["min_s"]:
        if spread_ok(samples, proto) and (not ratios or spread_ok(ratios, proto)):
            return True
    if spent_s >= proto["max_s"] or n >= MAX_SAMPLES:
        return False
    return None


class Track:
    """One model during a group: its timer and what has been measured so far."""

    def __init__(self, key: str, timer: Timer) -> None:
        self.key = key
        self.timer = timer
        self.warmup_n = 0
        self.spent_s = 0.0
        self.samples: List[float] = []
        self.ratios: List[float] = []
        self.refs: List[float] = []  # the reference value of each round this model took part in
        self.stable = False

    def record(self, samples: List[float], ref_value: Optional[float]) -> None:
        """Keep ``samples``; with a reference, also their ratios to ``ref_value`` and the value itself."""
        self.samples.extend(samples)
        if ref_value is not None:
            self.ratios.extend(s / ref_value for s in samples)
            self.refs.append(ref_value)

    def result(self, k: int = 1) -> Dict[str, Any]:
        """STATS (``stats.summarize``; ``k``: runs per sample) plus the ratio fields when a reference was
        timed (the reference's samples had as many runs)."""
        out = stats.summarize(self.samples, k=k, warmup_n=self.warmup_n, stable=self.stable,
                              total_s=self.spent_s)
        if self.ratios:
            cov, rel = stats.spread(self.ratios)
            out.update(ratio=stats.median(self.ratios), ratio_cov=cov, ratio_ci_rel=rel,
                       ref_ms=stats.median(self.refs) * 1000.0, ref_k=k)
        return out


def warm_up(track: Track, proto: Mapping[str, Any], clock: Callable[[], float] = time.perf_counter) -> float:
    """Single runs of ``track.timer`` until ``warmup_min_n`` runs and ``warmup_min_s`` seconds of this
    warm-up (at most half the cap); counted into the track's ``warmup_n`` and own time. Returns the
    last run's time."""
    t0 = clock()
    runs = 0
    while True:
        last = track.timer(1)
        runs += 1
        elapsed = clock() - t0
        if (runs >= proto["warmup_min_n"] and elapsed >= proto["warmup_min_s"]) or elapsed >= 0.5 * proto["max_s"]:
            track.warmup_n += runs
            track.spent_s += elapsed
            return last


def turn(timer: Timer, proto: Mapping[str, Any]) -> List[float]:
    """One turn: ``burst_warmup_n`` re-warming runs (not kept), then ``burst`` samples of
    ``runs_per_sample`` runs (single runs by default)."""
    for _ in range(int(proto["burst_warmup_n"])):
        timer(1)
    runs = int(proto.get("runs_per_sample", 1))
    return [timer(runs) / runs for _ in range(int(proto["burst"]))]


def run_group(tracks: List[Track], proto: Mapping[str, Any], ref_timer: Optional[Timer] = None,
              on_done: Optional[Callable[[List[Track]], None]] = None,
              clock: Callable[[], float] = time.perf_counter) -> List[Track]:
    """Warm every track up, then rounds until each has a verdict; ``on_done`` gets each round's finished.

    Returns the tracks in the order they finished."""
    for track in tracks:
        warm_up(track, proto, clock)
    active = list(tracks)
    finished: List[Track] = []
    while active:
        ref_value = None
        if ref_timer is not None:
            ref_value = max(stats.median(turn(ref_timer, proto)), 1e-12)
        for track in active:
            t0 = clock()
            samples = turn(track.timer, proto)
            track.spent_s += clock() - t0
            track.record(samples, ref_value)
        active = retire(active, finished, lambda t: verdict(t.samples, t.ratios, t.spent_s, proto), on_done)
    return finished


T = TypeVar("T", bound=Track)


def retire(active: List[T], finished: List[T], judge: Callable[[T], Optional[bool]],
           on_done: Optional[Callable[[List[T]], None]] = None) -> List[T]:
    """Judge every active track (``judge``: None to go on, else its ``stable``); the decided ones join
    ``finished`` and go to ``on_done`` together. Returns the tracks still active."""
    done = []
    for track in active:
        v = judge(track)
        if v is not None:
            track.stable = v
            done.append(track)
    if done:
        finished.extend(done)
        if on_done is not None:
            on_done(done)
    return [t for t in active if t not in done]
